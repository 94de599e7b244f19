"""Create the QApplication and show the main window."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication

from bvae_desktop import APP_NAME, __version__


def run_app(argv: list[str]) -> int:
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("bvae-desktop")  # names the data folder: ~/.local/share/bvae-desktop on Linux
    app.setApplicationDisplayName(APP_NAME)
    app.setApplicationVersion(__version__)
    from bvae_desktop.gui.main_window import MainWindow

    window = MainWindow()
    window.show()
    return app.exec()
