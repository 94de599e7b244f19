"""Two models side by side: traversal grids around the same reference image, rows labelled by factor.

Pick two models (bundled ones by name, or any checkpoint file): each gets one traversal grid, rows
sorted by KL and labelled "z3 · KL 2.31 · posX (0.82)", both around the same validation image when
the two were trained on the same data (previous / next step through the validation split). Loading
the models, encoding validation images for the KL order and factor labels, decoding the grids and
composing the picture all run in a `CompareWorker` thread (core.model_compare composes it with
Pillow); the GUI thread only shows the result. Export PNG writes the whole comparison with its labels.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from bvae_desktop.core import model_zoo
from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.model_compare import ComparePanel, compose, model_panel, same_data, save_png, validation_image
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.traversal import LABEL_POINTS, label_sample, needs_summary, summary_from_codes
from bvae_desktop.gui.worker import stop_worker

ENCODE_BATCH = 256
_BROWSE = "__browse__"
DEFAULT_PAIR = ("vae-dsprites", "beta4-dsprites")  # the study's comparison: VAE against β-VAE


Summary = tuple[np.ndarray | None, list[tuple[str, float]] | None]  # KL per dimension, factor labels


@dataclass
class CompareRequest:
    paths: list[str]
    sources: list[ModelSource | None]  # cached from an earlier job, or None to load
    summaries: list[Summary | None]  # cached, or None to measure
    position: int = 0
    range_: float = 3.0
    steps: int = 9
    hide_inactive: bool = False
    label_points: int = LABEL_POINTS


@dataclass
class CompareResult:
    sources: list[ModelSource]
    summaries: list[Summary]
    panels: list[ComparePanel]
    references: list[np.ndarray | None]
    caption: str
    image: np.ndarray  # RGB uint8 (H, W, 3): the whole comparison, as exported
    shared_reference: bool
    titles: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


class _Cancelled(Exception):
    pass


def model_title(path: str, source: ModelSource) -> str:
    """'beta4-dsprites: β-VAE (β = 4) on dSprites (procedural), 30,000 steps' or the checkpoint's folder/name."""
    name = model_zoo.bundled_name_for(path)
    if name is not None:
        model = model_zoo.find_model(name)
        if model is not None:
            return f"{name}: {model.title}, {model.steps:,} steps"
    config = source.config
    weight = (
        "β = 1" if config.objective == "vae" else f"{'γ' if config.objective == 'beta-b' else 'β'} = {source.beta:g}"
    )
    file = Path(path)
    return f"{file.parent.name}/{file.name}: {config.objective}, {weight}, step {source.step:,}"


