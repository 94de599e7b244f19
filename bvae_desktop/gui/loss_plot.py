"""Live loss curves: training and validation total / reconstruction / KL, with β-change markers.

A pure view: it receives numpy arrays (or anything `np.asarray` accepts), never tensors.

Storage: each series lives in preallocated float64 arrays that double when full (amortised
O(1) per point, no per-point Python objects, no concatenation per update); the curves are
handed views `buf[:n]`, which stay valid because points are only ever appended past `n`.

Log y: pyqtgraph maps values <= 0 to NaN on a log axis, which punches holes in the curve and,
with peak downsampling, blanks whole downsampled blocks. So while log y is on, the curves get
values clipped from below at a display floor: the smallest positive value in any curve of the
plot (tracked at append time), but never below `LOG_FLOOR`. A KL of exactly 0 at step 0 thus sits
at the bottom of the data instead of dragging the axis down to 1e-6 or leaving a hole. The clip
is one O(n) copy per update, only in log mode (pyqtgraph's own log10 is another). Linear y, and
every count and buffer, keep the raw values.

Steps are expected to increase within a run (clip-to-view bisects on x); call `clear()` or
`set_history()` when a run restarts from an earlier step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QVBoxLayout, QWidget

from bvae_desktop.gui.pg_setup import configure_pyqtgraph

LOG_FLOOR = 1e-6

# Tableau colours: total, reconstruction, KL (readable on white, distinct for most colour vision).
_COLOURS = {"loss": "#1f4e9c", "recon": "#e07b00", "kl": "#2a9d3a"}
_LABELS = {"loss": "total", "recon": "recon", "kl": "KL"}
_MARKER_COLOUR = "#7a3db8"
_VALUES = ("loss", "recon", "kl")
# an objective's own terms (β-TCVAE's TC, FactorVAE's estimate, ...) get the next free colour, dotted
_EXTRA_COLOURS = ("#c0392b", "#8e44ad", "#16a085", "#7f8c8d", "#d35400", "#2c3e50")


class _GrowingSeries:
    """Columns of float64 that grow by doubling; `view(name)` is the filled part."""

    def __init__(self, initial_capacity: int = 1024, values: tuple[str, ...] = _VALUES) -> None:
        self._initial = max(1, int(initial_capacity))
        self._values = values
        self._names = ("step", *values)
        self._reset()

    def _reset(self) -> None:
        self._cols = {name: np.empty(self._initial, dtype=np.float64) for name in self._names}
        self._n = 0
        self.min_positive = np.inf  # smallest value > 0 in any value column
        self.min_value = np.inf  # bounds of every value column, kept at append time for the y range
        self.max_value = -np.inf

    def __len__(self) -> int:
        return self._n

    @property
    def capacity(self) -> int:
        return len(self._cols["step"])

    def clear(self) -> None:
        self._reset()

    def append(self, steps, *columns) -> int:
        """Append rows: `steps` and one array per value column, in the order the series was made with."""
        if len(columns) != len(self._values):
            raise ValueError(
                f"expected {len(self._values)} value columns ({', '.join(self._values)}), got {len(columns)}"
            )
        arrays = [np.asarray(a, dtype=np.float64).reshape(-1) for a in (steps, *columns)]
        k = len(arrays[0])
        if any(len(a) != k for a in arrays[1:]):
            raise ValueError(f"steps, loss, recon and kl must have the same length, got {[len(a) for a in arrays]}")
        if k == 0:
            return 0
        need = self._n + k
        if need > self.capacity:
            new_capacity = max(2 * self.capacity, need)
            for name, old in self._cols.items():
                grown = np.empty(new_capacity, dtype=np.float64)
                grown[: self._n] = old[: self._n]
                self._cols[name] = grown
        lo, hi = self._n, need
        self._cols["step"][lo:hi] = arrays[0]
        for name, values in zip(self._values, arrays[1:], strict=True):
            self._cols[name][lo:hi] = values
            positive = values[values > 0]
            if positive.size:
                self.min_positive = min(self.min_positive, float(positive.min()))
            finite = values[np.isfinite(values)]
            if finite.size:
                self.min_value = min(self.min_value, float(finite.min()))
                self.max_value = max(self.max_value, float(finite.max()))
        self._n = need
        return k

    def view(self, name: str) -> np.ndarray:
        return self._cols[name][: self._n]


class LossPlotView(QWidget):
    """Training curves (solid) and validation curves (dashed, with symbols) against step."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        configure_pyqtgraph()
        self.setObjectName("lossPlot")

        self._train = _GrowingSeries(4096)
        self._val = _GrowingSeries(256)
        self._markers: list[tuple[int, float]] = []
        self._marker_lines: list[pg.InfiniteLine] = []

        self._log_check = QCheckBox("log y", self)
        self._log_check.setObjectName("logYCheck")
        self._log_check.setToolTip("Logarithmic loss axis (values <= 0 are drawn at the smallest positive value)")

        # A GraphicsLayoutWidget rather than a bare PlotWidget so the legend can sit in its own
        # row above the plot, where it never covers the curves or the β labels: training entries
        # on its first line, validation on its second (three columns fit a narrow dock too;
        # LegendItem.setColumnCount cannot be changed later, it misplaces the entries).
        self._plot_widget = pg.GraphicsLayoutWidget(self)
        self._plot_widget.setObjectName("lossPlotWidget")
        self._plot_widget.ci.setContentsMargins(2, 2, 2, 2)
        self._plot_widget.ci.setSpacing(0)
        self.legend = pg.LegendItem(colCount=3, horSpacing=12, verSpacing=-6)
        self.legend.setLabelTextSize("8pt")
        self._plot_widget.ci.addItem(self.legend, row=0, col=0)
        self._plot_widget.ci.layout.setAlignment(self.legend, Qt.AlignmentFlag.AlignHCenter)
        plot = self._plot_widget.ci.addPlot(row=1, col=0)
        self.plot_item = plot
        plot.setDownsampling(auto=True, mode="peak")
        plot.setClipToView(True)
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.setLabel("bottom", "step")
        plot.setLabel("left", "loss")
        # The view follows the data in coarse steps (x grows by a quarter, y only when the data
        # leaves it or shrinks a lot): every range change repaints both axes, the biggest cost
        # of a live update. Panning or zooming by hand stops the following until clear().
        plot.enableAutoRange(x=False, y=False)
        self._follow = True
        self._x_max = 0.0
        self._y_range: tuple[float, float] | None = None
        plot.getViewBox().sigRangeChangedManually.connect(self._on_manual_range)

        self._train_curves: dict[str, pg.PlotDataItem] = {}
        self._extra_series: dict[str, _GrowingSeries] = {}
        self._extra_curves: dict[str, pg.PlotDataItem] = {}
        self._val_curves: dict[str, pg.PlotDataItem] = {}
        for name in _VALUES:
            colour = _COLOURS[name]
            self._train_curves[name] = plot.plot(pen=pg.mkPen(colour, width=1))
            self.legend.addItem(self._train_curves[name], f"train {_LABELS[name]}")
        for name in _VALUES:
            colour = _COLOURS[name]
            self._val_curves[name] = plot.plot(
                pen=pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine),
                symbol="o",
                symbolSize=5,
                symbolPen=pg.mkPen(colour),
                symbolBrush=pg.mkBrush("w"),
            )
            self.legend.addItem(self._val_curves[name], f"val {_LABELS[name]}")
        self._val_floor = LOG_FLOOR  # display floor the validation curves were last drawn with

        controls = QHBoxLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addStretch(1)
        controls.addWidget(self._log_check)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(controls)
        layout.addWidget(self._plot_widget, 1)

        self._log_check.toggled.connect(self._on_log_y_toggled)
        # pyqtgraph's own context menu has a "Log Y" box too: keep ours and the clipping in step.
        plot.ctrl.logYCheck.toggled.connect(self._on_plot_log_y_toggled)

    # --- data -----------------------------------------------------------------------------

    def add_steps(self, steps: np.ndarray, loss: np.ndarray, recon: np.ndarray, kl: np.ndarray) -> None:
        """Append a batch of training points (one per step)."""
        if self._train.append(steps, loss, recon, kl):
            self._refresh(self._train, self._train_curves)

    def add_extras(self, steps: np.ndarray, extras: dict[str, np.ndarray]) -> None:
        """Append an objective's own terms by name (TC, ...): a dotted curve each, made on first sight."""
        for name, values in extras.items():
            series = self._extra_series.get(name)
            if series is None:
                series = self._extra_series[name] = _GrowingSeries(values=(name,))
                colour = _EXTRA_COLOURS[(len(self._extra_series) - 1) % len(_EXTRA_COLOURS)]
                curve = self.plot_item.plot(pen=pg.mkPen(colour, width=1, style=Qt.PenStyle.DotLine))
                self._extra_curves[name] = curve
                self.legend.addItem(curve, f"train {name}")
            if series.append(steps, values):
                self._refresh(series, {name: self._extra_curves[name]})

    def extra_names(self) -> list[str]:
        return list(self._extra_series)

    def add_validation(self, steps: np.ndarray, loss: np.ndarray, recon: np.ndarray, kl: np.ndarray) -> None:
        """Append validation points (one per evaluation)."""
        if self._val.append(steps, loss, recon, kl):
            self._refresh(self._val, self._val_curves)

    def add_beta_marker(self, step: int, beta: float) -> None:
        """Mark a β change with a vertical line labelled "β=<value>" at `step`.

        A second marker at the same step replaces the first (the last β set there wins).
        """
        step, beta = int(step), float(beta)
        label = f"β={beta:g}"
        for i, (existing, _) in enumerate(self._markers):
            if existing == step:
                self._markers[i] = (step, beta)
                self._marker_lines[i].label.setFormat(label)
                return
        line = pg.InfiniteLine(
            pos=step,
            angle=90,
            movable=False,
            pen=pg.mkPen(_MARKER_COLOUR, width=1, style=Qt.PenStyle.DotLine),
            label=label,
            labelOpts={
                "position": 0.96,
                "color": _MARKER_COLOUR,
                "fill": pg.mkBrush(255, 255, 255, 200),
                "anchors": [(0, 0), (0, 0)],
            },
        )
        self.plot_item.addItem(line, ignoreBounds=True)
        self._markers.append((step, beta))
        self._marker_lines.append(line)

    def clear(self) -> None:
        """Forget all points and markers."""
        self._train.clear()
        self._val.clear()
        for curve in (*self._train_curves.values(), *self._val_curves.values()):
            curve.setData([], [])
        for curve in self._extra_curves.values():
            self.plot_item.removeItem(curve)
            self.legend.removeItem(curve)
        self._extra_series.clear()
        self._extra_curves.clear()
        for line in self._marker_lines:
            self.plot_item.removeItem(line)
        self._marker_lines.clear()
        self._markers.clear()
        self._follow = True
        self._x_max = 0.0
        self._y_range = None

    def set_history(
        self,
        steps: np.ndarray,
        loss: np.ndarray,
        recon: np.ndarray,
        kl: np.ndarray,
        val_steps: np.ndarray | None = None,
        val_loss: np.ndarray | None = None,
        val_recon: np.ndarray | None = None,
        val_kl: np.ndarray | None = None,
        beta_steps: Sequence[int] | np.ndarray | None = None,
        beta_values: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        """Replace everything shown with a whole run (e.g. read from a run log)."""
        self.clear()
        self.add_steps(steps, loss, recon, kl)
        if val_steps is not None:
            self.add_validation(val_steps, val_loss, val_recon, val_kl)
        if beta_steps is not None:
            beta_steps = np.asarray(beta_steps).reshape(-1)
            beta_values = np.asarray(beta_values if beta_values is not None else []).reshape(-1)
            if len(beta_steps) != len(beta_values):
                raise ValueError(f"{len(beta_steps)} β steps but {len(beta_values)} β values")
            for step, beta in zip(beta_steps, beta_values, strict=True):
                self.add_beta_marker(int(step), float(beta))

    # --- introspection (tests, callers) --------------------------------------------------

    def train_point_count(self) -> int:
        return len(self._train)

    def validation_point_count(self) -> int:
        return len(self._val)

    def train_capacity(self) -> int:
        """Allocated length of the training buffers (for memory tests)."""
        return self._train.capacity

    def beta_markers(self) -> list[tuple[int, float]]:
        return list(self._markers)

    def curve(self, kind: str, name: str) -> pg.PlotDataItem:
        """The curve item for kind "train"/"val" and name "loss"/"recon"/"kl" (or an extra's name, "train")."""
        if kind == "train" and name in self._extra_curves:
            return self._extra_curves[name]
        return (self._train_curves if kind == "train" else self._val_curves)[name]

    @property
    def log_y(self) -> bool:
        return self._log_check.isChecked()

    @log_y.setter
    def log_y(self, on: bool) -> None:
        self._log_check.setChecked(bool(on))

    # --- internals ------------------------------------------------------------------------

    def _log_floor(self) -> float:
        return max(LOG_FLOOR, min(self._train.min_positive, self._val.min_positive, 1.0))

    def _on_manual_range(self, *_args) -> None:
        self._follow = False

    def _update_range(self) -> None:
        """Move the view only when the data outgrows it (see the note in __init__)."""
        if not self._follow or not (len(self._train) or len(self._val)):
            return
        last = max(
            self._train.view("step")[-1] if len(self._train) else 0, self._val.view("step")[-1] if len(self._val) else 0
        )
        if last > self._x_max or self._x_max == 0:
            self._x_max = float(_nice_ceiling(max(last * 1.25, 10)))
            self.plot_item.setXRange(0, self._x_max, padding=0)
        every = (self._train, self._val, *self._extra_series.values())
        lo = min(series.min_value for series in every)
        hi = max(series.max_value for series in every)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            return
        if self.log_y:
            lo, hi = np.log10(max(lo, self._log_floor())), np.log10(max(hi, self._log_floor()))
        span = max(hi - lo, 1e-9)
        current = self._y_range
        outside = current is None or lo < current[0] or hi > current[1]
        too_loose = current is not None and (current[1] - current[0]) > 1.6 * span + 1e-9
        if outside or too_loose:
            self._y_range = (lo - 0.05 * span, hi + 0.05 * span)
            self.plot_item.setYRange(*self._y_range, padding=0)

    def _refresh(self, series: _GrowingSeries, curves: dict[str, pg.PlotDataItem]) -> None:
        self._draw(series, curves)
        self._update_range()

    def _draw(self, series: _GrowingSeries, curves: dict[str, pg.PlotDataItem]) -> None:
        x = series.view("step")
        if not self.log_y:
            for name, curve in curves.items():
                curve.setData(x, series.view(name))
            return
        floor = self._log_floor()
        for name, curve in curves.items():
            curve.setData(x, np.maximum(series.view(name), floor))
        if series is self._val:
            self._val_floor = floor
        elif floor != self._val_floor and len(self._val):
            self._draw(self._val, self._val_curves)  # the floor moved: keep both in step

    def _on_log_y_toggled(self, on: bool) -> None:
        self.plot_item.setLogMode(y=on)  # also ticks pyqtgraph's own menu box
        self._y_range = None
        self._refresh(self._train, self._train_curves)
        self._refresh(self._val, self._val_curves)
        for name, series in self._extra_series.items():
            self._refresh(series, {name: self._extra_curves[name]})

    def _on_plot_log_y_toggled(self, on: bool) -> None:
        self._log_check.setChecked(on)  # no-op (no signal) when already in that state


def _nice_ceiling(value: float) -> float:
    """The next of 1, 2, 2.5, 5 times a power of ten at or above `value`."""
    power = 10.0 ** np.floor(np.log10(value))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if factor * power >= value:
            return factor * power
    return 10.0 * power
