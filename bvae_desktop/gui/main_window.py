"""The main window: the training panel docked left, live plots in the centre, menus, settings."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, QThread, qVersion
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QStatusBar,
    QTabWidget,
)

from bvae_desktop import APP_NAME, __version__
from bvae_desktop.core.atomic import atomic_path
from bvae_desktop.core.checkpoint import Checkpoint, load_checkpoint
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data import Detection
from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.trainer import CHECKPOINT_NAME, RUNLOG_NAME
from bvae_desktop.gui.codec_view import CodecView
from bvae_desktop.gui.experiments_view import ExperimentsView
from bvae_desktop.gui.kl_bars import KlBarView
from bvae_desktop.gui.loss_plot import LossPlotView
from bvae_desktop.gui.models_menu import ModelsMenu
from bvae_desktop.gui.run_history import load_history_into
from bvae_desktop.gui.sample_strip import SampleStripView
from bvae_desktop.gui.scatter_view import ScatterView
from bvae_desktop.gui.settings import AppSettings
from bvae_desktop.gui.training_panel import TrainingPanel, choose_any_data_file, choose_data_path
from bvae_desktop.gui.traversal_view import TraversalView
from bvae_desktop.gui.worker import StepBatch, TrainingWorker, start_worker

THREAD_JOIN_MS = 60_000  # never wait forever on the GUI thread


class MainWindow(QMainWindow):
    """Constructible with no arguments; tests pass a temporary AppSettings."""

    def __init__(self, settings: AppSettings | None = None) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle(APP_NAME)
        self.settings = settings or AppSettings()
        self.worker: TrainingWorker | None = None
        self.thread: QThread | None = None
        self.run_dir: Path | None = None
        self._fresh_run = False  # the run starting now is a new model (not a continued one)
        self.checkpoint_path: Path | None = None
        self.last_error: str | None = None
        self._run_started_at = 0.0
        self._run_start_step = 0
        self.model_source: ModelSource | None = None  # what the explorer views show (latest snapshot or checkpoint)
        self._shown_source: dict[str, ModelSource | None] = {}
        self._build()
        self._restore_settings()

    # ----- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        self.panel = TrainingPanel()
        self.panel.trainRequested.connect(self._on_train_requested)
        self.panel.pauseToggled.connect(self._on_pause_toggled)
        self.panel.stopRequested.connect(self._on_stop_requested)
        self.panel.betaChanged.connect(self._on_beta_changed)
        self.panel.browseRequested.connect(self._on_browse_data)
        self.panel.datasetChanged.connect(self._on_dataset_changed)
        scroll = QScrollArea()
        scroll.setWidget(self.panel)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        dock = QDockWidget("Training", self, objectName="trainingDock")
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        dock.setWidget(scroll)
        # wide enough for the panel's widest row, so nothing is clipped (no horizontal scrolling)
        scroll.setMinimumWidth(
            max(360, self.panel.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4)
        )
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)

        self.lossPlot = LossPlotView()
        self.klBarPlot = KlBarView()
        self.sampleStrip = SampleStripView()
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.klBarPlot)
        bottom.addWidget(self.sampleStrip)
        bottom.setSizes([500, 500])
        training = QSplitter(Qt.Orientation.Vertical, objectName="trainingView")
        training.addWidget(self.lossPlot)
        training.addWidget(bottom)
        training.setSizes([480, 320])
        self.traversalView = TraversalView()
        self.scatterView = ScatterView()
        self.codecView = CodecView()
        self.experimentsView = ExperimentsView(base_config=self.panel.config, runs_dir=lambda: self.settings.runs_dir)
        self.experimentsView.openRunRequested.connect(self._on_open_experiment_run)
        self.experimentsView.errorOccurred.connect(self.show_error)
        self.tabs = QTabWidget(objectName="viewTabs")
        self.tabs.addTab(training, "Training")
        self.tabs.addTab(self.traversalView, "Latent traversal")
        self.tabs.addTab(self.scatterView, "Latent scatter")
        self.tabs.addTab(self.codecView, "Compress")
        self.tabs.addTab(self.experimentsView, "Experiments")
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.setCentralWidget(self.tabs)
        self.setStatusBar(QStatusBar(self))
        self._build_menus()
        self.resize(1280, 800)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(
            file_menu, "Open dataset…", self._on_open_dataset, QKeySequence.StandardKey.Open, "openDatasetAction"
        )
        self._action(file_menu, "Open dataset folder…", self._on_open_dataset_folder, None, "openDatasetFolderAction")
        self._action(file_menu, "Open checkpoint…", self._on_open_checkpoint, None, "openCheckpointAction")
        self.saveCheckpointAction = self._action(
            file_menu,
            "Save checkpoint as…",
            self._on_save_checkpoint_as,
            QKeySequence.StandardKey.SaveAs,
            "saveCheckpointAction",
        )
        self.exportCsvAction = self._action(
            file_menu, "Export run log (CSV)…", self._on_export_csv, None, "exportCsvAction"
        )
        file_menu.addSeparator()
        self._action(file_menu, "Choose runs folder…", self._on_choose_runs_dir, None, "runsFolderAction")
        file_menu.addSeparator()
        self._action(file_menu, "Quit", self.close, QKeySequence.StandardKey.Quit, "quitAction")
        self.models = ModelsMenu(self)  # the bundled models, the shown-model label, the model shown at first launch
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "About", self._on_about, None, "aboutAction")
        self._update_file_actions()

    def _action(self, menu, text: str, slot, shortcut, name: str) -> QAction:
        action = QAction(text, self, objectName=name)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _restore_settings(self) -> None:
        if (geometry := self.settings.geometry) is not None:
            self.restoreGeometry(geometry)
        if (state := self.settings.window_state) is not None:
            self.restoreState(state)
        config = self.panel.config()
        config.dataset = self.settings.dataset
        config.data_path = self.settings.data_path or None
        self.panel.set_config(config)
        self._on_dataset_changed(config.dataset, config.data_path or "")
        last = self.settings.last_run_dir
        if last and (Path(last) / CHECKPOINT_NAME).exists():
            self.run_dir = Path(last)
            self.checkpoint_path = Path(last) / CHECKPOINT_NAME
        self._update_file_actions()

    # ----- errors ----------------------------------------------------------------------------
    def show_error(self, title: str, message: str) -> None:
        """A non-blocking dialog with the engine's message (tests read `last_error`)."""
        self.last_error = message
        self.statusBar().showMessage(f"{title}: {message}", 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setObjectName("errorDialog")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # ----- training --------------------------------------------------------------------------
    @property
    def training(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def _on_train_requested(self) -> None:
        if self.training:
            return
        config = self.panel.config()
        try:
            config.validate()
            _check_data_path(config)
        except BvaeError as exc:
            self.show_error("Cannot start training", str(exc))
            return
        resume = None
        if self.panel.continue_requested and self.checkpoint_path is not None and self.checkpoint_path.exists():
            resume = self.checkpoint_path
            run_dir = self.checkpoint_path.parent
        else:
            run_dir = self._new_run_dir(config)
        # the plots keep the previous run until this one has opened its data and started: a bad source
        # then leaves them as they were, beside its error
        self._fresh_run = resume is None
        self.last_error = None
        self.run_dir = run_dir
        self.checkpoint_path = run_dir / CHECKPOINT_NAME
        self.settings.last_run_dir = run_dir
        self.worker = TrainingWorker(config, run_dir, resume)
        self.worker.loading.connect(self.panel.show_loading)
        self.worker.started.connect(self._on_run_started)
        self.worker.stepsReady.connect(self._on_steps)
        self.worker.samplesReady.connect(self._on_samples)
        self.worker.snapshotReady.connect(self._on_snapshot)
        self.worker.halted.connect(self._on_halted)
        self.worker.failed.connect(self._on_failed)
        self.worker.finished.connect(self._on_finished)
        self.panel.set_running(True)
        self.panel.offer_continue(None)
        self._run_started_at = time.perf_counter()
        self.panel.show_loading("opening the data…", 0, 0)
        self.statusBar().showMessage(f"opening the data for a run in {run_dir}…")
        self.thread = start_worker(self.worker)
        self._update_file_actions()

    def _new_run_dir(self, config: TrainConfig) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        beta = f"-b{config.effective_beta:g}" if config.objective != "vae" else ""
        base = self.settings.runs_dir / f"{stamp}-{config.dataset}-{config.objective}{beta}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return path

    def _on_run_started(self, description: str, step: int) -> None:
        if self._fresh_run:
            self.lossPlot.clear()
            self.klBarPlot.clear()
            self.sampleStrip.clear()
            self._shown_source.clear()  # a new model: the explorer views start afresh
        self.panel.end_loading()
        self._run_start_step = step
        self._run_started_at = time.perf_counter()
        self.panel.set_dataset_info(description)
        self.statusBar().showMessage(f"training in {self.run_dir}")

    def _on_steps(self, batch: StepBatch) -> None:
        self.lossPlot.add_steps(batch.steps, batch.loss, batch.recon, batch.kl)
        if batch.extras:
            self.lossPlot.add_extras(batch.steps, batch.extras)
        for step, values in batch.validation:
            self.lossPlot.add_validation([step], [values["loss"]], [values["recon"]], [values["kl"]])
        for step, beta in batch.beta_changes:
            self.lossPlot.add_beta_marker(step, beta)
        last = batch.last
        self.klBarPlot.set_kl(last.kl_per_dim, last.capacity)
        done = last.step - self._run_start_step
        elapsed = time.perf_counter() - self._run_started_at
        eta = (last.total_steps - last.step) * elapsed / done if done > 0 else None
        if self.panel.pauseButton.isChecked():  # steps sent before the pause arrive after it: no ETA then
            self.panel.show_status(last.step, last.total_steps, "paused")
        else:
            self.panel.show_progress(last.step, last.total_steps, last.images_per_s, eta)
        self.last_batch = batch

    def _on_samples(self, originals, reconstructions, step: int) -> None:
        self.sampleStrip.set_samples(originals, reconstructions, step)

    def _on_snapshot(self, source: ModelSource) -> None:
        self.set_model_source(source, live=True)

    def set_model_source(self, source: ModelSource | None, *, live: bool = False) -> None:
        """Give the explorer views a model; only the visible one works now, the other on showing."""
        self.model_source = source
        self._source_is_live = live
        self.models.show_source(source, live=live)
        self._push_source_to_current_view()

    def _push_source_to_current_view(self) -> None:
        view = self.tabs.currentWidget()
        source = self.model_source
        if view is self.traversalView and self._shown_source.get("traversal") is not source:
            previous = self._shown_source.get("traversal")
            self._shown_source["traversal"] = source
            if source is not None and previous is not None and getattr(self, "_source_is_live", False):
                self.traversalView.update_model(source)  # same run, newer weights: keep the reference
            else:
                self.traversalView.set_source(source)
        elif view is self.scatterView and self._shown_source.get("scatter") is not source:
            self._shown_source["scatter"] = source
            self.scatterView.set_source(source)
        elif view is self.codecView and self._shown_source.get("codec") is not source:
            self._shown_source["codec"] = source
            self.codecView.set_source(source)

    def _on_tab_changed(self, _index: int) -> None:
        self._push_source_to_current_view()

    def _on_pause_toggled(self, paused: bool) -> None:
        if self.worker is None:
            return
        if paused:
            self.worker.pause()
            self.statusBar().showMessage("paused")
            self.panel.show_status(self.panel.progressBar.value(), self.panel.progressBar.maximum(), "paused")
        else:
            self.worker.resume()
            self.statusBar().showMessage(f"training in {self.run_dir}")
            # the ETA counts from here: a pause is not training time
            self._run_start_step = self.panel.progressBar.value()
            self._run_started_at = time.perf_counter()

    def _on_stop_requested(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.statusBar().showMessage("stopping after this step…")

    def _on_beta_changed(self, beta: float) -> None:
        if self.worker is not None and self.training:
            self.worker.set_beta(beta)

    def _on_halted(self, message: str) -> None:
        self.panel.set_paused(True)
        self.show_error("Training paused", message)

    def _on_failed(self, message: str) -> None:
        self.show_error("Training failed", message)

    def _on_finished(self, step: int, checkpoint: str) -> None:
        if self.thread is not None:
            self.thread.quit()
            self.thread.wait(THREAD_JOIN_MS)  # the worker has returned: its thread ends at once
        self.thread = None
        self.worker = None
        self.panel.set_running(False)
        self.panel.end_loading()  # a run that never started: the bar shows what it showed before
        if checkpoint:
            self.checkpoint_path = Path(checkpoint)
            total = self.panel.stepsSpin.value()
            self.panel.offer_continue(step if step < total else None)
            self.panel.show_status(step, total, "stopped" if step < total else "finished")
            self.statusBar().showMessage(f"run ended at step {step:,}; checkpoint {checkpoint}")
        self._update_file_actions()

    def stop_training(self, timeout_ms: int = 60_000) -> None:
        """Stop the run, wait for the thread and keep its checkpoint (used on close)."""
        if self.worker is not None:
            self.worker.stop()
        if self.thread is not None:
            self.thread.quit()
            self.thread.wait(timeout_ms)
            QApplication.processEvents()  # deliver the worker's last signals (finished)
        self.thread = None
        self.worker = None
        self.panel.set_running(False)
        step, total = self.panel.progressBar.value(), self.panel.progressBar.maximum()
        self.panel.show_status(step, total, "finished" if step >= total else "stopped")

    # ----- files -----------------------------------------------------------------------------
    def _on_browse_data(self) -> None:
        path = choose_data_path(self, self.panel.datasetCombo.currentData(), self.panel.dataPathEdit.text())
        if path:
            self.use_data_path(path, switch_quietly=True)

    def _on_open_dataset(self) -> None:
        path = choose_any_data_file(self, self.panel.dataPathEdit.text())
        if path:
            self.use_data_path(path)

    def _on_open_dataset_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a dataset folder", self.panel.dataPathEdit.text())
        if path:
            self.use_data_path(path)

    def use_data_path(self, path: str | Path, *, switch_quietly: bool = False) -> Detection | None:
        """Take a picked file or folder as the training data: the source is inferred from what is inside
        (npz keys, HDF5 datasets, IDX magic, images in a folder) and the panel switches to it, saying what
        was found. A path no source reads is an error dialog naming the file and what it holds (from the
        panel's Browse button, whose source the user chose, it is only a note: the loader has the last word)."""
        from bvae_desktop.core.data import detect_source

        path = str(path)
        try:
            found = detect_source(path)
        except BvaeError as exc:
            if switch_quietly:
                self.panel.dataPathEdit.setText(path)
                self._on_dataset_changed(self.panel.datasetCombo.currentData(), path)
                self.panel.set_dataset_info(str(exc))
            else:
                self.show_error("Cannot open the dataset", str(exc))
            return None
        switched = found.spec.name != self.panel.datasetCombo.currentData()
        self.panel.select_data(found.spec.name, path)
        self.settings.dataset = found.spec.name
        self.settings.data_path = path
        note = f" (source switched to {found.spec.label})" if switched else ""
        self.panel.set_dataset_info(f"{Path(path).name}: {found.found}{note}")
        self.statusBar().showMessage(f"dataset {path}: {found.spec.label}")
        return found

    def _on_dataset_changed(self, name: str, path: str) -> None:
        """Describe the source at once: built-in ones fully, files by what their headers say."""
        self.settings.dataset = name
        self.settings.data_path = path
        from bvae_desktop.core.data import dataset_spec, detect_source, load_dataset

        if not dataset_spec(name).needs_path:  # built in: cheap to describe at once
            self.panel.set_dataset_info(load_dataset(name).describe())
        elif not path:
            self.panel.set_dataset_info("choose a file or folder")
        elif not Path(path).exists():
            self.panel.set_dataset_info(f"{path}: not found")
        else:
            try:
                found = detect_source(path)
            except BvaeError as exc:
                self.panel.set_dataset_info(str(exc))
                return
            if found.spec.name == name:
                self.panel.set_dataset_info(f"{Path(path).name}: {found.found}")
            else:
                self.panel.set_dataset_info(
                    f"{Path(path).name} looks like {found.spec.label}, not {dataset_spec(name).label}: {found.found}"
                )

    def open_checkpoint(self, path: str | Path) -> Checkpoint | None:
        """Restore a checkpoint's settings into the panel and its curves (from the run log beside it)."""
        try:
            checkpoint = load_checkpoint(path)
            source = ModelSource.from_checkpoint(checkpoint)  # refuses NaN/inf weights before anything changes
        except BvaeError as exc:
            self.show_error("Cannot open checkpoint", str(exc))
            return None
        self.panel.set_config(checkpoint.config, beta=checkpoint.beta)
        self._on_dataset_changed(checkpoint.config.dataset, checkpoint.config.data_path or "")
        self.panel.set_image_shape(checkpoint.image_shape)
        self.checkpoint_path = Path(path)
        self.run_dir = Path(path).parent
        self.lossPlot.clear()
        self.klBarPlot.clear()
        log = self.run_dir / RUNLOG_NAME
        if log.exists():
            try:
                load_history_into(log, self.lossPlot, self.klBarPlot, up_to_step=checkpoint.step)
            except BvaeError as exc:
                self.show_error("Run log unreadable", str(exc))
        # weights only (a bundled or exported model): nothing to resume; Train starts a new run with its settings
        self.panel.offer_continue(checkpoint.step if checkpoint.optimizer_state is not None else None)
        self.panel.show_status(checkpoint.step, checkpoint.config.steps, f"opened {Path(path).name}")
        self._shown_source.clear()  # another model: the views start afresh
        self.set_model_source(source)
        note = f" ({source.dataset_error})" if source.dataset_error else ""
        self.statusBar().showMessage(f"opened {path}: step {checkpoint.step:,}, β {checkpoint.beta:g}{note}")
        self._update_file_actions()
        return checkpoint

    def _on_open_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open checkpoint", str(self.settings.runs_dir), "Checkpoints (*.pt);;All files (*)"
        )
        if path:
            self.open_checkpoint(path)

    def save_checkpoint_as(self, target: str | Path) -> None:
        """Copy the run's last checkpoint (atomically: the target is never half-written)."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            self.show_error("No checkpoint", "train or open a run first: there is no checkpoint to save yet")
            return
        with atomic_path(target) as tmp:
            shutil.copyfile(self.checkpoint_path, tmp)
        self.statusBar().showMessage(f"saved {target}")

    def _on_save_checkpoint_as(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save checkpoint as", str(self.settings.runs_dir / "model.pt"), "Checkpoints (*.pt)"
        )
        if path:
            self.save_checkpoint_as(path)

    def export_csv(self, target: str | Path) -> None:
        from bvae_desktop.core.runlog import export_csv

        log = self.run_dir / RUNLOG_NAME if self.run_dir else None
        if log is None or not log.exists():
            self.show_error("No run log", "train or open a run first: there is no run log to export")
            return
        try:
            export_csv(log, target)
        except BvaeError as exc:
            self.show_error("Export failed", str(exc))
            return
        self.statusBar().showMessage(f"exported {target}")

    def _on_export_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export run log", str(self.settings.runs_dir / "runlog.csv"), "CSV (*.csv)"
        )
        if path:
            self.export_csv(path)

    def _on_choose_runs_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for runs", str(self.settings.runs_dir))
        if path:
            self.settings.runs_dir = path

    def _update_file_actions(self) -> None:
        has_run = self.run_dir is not None
        self.saveCheckpointAction.setEnabled(self.checkpoint_path is not None)
        self.exportCsvAction.setEnabled(has_run)

    def about_text(self) -> str:
        import torch

        from bvae_desktop.core.device import device_label, pick_device

        device = self.worker.trainer.device if self.worker and self.worker.trainer else pick_device("auto")
        return (
            f"<b>{APP_NAME}</b> {__version__}<br>Train β-VAEs, tune β and watch the latent space.<br><br>"
            f"torch {torch.__version__} · Qt {qVersion()} · PySide6 {pyside_version}<br>"
            f"device: {device_label(device)}"
        )

    def _on_about(self) -> None:
        QMessageBox.about(self, f"About {APP_NAME}", self.about_text())

    # ----- closing ---------------------------------------------------------------------------
    def _on_open_experiment_run(self, checkpoint: Path) -> None:
        """A run of an experiment, shown in the latent traversal like any opened checkpoint."""
        if self.open_checkpoint(checkpoint) is not None:
            self.tabs.setCurrentWidget(self.traversalView)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.stop_training()
        self.experimentsView.shutdown()
        self.traversalView.shutdown()
        self.scatterView.shutdown()
        self.models.shutdown()
        self.settings.geometry = self.saveGeometry()
        self.settings.window_state = self.saveState()
        super().closeEvent(event)


def _check_data_path(config: TrainConfig) -> None:
    """Refuse at once a path that is not there, before a thread starts."""
    from bvae_desktop.core.errors import DatasetError

    if config.data_path and not Path(config.data_path).exists():
        raise DatasetError(f"{config.data_path}: no such file or folder")
