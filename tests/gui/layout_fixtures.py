"""Measuring a view where it lives: as a tab of the main window at the smallest supported size."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize
from PySide6.QtWidgets import QApplication, QWidget

MIN_WIDTH, MIN_HEIGHT = 1024, 640


def tab_area(qtbot, tmp_path, view_name: str) -> QSize:
    """The size the view has as a tab of the main window at 1024x640: the window minus its chrome (the
    training panel on the left, menus, tab bar, status bar), measured, not assumed."""
    from bvae_desktop.gui import MainWindow
    from bvae_desktop.gui.settings import AppSettings

    settings = AppSettings(tmp_path / "settings.ini")
    settings.runs_dir = tmp_path / "runs"
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.show()
    window.resize(MIN_WIDTH, MIN_HEIGHT)
    view = getattr(window, view_name)
    window.tabs.setCurrentWidget(view)
    qtbot.waitExposed(window)
    QApplication.processEvents()
    area = QSize(MIN_WIDTH - (window.width() - view.width()), MIN_HEIGHT - (window.height() - view.height()))
    window.close()
    return area


def geometry_in(view: QWidget, widget: QWidget) -> QRect:
    """`widget`'s rectangle in `view`'s coordinates."""
    return QRect(widget.mapTo(view, widget.rect().topLeft()), widget.size())
