"""One place that sets pyqtgraph's global options (row-major images, light theme).

Every view calls `configure_pyqtgraph()` in its constructor, before it creates any pyqtgraph
item, so the options hold whichever view is built first. Calling it again does nothing.
"""

from __future__ import annotations

import pyqtgraph as pg

_configured = False


def configure_pyqtgraph() -> None:
    """Set row-major image axis order, no antialiasing, white background, dark foreground."""
    global _configured
    if _configured:
        return
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False, background="w", foreground="k")
    _configured = True
