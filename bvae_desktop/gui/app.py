"""Create the QApplication (names, icon) and show the main window."""

from __future__ import annotations

from importlib import resources

from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QApplication

from bvae_desktop import APP_NAME, __version__

ICON_NAME = "bvae-desktop"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def app_icon() -> QIcon:
    """The app icon at every rendered size, read through importlib.resources so it is found installed,
    from a wheel or frozen; PNGs need no Qt image plugin (SVG would)."""
    icon = QIcon()
    folder = resources.files("bvae_desktop") / "resources" / "icons"
    for size in ICON_SIZES:
        entry = folder / f"{ICON_NAME}-{size}.png"
        if not entry.is_file():
            continue
        pixmap = QPixmap()
        if pixmap.loadFromData(entry.read_bytes(), "PNG"):
            icon.addPixmap(pixmap)
    return icon


def make_app(argv: list[str]) -> QApplication:
    """The one QApplication, named so settings and data land in the app's own folders."""
    app = QApplication.instance() or QApplication(argv)
    assert isinstance(app, QApplication)
    app.setApplicationName("bvae-desktop")  # names the data folder: ~/.local/share/bvae-desktop on Linux
    app.setApplicationDisplayName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(ICON_NAME)  # ties the window to bvae-desktop.desktop (its icon on Wayland)
    app.setWindowIcon(app_icon())
    return app


def run_app(argv: list[str]) -> int:
    app = make_app(argv)
    from bvae_desktop.gui.main_window import MainWindow

    window = MainWindow()
    window.show()
    code = app.exec()
    # destroy the window while the QApplication lives: left to the interpreter's exit, the order is
    # not fixed, and a window outliving the app can crash the process on the way out
    window.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    return code
