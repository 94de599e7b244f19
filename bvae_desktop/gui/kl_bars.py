"""KL divergence per latent dimension, as bars sorted from most to least informative.

A pure view: `set_kl` takes a sequence or numpy array of per-dimension KL (nats), never a tensor.
Dimensions whose KL exceeds `threshold` count as active (they carry information); the rest
are drawn grey. A dashed line marks the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from bvae_desktop.core.latent_activity import ACTIVE_KL, NO_ACTIVE_LATENT
from bvae_desktop.gui.pg_setup import configure_pyqtgraph

DEFAULT_THRESHOLD = ACTIVE_KL  # nats
_WARNING_STYLE = "color: #a04000; font-weight: bold;"
_ACTIVE_BRUSH = pg.mkBrush("#1f4e9c")
_INACTIVE_BRUSH = pg.mkBrush("#c4c4c4")
_TICK_LABEL_PX = 34  # room one "z12" label needs; with less per bar, label every k-th bar


class KlBarView(QWidget):
    """Bars of KL per latent dimension, sorted descending, with an activity threshold."""

    def __init__(self, parent: QWidget | None = None, threshold: float = DEFAULT_THRESHOLD) -> None:
        super().__init__(parent)
        configure_pyqtgraph()
        self.setObjectName("klBarPlot")
        self._threshold = float(threshold)
        self._kl = np.zeros(0, dtype=np.float64)
        self._order = np.zeros(0, dtype=np.int64)
        self._capacity: float | None = None
        self._x_count = -1
        self._y_range: tuple[float, float] | None = None
        self._ticks: list[tuple[int, str]] | None = None

        self._plot_widget = pg.PlotWidget(self)
        self._plot_widget.setObjectName("klBarPlotWidget")
        plot = self._plot_widget.getPlotItem()
        self.plot_item = plot
        plot.setLabel("left", "KL (nats)")
        plot.setLabel("bottom", "latent dimension (sorted by KL)")
        plot.showGrid(x=False, y=True, alpha=0.15)
        plot.setMouseEnabled(x=False, y=False)
        plot.setMenuEnabled(False)
        plot.hideButtons()
        # let the first and last names reach a few pixels past the axis ends instead of vanishing
        plot.getAxis("bottom").setStyle(hideOverlappingLabels=12)
        for side in ("bottom", "left"):  # dimensions and nats: no "(x0.001)" rescaling of the units
            plot.getAxis(side).enableAutoSIPrefix(False)

        self.bars = pg.BarGraphItem(x=np.zeros(0), height=np.zeros(0), width=0.8, pen=pg.mkPen(None))
        plot.addItem(self.bars)
        self.threshold_line = pg.InfiniteLine(
            pos=self._threshold,
            angle=0,
            movable=False,
            pen=pg.mkPen("#c0392b", width=1, style=Qt.PenStyle.DashLine),
        )
        plot.addItem(self.threshold_line)

        self._summary = QLabel(self)
        self._summary.setObjectName("klSummaryLabel")
        self._summary.setWordWrap(True)
        self._summary.setContentsMargins(6, 0, 6, 2)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self._plot_widget, 1)
        layout.addWidget(self._summary)
        self.clear()

    # --- API ------------------------------------------------------------------------------

    @property
    def threshold(self) -> float:
        """KL (nats) above which a dimension counts as active."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._threshold = float(value)
        self.threshold_line.setValue(self._threshold)
        self._redraw()

    def set_kl(self, kl_per_dim: Sequence[float] | np.ndarray, capacity: float | None = None) -> None:
        """Show KL per dimension (nats); `capacity` is the capacity target C(t), if any."""
        kl = np.asarray(kl_per_dim, dtype=np.float64).reshape(-1)
        self._kl = kl
        # Stable sort so equal KLs keep dimension order; NaN sorts last.
        self._order = np.argsort(-np.nan_to_num(kl, nan=-np.inf), kind="stable")
        self._capacity = None if capacity is None else float(capacity)
        self._redraw()

    def active_count(self) -> int:
        return int(np.count_nonzero(self._kl > self._threshold))

    def order(self) -> list[int]:
        """Dimension indices in displayed order (highest KL first)."""
        return [int(i) for i in self._order]

    def summary_text(self) -> str:
        return self._summary.text()

    def clear(self) -> None:
        self._kl = np.zeros(0, dtype=np.float64)
        self._order = np.zeros(0, dtype=np.int64)
        self._capacity = None
        self._redraw()

    # --- internals ------------------------------------------------------------------------

    def _redraw(self) -> None:
        n = len(self._kl)
        axis = self.plot_item.getAxis("bottom")
        if n == 0:
            self.bars.setOpts(x=np.zeros(0), height=np.zeros(0), brushes=[])
            axis.setTicks([[]])
            self._ticks, self._x_count, self._y_range = None, -1, None
            self.plot_item.setXRange(-0.5, 0.5, padding=0)
            self.plot_item.setYRange(0, max(1.0, 2 * self._threshold), padding=0)
            self._summary.setText("KL per dimension: no data yet")
            self._summary.setStyleSheet("")
            return
        sorted_kl = self._kl[self._order]
        active = sorted_kl > self._threshold
        brushes = [_ACTIVE_BRUSH if a else _INACTIVE_BRUSH for a in active]
        self.bars.setOpts(x=np.arange(n, dtype=np.float64), height=np.nan_to_num(sorted_kl), brushes=brushes)
        self._update_ticks()
        finite = sorted_kl[np.isfinite(sorted_kl)]
        top = max(float(finite.max()) if finite.size else 0.0, self._threshold, 1e-3)
        bottom = min(float(finite.min()) if finite.size else 0.0, 0.0)
        # Change the ranges only when the bars outgrow them or shrink a lot: a range change
        # repaints the axes, most of a live update's cost.
        if self._x_count != n:
            self._x_count = n
            self.plot_item.setXRange(-0.6, n - 0.4, padding=0)
        y_range = (bottom, top * 1.08)
        current = self._y_range
        if current is None or y_range[0] < current[0] or y_range[1] > current[1] or y_range[1] < 0.6 * current[1]:
            self._y_range = (bottom, top * 1.25)
            self.plot_item.setYRange(*self._y_range, padding=0)

        total = float(np.nansum(self._kl))
        if active.any():
            text = f"{int(active.sum())} of {n} dimensions active (KL > {self._threshold:g} nats)"
        else:  # the decoder ignores every latent: each image decodes to the same blur
            text = f"{NO_ACTIVE_LATENT} (0 of {n} dimensions above {self._threshold:g} nats)"
        text += f" · total KL {total:.1f} nats"
        if self._capacity is not None:
            text += f" · target C(t) {self._capacity:.1f} nats"
        if text != self._summary.text():
            self._summary.setText(text)
            self._summary.setStyleSheet("" if active.any() else _WARNING_STYLE)

    def _update_ticks(self) -> None:
        n = len(self._order)
        # the plot spans the widget; ~50 px go to the left axis (known before the first layout)
        width = max(self.width() - 50, 50)
        step = max(1, math.ceil(n * _TICK_LABEL_PX / width))
        ticks = [(i, f"z{int(d)}") for i, d in enumerate(self._order) if i % step == 0]
        if ticks != self._ticks:
            self._ticks = ticks
            self.plot_item.getAxis("bottom").setTicks([ticks])

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if len(self._order):
            self._update_ticks()