class CompareWorker(QObject):
    """Loads, measures, decodes and composes one comparison in its own thread (create with no parent)."""

    done = Signal(int, object)  # job id, CompareResult
    failed = Signal(int, str)
    cancelled = Signal(int)
    finished = Signal()  # always last: the owner quits the thread

    def __init__(self, job: int, request: CompareRequest) -> None:
        super().__init__()
        self.job = job
        self.request = request
        self.cancel_event = threading.Event()

    def run(self) -> None:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))  # per thread: leaves the GUI a core
        try:
            self.done.emit(self.job, self._run())
        except _Cancelled:
            self.cancelled.emit(self.job)
        except BvaeError as exc:
            self.failed.emit(self.job, str(exc))
        except Exception as exc:  # the view shows the message; a worker must never die silently
            self.failed.emit(self.job, f"{type(exc).__name__}: {exc}")
        finally:
            self.finished.emit()

    def _check(self) -> None:
        if self.cancel_event.is_set():
            raise _Cancelled

    def _run(self) -> CompareResult:
        req = self.request
        sources: list[ModelSource] = []
        for path, cached in zip(req.paths, req.sources, strict=True):
            self._check()
            sources.append(cached if cached is not None else ModelSource.from_checkpoint(path))
        summaries: list[Summary] = []
        for source, cached in zip(sources, req.summaries, strict=True):
            summaries.append(cached if cached is not None else self._summary(source, req.label_points))
        self._check()
        shared = same_data(sources[0], sources[1])
        references: list[np.ndarray | None] = []
        if shared:
            found = validation_image(sources[0], req.position)
            image = None if found is None else found[0]
            references = [image, image]
            pool = len(sources[0].val_indices) if sources[0].val_indices is not None else len(sources[0].dataset)
            index = "" if found is None else f" (#{found[1]})"
            caption = (
                f"reference: validation image {req.position % pool + 1:,}/{pool:,}{index} of "
                f"{sources[0].dataset.name}, the same for both; ±{req.range_:g}, {req.steps} steps"
            )
        else:
            for source in sources:
                found = validation_image(source, req.position)
                references.append(None if found is None else found[0])
            what = "each model's own validation image" if any(r is not None for r in references) else "the prior mean"
            caption = f"different data: traversals around {what}; ±{req.range_:g}, {req.steps} steps"
        titles = [model_title(path, source) for path, source in zip(req.paths, sources, strict=True)]
        panels = []
        for source, title, (kl, factors), image in zip(sources, titles, summaries, references, strict=True):
            self._check()
            panels.append(
                model_panel(
                    source,
                    title,
                    image,
                    kl=kl,
                    factors=factors,
                    range_=req.range_,
                    steps=req.steps,
                    hide_inactive=req.hide_inactive,
                )
            )
        shown_refs = references[:1] if shared else references
        picture = compose(panels, references=shown_refs, caption=caption)
        return CompareResult(sources, summaries, panels, references, caption, picture, shared, titles, list(req.paths))

    def _summary(self, source: ModelSource, points: int) -> Summary:
        """KL per dimension and factor labels from up to `points` validation images, encoded in batches."""
        kl = None if source.kl_per_dim is None else np.asarray(source.kl_per_dim, dtype=np.float64)
        indices = label_sample(source, points) if needs_summary(source) else None
        if indices is None or source.dataset is None:
            return kl, None
        means, logvars = [], []
        for start in range(0, len(indices), ENCODE_BATCH):
            self._check()
            chunk = indices[start : start + ENCODE_BATCH]
            mean, logvar = source.encode(source.dataset.batch(chunk).numpy(), batch_size=ENCODE_BATCH)
            means.append(mean)
            logvars.append(logvar)
        return summary_from_codes(source, indices, np.concatenate(means), np.concatenate(logvars))


