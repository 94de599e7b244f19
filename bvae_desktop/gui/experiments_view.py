"""The Experiments tab: set up a VAE-vs-β-VAE comparison or a β sweep, run it, watch the table and plots fill.

Data, network, learning rate and batch size come from the Training panel, so an experiment is
"this run, at several β". The engine (core/experiments.py) does the work in a QThread, or in
worker processes; this view only shows its events and the finished results on disk. "Estimate time"
measures, in another QThread, how long the settings should take here; while an experiment runs,
the time label says where the latest run is (its step or its metric) and how long all runs have left.
The setup column scrolls rather than squeeze its labels and fields in a small window (1024x640).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QThread, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.executors import get_executor
from bvae_desktop.core.experiment_results import COLUMNS, headline, read_curves, summarise
from bvae_desktop.core.experiment_run import MetricPlan
from bvae_desktop.core.experiments import (
    DEFAULT_BETAS,
    SPEC_NAME,
    Experiment,
    ExperimentEstimate,
    ExperimentEvent,
    ExperimentProgress,
    ExperimentSpec,
    load_spec,
)
from bvae_desktop.core.progress import format_duration
from bvae_desktop.core.trainer import CHECKPOINT_NAME
from bvae_desktop.gui.executor_panel import ExecutorPanel
from bvae_desktop.gui.experiment_worker import EstimateWorker, ExperimentWorker
from bvae_desktop.gui.pg_setup import configure_pyqtgraph
from bvae_desktop.gui.worker import start_worker

TABLE_KEYS = ("recon", "kl", "active_units", "beta_vae", "factor_vae", "mig", "dci_disentanglement", "sap")
_TITLES = {c.key: c.title for c in COLUMNS}
_SHORT = {
    "recon": "recon",
    "kl": "KL",
    "active_units": "active",
    "beta_vae": "β-VAE",
    "factor_vae": "FactorVAE",
    "mig": "MIG",
    "dci_disentanglement": "DCI D",
    "sap": "SAP",
}
PLOTS = (
    ("disentanglement", "Disentanglement against β"),
    ("recon_kl", "Reconstruction and KL against β"),
    ("latent", "Mean latent activity against β"),
    ("active", "Active units against β"),
    ("tradeoff", "Trade-off: disentanglement against reconstruction"),
    ("curves", "Training curves (reconstruction)"),
)
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_FIXED_COLUMNS = ("run", "β", "seed", "status", "step")
_SETUP_MAX_WIDTH = 400  # the setup column; the table and the plot take the rest
_PLOT_CHOICE_CHARS = 24  # the plot menu shows this many characters when the window is narrow
_FORM_SPACING = 4  # pixels between the setup's rows and the widgets below it


class ExperimentsView(QWidget):
    """objectName experimentsView. `base_config()` gives the Training panel's settings."""

    openRunRequested = Signal(object)  # Path of a finished run's checkpoint
    errorOccurred = Signal(str, str)  # title, message

    def __init__(
        self,
        base_config: Callable[[], TrainConfig] = TrainConfig,
        runs_dir: Callable[[], Path] = lambda: Path("runs"),
        open_url: Callable[[QUrl], object] = QDesktopServices.openUrl,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(objectName="experimentsView")
        configure_pyqtgraph()
        self._base_config = base_config
        self._runs_dir = runs_dir
        self.open_url = open_url
        self.clock = clock  # of the ETAs (tests give their own)
        self.experiment: Experiment | None = None
        self.worker: ExperimentWorker | None = None
        self.thread: QThread | None = None
        self.estimate_worker: EstimateWorker | None = None
        self.estimate_thread: QThread | None = None
        self.estimate: ExperimentEstimate | None = None
        self._estimate_key: str | None = None  # the settings `estimate` was measured for
        self._pending_key: str | None = None  # ... and those being measured
        self.progress: ExperimentProgress | None = None
        self._started_at = 0.0
        self._rows: dict[str, int] = {}
        self._build()
        self._on_kind_changed()
        self._update_buttons()

    # ----- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        setup = QGroupBox("Experiment", objectName="experimentSetup")
        form = QFormLayout(setup)
        form.setVerticalSpacing(_FORM_SPACING)  # every row fits a 640-pixel-high window, with room for the estimate
        self.kindCombo = QComboBox(objectName="experimentKindCombo")
        self.kindCombo.addItem("β sweep", "sweep")
        self.kindCombo.addItem("VAE against β-VAE", "compare")
        self.kindCombo.currentIndexChanged.connect(self._on_kind_changed)
        form.addRow("Kind", self.kindCombo)
        self.betasEdit = QLineEdit(", ".join(f"{b:g}" for b in DEFAULT_BETAS), objectName="experimentBetasEdit")
        self.betasEdit.setToolTip("β values of the sweep, comma-separated (summed unit: Higgins' β=4 on dSprites)")
        self.betasEdit.setMinimumWidth(_text_field_width(self.betasEdit))  # the default list shows whole
        form.addRow("β values", self.betasEdit)
        self.compareBetaSpin = QDoubleSpinBox(objectName="compareBetaSpin", decimals=3, minimum=0.0, maximum=1000.0)
        self.compareBetaSpin.setValue(4.0)
        form.addRow("β of the β-VAE", self.compareBetaSpin)
        self.seedsEdit = QLineEdit("0", objectName="experimentSeedsEdit")
        self.seedsEdit.setToolTip("seeds, comma-separated; every β runs once per seed")
        form.addRow("Seeds", self.seedsEdit)
        self.stepsSpin = QSpinBox(objectName="experimentStepsSpin", minimum=1, maximum=10_000_000, singleStep=1000)
        self.stepsSpin.setValue(5000)
        form.addRow("Steps per run", self.stepsSpin)
        self.workersSpin = QSpinBox(objectName="experimentWorkersSpin", minimum=1, maximum=max(1, os.cpu_count() or 1))
        self.workersSpin.setToolTip("runs at once; above 1 each runs in its own process")
        self.executorPanel = ExecutorPanel()  # local, worker processes, Ray cluster (core/executors.py)
        self.executorPanel.executorChanged.connect(lambda _name: self._update_buttons())
        self.executorPanel.busyChanged.connect(lambda _busy: self._update_buttons())  # no Start mid-probe
        form.addRow(self.executorPanel)
        form.addRow("Runs at once", self.workersSpin)
        self.stackSpin = QSpinBox(objectName="experimentStackSpin", minimum=0, maximum=64, value=0)
        self.stackSpin.setSpecialValueText("auto")
        self.stackSpin.setToolTip(
            "runs trained together in one pass (same data and network, different β or seed): "
            "auto = 24 on a GPU, 1 on a CPU"
        )
        form.addRow("Runs in one pass", self.stackSpin)
        self.metricsEdit = QLineEdit("all", objectName="experimentMetricsEdit")
        self.metricsEdit.setToolTip("all, none, or a list of: beta_vae, factor_vae, mig, dci, sap, unsupervised")
        form.addRow("Metrics", self.metricsEdit)
        self.metricScaleCombo = QComboBox(objectName="metricScaleCombo")
        self.metricScaleCombo.addItem("published counts", 1)
        self.metricScaleCombo.addItem("counts ÷ 10 (quick look)", 10)
        self.metricScaleCombo.addItem("counts ÷ 100 (smoke test)", 100)
        form.addRow("Metric samples", self.metricScaleCombo)
        folder_row = QHBoxLayout()
        self.folderEdit = QLineEdit(objectName="experimentFolderEdit")
        self.folderEdit.setPlaceholderText("a new folder in the runs folder")
        browse = QPushButton("…", objectName="experimentFolderButton")
        browse.setMaximumWidth(32)
        browse.clicked.connect(self._on_browse_folder)
        folder_row.addWidget(self.folderEdit)
        folder_row.addWidget(browse)
        form.addRow("Folder", folder_row)
        note = QLabel("Data, network, learning rate and batch size come from the Training panel.")
        note.setWordWrap(True)
        form.addRow(note)

        self.startButton = QPushButton("Start", objectName="startExperimentButton")
        self.startButton.clicked.connect(self.start)
        self.stopButton = QPushButton("Stop", objectName="stopExperimentButton")
        self.stopButton.clicked.connect(self.stop)
        self.estimateButton = QPushButton("Estimate time", objectName="estimateExperimentButton")
        self.estimateButton.setToolTip(
            "time a few training steps and the metrics' slow parts here, and say how long these settings take"
        )
        self.estimateButton.clicked.connect(self.estimate_time)
        self.openButton = QPushButton("Open experiment…", objectName="openExperimentButton")
        self.openButton.clicked.connect(self._on_open_folder)
        self.reportButton = QPushButton("Open report", objectName="openReportButton")
        self.reportButton.clicked.connect(self.open_report)
        self.runButton = QPushButton("Open run in explorer", objectName="openRunButton")
        self.runButton.clicked.connect(self.open_selected_run)
        self.progressBar = QProgressBar(objectName="experimentProgress")
        self.timeLabel = QLabel("", objectName="experimentTime")  # the estimate; while running, progress and ETA
        self.timeLabel.setWordWrap(True)
        self.statusLabel = QLabel("", objectName="experimentStatus")
        self.statusLabel.setWordWrap(True)
        left = QVBoxLayout()
        left.setContentsMargins(0, 0, 0, 0)
        left.setSpacing(_FORM_SPACING)
        left.addWidget(setup)
        for buttons in ((self.startButton, self.stopButton, self.estimateButton), (self.openButton, self.reportButton)):
            row = QHBoxLayout()
            for button in buttons:
                row.addWidget(button)
            left.addLayout(row)
        left.addWidget(self.runButton)
        left.addWidget(self.progressBar)
        left.addWidget(self.timeLabel)
        left.addWidget(self.statusLabel)
        left.addStretch(1)
        left_widget = QWidget(objectName="experimentSetupColumn")
        left_widget.setLayout(left)
        # a small window scrolls the setup column instead of squeezing (clipping) its labels and fields
        self.setupScroll = QScrollArea(objectName="experimentSetupScroll")
        self.setupScroll.setWidget(left_widget)
        self.setupScroll.setWidgetResizable(True)
        self.setupScroll.setFrameShape(QFrame.Shape.NoFrame)
        self.setupScroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scrollbar = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        self.setupScroll.setMinimumWidth(left_widget.minimumSizeHint().width() + scrollbar)
        self.setupScroll.setMaximumWidth(max(_SETUP_MAX_WIDTH, self.setupScroll.minimumWidth()))

        self.table = QTableWidget(0, len(_FIXED_COLUMNS) + len(TABLE_KEYS), objectName="experimentTable")
        self.table.setHorizontalHeaderLabels([*_FIXED_COLUMNS, *(_SHORT[k] for k in TABLE_KEYS)])
        for i, key in enumerate(TABLE_KEYS):
            self.table.horizontalHeaderItem(len(_FIXED_COLUMNS) + i).setToolTip(_TITLES[key])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.cellDoubleClicked.connect(lambda _row, _col: self.open_selected_run())

        self.plotChoice = QComboBox(objectName="plotChoiceCombo")
        for key, title in PLOTS:
            self.plotChoice.addItem(title, key)
        # the longest title would set the view's minimum width; the list still shows every title whole
        self.plotChoice.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.plotChoice.setMinimumContentsLength(_PLOT_CHOICE_CHARS)
        self.plotChoice.currentIndexChanged.connect(self.refresh_plot)
        self.plot = pg.PlotWidget(objectName="experimentPlot")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        for side in ("left", "bottom"):
            self.plot.getAxis(side).enableAutoSIPrefix(False)  # "score (x0.001)" reads as a different score
        self.legend = self.plot.addLegend(offset=(-10, 10))
        plot_box = QWidget()
        plot_layout = QVBoxLayout(plot_box)
        plot_layout.setContentsMargins(0, 0, 0, 0)
        plot_layout.addWidget(self.plotChoice)
        plot_layout.addWidget(self.plot)
        right = QSplitter()
        right.setOrientation(pg.QtCore.Qt.Orientation.Vertical)
        right.addWidget(self.table)
        right.addWidget(plot_box)
        right.setSizes([300, 420])
        layout = QHBoxLayout(self)
        layout.addWidget(self.setupScroll)
        layout.addWidget(right, 1)
        for signal in (
            self.kindCombo.currentIndexChanged,
            self.betasEdit.textChanged,
            self.compareBetaSpin.valueChanged,
            self.seedsEdit.textChanged,
            self.stepsSpin.valueChanged,
            self.workersSpin.valueChanged,
            self.stackSpin.valueChanged,
            self.metricsEdit.textChanged,
            self.metricScaleCombo.currentIndexChanged,
            self.folderEdit.textChanged,
            self.executorPanel.executorChanged,
        ):
            signal.connect(self._on_settings_changed)

    # ----- setup -----------------------------------------------------------------------------
    def _on_kind_changed(self) -> None:
        sweep = self.kindCombo.currentData() == "sweep"
        self.betasEdit.setEnabled(sweep)
        self.compareBetaSpin.setEnabled(not sweep)

    def _on_browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Experiment folder", str(self._runs_dir()))
        if path:
            self.folderEdit.setText(path)

    def spec(self) -> ExperimentSpec:
        """The spec the fields describe (raises ConfigError/MetricError with a message to show)."""
        from bvae_desktop.core.metrics import metric_names
        from bvae_desktop.core.value_lists import parse_floats, parse_seeds

        base = self._base_config()
        base.steps = self.stepsSpin.value()
        base.checkpoint_every = min(base.checkpoint_every, max(1, base.steps // 4))
        text = self.metricsEdit.text().strip() or "all"
        names = [] if text == "none" else metric_names(text)
        plan = MetricPlan(names=names, divisor=int(self.metricScaleCombo.currentData()))
        seeds = parse_seeds(self.seedsEdit.text())
        how = {"workers": self.workersSpin.value(), "stack": self.stackSpin.value(), **self.executorPanel.settings()}
        if self.kindCombo.currentData() == "compare":
            return ExperimentSpec.compare(base, self.compareBetaSpin.value(), seeds=seeds, metrics=plan, **how)
        betas = parse_floats(self.betasEdit.text(), "β values")
        return ExperimentSpec.sweep(base, betas, seeds=seeds, metrics=plan, **how)

    def _show_spec(self, spec: ExperimentSpec) -> None:
        self.kindCombo.setCurrentIndex(self.kindCombo.findData(spec.kind))
        if spec.kind == "sweep":
            self.betasEdit.setText(", ".join(f"{b:g}" for b in spec.betas))
        else:
            self.compareBetaSpin.setValue(spec.betas[0])
        self.seedsEdit.setText(", ".join(str(s) for s in spec.seeds))
        self.stepsSpin.setValue(spec.base.steps)
        self.workersSpin.setValue(min(spec.workers, self.workersSpin.maximum()))
        self.stackSpin.setValue(min(spec.stack, self.stackSpin.maximum()))
        self.executorPanel.show_settings(spec.executor, spec.executor_options)
        self.metricsEdit.setText(",".join(spec.metrics.names) or "none")
        index = self.metricScaleCombo.findData(spec.metrics.divisor)
        if index < 0:
            self.metricScaleCombo.addItem(f"counts ÷ {spec.metrics.divisor}", spec.metrics.divisor)
            index = self.metricScaleCombo.count() - 1
        self.metricScaleCombo.setCurrentIndex(index)

    # ----- running ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.thread is not None

    @property
    def estimating(self) -> bool:
        return self.estimate_thread is not None

    def _folder(self) -> Path | None:
        text = self.folderEdit.text().strip()
        return Path(text) if text else None

    def _chosen_spec(self, folder: Path | None) -> ExperimentSpec:
        """What Start would run: an opened experiment as it was set up (with this tab's way to run it), else the fields."""
        if (
            folder is not None
            and (folder / SPEC_NAME).exists()
            and self.experiment is not None
            and self.experiment.folder == folder
        ):
            spec = ExperimentSpec.from_dict(self.experiment.spec.to_dict(), source=str(folder / SPEC_NAME))
            spec.workers = self.workersSpin.value()
            spec.stack = self.stackSpin.value()
            spec.executor, spec.executor_options = self.executorPanel.executor(), self.executorPanel.options()
            return spec.validate()
        return self.spec()

    @staticmethod
    def _key(spec: ExperimentSpec, folder: Path | None) -> str:
        return json.dumps({"folder": str(folder or ""), "spec": spec.to_dict()}, sort_keys=True, default=str)

    def start(self) -> bool:
        """Start (or continue) the experiment in the folder; False, with the reason shown, when it cannot."""
        if self.running or self.executorPanel.probing or self.estimating:
            return False
        try:
            folder = self._folder()
            spec = self._chosen_spec(folder)
            estimate = self.estimate if self._key(spec, folder) == self._estimate_key else None
            if folder is None:
                folder = self._runs_dir() / "experiments" / f"{spec.kind}-{time.strftime('%Y%m%d-%H%M%S')}"
                self.folderEdit.setText(str(folder))
            get_executor(spec.executor).check()  # Ray not installed: its one line, before a thread starts
            experiment = Experiment(folder, spec)
        except BvaeError as exc:
            self.errorOccurred.emit("Cannot start the experiment", str(exc))
            return False
        self.experiment = experiment
        self.estimate, self._estimate_key = None, None  # used up: after this run the folder holds other work
        self.progress = ExperimentProgress(experiment.runs, estimate, clock=self.clock)
        self._started_at = self.clock()
        self.timeLabel.setText(estimate.describe() if estimate is not None else "")
        self._fill_table()
        self.worker = ExperimentWorker(experiment)
        self.worker.runEvent.connect(self._on_run_event)
        self.worker.runProgress.connect(self._on_run_progress)
        self.worker.failed.connect(self._on_failed)  # a method: a lambda would run in the worker's thread
        self.worker.finished.connect(self._on_finished)
        self.thread = start_worker(self.worker, "experimentThread")
        self.statusLabel.setText(f"running in {folder}")
        self._update_buttons()
        return True

    def stop(self) -> None:
        """Ask the runs to stop; each keeps its checkpoint, finished runs stay finished."""
        if self.worker is not None:
            self.worker.stop()
            self.statusLabel.setText("stopping: the runs in progress save their checkpoints…")
            self.stopButton.setEnabled(False)
            if self.progress is not None:
                self.progress.stopping()
                self.timeLabel.setText("Stopping: no time left to show.")

    # ----- the estimate ------------------------------------------------------------------------
    def estimate_time(self) -> bool:
        """Measure, off the GUI thread, how long Start would take with these settings; the answer goes to timeLabel."""
        if self.running or self.estimating:
            return False
        try:
            folder = self._folder()
            spec = self._chosen_spec(folder)
        except BvaeError as exc:
            self.timeLabel.setText(f"Cannot estimate: {exc}")
            return False
        self._pending_key = self._key(spec, folder)
        self.timeLabel.setText("Estimating: timing a few training steps and the metrics' slow parts here…")
        self.estimate_worker = EstimateWorker(spec, folder)
        self.estimate_worker.estimated.connect(self._on_estimated)
        self.estimate_worker.failed.connect(self._on_estimate_failed)
        self.estimate_worker.finished.connect(self._on_estimate_done)
        self.estimate_thread = start_worker(self.estimate_worker, "estimateThread")
        self._update_buttons()
        return True

    def _on_estimated(self, estimate: ExperimentEstimate) -> None:
        self.estimate, self._estimate_key = estimate, self._pending_key
        self.timeLabel.setText(estimate.describe())

    def _on_estimate_failed(self, message: str) -> None:
        self.estimate, self._estimate_key = None, None
        self.timeLabel.setText(f"Cannot estimate: {message}")

    def _on_estimate_done(self) -> None:
        self._release_estimate_thread()
        self._update_buttons()

    def _release_estimate_thread(self) -> None:
        if self.estimate_thread is not None:
            self.estimate_thread.quit()
            self.estimate_thread.wait()
        self.estimate_thread = None
        self.estimate_worker = None

    def _on_settings_changed(self, *_args: object) -> None:
        if self.running or self.estimating or self.estimate is None:
            return
        self.estimate, self._estimate_key = None, None
        self.timeLabel.setText("Settings changed since the estimate: Estimate time measures them again.")

    def shutdown(self, timeout_ms: int = 120_000) -> None:
        """Stop and wait for the threads (window closing, tests)."""
        self.executorPanel.shutdown(timeout_ms)  # a "test connection" in progress
        if self.estimate_thread is not None:  # a probe of a couple of seconds: let it end
            self.estimate_thread.wait(timeout_ms)
            QApplication.processEvents()
            self._release_estimate_thread()
        if self.worker is not None:
            self.worker.stop()
        if self.thread is not None:
            self.thread.quit()
            self.thread.wait(timeout_ms)
            QApplication.processEvents()  # deliver the last signals
        self._release_thread()

    def _release_thread(self) -> None:
        if self.thread is not None:
            self.thread.quit()  # its own queued quit may still wait behind this slot
            self.thread.wait()
        self.thread = None
        self.worker = None
        self._update_buttons()

    def _on_finished(self, complete: bool) -> None:
        if self.experiment is not None:
            results = self.experiment.results()
            done = sum(r is not None for r in results.values())
            state = "finished" if complete else "stopped" if self.experiment.stopping else "ended with failures"
            self.statusLabel.setText(f"{state}: {done} of {len(results)} runs finished. {self.experiment.folder}")
            self.progressBar.setValue(done)
            took = f"Took {format_duration(self.clock() - self._started_at)}"
            estimate = self.progress.estimate if self.progress is not None else None
            guess = (
                f" (estimated {format_duration(estimate.total_s)})" if estimate is not None and estimate.runs else ""
            )
            self.timeLabel.setText(f"{took}{guess}.")
        self._release_thread()
        self.refresh_plot()

    def _on_failed(self, message: str) -> None:
        self.errorOccurred.emit("Experiment failed", message)

    def _on_run_event(self, event: ExperimentEvent) -> None:
        if event.kind == "note":  # the executor's word (Ray: which cluster, how many tasks)
            self.statusLabel.setText(event.info.get("message", ""))
            return
        self._show_progress(event)
        row = self._rows.get(event.run)
        if row is None:
            return
        status = {
            "started": "training",
            "metric": f"scoring {event.info.get('name', '')}",
            "finished": "finished",
            "skipped": "finished",
            "stopped": "stopped",
            "failed": "failed",
        }.get(event.kind, event.kind)
        if event.kind == "metric" and "done" in event.info:
            return  # the time label shows where the metric stands; the table keeps "scoring <name>"
        self._set(row, 3, status, tooltip=event.info.get("message", ""))
        if event.result is not None:
            self._show_result(row, event.result)
        if event.kind == "finished":
            self._count_finished()
            self.refresh_plot()

    def _on_run_progress(self, name: str, step: int, total: int) -> None:
        self._show_progress(ExperimentEvent("step", name, {"step": step, "total": total}))
        row = self._rows.get(name)
        if row is not None:
            self._set(row, 4, f"{step:,} / {total:,}")

    def _show_progress(self, event: ExperimentEvent) -> None:
        """The time label: where the run heard from last stands, then all runs with the time they have left."""
        progress = self.progress
        if progress is None or event.run not in progress.runs or self.experiment is None or self.experiment.stopping:
            return
        progress.add(event)
        self.timeLabel.setText(f"{progress.run_text(event.run)}\n{progress.overall_text()}")

    # ----- table -----------------------------------------------------------------------------
    def _fill_table(self) -> None:
        experiment = self.experiment
        if experiment is None:
            return
        runs = experiment.runs
        results = experiment.results()
        self.table.setRowCount(len(runs))
        self._rows = {}
        for row, run in enumerate(runs):
            self._rows[run.name] = row
            self._set(row, 0, run.name)
            self._set(row, 1, f"{run.config.effective_beta:g}")
            self._set(row, 2, str(run.config.seed))
            result = results[run.name]
            self._set(row, 3, "finished" if result else "waiting")
            self._set(row, 4, f"{run.config.steps:,} / {run.config.steps:,}" if result else "")
            for i in range(len(TABLE_KEYS)):
                self._set(row, len(_FIXED_COLUMNS) + i, "")
            if result:
                self._show_result(row, result)
        self.progressBar.setMaximum(len(runs))
        self._count_finished()
        self.refresh_plot()

    def _show_result(self, row: int, result: dict) -> None:
        values = headline(result)
        for i, key in enumerate(TABLE_KEYS):
            value = values[key]
            text = "–" if not math.isfinite(value) else f"{value:.1f}" if key in ("recon", "kl") else f"{value:.3g}"
            self._set(row, len(_FIXED_COLUMNS) + i, text)

    def _set(self, row: int, column: int, text: str, tooltip: str = "") -> None:
        item = self.table.item(row, column)
        if item is None:
            item = QTableWidgetItem()
            self.table.setItem(row, column, item)
        item.setText(text)
        item.setToolTip(tooltip)

    def _count_finished(self) -> None:
        if self.experiment is None:
            return
        done = sum(
            1
            for row in range(self.table.rowCount())
            if (self.table.item(row, 3) or QTableWidgetItem()).text() == "finished"
        )
        self.progressBar.setValue(done)

    def cell(self, run: str, column: str) -> str:
        """The table's text for `run` in `column` (a fixed column name or a TABLE_KEYS key)."""
        index = (
            _FIXED_COLUMNS.index(column) if column in _FIXED_COLUMNS else len(_FIXED_COLUMNS) + TABLE_KEYS.index(column)
        )
        item = self.table.item(self._rows[run], index)
        return item.text() if item is not None else ""

    # ----- opening things ----------------------------------------------------------------------
    def _on_open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open experiment folder", str(self._runs_dir()))
        if path:
            self.open_experiment(path)

    def open_experiment(self, folder: str | Path) -> bool:
        """Show a saved experiment (its table and plots); Start then continues it."""
        if self.running:
            return False
        try:
            spec = load_spec(folder)
            self.experiment = Experiment(folder, spec)
        except BvaeError as exc:
            self.errorOccurred.emit("Cannot open the experiment", str(exc))
            return False
        self._show_spec(spec)
        self.folderEdit.setText(str(folder))
        self._fill_table()
        done = self.progressBar.value()
        self.statusLabel.setText(f"{done} of {len(self.experiment.runs)} runs finished. {folder}")
        self._update_buttons()
        return True

    def report_path(self) -> Path | None:
        return self.experiment.folder / "report.html" if self.experiment is not None else None

    def open_report(self) -> None:
        path = self.report_path()
        if path is None or not path.exists():
            self.errorOccurred.emit(
                "No report yet", "Start or open an experiment first: its report is written as runs finish."
            )
            return
        if self.open_url(QUrl.fromLocalFile(str(path))) is False:  # no browser here: say where it is
            QApplication.clipboard().setText(str(path))
            self.statusLabel.setText(f"report: {path} (path copied to the clipboard)")
            self.errorOccurred.emit(
                "No browser to open the report",
                f"The report is at {path}; its path is on the clipboard to paste into a browser or file manager.",
            )

    def selected_run(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return item.text() if item is not None else None

    def open_selected_run(self) -> None:
        name = self.selected_run()
        if name is None or self.experiment is None:
            return
        checkpoint = self.experiment.folder / "runs" / name / CHECKPOINT_NAME
        if not checkpoint.exists():
            self.errorOccurred.emit("No checkpoint yet", f"{checkpoint}: this run has not saved a checkpoint yet")
            return
        self.openRunRequested.emit(checkpoint)

    def _update_buttons(self) -> None:
        running = self.running
        self.startButton.setEnabled(not running and not self.executorPanel.probing and not self.estimating)
        self.estimateButton.setEnabled(not running and not self.estimating)
        self.stopButton.setEnabled(running)
        self.openButton.setEnabled(not running)
        for widget in (
            self.kindCombo,
            self.betasEdit,
            self.seedsEdit,
            self.stepsSpin,
            self.workersSpin,
            self.stackSpin,
            self.metricsEdit,
            self.metricScaleCombo,
            self.folderEdit,
        ):
            widget.setEnabled(not running)
        self.executorPanel.setEnabled(not running)
        self.workersSpin.setEnabled(not running and self.executorPanel.executor() == "processes")
        if not running:
            self._on_kind_changed()
        else:
            self.compareBetaSpin.setEnabled(False)
        self.reportButton.setEnabled(self.experiment is not None)
        self.runButton.setEnabled(self.experiment is not None and self.selected_run() is not None)

    # ----- plots -----------------------------------------------------------------------------
    def refresh_plot(self) -> None:
        """Redraw the chosen plot from the finished runs on disk."""
        self.plot.clear()
        self.legend.clear()
        if self.experiment is None:
            return
        results = [r for r in self.experiment.results().values() if r is not None]
        key = self.plotChoice.currentData()
        if key == "curves":
            self._plot_curves(results)
            return
        summary = [s for s in summarise(results) if s.beta > 0]
        if key == "tradeoff":
            self._plot_tradeoff(summary)
            return
        keys = {
            "disentanglement": ("beta_vae", "factor_vae", "mig", "dci_disentanglement", "sap"),
            "recon_kl": ("recon", "kl"),
            "latent": ("mean_abs_mu", "mean_sigma"),
            "active": ("active_units",),
        }[key]
        x = np.log10([s.beta for s in summary]) if summary else np.zeros(0)
        self._log_ticks([s.beta for s in summary])
        self.plot.setLabel("bottom", "β (log scale)")
        self.plot.setLabel("left", {"recon_kl": "nats per image (val)", "active": "dimensions"}.get(key, "score"))
        for i, name in enumerate(keys):
            mean = np.array([s.mean[name] for s in summary], dtype=float)
            if not np.isfinite(mean).any():
                continue
            color = _COLORS[i % len(_COLORS)]
            self.plot.plot(x, mean, pen=pg.mkPen(color, width=2), symbol="o", symbolBrush=color, name=_TITLES[name])
            low = np.array([s.low[name] for s in summary], dtype=float)
            high = np.array([s.high[name] for s in summary], dtype=float)
            spread = np.isfinite(low) & np.isfinite(high) & (high > low)
            if spread.any():
                self.plot.addItem(
                    pg.ErrorBarItem(
                        x=x[spread],
                        y=mean[spread],
                        top=(high - mean)[spread],
                        bottom=(mean - low)[spread],
                        beam=0.05,
                        pen=color,
                    )
                )

    def _log_ticks(self, betas: list[float]) -> None:
        ticks = [(math.log10(b), f"{b:g}") for b in sorted(set(betas))]
        self.plot.getAxis("bottom").setTicks([ticks] if ticks else None)

    def _plot_tradeoff(self, summary: list) -> None:
        self.plot.getAxis("bottom").setTicks(None)
        self.plot.setLabel("bottom", "reconstruction error (val, nats per image)")
        self.plot.setLabel("left", "score")
        for i, name in enumerate(("beta_vae", "mig")):
            points = [(s.mean["recon"], s.mean[name], s.group) for s in summary]
            points = [p for p in points if math.isfinite(p[0]) and math.isfinite(p[1])]
            if not points:
                continue
            color = _COLORS[i]
            self.plot.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                pen=None,
                symbol="o",
                symbolBrush=color,
                name=_TITLES[name],
            )
            for x, y, label in points:
                text = pg.TextItem(label, color=color, anchor=(0, 1))
                text.setPos(x, y)
                self.plot.addItem(text)

    def _plot_curves(self, results: list[dict]) -> None:
        self.plot.getAxis("bottom").setTicks(None)
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "reconstruction (nats per image)")
        assert self.experiment is not None
        for i, result in enumerate(results):
            try:
                curves = read_curves(self.experiment, result["name"])
            except BvaeError:
                continue
            color = _COLORS[i % len(_COLORS)]
            val = curves["validation"]
            if "step" in val and len(val["step"]):
                self.plot.plot(
                    val["step"], val["recon"], pen=pg.mkPen(color, width=2), name=result.get("label", result["name"])
                )


def _text_field_width(edit: QLineEdit) -> int:
    """The width a line edit needs to show its text whole: the text, its margins and the frame."""
    margins = edit.textMargins()
    frame = edit.style().pixelMetric(QStyle.PixelMetric.PM_DefaultFrameWidth, None, edit)
    inner = 2  # QLineEdit's own horizontal margin on each side
    return (
        edit.fontMetrics().horizontalAdvance(edit.text()) + margins.left() + margins.right() + 2 * (frame + inner) + 4
    )
