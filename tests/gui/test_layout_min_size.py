"""The window at its smallest supported size, 1024x640: it fits, and on every tab each control is
visible and no label is clipped (checked on the widgets' geometry, not on a picture)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRect
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QLabel,
    QLineEdit,
    QRadioButton,
    QScrollArea,
    QTabWidget,
    QWidget,
)

from bvae_desktop.gui import MainWindow
from bvae_desktop.gui.settings import AppSettings

MIN_WIDTH, MIN_HEIGHT = 1024, 640
CONTROLS = (QLabel, QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit)
SQUEEZED_PX = 150  # a wrapped label narrower than this (and than its text) reads as a column of words


@pytest.fixture
def small_window(qtbot, tmp_path):
    settings = AppSettings(tmp_path / "settings.ini")
    settings.runs_dir = tmp_path / "runs"
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.resize(MIN_WIDTH, MIN_HEIGHT)
    win.show()
    qtbot.waitUntil(lambda: win.isVisible() and win.width() > 0)
    yield win
    win.stop_training()


def _in_scroll_area(widget: QWidget) -> bool:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QScrollArea):
            return True
        parent = parent.parentWidget()
    return False


def _clipped(widget: QWidget) -> str | None:
    """Why a control's text is cut at its current geometry, or None."""
    width, height = widget.width(), widget.height()
    metrics = widget.fontMetrics()
    if height < metrics.height():
        return f"{height} px high, its font needs {metrics.height()}"
    if isinstance(widget, QLabel):
        if not widget.text() or (widget.pixmap() is not None and not widget.pixmap().isNull()):
            return None
        if widget.wordWrap():
            squeezed = min(metrics.horizontalAdvance(widget.text()), SQUEEZED_PX)
            if width < squeezed:  # a column a word or two wide: it "wraps word by word"
                return f"wrapped into {width} px (word by word)"
            needed = widget.heightForWidth(width)
            return f"wrapped text needs {needed} px of height, has {height}" if needed > height + 1 else None
        needed = widget.minimumSizeHint().width()
        return f"text needs {needed} px, has {width}" if needed > width + 1 else None
    if isinstance(widget, QAbstractButton):
        text = widget.text().replace("&", "")
        needed = metrics.horizontalAdvance(text) + (widget.iconSize().width() if not widget.icon().isNull() else 0)
        if isinstance(widget, (QCheckBox, QRadioButton)):
            needed += 20  # the box or the circle
        return f"text {text!r} needs {needed} px, has {width}" if needed > width - 4 else None
    if isinstance(widget, QComboBox):
        needed = metrics.horizontalAdvance(widget.currentText()) + 24  # the arrow
        return f"item {widget.currentText()!r} needs {needed} px, has {width}" if needed > width else None
    if isinstance(widget, QLineEdit) and widget.text():
        needed = metrics.horizontalAdvance(widget.text()) + 10
        return f"text {widget.text()!r} needs {needed} px, has {width}" if needed > width else None
    if isinstance(widget, QAbstractSpinBox):
        needed = metrics.horizontalAdvance(widget.text()) + 20  # the arrows
        return f"value {widget.text()!r} needs {needed} px, has {width}" if needed > width else None
    return None


def _problems(root: QWidget, window: MainWindow) -> list[str]:
    found = []
    window_rect = window.rect()
    for widget in root.findChildren(QWidget):
        if not isinstance(widget, CONTROLS) or not widget.isVisible() or widget.width() == 0:
            continue
        if widget.objectName().startswith("qt_"):  # Qt's own parts (a spin box's line edit)
            continue
        if isinstance(widget, QLabel) and widget.parentWidget() is not None and widget.parentWidget().isWindow():
            continue
        name = f"{type(widget).__name__} {widget.objectName() or repr(getattr(widget, 'text', lambda: '')())[:40]}"
        why = _clipped(widget)
        if why:
            found.append(f"{name}: {why}")
        if not _in_scroll_area(widget):  # in a scroll area it may lie below the fold: it scrolls into view
            top_left = widget.mapTo(window, widget.rect().topLeft())
            if not window_rect.contains(QRect(top_left, widget.size()).adjusted(1, 1, -1, -1)):
                found.append(
                    f"{name}: outside the window at {top_left.x()},{top_left.y()} size {widget.width()}x{widget.height()}"
                )
    return found


def test_the_window_fits_1024_by_640(small_window):
    assert small_window.minimumSizeHint().width() <= MIN_WIDTH
    assert small_window.minimumSizeHint().height() <= MIN_HEIGHT
    assert small_window.width() == MIN_WIDTH and small_window.height() == MIN_HEIGHT


def test_every_tab_shows_its_controls_whole_at_1024_by_640(qtbot, small_window):
    tabs = small_window.findChild(QTabWidget)
    problems: list[str] = []
    problems += [f"training panel: {p}" for p in _problems(small_window.panel, small_window)]
    for index in range(tabs.count()):
        tabs.setCurrentIndex(index)
        page = tabs.widget(index)
        qtbot.waitUntil(page.isVisible)
        problems += [f"{tabs.tabText(index)}: {p}" for p in _problems(page, small_window)]
    assert not problems, "\n".join(problems)
