"""The latent explorer's scatter tab: encoder means of a data subset, two latent axes or two principal components.

Encoding thousands of images takes seconds, so it runs in an `EncodeWorker` (a QObject with no
parent moved to a QThread) that checks a `threading.Event` between batches and emits progress
only when the percentage changes. The view joins the thread on cancel, on a new source and on
close; `shutdown()` does the same for whoever owns the view.

One ScatterPlotItem holds every point (setData with per-point brushes from a cached palette);
points are coloured by the dataset's labels (MNIST digits: 10 distinct colours) or by one
ground-truth factor's class (a colormap). Clicking a point shows its image and reconstruction.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtGui import QBrush
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from bvae_desktop.core.data.procedural import SHAPE_NAMES
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.gui.pg_setup import configure_pyqtgraph
from bvae_desktop.gui.worker import stop_worker

DEFAULT_POINTS = 5000
ENCODE_BATCH = 256
PROJECTIONS = ("latent dims", "first two principal components")
# Tableau 10: distinct, colour-blind-tolerant categories (MNIST digits)
CATEGORICAL = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
NO_COLOUR = "none"
LABEL_COLOUR = "label"
_MAX_LEGEND_ENTRIES = 10
_POINT_ALPHA = 200
_NOMINAL_MAX = 4  # factors with this few classes (shape) get distinct colours, not a colormap
_KNOWN_CLASS_NAMES = {("shape", 3): SHAPE_NAMES}
_DEFAULT_COLOUR = (60, 90, 160, _POINT_ALPHA)


def class_colours(count: int, categorical: bool) -> np.ndarray:
    """(count, 4) uint8 RGBA: Tableau 10 for up to 10 categories, else viridis along the class index."""
    if categorical and count <= len(CATEGORICAL):
        rgb = np.array(CATEGORICAL[:count], dtype=np.uint8).reshape(-1, 3)
        return np.concatenate([rgb, np.full((len(rgb), 1), _POINT_ALPHA, dtype=np.uint8)], axis=1)
    positions = np.linspace(0.0, 1.0, max(count, 1))
    rgba = pg.colormap.get("viridis").map(positions, mode="byte")
    rgba = np.asarray(rgba, dtype=np.uint8)[:count].copy()
    rgba[:, 3] = _POINT_ALPHA
    return rgba


def pca_2d(points: np.ndarray) -> np.ndarray:
    """Project (n, D) points on their first two principal components (numpy SVD): (n, 2)."""
    x = np.asarray(points, dtype=np.float64)
    centred = x - x.mean(axis=0, keepdims=True)
    _u, _s, vt = np.linalg.svd(centred, full_matrices=False)
    proj = centred @ vt[:2].T
    if proj.shape[1] < 2:
        proj = np.concatenate([proj, np.zeros((len(proj), 2 - proj.shape[1]))], axis=1)
    return proj


class EncodeWorker(QObject):
    """Encodes images in batches in its own thread. Create with no parent, then `moveToThread`."""

    progress = Signal(int, int)  # job id, percent
    done = Signal(int, object, object)  # job id, means (n, D) float32, log-variances
    cancelled = Signal(int)
    failed = Signal(int, str)
    finished = Signal()  # always last: the owner quits the thread

    def __init__(self, job: int, source: ModelSource, indices: np.ndarray, batch_size: int = ENCODE_BATCH) -> None:
        super().__init__()
        self.job = job
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.cancel_event = threading.Event()

    def run(self) -> None:
        # torch's thread count is per thread (OpenMP): this only sizes the encode, and leaves the GUI a core
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
        try:
            self._run()
        except Exception as exc:  # the GUI shows the message; a worker must never die silently
            self.failed.emit(self.job, f"{type(exc).__name__}: {exc}")
        finally:
            self.finished.emit()

    def _run(self) -> None:
        dataset = self.source.dataset
        assert dataset is not None
        means, logvars = [], []
        last_percent = -1
        total = len(self.indices)
        for start in range(0, total, self.batch_size):
            if self.cancel_event.is_set():
                self.cancelled.emit(self.job)
                return
            chunk = self.indices[start : start + self.batch_size]
            mean, logvar = self.source.encode(dataset.batch(chunk).numpy(), batch_size=self.batch_size)
            means.append(mean)
            logvars.append(logvar)
            percent = int(100 * min(start + len(chunk), total) / max(total, 1))
            if percent != last_percent:
                last_percent = percent
                self.progress.emit(self.job, percent)
        if self.cancel_event.is_set():
            self.cancelled.emit(self.job)
            return
        dim = self.source.latent_dim
        out_m = np.concatenate(means) if means else np.zeros((0, dim), np.float32)
        out_v = np.concatenate(logvars) if logvars else np.zeros((0, dim), np.float32)
        self.done.emit(self.job, out_m, out_v)


class ScatterView(QWidget):
    """Encoder means of a data subset, plotted on two latent dims or two principal components."""

    batch_size = ENCODE_BATCH

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        configure_pyqtgraph()
        self.setObjectName("scatterView")
        self._source: ModelSource | None = None
        self._thread: QThread | None = None
        self._worker: EncodeWorker | None = None
        self._job = 0
        self._pending: np.ndarray | None = None  # indices being encoded
        self._encoded_from = "validation images"  # what the encoded points are, said as it is
        self._indices = np.zeros(0, dtype=np.int64)  # dataset index of each point
        self._means = np.zeros((0, 0), dtype=np.float32)
        self._points = np.zeros((0, 2), dtype=np.float64)
        self._labels = np.zeros(0, dtype=np.int64)
        self._colours = np.zeros((0, 4), dtype=np.uint8)
        self._picked: int | None = None
        self._brushes: list[QBrush] | None = None  # one per class of the current colouring

        # --- controls -------------------------------------------------------------------------
        self.pointCountSpin = QSpinBox(self)
        self.pointCountSpin.setObjectName("pointCountSpin")
        self.pointCountSpin.setRange(10, 100_000)
        self.pointCountSpin.setSingleStep(1000)
        self.pointCountSpin.setValue(DEFAULT_POINTS)
        self.pointCountSpin.setToolTip("validation images to encode")
        self.encodeButton = QPushButton("Encode", self)
        self.encodeButton.setObjectName("encodeButton")
        self.cancelEncodeButton = QPushButton("Cancel", self)
        self.cancelEncodeButton.setObjectName("cancelEncodeButton")
        self.encodeProgress = QProgressBar(self)
        self.encodeProgress.setObjectName("encodeProgress")
        self.encodeProgress.setRange(0, 100)
        self.encodeProgress.setMaximumWidth(160)
        self.projectionCombo = QComboBox(self)
        self.projectionCombo.setObjectName("projectionCombo")
        self.projectionCombo.addItems(PROJECTIONS)
        self.xDimCombo = QComboBox(self)
        self.xDimCombo.setObjectName("xDimCombo")
        self.yDimCombo = QComboBox(self)
        self.yDimCombo.setObjectName("yDimCombo")
        self.colourByCombo = QComboBox(self)
        self.colourByCombo.setObjectName("colourByCombo")

        top = QHBoxLayout()
        top.setContentsMargins(6, 4, 6, 0)
        top.addWidget(QLabel("points", self))
        top.addWidget(self.pointCountSpin)
        top.addWidget(self.encodeButton)
        top.addWidget(self.cancelEncodeButton)
        top.addWidget(self.encodeProgress)
        top.addStretch(1)
        second = QHBoxLayout()
        second.setContentsMargins(6, 0, 6, 0)
        second.addWidget(QLabel("axes", self))
        second.addWidget(self.projectionCombo)
        second.addWidget(QLabel("x", self))
        second.addWidget(self.xDimCombo)
        second.addWidget(QLabel("y", self))
        second.addWidget(self.yDimCombo)
        second.addWidget(QLabel("colour by", self))
        second.addWidget(self.colourByCombo)
        second.addStretch(1)

        # --- plot -----------------------------------------------------------------------------
        self._plot_widget = pg.PlotWidget(self)
        self._plot_widget.setObjectName("scatterPlot")
        plot = self._plot_widget.getPlotItem()
        self.plot_item = plot
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.setMenuEnabled(False)
        self.scatter = pg.ScatterPlotItem(size=5, pen=None, pxMode=True, hoverable=False)
        plot.addItem(self.scatter)
        self.picked_marker = pg.ScatterPlotItem(
            size=14, pen=pg.mkPen("#d62728", width=2), brush=None, symbol="o", pxMode=True
        )
        plot.addItem(self.picked_marker)
        self.legend = pg.LegendItem(offset=(-10, 10), labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 200))
        self.legend.setParentItem(plot.getViewBox())
        self._legend_samples: list[pg.ScatterPlotItem] = []

        # --- picked point: its image and its reconstruction -----------------------------------
        self._picked_widget = pg.GraphicsLayoutWidget(self)
        self._picked_widget.setObjectName("pickedImage")
        self._picked_widget.ci.layout.setContentsMargins(0, 0, 0, 0)
        self.picked_boxes: list[pg.ViewBox] = []
        self.picked_items: list[pg.ImageItem] = []
        for row in range(2):
            box = self._picked_widget.addViewBox(row=row, col=0, lockAspect=True, invertY=True, enableMouse=False)
            box.setMenuEnabled(False)
            item = pg.ImageItem(axisOrder="row-major")
            box.addItem(item)
            self.picked_boxes.append(box)
            self.picked_items.append(item)
        self._picked_widget.setFixedWidth(150)
        self._picked_caption = QLabel("click a point", self)
        self._picked_caption.setObjectName("pickedCaption")
        self._picked_caption.setWordWrap(True)
        self._picked_caption.setFixedWidth(150)
        side = QVBoxLayout()
        side.addWidget(QLabel("image / reconstruction", self))
        side.addWidget(self._picked_widget, 1)
        side.addWidget(self._picked_caption)

        body = QHBoxLayout()
        body.setContentsMargins(0, 0, 6, 0)
        body.addWidget(self._plot_widget, 1)
        body.addLayout(side)

        self._status = QLabel(self)
        self._status.setObjectName("scatterStatus")
        self._status.setContentsMargins(6, 0, 6, 2)
        self._status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addLayout(second)
        layout.addLayout(body, 1)
        layout.addWidget(self._status)

        self.encodeButton.clicked.connect(self._on_encode_clicked)
        self.cancelEncodeButton.clicked.connect(self._on_cancel_clicked)
        self.projectionCombo.currentIndexChanged.connect(self._on_axes_changed)
        self.xDimCombo.currentIndexChanged.connect(self._on_axes_changed)
        self.yDimCombo.currentIndexChanged.connect(self._on_axes_changed)
        self.colourByCombo.currentIndexChanged.connect(self._on_colour_changed)
        self.scatter.sigClicked.connect(self._on_points_clicked)
        self.set_source(None)

    # --- API ------------------------------------------------------------------------------

    def set_source(self, source: ModelSource | None) -> None:
        """Show `source`'s latent space; any encode under way stops first. Nothing is encoded until `encode()`."""
        self.shutdown()
        self._source = source
        self._clear_points()
        has_data = source is not None and source.dataset is not None
        self.encodeButton.setEnabled(has_data)
        self.pointCountSpin.setEnabled(has_data)
        self._set_busy(False)
        for combo in (self.xDimCombo, self.yDimCombo, self.colourByCombo):
            blocked = combo.blockSignals(True)
            combo.clear()
            combo.blockSignals(blocked)
        if source is None:
            self._status.setText("no model: load a checkpoint or train one")
            return
        if not has_data:
            note = f" ({source.dataset_error})" if source.dataset_error else ""
            self._status.setText(f"training data not available{note}: nothing to encode")
            return
        names = [f"z{i}" for i in range(source.latent_dim)]
        for combo, default in ((self.xDimCombo, 0), (self.yDimCombo, min(1, source.latent_dim - 1))):
            blocked = combo.blockSignals(True)
            combo.addItems(names)
            combo.setCurrentIndex(default)
            combo.blockSignals(blocked)
        dataset = source.dataset
        options = []
        if dataset.labels is not None:
            options.append(LABEL_COLOUR)
        if dataset.factors is not None:
            options += [n for n, s in zip(dataset.factors.names, dataset.factors.sizes, strict=True) if s > 1]
        options.append(NO_COLOUR)
        blocked = self.colourByCombo.blockSignals(True)
        self.colourByCombo.addItems(options)
        self.colourByCombo.setCurrentIndex(0)
        self.colourByCombo.blockSignals(blocked)
        self._status.setText(f"{dataset.describe()} — press Encode")

    def encode(self, count: int | None = None) -> bool:
        """Start encoding `count` (default: the spin box) validation images; False when there is nothing to encode."""
        source = self._source
        if source is None or source.dataset is None:
            return False
        self.shutdown()
        count = int(self.pointCountSpin.value() if count is None else count)
        self.pointCountSpin.setValue(count)
        pool = source.val_indices
        split_size = None if pool is None else len(pool)
        if pool is None or len(pool) < count:
            pool = np.arange(len(source.dataset))
        self._encoded_from = _encoded_from(split_size, len(source.dataset), count)
        rng = np.random.default_rng(0)
        chosen = np.sort(rng.choice(pool, size=min(count, len(pool)), replace=False)).astype(np.int64)
        self._job += 1
        self._pending = chosen
        thread = QThread()
        worker = EncodeWorker(self._job, source, chosen, batch_size=self.batch_size)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.progress.connect(self._on_encode_progress)
        worker.done.connect(self._on_encode_done)
        worker.cancelled.connect(self._on_encode_cancelled)
        worker.failed.connect(self._on_encode_failed)
        worker.finished.connect(thread.quit)
        self._thread, self._worker = thread, worker
        self.encodeProgress.setValue(0)
        self._set_busy(True)
        self._status.setText(f"encoding {len(chosen):,} images…")
        thread.start()
        return True

    def cancel(self) -> None:
        """Stop the encode under way (between batches) and wait for its thread; keeps the points shown."""
        if self._thread is not None:
            self._status.setText("encoding cancelled")
        self.shutdown()

    def shutdown(self) -> None:
        """Stop any encode and join its thread (call before the view goes away)."""
        thread, worker = self._thread, self._worker
        self._thread, self._worker = None, None
        self._pending = None
        stop_worker(thread, worker)
        self._job += 1  # anything still queued from that worker is stale now
        self._set_busy(False)

    def is_encoding(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def pick(self, point: int) -> None:
        """Show point `point`'s image and its reconstruction (what clicking it does)."""
        source = self._source
        if source is None or source.dataset is None or not 0 <= point < len(self._indices):
            return
        self._picked = int(point)
        index = int(self._indices[point])
        image = source.dataset.batch([index]).numpy()[0]
        recon = source.decode(self._means[point : point + 1])[0]
        for item, box, img in zip(self.picked_items, self.picked_boxes, (image, recon), strict=True):
            shown = img[0] if img.shape[0] == 1 else np.ascontiguousarray(img.transpose(1, 2, 0))
            item.setImage(shown, autoLevels=False, levels=(0, 255))
            box.setRange(xRange=(0, shown.shape[1]), yRange=(0, shown.shape[0]), padding=0.02)
        self.picked_marker.setData(pos=self._points[point : point + 1])
        text = f"image #{index}"
        if len(self._labels) and self.colourByCombo.currentText() not in (NO_COLOUR, ""):
            text += f"\n{self.colourByCombo.currentText()}: {self._class_name(int(self._labels[point]))}"
        self._picked_caption.setText(text)

    def picked_images(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        return self.picked_items[0].image, self.picked_items[1].image

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.shutdown()
        super().closeEvent(event)

    # introspection for tests and scripts

    def point_count(self) -> int:
        return int(len(self._points))

    def points(self) -> np.ndarray:
        return self._points.copy()

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def point_colours(self) -> list[tuple[int, int, int, int]]:
        return [tuple(int(v) for v in c) for c in self._colours]  # type: ignore[misc]

    def point_indices(self) -> np.ndarray:
        return self._indices.copy()

    def means(self) -> np.ndarray:
        return self._means.copy()

    # --- slots ----------------------------------------------------------------------------

    def _on_encode_clicked(self) -> None:
        self.encode()

    def _on_cancel_clicked(self) -> None:
        self.cancel()

    def _on_encode_progress(self, job: int, percent: int) -> None:
        if job == self._job:
            self.encodeProgress.setValue(percent)

    def _on_encode_done(self, job: int, means: np.ndarray, _logvars: np.ndarray) -> None:
        if job != self._job or self._pending is None:
            return
        indices = self._pending
        self.shutdown()  # joins the finished thread
        self._indices = indices
        self._means = np.asarray(means, dtype=np.float32)
        self._choose_default_axes()
        self._update_labels()
        self._update_points()
        self._status.setText(f"{len(indices):,} {self._encoded_from} encoded (encoder means)")

    def _on_encode_cancelled(self, job: int) -> None:
        if job == self._job:
            self.shutdown()

    def _on_encode_failed(self, job: int, message: str) -> None:
        if job == self._job:
            self.shutdown()
            self._status.setText(f"encoding failed: {message}")

    def _on_axes_changed(self, *_args: object) -> None:
        latent = self.projectionCombo.currentIndex() == 0
        self.xDimCombo.setEnabled(latent)
        self.yDimCombo.setEnabled(latent)
        self._update_points()

    def _on_colour_changed(self, *_args: object) -> None:
        self._update_labels()
        self._update_points()
        if self._picked is not None:
            self.pick(self._picked)

    def _on_points_clicked(self, _item: object, points: object, *_args: object) -> None:
        try:
            first = points[0]  # type: ignore[index]
        except (IndexError, TypeError):
            return
        self.pick(int(first.index()))

    # --- internals ------------------------------------------------------------------------

    def _set_busy(self, busy: bool) -> None:
        self.cancelEncodeButton.setEnabled(busy)
        self.encodeProgress.setVisible(busy)
        has_data = self._source is not None and self._source.dataset is not None
        self.encodeButton.setEnabled(has_data and not busy)

    def _clear_points(self) -> None:
        self._indices = np.zeros(0, dtype=np.int64)
        self._means = np.zeros((0, 0), dtype=np.float32)
        self._points = np.zeros((0, 2), dtype=np.float64)
        self._labels = np.zeros(0, dtype=np.int64)
        self._colours = np.zeros((0, 4), dtype=np.uint8)
        self._picked = None
        self.scatter.setData(x=[], y=[])
        self.picked_marker.setData(x=[], y=[])
        for item in self.picked_items:
            item.clear()
        self._picked_caption.setText("click a point")
        self.legend.clear()
        self.legend.setVisible(False)

    def _choose_default_axes(self) -> None:
        """The two dimensions whose means spread most (the informative ones) become x and y."""
        if self._means.shape[1] < 2:
            return
        order = np.argsort(-self._means.var(axis=0), kind="stable")
        for combo, dim in ((self.xDimCombo, int(order[0])), (self.yDimCombo, int(order[1]))):
            blocked = combo.blockSignals(True)
            combo.setCurrentIndex(dim)
            combo.blockSignals(blocked)

    def _colour_mode(self) -> str:
        return self.colourByCombo.currentText() or NO_COLOUR

    def _class_names(self) -> list[str]:
        dataset = self._source.dataset if self._source is not None else None
        mode = self._colour_mode()
        if dataset is None or mode == NO_COLOUR:
            return []
        if mode == LABEL_COLOUR and dataset.labels is not None:
            count = int(np.max(dataset.labels)) + 1 if len(dataset.labels) else 0
            if dataset.label_names is not None and len(dataset.label_names) >= count:
                return [str(n) for n in dataset.label_names[:count]]
            return [str(i) for i in range(count)]
        factors = dataset.factors
        if factors is not None and mode in factors.names:
            k = factors.names.index(mode)
            known = _KNOWN_CLASS_NAMES.get((mode, factors.sizes[k]))
            if known is not None:
                return list(known)
            return [f"{v:.3g}" for v in np.asarray(factors.values[k], dtype=np.float64)]
        return []

    def _class_name(self, cls: int) -> str:
        names = self._class_names()
        return names[cls] if 0 <= cls < len(names) else str(cls)

    def _update_labels(self) -> None:
        dataset = self._source.dataset if self._source is not None else None
        mode = self._colour_mode()
        n = len(self._indices)
        if dataset is None or n == 0 or mode == NO_COLOUR:
            self._labels = np.zeros(n, dtype=np.int64)
            self._colours = np.tile(np.array([_DEFAULT_COLOUR], dtype=np.uint8), (n, 1))
            self._brushes = None
            self._set_legend([], np.zeros((0, 4), np.uint8))
            return
        if mode == LABEL_COLOUR and dataset.labels is not None:
            labels = np.asarray(dataset.labels)[self._indices].astype(np.int64)
            categorical = True
        else:
            k = dataset.factors.names.index(mode)  # type: ignore[union-attr]
            labels = dataset.factors.classes_of(self._indices)[:, k]  # type: ignore[union-attr]
            categorical = False
        names = self._class_names()
        count = max(len(names), int(labels.max()) + 1 if len(labels) else 0)
        categorical = categorical or count <= _NOMINAL_MAX
        palette = class_colours(count, categorical)
        self._labels = labels
        self._colours = palette[labels]
        self._brushes = [pg.mkBrush(*map(int, c)) for c in palette]
        self._set_legend(names + [str(i) for i in range(len(names), count)], palette)

    def _set_legend(self, names: list[str], palette: np.ndarray) -> None:
        self.legend.clear()
        self._legend_samples = []
        if not names:
            self.legend.setVisible(False)
            return
        count = len(names)
        if count <= _MAX_LEGEND_ENTRIES:
            shown = list(range(count))
        else:  # a colour-bar-like legend: evenly spaced classes from first to last
            shown = sorted({int(round(i)) for i in np.linspace(0, count - 1, 5)})
        for cls in shown:
            sample = pg.ScatterPlotItem(size=8, pen=None, brush=pg.mkBrush(*map(int, palette[cls])))
            self._legend_samples.append(sample)
            self.legend.addItem(sample, names[cls])
        self.legend.setVisible(True)

    def _update_points(self) -> None:
        n = len(self._indices)
        if n == 0 or self._means.size == 0:
            return
        plot = self.plot_item
        if self.projectionCombo.currentIndex() == 1:
            self._points = pca_2d(self._means)
            plot.setLabel("bottom", "principal component 1")
            plot.setLabel("left", "principal component 2")
        else:
            x = max(self.xDimCombo.currentIndex(), 0)
            y = max(self.yDimCombo.currentIndex(), 0)
            self._points = self._means[:, [x, y]].astype(np.float64)
            plot.setLabel("bottom", f"z{x} (encoder mean)")
            plot.setLabel("left", f"z{y} (encoder mean)")
        if len(self._colours) != n:
            self._update_labels()
        if self._brushes is not None and len(self._labels) == n:
            brushes = [self._brushes[c] for c in self._labels]
        else:
            brushes = [pg.mkBrush(*_DEFAULT_COLOUR)] * n
        self.scatter.setData(
            x=self._points[:, 0], y=self._points[:, 1], brush=brushes, data=np.arange(n), size=5, pen=None
        )
        if self._picked is not None and self._picked < n:
            self.picked_marker.setData(pos=self._points[self._picked : self._picked + 1])
        plot.enableAutoRange()


def _encoded_from(split_size: int | None, dataset_size: int, asked: int) -> str:
    """Where the encoded points come from: the validation split, or the whole data set when the split is
    smaller than what was asked (a 500-image split does not give 5,000 validation images)."""
    if split_size is None:
        return f"images of the whole data set ({dataset_size:,}; it has no validation split)"
    if split_size < asked:
        return (
            f"images of the whole data set ({dataset_size:,}): its validation split has only {split_size:,}, "
            f"fewer than the {asked:,} asked"
        )
    return "validation images"
