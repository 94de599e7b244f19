"""The training panel: every setting of a run, the run buttons and progress; emits requests only."""

from __future__ import annotations

import dataclasses
import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from bvae_desktop.core.config import TrainConfig, beta_normalised
from bvae_desktop.core.data.registry import dataset_spec, dataset_specs, supported_file_filter
from bvae_desktop.core.device import available_devices
from bvae_desktop.core.objectives import Param, all_params, objective_spec, objective_specs, param_value, with_param

BETA_LOG_MIN, BETA_LOG_MAX, SLIDER_STEPS_PER_DECADE = -3, 3, 100


def beta_to_slider(beta: float) -> int:
    beta = min(max(beta, 10.0**BETA_LOG_MIN), 10.0**BETA_LOG_MAX)
    return round((math.log10(beta) - BETA_LOG_MIN) * SLIDER_STEPS_PER_DECADE)


def slider_to_beta(position: int) -> float:
    return float(f"{10 ** (position / SLIDER_STEPS_PER_DECADE + BETA_LOG_MIN):.3g}")


class TrainingPanel(QWidget):
    """Reads and writes a TrainConfig; while a run goes on only β stays editable."""

    trainRequested = Signal()
    pauseToggled = Signal(bool)  # True: pause, False: resume
    stopRequested = Signal()
    betaChanged = Signal(float)
    datasetChanged = Signal(str, str)  # name, path
    browseRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainingPanel")
        self.image_shape: tuple[int, int, int] = dataset_specs()[0].shape
        self._running = False
        self._shown_once = False
        self._continue_dataset: str | None = None  # the data of the run "Continue" would resume
        self._before_loading: tuple[int, int, str] | None = None  # the bar while a run's data opens
        # the settings the panel edits: fields it does not show (val_fraction, reconstruction, ...) stay as
        # they came (an opened checkpoint's), so continuing a run never changes them behind the user's back
        self._stored = TrainConfig()
        self._build()
        self._on_objective_changed()
        self._on_dataset_changed()
        self._update_beta_units()

    # ----- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.addWidget(self._build_data_group())
        layout.addWidget(self._build_model_group())
        layout.addWidget(self._build_run_group())
        layout.addStretch(1)

    def _build_data_group(self) -> QGroupBox:
        box = QGroupBox("Data")
        form = QFormLayout(box)
        self.datasetCombo = _combo("datasetCombo", {spec.name: spec.label for spec in dataset_specs()})
        self.datasetCombo.currentIndexChanged.connect(self._on_dataset_changed)
        self.dataPathEdit = QLineEdit(objectName="dataPathEdit")
        self.dataPathEdit.setPlaceholderText("file or folder")
        self.dataPathEdit.editingFinished.connect(self._on_path_edited)
        self.browseButton = QToolButton(objectName="browseButton", text="…")
        self.browseButton.setToolTip("Choose the data file or folder")
        self.browseButton.clicked.connect(self.browseRequested)
        path_row = QHBoxLayout()
        path_row.addWidget(self.dataPathEdit)
        path_row.addWidget(self.browseButton)
        self.datasetInfoLabel = QLabel(objectName="datasetInfoLabel", wordWrap=True)
        self.datasetInfoLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Source", self.datasetCombo)
        form.addRow("Path", path_row)
        form.addRow(self.datasetInfoLabel)
        return box

    def _build_model_group(self) -> QGroupBox:
        box = QGroupBox("Objective and model")
        form = QFormLayout(box)
        self.objectiveCombo = QComboBox(objectName="objectiveCombo")
        for spec in objective_specs():
            self.objectiveCombo.addItem(spec.label, spec.name)
            self.objectiveCombo.setItemData(self.objectiveCombo.count() - 1, spec.summary, Qt.ItemDataRole.ToolTipRole)
        _select(self.objectiveCombo, "beta-h")
        self.objectiveCombo.currentIndexChanged.connect(self._on_objective_changed)
        # the objective's main weight (β, γ, λ_od): a log slider, and the one setting live during a run
        self.betaSpin = QDoubleSpinBox(objectName="betaSpin", decimals=3, minimum=0.0, maximum=1e6, value=4.0)
        self.betaSpin.setKeyboardTracking(False)
        self.betaSpin.valueChanged.connect(self._on_beta_spin)
        self.betaSlider = QSlider(Qt.Orientation.Horizontal, objectName="betaSlider")
        self.betaSlider.setRange(0, (BETA_LOG_MAX - BETA_LOG_MIN) * SLIDER_STEPS_PER_DECADE)
        self.betaSlider.setValue(beta_to_slider(4.0))
        self.betaSlider.setToolTip("the weight on a log scale, 0.001 to 1000")
        self.betaSlider.valueChanged.connect(self._on_beta_slider)
        beta_row = QHBoxLayout()
        beta_row.addWidget(self.betaSpin)
        beta_row.addWidget(self.betaSlider, 1)
        self.betaUnitsLabel = QLabel(objectName="betaUnitsLabel", wordWrap=True)
        self.betaUnitsLabel.setStyleSheet("color: #555;")
        self.latentDimSpin = _spin("latentDimSpin", 1, 512, 10)
        self.latentDimSpin.valueChanged.connect(self._update_beta_units)
        self.betaLabel = QLabel("β")
        form.addRow("Objective", self.objectiveCombo)
        form.addRow(self.betaLabel, beta_row)
        form.addRow("", self.betaUnitsLabel)
        # one field per objective parameter, from the registry; shown for the objective that has it
        self.paramSpins: dict[str, QDoubleSpinBox | QSpinBox] = {}
        self.paramLabels: dict[str, QLabel] = {}
        for name, param in all_params().items():
            spin = _param_spin(param)
            label = QLabel(param.label)
            label.setToolTip(param.help)
            form.addRow(label, spin)
            self.paramSpins[name], self.paramLabels[name] = spin, label
            setattr(self, spin.objectName(), spin)  # gammaSpin, cMaxSpin, ...: stable names for tests and scripts
        form.addRow("Latent size", self.latentDimSpin)
        return box

    def _build_run_group(self) -> QGroupBox:
        box = QGroupBox("Run")
        form = QFormLayout(box)
        self.lrSpin = QDoubleSpinBox(
            objectName="lrSpin", decimals=6, minimum=1e-6, maximum=1.0, value=5e-4, singleStep=1e-4
        )
        self.batchSizeSpin = _spin("batchSizeSpin", 1, 4096, 64)
        self.stepsSpin = _spin("stepsSpin", 1, 100_000_000, 1000)
        self.seedSpin = _spin("seedSpin", 0, 2**31 - 1, 0)
        self.deviceCombo = QComboBox(objectName="deviceCombo")
        self.deviceCombo.addItem("Best available", "auto")
        for device_id, label in available_devices():
            self.deviceCombo.addItem(label, device_id)
        self.compileCombo = QComboBox(objectName="compileCombo")
        for label, mode in (("On CUDA (default)", "auto"), ("Always", "on"), ("Never", "off")):
            self.compileCombo.addItem(label, mode)
        self.compileCombo.setToolTip(
            "torch.compile the training step: faster on a GPU after a compile of tens of seconds; "
            "falls back to eager if compiling fails"
        )
        self.continueCheck = QCheckBox(objectName="continueCheck")
        self.continueCheck.setVisible(False)
        self.trainButton = QPushButton("Train", objectName="trainButton")
        self.trainButton.setDefault(True)
        self.trainButton.clicked.connect(self.trainRequested)
        self.pauseButton = QPushButton("Pause", objectName="pauseButton", checkable=True, enabled=False)
        self.pauseButton.toggled.connect(self._on_pause_toggled)
        self.stopButton = QPushButton("Stop", objectName="stopButton", enabled=False)
        self.stopButton.clicked.connect(self.stopRequested)
        buttons = QHBoxLayout()
        for button in (self.trainButton, self.pauseButton, self.stopButton):
            buttons.addWidget(button)
        self.progressBar = QProgressBar(objectName="progressBar")
        self.progressBar.setFormat("step %v of %m")
        self.progressLabel = QLabel(objectName="progressLabel")
        form.addRow("Learning rate", self.lrSpin)
        form.addRow("Batch size", self.batchSizeSpin)
        form.addRow("Steps", self.stepsSpin)
        form.addRow("Seed", self.seedSpin)
        form.addRow("Device", self.deviceCombo)
        form.addRow("Compile step", self.compileCombo)
        form.addRow(self.continueCheck)
        form.addRow(buttons)
        form.addRow(self.progressBar)
        form.addRow(self.progressLabel)
        self._locked_while_running: list[QWidget] = [
            self.datasetCombo,
            self.dataPathEdit,
            self.browseButton,
            self.objectiveCombo,
            *self.paramSpins.values(),
            self.latentDimSpin,
            self.lrSpin,
            self.batchSizeSpin,
            self.stepsSpin,
            self.seedSpin,
            self.deviceCombo,
            self.compileCombo,
            self.continueCheck,
        ]
        return box

    # ----- config in and out -----------------------------------------------------------------
    def config(self) -> TrainConfig:
        """The stored settings edited by the fields (not yet validated: the caller shows what is wrong)."""
        dataset = self.datasetCombo.currentData()
        objective = self.objectiveCombo.currentData()
        config = dataclasses.replace(
            self._stored,
            dataset=dataset,
            data_path=self.dataPathEdit.text().strip() or None if dataset_spec(dataset).needs_path else None,
            objective=objective,
            latent_dim=self.latentDimSpin.value(),
            lr=self.lrSpin.value(),
            batch_size=self.batchSizeSpin.value(),
            steps=self.stepsSpin.value(),
            seed=self.seedSpin.value(),
            device=self.deviceCombo.currentData(),
            compile=self.compileCombo.currentData(),
            objective_params={},
        )
        spec = objective_spec(objective)
        kept = {k: v for k, v in self._stored.objective_params.items() if self._stored.objective == objective}
        config = dataclasses.replace(config, objective_params=kept)
        for param in spec.params:
            if param.name == spec.main:
                if param.name not in spec.fixed:
                    config = with_param(config, param.name, self.betaSpin.value())
            else:
                config = with_param(config, param.name, self.paramSpins[param.name].value())
        return config

    def set_config(self, config: TrainConfig, *, beta: float | None = None) -> None:
        """Show `config` and keep it: what the fields do not show is kept as it is."""
        self._stored = config
        _select(self.datasetCombo, config.dataset)
        self.dataPathEdit.setText(config.data_path or "")
        _select(self.objectiveCombo, config.objective)
        spec = objective_spec(config.objective)
        for param in spec.params:
            if param.name != spec.main:
                self.paramSpins[param.name].setValue(param_value(config, param))
        self.latentDimSpin.setValue(config.latent_dim)
        self.lrSpin.setValue(config.lr)
        self.batchSizeSpin.setValue(config.batch_size)
        self.stepsSpin.setValue(config.steps)
        self.seedSpin.setValue(config.seed)
        if self.deviceCombo.findData(config.device) >= 0:
            _select(self.deviceCombo, config.device)
        _select(self.compileCombo, config.compile)
        main = spec.main_param
        weight = param_value(config, main) if main is not None else 0.0
        self.set_beta(beta if beta is not None else weight)

    def set_beta(self, value: float) -> None:
        self.betaSpin.setValue(value)

    def offer_continue(self, step: int | None) -> None:
        """Show 'continue from step N' after a checkpoint was opened or a run stopped early."""
        self._continue_dataset = self.datasetCombo.currentData() if step is not None else None
        self.continueCheck.setVisible(step is not None)
        self.continueCheck.setChecked(step is not None)
        if step is not None:
            self.continueCheck.setText(f"Continue from the checkpoint (step {step:,})")

    @property
    def continue_requested(self) -> bool:
        return self.continueCheck.isVisible() and self.continueCheck.isChecked()

    def select_data(self, name: str, path: str) -> None:
        """Choose source `name` with `path` (File ▸ Open dataset found which source reads the file)."""
        self.dataPathEdit.setText(path)
        if self.datasetCombo.currentData() != name:
            _select(self.datasetCombo, name)  # emits datasetChanged through _on_dataset_changed
        else:
            self._on_path_edited()

    def set_dataset_info(self, text: str) -> None:
        self.datasetInfoLabel.setText(text)

    def set_image_shape(self, shape: tuple[int, int, int]) -> None:
        self.image_shape = shape
        self._update_beta_units()

    # ----- running state ---------------------------------------------------------------------
    def set_running(self, running: bool) -> None:
        """Lock every setting but β while a run goes on."""
        self._running = running
        for widget in self._locked_while_running:
            widget.setEnabled(not running)
        self.trainButton.setEnabled(not running)
        self.pauseButton.setEnabled(running)
        self.stopButton.setEnabled(running)
        if not running:
            self.pauseButton.blockSignals(True)
            self.pauseButton.setChecked(False)
            self.pauseButton.setText("Pause")
            self.pauseButton.blockSignals(False)

    def set_paused(self, paused: bool) -> None:
        """Reflect a pause decided elsewhere (a non-finite loss) without emitting pauseToggled."""
        self.pauseButton.blockSignals(True)
        self.pauseButton.setChecked(paused)
        self.pauseButton.setText("Resume" if paused else "Pause")
        self.pauseButton.blockSignals(False)

    @property
    def running(self) -> bool:
        return self._running

    def show_loading(self, text: str, done: int, total: int) -> None:
        """The data source is opening: a busy bar (total 0) or a count, and what is being read.
        The bar's previous state is kept for `end_loading` (a run that fails to open leaves it as it was)."""
        if self._before_loading is None:
            self._before_loading = (self.progressBar.value(), self.progressBar.maximum(), self.progressLabel.text())
        if total > 0:
            self.progressBar.setRange(0, total)
            self.progressBar.setValue(min(done, total))
            self.progressBar.setFormat("%p%")
        else:
            self.progressBar.setRange(0, 0)  # Qt's busy indicator
        self.progressLabel.setText(text)

    @property
    def loading(self) -> bool:
        return self._before_loading is not None

    def end_loading(self) -> None:
        """Back from the loading display to steps: to the state before it, until the run reports a step."""
        if self._before_loading is None:
            return
        value, maximum, text = self._before_loading
        self._before_loading = None
        self.progressBar.setFormat("step %v of %m")
        self.progressBar.setRange(0, maximum)
        self.progressBar.setValue(value)
        self.progressLabel.setText(text)

    def show_status(self, step: int, total: int, text: str) -> None:
        """The bar at `step` of `total` with a word instead of speed and ETA: paused, stopped, opened."""
        self.progressBar.setMaximum(max(total, 1))
        self.progressBar.setValue(min(step, total))
        self.progressLabel.setText(f"step {step:,} of {total:,} · {text}")

    def show_progress(self, step: int, total: int, images_per_s: float, eta_s: float | None) -> None:
        self.progressBar.setMaximum(max(total, 1))
        self.progressBar.setValue(min(step, total))
        eta = "" if eta_s is None else f" · ETA {_clock(eta_s)}"
        self.progressLabel.setText(f"step {step:,} of {total:,} · {images_per_s:,.0f} images/s{eta}")

    # ----- slots -----------------------------------------------------------------------------
    def _on_dataset_changed(self) -> None:
        name = self.datasetCombo.currentData()
        if self._continue_dataset is not None and name != self._continue_dataset:
            self.offer_continue(None)  # a run cannot continue on other data (Train failed on the image shape)
        spec = dataset_spec(name)
        needs_path = spec.needs_path
        self.dataPathEdit.setEnabled(needs_path and not self._running)
        self.browseButton.setEnabled(needs_path and not self._running)
        self.set_image_shape(spec.shape)
        self.datasetChanged.emit(name, self.dataPathEdit.text().strip())

    def _on_path_edited(self) -> None:
        self.datasetChanged.emit(self.datasetCombo.currentData(), self.dataPathEdit.text().strip())

    def _on_objective_changed(self) -> None:
        """Show the chosen objective's fields: its main weight on the slider row, the others below."""
        spec = objective_spec(self.objectiveCombo.currentData())
        own = {param.name for param in spec.params if param.name != spec.main}
        for name, spin in self.paramSpins.items():
            spin.setVisible(name in own)
            self.paramLabels[name].setVisible(name in own)
        stored = self._stored.objective == spec.name
        for param in spec.params:  # names are shared (DIP-VAE I and II): each objective brings its own defaults
            if param.name in own:
                self.paramSpins[param.name].setValue(param_value(self._stored, param) if stored else param.default)
        main = spec.main_param
        tunable = main is not None and main.name not in spec.fixed
        for widget in (self.betaSpin, self.betaSlider, self.betaUnitsLabel, self.betaLabel):
            widget.setVisible(tunable)
        if tunable:
            self.betaLabel.setText(main.label)
            self.betaLabel.setToolTip(main.help)
            self.betaSpin.setRange(main.low, main.high)
            if self.objectiveCombo.currentData() != self._stored.objective or not self._shown_once:
                self.set_beta(param_value(self._stored, main) if self._stored.objective == spec.name else main.default)
        self._shown_once = True
        self._update_beta_units()

    def _on_beta_spin(self, value: float) -> None:
        self.betaSlider.blockSignals(True)
        self.betaSlider.setValue(beta_to_slider(value) if value > 0 else 0)
        self.betaSlider.blockSignals(False)
        self._update_beta_units()
        self.betaChanged.emit(float(value))

    def _on_beta_slider(self, position: int) -> None:
        self.betaSpin.setValue(slider_to_beta(position))

    def _on_pause_toggled(self, paused: bool) -> None:
        self.pauseButton.setText("Resume" if paused else "Pause")
        self.pauseToggled.emit(paused)

    def _update_beta_units(self) -> None:
        spec = objective_spec(self.objectiveCombo.currentData())
        weight = self.betaSpin.value()
        if spec.name != "beta-h":  # the two units are those of a weight on the whole summed KL (β-TCVAE's is on TC)
            self.betaUnitsLabel.setText(spec.main_param.help if spec.main_param is not None else "")
            return
        norm = beta_normalised(weight, self.latentDimSpin.value(), self.image_shape)
        c, h, w = self.image_shape
        self.betaUnitsLabel.setText(f"β = {weight:g} on summed KL · β_norm = {norm:.3g} (per pixel, {h}×{w}×{c})")


