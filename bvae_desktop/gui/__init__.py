"""The window: Qt widgets that drive `bvae_desktop.core` and draw what it reports."""

from bvae_desktop.gui.main_window import MainWindow

__all__ = ["MainWindow"]
