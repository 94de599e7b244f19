"""Create the QApplication (names, icon) and open the main window by a staged start.

This module imports only PySide6 and light modules: torch and the main window's modules are loaded
behind the start-up window (gui/startup.py), so something is on screen within about the cost of
importing PySide6.
"""

from __future__ import annotations

import sys
from importlib import resources

from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QApplication, QWidget

from bvae_desktop import APP_NAME, __version__
from bvae_desktop.gui import gui_thread_gc
from bvae_desktop.gui import startup_trace as stages
from bvae_desktop.gui.qt_platform import EXIT_CODE as PLATFORM_EXIT_CODE
from bvae_desktop.gui.qt_platform import check_platform
from bvae_desktop.gui.startup import StagedStart, run_staged
from bvae_desktop.gui.startup_trace import StartupTrace

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
    if app.findChild(gui_thread_gc.GuiThreadCollector) is None:  # cycles are freed here, never in a worker thread
        gui_thread_gc.install(app)
    return app


def build_main_window() -> QWidget:
    """The main window, built on the GUI thread once the loader thread has imported its modules."""
    from bvae_desktop.gui.main_window import MainWindow

    return MainWindow()


def run_app(argv: list[str], started_at: float | None = None) -> int:
    """Open the app; its exit code. `started_at` (time.time() when main() began) goes into the start-up trace."""
    problem = check_platform(argv)  # before QApplication: Qt would abort with a misleading hint
    if problem is not None:
        print(problem, file=sys.stderr)
        return PLATFORM_EXIT_CODE
    trace = StartupTrace.from_environ()
    if started_at is not None:
        trace.mark(stages.MAIN, started_at)
    app = make_app(argv)
    trace.mark(stages.APP_CREATED)
    staged = StagedStart(build_main_window, trace=trace, icon=app.windowIcon())
    try:
        code = run_staged(app, staged)
    finally:
        try:
            trace.write()
        except OSError as exc:
            print(f"bvae-desktop: could not write the start-up trace {trace.path}: {exc}", file=sys.stderr)
    # destroy the windows while the QApplication lives: left to the interpreter's exit, the order is
    # not fixed, and a window outliving the app can crash the process on the way out
    for window in (staged.window, staged.startup_window):
        if window is not None:
            window.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    return code
