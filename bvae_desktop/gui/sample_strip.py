"""Validation images (top row) above their reconstructions (bottom row), at one training step.

A pure view: it takes uint8 arrays (n, C, H, W) with values 0..255 (scale {0, 1} dSprites
images before sending them), tiles them into one image and shows it.

Drawn with a pyqtgraph ImageItem rather than a QLabel pixmap: the image scales with the widget
while keeping its aspect (a QLabel needs manual rescaling on every resize), pixels stay sharp
when enlarged, and it follows the project's image rules (one item, `setImage`, fixed levels
0..255, row-major), the same way the traversal grid will.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from bvae_desktop.gui.pg_setup import configure_pyqtgraph
from bvae_desktop.gui.tiling import tile_rows

GAP = 2


class SampleStripView(QWidget):
    """One tiled image: originals on top, reconstructions below, plus a caption."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        configure_pyqtgraph()
        self.setObjectName("sampleStrip")
        self._tiled: np.ndarray | None = None

        self._view_widget = pg.GraphicsLayoutWidget(self)
        self._view_widget.setObjectName("sampleStripImage")
        self._view_widget.ci.layout.setContentsMargins(0, 0, 0, 0)
        self.view_box = self._view_widget.addViewBox(lockAspect=True, invertY=True, enableMouse=False)
        self.view_box.setMenuEnabled(False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view_box.addItem(self.image_item)

        self._caption = QLabel(self)
        self._caption.setObjectName("sampleStripCaption")
        self._caption.setContentsMargins(6, 0, 6, 2)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self._view_widget, 1)
        layout.addWidget(self._caption)
        self.clear()

    def set_samples(self, originals: np.ndarray, reconstructions: np.ndarray, step: int) -> None:
        """Show `originals` over `reconstructions`: both uint8 (n, C, H, W), C in {1, 3}."""
        originals = np.asarray(originals)
        reconstructions = np.asarray(reconstructions)
        if originals.shape != reconstructions.shape:
            raise ValueError(
                f"originals {originals.shape} and reconstructions {reconstructions.shape} must have the same shape"
            )
        tiled = tile_rows([originals, reconstructions], gap=GAP)
        self._tiled = tiled
        self.image_item.setImage(tiled, autoLevels=False, levels=(0, 255))
        self.view_box.setRange(xRange=(0, tiled.shape[1]), yRange=(0, tiled.shape[0]), padding=0.01)
        self._caption.setText(f"validation images (top) and reconstructions (bottom), step {int(step)}")

    def tiled(self) -> np.ndarray | None:
        """The last tiled image (H, W) or (H, W, 3) uint8, or None after `clear()`."""
        return self._tiled

    def caption(self) -> str:
        return self._caption.text()

    def clear(self) -> None:
        self._tiled = None
        self.image_item.clear()
        self._caption.setText("validation images (top) and reconstructions (bottom): none yet")