def _param_spin(param: Param) -> QDoubleSpinBox | QSpinBox:
    """A field for one objective parameter: its range, its default, its help as the tooltip."""
    parts = param.name.split("_")
    name = parts[0] + "".join(part[:1].upper() + part[1:] for part in parts[1:]) + "Spin"
    if name == "betaSpin":  # β as a secondary setting never shows (it is always a main weight): keep the name free
        name = "betaParamSpin"
    if param.integer:
        spin: QDoubleSpinBox | QSpinBox = _spin(
            name, int(param.low), int(min(param.high, 2**31 - 1)), int(param.default)
        )
    else:
        spin = QDoubleSpinBox(objectName=name, decimals=4, minimum=param.low, maximum=param.high, value=param.default)
    spin.setToolTip(param.help)
    return spin


def _combo(name: str, items: dict[str, str]) -> QComboBox:
    combo = QComboBox(objectName=name)
    for key, label in items.items():
        combo.addItem(label, key)
    return combo


def _spin(name: str, low: int, high: int, value: int) -> QSpinBox:
    spin = QSpinBox(objectName=name, minimum=low, maximum=high, value=value)
    spin.setGroupSeparatorShown(True)
    return spin


def _select(combo: QComboBox, data: str) -> None:
    index = combo.findData(data)
    if index >= 0:
        combo.setCurrentIndex(index)


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def choose_any_data_file(parent: QWidget, start: str) -> str:
    """File ▸ Open dataset: every supported type at once, then each on its own (the source is inferred)."""
    filters = [supported_file_filter()]
    filters += [spec.file_filter for spec in dataset_specs() if spec.needs in ("file", "file or folder")]
    path, _ = QFileDialog.getOpenFileName(parent, "Open a dataset", start, ";;".join([*filters, "All files (*)"]))
    return path


def choose_data_path(parent: QWidget, dataset: str, start: str) -> str:
    """A file dialog fitting the source: a folder for folder sources, a file otherwise."""
    spec = dataset_spec(dataset)
    if spec.needs == "folder":
        return QFileDialog.getExistingDirectory(parent, f"Choose the {spec.label} folder", start)
    path, _ = QFileDialog.getOpenFileName(parent, "Choose the data file", start, spec.file_filter + ";;All files (*)")
    return path
