"""The window: Qt widgets that drive `bvae_desktop.core` and draw what it reports.

Importing the package loads nothing heavy (the start-up window shows before torch and pyqtgraph load);
`from bvae_desktop.gui import MainWindow` imports the main window on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bvae_desktop.gui.main_window import MainWindow

__all__ = ["MainWindow"]


def __getattr__(name: str) -> Any:
    if name == "MainWindow":
        from bvae_desktop.gui.main_window import MainWindow

        return MainWindow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