class _ImageLabel(QLabel):
    """Shows an image scaled down (never up) to the space it has, keeping its aspect ratio."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setMinimumSize(200, 150)

    def set_image(self, image: np.ndarray | None) -> None:
        if image is None:
            self._pixmap = None
            self.clear()
            return
        image = np.ascontiguousarray(image)
        h, w = image.shape[:2]
        qimage = QImage(image.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self._pixmap = QPixmap.fromImage(qimage)
        self._rescale()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is None:
            return
        size = self.size()
        if self._pixmap.width() <= size.width() and self._pixmap.height() <= size.height():
            self.setPixmap(self._pixmap)
            return
        self.setPixmap(
            self._pixmap.scaled(size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        )


class CompareView(QWidget):
    """Two model pickers, their traversal grids side by side around one reference image, Export PNG."""

    label_points = LABEL_POINTS  # validation images encoded per model for the KL order and factor labels

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelCompareView")
        self._sources: dict[str, ModelSource] = {}
        self._summaries: dict[str, Summary] = {}
        self._result: CompareResult | None = None
        self._position = 0
        self._thread: QThread | None = None
        self._worker: CompareWorker | None = None
        self._job = 0
        self._combo_index = [0, 0]

        self.modelCombos: list[QComboBox] = []
        for side in ("A", "B"):
            combo = QComboBox(self)
            combo.setObjectName(f"compareModel{side}")
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
            combo.setToolTip("a bundled model, or Other checkpoint… for any checkpoint file")
            self.modelCombos.append(combo)
        self.rangeSpin = QDoubleSpinBox(self)
        self.rangeSpin.setObjectName("compareRangeSpin")
        self.rangeSpin.setRange(0.5, 10.0)
        self.rangeSpin.setSingleStep(0.5)
        self.rangeSpin.setDecimals(1)
        self.rangeSpin.setValue(3.0)
        self.rangeSpin.setPrefix("± ")
        self.stepsSpin = QSpinBox(self)
        self.stepsSpin.setObjectName("compareStepsSpin")
        self.stepsSpin.setRange(3, 21)
        self.stepsSpin.setValue(9)
        self.hideInactiveCheck = QCheckBox("hide inactive", self)
        self.hideInactiveCheck.setObjectName("compareHideInactive")
        self.hideInactiveCheck.setToolTip("only rows with KL of at least 0.1 nats")
        self.prevButton = QPushButton("◀", self)
        self.prevButton.setObjectName("comparePrevButton")
        self.prevButton.setToolTip("previous validation image (the reference of both grids)")
        self.nextButton = QPushButton("▶", self)
        self.nextButton.setObjectName("compareNextButton")
        self.nextButton.setToolTip("next validation image")
        for button in (self.prevButton, self.nextButton):
            button.setFixedWidth(32)
        self.exportButton = QPushButton("Export PNG…", self)
        self.exportButton.setObjectName("compareExportButton")
        self.exportButton.setEnabled(False)
        self.image = _ImageLabel(self)
        self.image.setObjectName("compareImage")
        self.status = QLabel(self)
        self.status.setObjectName("compareStatus")
        self.status.setWordWrap(True)

        pickers = QHBoxLayout()
        pickers.addWidget(QLabel("left", self))
        pickers.addWidget(self.modelCombos[0], 1)
        pickers.addSpacing(12)
        pickers.addWidget(QLabel("right", self))
        pickers.addWidget(self.modelCombos[1], 1)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("reference", self))
        controls.addWidget(self.prevButton)
        controls.addWidget(self.nextButton)
        controls.addSpacing(12)
        controls.addWidget(QLabel("range", self))
        controls.addWidget(self.rangeSpin)
        controls.addWidget(QLabel("steps", self))
        controls.addWidget(self.stepsSpin)
        controls.addWidget(self.hideInactiveCheck)
        controls.addStretch(1)
        controls.addWidget(self.exportButton)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(pickers)
        layout.addLayout(controls)
        layout.addWidget(self.image, 1)
        layout.addWidget(self.status)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._start_job)
        self._fill_combos()
        for side, combo in enumerate(self.modelCombos):
            combo.activated.connect(lambda index, side=side: self._on_combo_activated(side, index))
        self.rangeSpin.valueChanged.connect(self._schedule)
        self.stepsSpin.valueChanged.connect(self._schedule)
        self.hideInactiveCheck.toggled.connect(self._schedule)
        self.prevButton.clicked.connect(lambda: self.set_reference_position(self._position - 1))
        self.nextButton.clicked.connect(lambda: self.set_reference_position(self._position + 1))
        self.exportButton.clicked.connect(self._on_export)
        self._schedule()

    # --- API --------------------------------------------------------------------------------------

    def set_model(self, side: int, model: str | os.PathLike[str]) -> bool:
        """Show `model` (a bundled model's name or a checkpoint path) on side 0 (left) or 1 (right)."""
        try:
            path = str(model_zoo.resolve_checkpoint(model))
        except BvaeError as exc:
            self.status.setText(str(exc))
            return False
        combo = self.modelCombos[side]
        index = combo.findData(path)
        if index < 0:
            index = combo.count() - 1  # before "Other checkpoint…"
            combo.insertItem(index, Path(path).name, path)
        combo.setCurrentIndex(index)
        self._combo_index[side] = index
        self._schedule()
        return True

    def model_path(self, side: int) -> str | None:
        data = self.modelCombos[side].currentData()
        return data if isinstance(data, str) and data != _BROWSE else None

    def set_reference_position(self, position: int) -> None:
        """Both grids around the `position`-th validation image (wraps around)."""
        self._position = int(position)
        self._schedule()

    def reference_position(self) -> int:
        return self._position

    def refresh(self) -> None:
        self._schedule()

    def is_busy(self) -> bool:
        """True while a comparison is being computed (or about to be)."""
        return self._timer.isActive() or (self._thread is not None and self._thread.isRunning())

    def result(self) -> CompareResult | None:
        return self._result

    def grid(self, side: int) -> np.ndarray | None:
        return None if self._result is None else self._result.panels[side].grid

    def row_labels(self, side: int) -> list[str]:
        return [] if self._result is None else list(self._result.panels[side].labels)

    def composed_image(self) -> np.ndarray | None:
        return None if self._result is None else self._result.image

    def export_png(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole comparison (both grids, titles, row labels, the reference) as a PNG."""
        if self._result is None:
            raise BvaeError("nothing to export: no comparison shown yet")
        return save_png(self._result.image, path)

    def shutdown(self) -> None:
        """Cancel a comparison in progress and join its thread (call before the view goes away)."""
        self._timer.stop()
        thread, worker = self._thread, self._worker
        self._thread, self._worker = None, None
        stop_worker(thread, worker)
        self._job += 1  # results still queued from that worker are stale now

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.shutdown()
        super().closeEvent(event)

    # --- internals --------------------------------------------------------------------------------

    def _fill_combos(self) -> None:
        models = model_zoo.list_models(problems=[])
        names = [m.name for m in models]
        defaults = [n for n in DEFAULT_PAIR if n in names]
        if len(defaults) < 2:
            defaults = (names + names)[:2] if names else []
        for side, combo in enumerate(self.modelCombos):
            combo.blockSignals(True)
            combo.clear()
            for model in models:
                combo.addItem(model.name, str(model.weights))
                combo.setItemData(combo.count() - 1, model.describe(), Qt.ItemDataRole.ToolTipRole)
            combo.addItem("Other checkpoint…", _BROWSE)
            if defaults:
                combo.setCurrentIndex(names.index(defaults[side]))
            else:
                combo.setCurrentIndex(-1)
            self._combo_index[side] = combo.currentIndex()
            combo.blockSignals(False)
        if not models:
            self.status.setText("no bundled models: pick two checkpoints with Other checkpoint…")

    def _on_combo_activated(self, side: int, index: int) -> None:
        combo = self.modelCombos[side]
        if combo.itemData(index) == _BROWSE:
            path, _filter = QFileDialog.getOpenFileName(
                self, "Checkpoint to compare", "", "Checkpoints (*.pt);;All files (*)"
            )
            combo.setCurrentIndex(self._combo_index[side])  # until the new one is in the list
            if path:
                self.set_model(side, path)
            return
        self._combo_index[side] = index
        self._schedule()

    def _schedule(self, *_args: object) -> None:
        self._timer.start()

    def _start_job(self) -> None:
        paths = [self.model_path(0), self.model_path(1)]
        if None in paths:
            return
        self.shutdown()
        for path in paths:  # a bundled model is checked against its card before it is read
            name = model_zoo.bundled_name_for(path)
            if name is not None and path not in self._sources:
                try:
                    model_zoo.verify_weights(model_zoo.get_model(name))
                except BvaeError as exc:
                    self.status.setText(str(exc))
                    return
        request = CompareRequest(
            paths=[str(p) for p in paths],
            sources=[self._sources.get(str(p)) for p in paths],
            summaries=[self._summaries.get(str(p)) for p in paths],
            position=self._position,
            range_=self.rangeSpin.value(),
            steps=self.stepsSpin.value(),
            hide_inactive=self.hideInactiveCheck.isChecked(),
            label_points=self.label_points,
        )
        self._job += 1
        thread = QThread()
        worker = CompareWorker(self._job, request)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.done.connect(self._on_done)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(thread.quit)
        self._thread, self._worker = thread, worker
        self.status.setText("loading the models, measuring KL and factor labels, decoding…")
        thread.start()

    def _join(self) -> None:
        """The worker has finished: join its thread (without making queued results stale)."""
        thread, worker = self._thread, self._worker
        self._thread, self._worker = None, None
        if thread is not None:
            thread.quit()
            thread.wait()
            thread.deleteLater()
        if worker is not None:
            worker.deleteLater()

    def _on_done(self, job: int, result: CompareResult) -> None:
        if job != self._job:
            return
        self._join()
        for path, source, summary in zip(result.paths, result.sources, result.summaries, strict=True):
            self._sources[path] = source
            self._summaries[path] = summary
        self._result = result
        self.image.set_image(result.image)
        self.exportButton.setEnabled(True)
        notes = [s.dataset_error for s in result.sources if s.dataset_error]
        text = result.caption + (f" — training data not available: {notes[0]}" if notes else "")
        self.status.setText(text)

    def _on_failed(self, job: int, message: str) -> None:
        if job != self._job:
            return
        self._join()
        self.status.setText(f"cannot compare: {message}")

    def _on_export(self) -> None:
        path, _filter = QFileDialog.getSaveFileName(self, "Export comparison", "comparison.png", "PNG (*.png)")
        if not path:
            return
        try:
            self.export_png(path)
        except (BvaeError, OSError, ValueError) as exc:
            self.status.setText(f"export failed: {exc}")
        else:
            self.status.setText(f"wrote {path}")


class CompareDialog(QDialog):
    """A non-modal window around a CompareView; closing it stops its work."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelCompareDialog")
        self.setWindowTitle("Compare two models")
        self.view = CompareView(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self.finished.connect(lambda _code: self.view.shutdown())
        self.resize(1400, 820)

    def shutdown(self) -> None:
        self.view.shutdown()
