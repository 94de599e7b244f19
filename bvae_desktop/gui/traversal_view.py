"""The latent explorer's traversal tab: a grid of one-dimension sweeps, and sliders for a single decode.

Left: every latent dimension swept from -range to +range around a reference code (a validation
image's encoder mean, a file, or the prior mean), one row per dimension sorted by KL, tiled into
one ImageItem. A linked view beside it labels each row "z3 · KL 2.31 · posX (0.82)"; dimensions
below 0.1 nats are greyed and can be hidden. Right: one slider per dimension driving one large
decode. All decoding uses the ModelSource's own CPU model (never the training model); one 64x64
decode takes a few milliseconds, so sliders decode on the GUI thread (on one torch thread).
Measuring KL and naming factors means encoding up to 2,000 validation images: that runs in
an `EncodeWorker` thread, and the rows re-sort and gain their labels when it is done.

A reference file is read as the model's own data was (core/image_input.py: a 28x28 digit padded
for an MNIST model, not stretched). When no latent carries information the caption says so first
(latent_activity's words): the grid is then the same blur in every cell. Laid out for a 1024x640
window and up: the reference's name sits after its buttons and is shortened to the room it has,
so a long name neither moves the buttons nor widens the window.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, QThread
from PySide6.QtGui import QImage, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.image_input import load_image
from bvae_desktop.core.latent_activity import activity_warning
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.traversal import (
    ACTIVE_KL,
    GRID_GAP,
    LABEL_POINTS,
    decode_one,
    label_sample,
    latent_order,
    needs_summary,
    reference_code,
    render_gif,
    render_grid_png,
    row_label,
    summary_from_codes,
    tile_grid,
    torch_threads,
    traversal_grid,
    traversal_values,
)
from bvae_desktop.gui.pg_setup import configure_pyqtgraph
from bvae_desktop.gui.scatter_view import EncodeWorker
from bvae_desktop.gui.worker import stop_worker

SLIDER_SCALE = 100  # slider ints per latent unit
SLIDER_LIMIT = 3.0
LABEL_WIDTH_PX = 200
_ACTIVE_COLOUR = "#1a1a1a"
_INACTIVE_COLOUR = "#a8a8a8"


def _image_view(parent: QWidget, name: str) -> tuple[pg.GraphicsLayoutWidget, pg.ViewBox, pg.ImageItem]:
    widget = pg.GraphicsLayoutWidget(parent)
    widget.setObjectName(name)
    widget.ci.layout.setContentsMargins(0, 0, 0, 0)
    box = widget.addViewBox(lockAspect=True, invertY=True, enableMouse=False)
    box.setMenuEnabled(False)
    item = pg.ImageItem(axisOrder="row-major")
    box.addItem(item)
    return widget, box, item


class _ElidedLabel(QLabel):
    """One line shortened in the middle ("…") to the width it is given; `text()` stays whole.

    Its size hints ask for almost nothing, so however long the text it never pushes its
    neighbours or widens the window; the whole text is in the tooltip.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def shown_text(self) -> str:
        """The text as drawn: shortened to the label's width when it does not fit."""
        return self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideMiddle, self.contentsRect().width())

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        super().setText(text)
        self.setToolTip(text)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(self.fontMetrics().horizontalAdvance("…") * 4, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return self.minimumSizeHint()

    def paintEvent(self, _event: object) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        self.style().drawItemText(
            painter,
            self.contentsRect(),
            int(self.alignment()),
            self.palette(),
            self.isEnabled(),
            self.shown_text(),
            QPalette.ColorRole.WindowText,
        )


def _display(image: np.ndarray) -> np.ndarray:
    """uint8 (C, H, W) -> row-major (H, W) or (H, W, 3)."""
    return image[0] if image.shape[0] == 1 else np.ascontiguousarray(image.transpose(1, 2, 0))


class TraversalView(QWidget):
    """Traversal grid with KL-sorted, factor-labelled rows, plus per-dimension sliders."""

    label_points = LABEL_POINTS  # validation images encoded for the factor labels

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        configure_pyqtgraph()
        self.setObjectName("traversalView")
        self._source: ModelSource | None = None
        self._kl: np.ndarray | None = None
        self._factors: list[tuple[str, float]] | None = None
        self._reference: np.ndarray | None = None  # uint8 (C, H, W) or None for the prior mean
        self._reference_name = "prior mean"
        self._ref_pos = 0
        self._rng = np.random.default_rng()
        self._grid: np.ndarray | None = None  # uint8 (rows, steps, C, H, W), visible rows only
        self._dims: list[int] = []
        self._labels: list[str] = []
        self._tiled: np.ndarray | None = None
        self._decoded: np.ndarray | None = None
        self._sliders: list[QSlider] = []
        self._slider_values: list[QLabel] = []
        self._text_items: list[pg.TextItem] = []
        self._thread: QThread | None = None
        self._worker: EncodeWorker | None = None
        self._label_indices: np.ndarray | None = None
        self._job = 0

        # --- controls -------------------------------------------------------------------------
        self.rangeSpin = QDoubleSpinBox(self)
        self.rangeSpin.setObjectName("rangeSpin")
        self.rangeSpin.setRange(0.5, 10.0)
        self.rangeSpin.setSingleStep(0.5)
        self.rangeSpin.setDecimals(1)
        self.rangeSpin.setValue(3.0)
        self.rangeSpin.setPrefix("± ")
        self.rangeSpin.setToolTip("each row sweeps its dimension from -range to +range (prior standard deviations)")
        self.stepsSpin = QSpinBox(self)
        self.stepsSpin.setObjectName("traversalStepsSpin")
        self.stepsSpin.setRange(3, 21)
        self.stepsSpin.setValue(9)
        self.stepsSpin.setToolTip("images per row")
        self.hideInactiveCheck = QCheckBox("hide inactive", self)
        self.hideInactiveCheck.setObjectName("hideInactiveCheck")
        self.hideInactiveCheck.setToolTip(f"hide dimensions with KL below {ACTIVE_KL:g} nats")
        self.exportPngButton = QPushButton("Export PNG…", self)
        self.exportPngButton.setObjectName("exportPngButton")
        self.exportGifButton = QPushButton("Export GIF…", self)
        self.exportGifButton.setObjectName("exportGifButton")

        self.prevImageButton = QPushButton("◀", self)
        self.prevImageButton.setObjectName("prevImageButton")
        self.prevImageButton.setToolTip("previous validation image")
        self.nextImageButton = QPushButton("▶", self)
        self.nextImageButton.setObjectName("nextImageButton")
        self.nextImageButton.setToolTip("next validation image")
        self.randomImageButton = QPushButton("Random", self)
        self.randomImageButton.setObjectName("randomImageButton")
        self.randomImageButton.setToolTip("a random validation image")
        self.fileImageButton = QPushButton("File…", self)
        self.fileImageButton.setObjectName("fileImageButton")
        self.fileImageButton.setToolTip(
            "an image file, prepared as the model's training images were (an MNIST digit padded), else resized"
        )
        self.priorMeanButton = QPushButton("Prior mean", self)
        self.priorMeanButton.setObjectName("priorMeanButton")
        self.priorMeanButton.setToolTip("traverse around z = 0")
        for button in (self.prevImageButton, self.nextImageButton):
            button.setFixedWidth(32)
        self.referenceImage = QLabel(self)
        self.referenceImage.setObjectName("referenceImage")
        self.referenceImage.setFixedSize(56, 56)
        self.referenceImage.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.referenceImage.setStyleSheet("border: 1px solid #b0b0b0; background: #404040;")
        self.referenceLabel = _ElidedLabel(self)
        self.referenceLabel.setObjectName("referenceLabel")

        controls = QHBoxLayout()
        controls.setContentsMargins(6, 4, 6, 0)
        controls.addWidget(QLabel("range", self))
        controls.addWidget(self.rangeSpin)
        controls.addWidget(QLabel("steps", self))
        controls.addWidget(self.stepsSpin)
        controls.addWidget(self.hideInactiveCheck)
        controls.addStretch(1)
        controls.addWidget(self.exportPngButton)
        controls.addWidget(self.exportGifButton)

        # the buttons come before the name: a longer name cannot move them
        reference = QHBoxLayout()
        reference.setContentsMargins(6, 0, 6, 0)
        reference.addWidget(self.referenceImage)
        for button in (
            self.prevImageButton,
            self.nextImageButton,
            self.randomImageButton,
            self.fileImageButton,
            self.priorMeanButton,
        ):
            reference.addWidget(button)
        ref_text = QVBoxLayout()
        ref_text.addWidget(QLabel("reference", self))
        ref_text.addWidget(self.referenceLabel)
        reference.addLayout(ref_text, 1)

        # --- grid with its label column -------------------------------------------------------
        self._grid_widget = pg.GraphicsLayoutWidget(self)
        self._grid_widget.setObjectName("traversalGrid")
        self._grid_widget.ci.layout.setContentsMargins(0, 0, 0, 0)
        self._grid_widget.ci.layout.setHorizontalSpacing(0)
        self.label_box = self._grid_widget.addViewBox(row=0, col=0, enableMouse=False, invertY=True)
        self.label_box.setMenuEnabled(False)
        self.label_box.setFixedWidth(LABEL_WIDTH_PX)
        self.label_box.setXRange(0, 1, padding=0)
        # no lockAspect: `_fit_grid` keeps square pixels itself, anchoring the grid top-left beside its labels
        self.grid_box = self._grid_widget.addViewBox(row=0, col=1, invertY=True, enableMouse=False)
        self.grid_box.setMenuEnabled(False)
        self.grid_box.sigResized.connect(self._on_grid_resized)
        self.label_box.setYLink(self.grid_box)
        self.grid_item = pg.ImageItem(axisOrder="row-major")
        self.grid_box.addItem(self.grid_item)
        self._caption = QLabel(self)
        self._caption.setObjectName("traversalCaption")
        self._caption.setWordWrap(True)
        self._caption.setContentsMargins(6, 0, 6, 2)

        # --- sliders and one large decode -----------------------------------------------------
        self._decoded_widget, self.decoded_box, self.decoded_item = _image_view(self, "decodedImage")
        self._decoded_widget.setMinimumSize(160, 160)
        self._slider_host = QWidget(self)
        self._slider_layout = QGridLayout(self._slider_host)
        self._slider_layout.setContentsMargins(4, 4, 4, 4)
        self._slider_layout.setVerticalSpacing(2)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self._slider_host)
        self.resetSlidersButton = QPushButton("Reset to reference", self)
        self.resetSlidersButton.setObjectName("resetSlidersButton")
        right = QWidget(self)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(4, 0, 4, 0)
        right_layout.addWidget(self._decoded_widget, 3)
        right_layout.addWidget(self.resetSlidersButton)
        right_layout.addWidget(scroll, 2)

        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self._grid_widget, 1)
        left_layout.addWidget(self._caption)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)

        self._status = QLabel(self)
        self._status.setObjectName("traversalStatus")
        self._status.setContentsMargins(6, 0, 6, 2)
        self._status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(controls)
        layout.addLayout(reference)
        layout.addWidget(splitter, 1)
        layout.addWidget(self._status)

        self.rangeSpin.valueChanged.connect(self._on_settings_changed)
        self.stepsSpin.valueChanged.connect(self._on_settings_changed)
        self.hideInactiveCheck.toggled.connect(self._on_settings_changed)
        self.prevImageButton.clicked.connect(self._on_prev_image)
        self.nextImageButton.clicked.connect(self._on_next_image)
        self.randomImageButton.clicked.connect(self._on_random_image)
        self.fileImageButton.clicked.connect(self._on_file_image)
        self.priorMeanButton.clicked.connect(self._on_prior_mean)
        self.resetSlidersButton.clicked.connect(self._on_reset_sliders)
        self.exportPngButton.clicked.connect(self._on_export_png)
        self.exportGifButton.clicked.connect(self._on_export_gif)
        self.set_source(None)

    # --- API ------------------------------------------------------------------------------

    def set_source(self, source: ModelSource | None) -> None:
        """Show `source`'s latent space (None clears the view).

        The grid shows at once (rows in the run's KL order, or index order); when KL must be
        measured or the data has factors, up to `label_points` validation images are encoded in a
        background thread, then the rows are re-sorted and labelled (`is_labelling()` until then).
        """
        self.shutdown()
        self._source = source
        self._reference = None
        self._reference_name = "prior mean"
        self._ref_pos = 0
        self._kl = None
        self._factors = None
        self._status.setText("")
        has_data = source is not None and source.dataset is not None
        for widget in (
            self.rangeSpin,
            self.stepsSpin,
            self.hideInactiveCheck,
            self.fileImageButton,
            self.priorMeanButton,
            self.exportPngButton,
            self.exportGifButton,
            self.resetSlidersButton,
        ):
            widget.setEnabled(source is not None)
        for widget in (self.prevImageButton, self.nextImageButton, self.randomImageButton):
            widget.setEnabled(has_data)
        if source is None:
            self._build_sliders(0)
            self._clear_grid()
            self.decoded_item.clear()
            self._decoded = None
            self.referenceImage.clear()
            self.referenceLabel.setText("")
            self._caption.setText("no model: load a checkpoint or train one")
            return
        if source.kl_per_dim is not None:
            self._kl = np.asarray(source.kl_per_dim, dtype=np.float64).reshape(-1)
        if source.dataset is None:
            note = f" ({source.dataset_error})" if source.dataset_error else ""
            self._status.setText(f"training data not available{note}: traversals around the prior mean only")
        self._build_sliders(source.latent_dim)
        if has_data:
            self._set_reference_index(0)
        else:
            self.set_reference_image(None)
        if needs_summary(source):
            self._start_labelling(source)

    def update_model(self, source: ModelSource) -> None:
        """New weights of the same run (live training): keep the reference and slider positions.

        The previous factor labels stay until the new ones are measured in the background.
        """
        current = self._source
        if current is None or (current.latent_dim, current.image_shape) != (source.latent_dim, source.image_shape):
            self.set_source(source)
            return
        self.shutdown()
        self._source = source
        if source.kl_per_dim is not None:
            self._kl = np.asarray(source.kl_per_dim, dtype=np.float64).reshape(-1)
        self._rebuild_grid()
        self._decode_sliders()
        if needs_summary(source):
            self._start_labelling(source)

    def is_labelling(self) -> bool:
        """True while validation images are being encoded for the KL order and factor labels."""
        return self._thread is not None and self._thread.isRunning()

    def shutdown(self) -> None:
        """Stop the labelling encode, if any, and join its thread (call before the view goes away)."""
        thread, worker = self._thread, self._worker
        self._thread, self._worker, self._label_indices = None, None, None
        stop_worker(thread, worker)
        self._job += 1  # results still queued from that worker are stale now

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.shutdown()
        super().closeEvent(event)

    def source(self) -> ModelSource | None:
        return self._source

    def set_reference_image(self, image: np.ndarray | None, name: str | None = None) -> None:
        """Traverse around `image` (uint8 (C, H, W)) or, for None, the prior mean."""
        if self._source is None:
            return
        if image is not None:
            image = np.asarray(image)
            if image.dtype != np.uint8 or tuple(image.shape) != tuple(self._source.image_shape):
                raise ValueError(
                    f"reference image must be uint8 {tuple(self._source.image_shape)}; got {image.dtype} {image.shape}"
                )
        self._reference = image
        self._reference_name = name or ("image" if image is not None else "prior mean")
        self._show_reference()
        self._reset_sliders_to_reference()
        self._rebuild_grid()

    def set_reference_index(self, position: int) -> None:
        """Traverse around the `position`-th validation image (wraps around)."""
        self._set_reference_index(position)

    def load_reference_file(self, path: str) -> None:
        """Use an image file as the reference, prepared as the model's data was (padded, or converted and resized)."""
        if self._source is None:
            return
        try:
            fitted = load_image(path, self._source.image_shape, self._source.config.dataset)
        except BvaeError as exc:
            self._status.setText(str(exc))
            return
        self.set_reference_image(fitted.image, name=fitted.origin.name)
        self._status.setText(f"reference {fitted.origin.name}: {fitted.note or 'as it is'}")

    def export_png(self, path: str) -> None:
        """Write the shown grid (visible rows) with its row labels as a PNG."""
        if self._grid is None:
            raise BvaeError("nothing to export: no traversal shown")
        render_grid_png(self._grid, path, row_labels=self._labels)

    def export_gif(self, path: str, frame_ms: int = 120) -> None:
        """Write the shown grid as an animated GIF, one frame per step."""
        if self._grid is None:
            raise BvaeError("nothing to export: no traversal shown")
        render_gif(self._grid, path, frame_ms=frame_ms)

    # introspection for tests and scripts

    def grid_image(self) -> np.ndarray | None:
        return self._tiled

    def grid(self) -> np.ndarray | None:
        return self._grid

    def row_dims(self) -> list[int]:
        return list(self._dims)

    def row_labels(self) -> list[str]:
        return list(self._labels)

    def decoded_image(self) -> np.ndarray | None:
        return self._decoded

    def slider(self, i: int) -> QSlider:
        return self._sliders[i]

    def slider_code(self) -> np.ndarray:
        """The latent code the sliders set (float32, latent_dim)."""
        return np.array([s.value() / SLIDER_SCALE for s in self._sliders], dtype=np.float32)

    # --- slots ----------------------------------------------------------------------------

    def _on_labels_encoded(self, job: int, means: np.ndarray, logvars: np.ndarray) -> None:
        source, indices = self._source, self._label_indices
        if job != self._job or source is None or indices is None:
            return
        self.shutdown()
        try:
            self._kl, self._factors = summary_from_codes(source, indices, means, logvars)
        except (BvaeError, ValueError) as exc:
            self._status.setText(f"no factor labels: {exc}")
        self._update_slider_labels()
        self._rebuild_grid()

    def _on_labels_failed(self, job: int, message: str) -> None:
        if job == self._job:
            self.shutdown()
            self._status.setText(f"could not measure KL / factor labels: {message}")
            self._rebuild_grid()

    def _on_labels_cancelled(self, job: int) -> None:
        if job == self._job:
            self.shutdown()

    def _on_settings_changed(self, *_args: object) -> None:
        self._rebuild_grid()

    def _on_prev_image(self) -> None:
        self._set_reference_index(self._ref_pos - 1)

    def _on_next_image(self) -> None:
        self._set_reference_index(self._ref_pos + 1)

    def _on_random_image(self) -> None:
        pool = self._reference_pool()
        if pool is not None and len(pool):
            self._set_reference_index(int(self._rng.integers(len(pool))))

    def _on_file_image(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self, "Reference image", "", "Images (*.png *.jpg *.jpeg *.bmp *.gif *.tif *.tiff);;All files (*)"
        )
        if path:
            self.load_reference_file(path)

    def _on_prior_mean(self) -> None:
        self.set_reference_image(None)

    def _on_reset_sliders(self) -> None:
        self._reset_sliders_to_reference()

    def _on_slider_moved(self, _value: int) -> None:
        sender = self.sender()
        for i, slider in enumerate(self._sliders):
            if slider is sender:
                self._slider_values[i].setText(f"{slider.value() / SLIDER_SCALE:+.2f}")
        self._decode_sliders()

    def _on_grid_resized(self, *_args: object) -> None:
        self._fit_grid()

    def _on_export_png(self) -> None:
        path, _filter = QFileDialog.getSaveFileName(self, "Export traversal grid", "traversal.png", "PNG (*.png)")
        if path:
            self._export(self.export_png, path)

    def _on_export_gif(self) -> None:
        path, _filter = QFileDialog.getSaveFileName(self, "Export traversal animation", "traversal.gif", "GIF (*.gif)")
        if path:
            self._export(self.export_gif, path)

    # --- internals ------------------------------------------------------------------------

    def _export(self, write, path: str) -> None:  # type: ignore[no-untyped-def]
        try:
            write(path)
        except (BvaeError, OSError, ValueError) as exc:
            self._status.setText(f"export failed: {exc}")
        else:
            self._status.setText(f"wrote {path}")

    def _start_labelling(self, source: ModelSource) -> None:
        indices = label_sample(source, self.label_points)
        if indices is None:
            return
        self._job += 1
        self._label_indices = indices
        thread = QThread()
        worker = EncodeWorker(self._job, source, indices)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.done.connect(self._on_labels_encoded)
        worker.failed.connect(self._on_labels_failed)
        worker.cancelled.connect(self._on_labels_cancelled)
        worker.finished.connect(thread.quit)
        self._thread, self._worker = thread, worker
        self._rebuild_grid()  # the caption says labels are on their way
        thread.start()

    def _reference_pool(self) -> np.ndarray | None:
        source = self._source
        if source is None or source.dataset is None:
            return None
        if source.val_indices is not None and len(source.val_indices):
            return np.asarray(source.val_indices)
        return np.arange(len(source.dataset))

    def _set_reference_index(self, position: int) -> None:
        pool = self._reference_pool()
        if pool is None or len(pool) == 0 or self._source is None:
            return
        self._ref_pos = int(position) % len(pool)
        index = int(pool[self._ref_pos])
        image = self._source.dataset.batch([index]).numpy()[0]  # type: ignore[union-attr]
        self.set_reference_image(image, name=f"validation image {self._ref_pos + 1}/{len(pool)} (#{index})")

    def _show_reference(self) -> None:
        self.referenceLabel.setText(self._reference_name)
        if self._reference is None:
            self.referenceImage.setText("z = 0")
            self.referenceImage.setStyleSheet("border: 1px solid #b0b0b0; background: #f0f0f0; color: #404040;")
            return
        self.referenceImage.setStyleSheet("border: 1px solid #b0b0b0; background: #404040;")
        shown = _display(self._reference)
        h, w = shown.shape[:2]
        if shown.ndim == 2:
            qimage = QImage(shown.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
        else:
            qimage = QImage(shown.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        size = self.referenceImage.size()
        pixmap = QPixmap.fromImage(qimage).scaled(
            size.width() - 2,
            size.height() - 2,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.FastTransformation,
        )
        self.referenceImage.setPixmap(pixmap)

    def _build_sliders(self, count: int) -> None:
        """One labelled slider per latent dimension, in index order (rebuilt only when the count changes)."""
        if count == len(self._sliders):
            return
        while self._slider_layout.count():
            item = self._slider_layout.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self._sliders, self._slider_values = [], []
        limit = int(SLIDER_LIMIT * SLIDER_SCALE)
        for i in range(count):
            name = QLabel(f"z{i}", self._slider_host)
            name.setObjectName(f"latentSliderLabel{i}")
            slider = QSlider(Qt.Orientation.Horizontal, self._slider_host)
            slider.setObjectName(f"latentSlider{i}")
            slider.setRange(-limit, limit)
            slider.setSingleStep(5)
            slider.setPageStep(50)
            slider.setValue(0)
            value = QLabel("+0.00", self._slider_host)
            value.setMinimumWidth(40)
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self._slider_layout.addWidget(name, i, 0)
            self._slider_layout.addWidget(slider, i, 1)
            self._slider_layout.addWidget(value, i, 2)
            slider.valueChanged.connect(self._on_slider_moved)
            self._sliders.append(slider)
            self._slider_values.append(value)
        self._slider_layout.setRowStretch(count, 1)

    def _reset_sliders_to_reference(self) -> None:
        if self._source is None:
            return
        with torch_threads(1):
            code = reference_code(self._source, self._reference)
        for i, slider in enumerate(self._sliders):
            value = float(np.clip(code[i], -SLIDER_LIMIT, SLIDER_LIMIT))
            blocked = slider.blockSignals(True)
            slider.setValue(int(round(value * SLIDER_SCALE)))
            slider.blockSignals(blocked)
            self._slider_values[i].setText(f"{value:+.2f}")
        self._update_slider_labels()
        self._decode_sliders()

    def _update_slider_labels(self) -> None:
        """Grey the names of inactive dimensions, and add their KL to the tooltip."""
        for i in range(len(self._sliders)):
            label = self._slider_layout.itemAtPosition(i, 0)
            if label is None or label.widget() is None:
                continue
            widget = label.widget()
            kl = None if self._kl is None else float(self._kl[i])
            inactive = kl is not None and kl < ACTIVE_KL
            widget.setStyleSheet(f"color: {_INACTIVE_COLOUR if inactive else _ACTIVE_COLOUR};")
            factor = None if self._factors is None else self._factors[i]
            widget.setToolTip(row_label(i, kl, factor))

    def _decode_sliders(self) -> None:
        if self._source is None or not self._sliders:
            return
        image = decode_one(self._source, self.slider_code())
        shown = _display(image)
        self._decoded = shown
        self.decoded_item.setImage(shown, autoLevels=False, levels=(0, 255))
        self.decoded_box.setRange(xRange=(0, shown.shape[1]), yRange=(0, shown.shape[0]), padding=0.02)

    def _visible_dims(self) -> list[int]:
        source = self._source
        if source is None:
            return []
        order = latent_order(self._kl) if self._kl is not None else np.arange(source.latent_dim)
        dims = [int(d) for d in order]
        if self.hideInactiveCheck.isChecked() and self._kl is not None:
            active = [d for d in dims if self._kl[d] >= ACTIVE_KL]
            dims = active
        return dims

    def _rebuild_grid(self) -> None:
        source = self._source
        if source is None:
            return
        dims = self._visible_dims()
        warning = activity_warning(self._kl)
        lead = f"{warning}. " if warning else ""
        if not dims:
            self._clear_grid()
            self._caption.setText(f"{lead}every dimension is inactive (KL < {ACTIVE_KL:g}): untick 'hide inactive'")
            return
        values = traversal_values(float(self.rangeSpin.value()), int(self.stepsSpin.value()))
        with torch_threads(1):
            grid = traversal_grid(source, reference_code(source, self._reference), dims, values)
        self._grid = grid
        self._dims = dims
        self._labels = [
            row_label(
                d,
                None if self._kl is None else float(self._kl[d]),
                None if self._factors is None else self._factors[d],
            )
            for d in dims
        ]
        tiled = tile_grid(grid)
        self._tiled = tiled
        self.grid_item.setImage(tiled, autoLevels=False, levels=(0, 255))
        self._fit_grid()
        self._place_labels(grid.shape[3])
        order = "sorted by KL (nats, on validation data)" if self._kl is not None else "in index order (no KL known)"
        hidden = source.latent_dim - len(dims)
        self._caption.setText(
            f"{lead}{len(dims)} dimensions {order}"
            + (f", {hidden} inactive hidden" if hidden else "")
            + f"; each row sweeps one dimension from {values[0]:+g} to {values[-1]:+g} around the "
            + ("prior mean" if self._reference is None else "reference image's code")
            + self._labels_note()
        )

    def _labels_note(self) -> str:
        if self._thread is not None:
            return f"; measuring KL and factor labels on {0 if self._label_indices is None else len(self._label_indices)} validation images…"
        if self._factors is None:
            return "; no ground-truth factors to label rows"
        return ""

    def _fit_grid(self) -> None:
        """Show the whole grid with square pixels, top-left aligned (so row labels sit right beside it)."""
        if self._tiled is None:
            return
        height, width = self._tiled.shape[:2]
        rect = self.grid_box.boundingRect()
        w_px, h_px = max(rect.width(), 1.0), max(rect.height(), 1.0)
        margin = 0.01 * max(width, height)
        height_m, width_m = height + 2 * margin, width + 2 * margin
        if w_px / h_px > width_m / height_m:  # wider than the grid: spare room on the right
            self.grid_box.setRange(
                xRange=(-margin, -margin + height_m * w_px / h_px), yRange=(-margin, height + margin), padding=0
            )
        else:  # taller: spare room below
            self.grid_box.setRange(
                xRange=(-margin, width + margin), yRange=(-margin, -margin + width_m * h_px / w_px), padding=0
            )

    def _place_labels(self, tile_h: int) -> None:
        while len(self._text_items) < len(self._labels):
            item = pg.TextItem(anchor=(1.0, 0.5))
            self.label_box.addItem(item)
            self._text_items.append(item)
        for r, item in enumerate(self._text_items):
            if r >= len(self._labels):
                item.setVisible(False)
                continue
            dim = self._dims[r]
            inactive = self._kl is not None and self._kl[dim] < ACTIVE_KL
            item.setText(self._labels[r], color=_INACTIVE_COLOUR if inactive else _ACTIVE_COLOUR)
            item.setPos(0.97, r * (tile_h + GRID_GAP) + tile_h / 2)
            item.setVisible(True)
        self.label_box.setXRange(0, 1, padding=0)

    def _clear_grid(self) -> None:
        self._grid = None
        self._tiled = None
        self._dims = []
        self._labels = []
        self.grid_item.clear()
        for item in self._text_items:
            item.setVisible(False)
