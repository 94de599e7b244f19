"""The training panel: every setting of a run, the run buttons and progress; emits requests only."""

from __future__ import annotations

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
from bvae_desktop.core.device import available_devices

DATASET_LABELS = {
    "dsprites-procedural": "dSprites (procedural, built in)",
    "dsprites": "dSprites (.npz file)",
    "shapes3d": "3D Shapes (.h5 file)",
    "mnist": "MNIST (IDX folder or .npz)",
    "folder": "Image folder (PNG/JPEG)",
}
OBJECTIVE_LABELS = {"vae": "VAE (β = 1)", "beta-h": "β-VAE (Higgins)", "beta-b": "Capacity β-VAE (Burgess)"}
# image shape each source gives before a file is read (the folder loader may give 3 channels)
DEFAULT_SHAPES = {
    "dsprites-procedural": (1, 64, 64),
    "dsprites": (1, 64, 64),
    "shapes3d": (3, 64, 64),
    "mnist": (1, 32, 32),
    "folder": (1, 64, 64),
}
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
        self.image_shape: tuple[int, int, int] = DEFAULT_SHAPES["dsprites-procedural"]
        self._running = False
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
        self.datasetCombo = _combo("datasetCombo", DATASET_LABELS)
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
        self.objectiveCombo = _combo("objectiveCombo", OBJECTIVE_LABELS)
        self.objectiveCombo.setCurrentIndex(1)
        self.objectiveCombo.currentIndexChanged.connect(self._on_objective_changed)
        self.betaSpin = QDoubleSpinBox(objectName="betaSpin", decimals=3, minimum=0.0, maximum=1000.0, value=4.0)
        self.betaSpin.setKeyboardTracking(False)
        self.betaSpin.valueChanged.connect(self._on_beta_spin)
        self.betaSlider = QSlider(Qt.Orientation.Horizontal, objectName="betaSlider")
        self.betaSlider.setRange(0, (BETA_LOG_MAX - BETA_LOG_MIN) * SLIDER_STEPS_PER_DECADE)
        self.betaSlider.setValue(beta_to_slider(4.0))
        self.betaSlider.setToolTip("β on a log scale, 0.001 to 1000")
        self.betaSlider.valueChanged.connect(self._on_beta_slider)
        beta_row = QHBoxLayout()
        beta_row.addWidget(self.betaSpin)
        beta_row.addWidget(self.betaSlider, 1)
        self.betaUnitsLabel = QLabel(objectName="betaUnitsLabel", wordWrap=True)
        self.betaUnitsLabel.setStyleSheet("color: #555;")
        self.gammaSpin = QDoubleSpinBox(objectName="gammaSpin", decimals=1, minimum=0.0, maximum=1e6, value=1000.0)
        self.cMaxSpin = QDoubleSpinBox(objectName="cMaxSpin", decimals=1, minimum=0.0, maximum=1e4, value=25.0)
        self.cStepsSpin = _spin("cStepsSpin", 1, 10_000_000, 100_000)
        self.latentDimSpin = _spin("latentDimSpin", 1, 512, 10)
        self.latentDimSpin.valueChanged.connect(self._update_beta_units)
        self.betaLabel = QLabel("β")
        form.addRow("Objective", self.objectiveCombo)
        form.addRow(self.betaLabel, beta_row)
        form.addRow("", self.betaUnitsLabel)
        self.gammaLabel, self.cMaxLabel, self.cStepsLabel = QLabel("γ"), QLabel("C max (nats)"), QLabel("C steps")
        form.addRow(self.gammaLabel, self.gammaSpin)
        form.addRow(self.cMaxLabel, self.cMaxSpin)
        form.addRow(self.cStepsLabel, self.cStepsSpin)
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
            self.gammaSpin,
            self.cMaxSpin,
            self.cStepsSpin,
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
        """The settings as a TrainConfig (not yet validated: the caller shows what is wrong)."""
        dataset = self.datasetCombo.currentData()
        return TrainConfig(
            dataset=dataset,
            data_path=self.dataPathEdit.text().strip() or None if dataset != "dsprites-procedural" else None,
            objective=self.objectiveCombo.currentData(),
            beta=self.betaSpin.value(),
            gamma=self.gammaSpin.value(),
            c_max=self.cMaxSpin.value(),
            c_steps=self.cStepsSpin.value(),
            latent_dim=self.latentDimSpin.value(),
            lr=self.lrSpin.value(),
            batch_size=self.batchSizeSpin.value(),
            steps=self.stepsSpin.value(),
            seed=self.seedSpin.value(),
            device=self.deviceCombo.currentData(),
            compile=self.compileCombo.currentData(),
        )

    def set_config(self, config: TrainConfig, *, beta: float | None = None) -> None:
        _select(self.datasetCombo, config.dataset)
        self.dataPathEdit.setText(config.data_path or "")
        _select(self.objectiveCombo, config.objective)
        self.gammaSpin.setValue(config.gamma)
        self.cMaxSpin.setValue(config.c_max)
        self.cStepsSpin.setValue(config.c_steps)
        self.latentDimSpin.setValue(config.latent_dim)
        self.lrSpin.setValue(config.lr)
        self.batchSizeSpin.setValue(config.batch_size)
        self.stepsSpin.setValue(config.steps)
        self.seedSpin.setValue(config.seed)
        if self.deviceCombo.findData(config.device) >= 0:
            _select(self.deviceCombo, config.device)
        _select(self.compileCombo, config.compile)
        self.set_beta(beta if beta is not None else config.beta)

    def set_beta(self, value: float) -> None:
        self.betaSpin.setValue(value)

    def offer_continue(self, step: int | None) -> None:
        """Show 'continue from step N' after a checkpoint was opened or a run stopped early."""
        self.continueCheck.setVisible(step is not None)
        self.continueCheck.setChecked(step is not None)
        if step is not None:
            self.continueCheck.setText(f"Continue from the checkpoint (step {step:,})")

    @property
    def continue_requested(self) -> bool:
        return self.continueCheck.isVisible() and self.continueCheck.isChecked()

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

    def show_progress(self, step: int, total: int, images_per_s: float, eta_s: float | None) -> None:
        self.progressBar.setMaximum(max(total, 1))
        self.progressBar.setValue(min(step, total))
        eta = "" if eta_s is None else f" · ETA {_clock(eta_s)}"
        self.progressLabel.setText(f"step {step:,} of {total:,} · {images_per_s:,.0f} images/s{eta}")

    # ----- slots -----------------------------------------------------------------------------
    def _on_dataset_changed(self) -> None:
        name = self.datasetCombo.currentData()
        needs_path = name != "dsprites-procedural"
        self.dataPathEdit.setEnabled(needs_path and not self._running)
        self.browseButton.setEnabled(needs_path and not self._running)
        self.set_image_shape(DEFAULT_SHAPES[name])
        self.datasetChanged.emit(name, self.dataPathEdit.text().strip())

    def _on_path_edited(self) -> None:
        self.datasetChanged.emit(self.datasetCombo.currentData(), self.dataPathEdit.text().strip())

    def _on_objective_changed(self) -> None:
        objective = self.objectiveCombo.currentData()
        capacity = objective == "beta-b"
        for widget in (
            self.gammaSpin,
            self.cMaxSpin,
            self.cStepsSpin,
            self.gammaLabel,
            self.cMaxLabel,
            self.cStepsLabel,
        ):
            widget.setVisible(capacity)
        for widget in (self.betaSpin, self.betaSlider, self.betaUnitsLabel, self.betaLabel):
            widget.setVisible(objective == "beta-h")

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
        beta = self.betaSpin.value()
        norm = beta_normalised(beta, self.latentDimSpin.value(), self.image_shape)
        c, h, w = self.image_shape
        self.betaUnitsLabel.setText(f"β = {beta:g} on summed KL · β_norm = {norm:.3g} (per pixel, {h}×{w}×{c})")


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


def choose_data_path(parent: QWidget, dataset: str, start: str) -> str:
    """A file dialog fitting the source: a folder for folders and MNIST, a file otherwise."""
    if dataset in ("folder",):
        return QFileDialog.getExistingDirectory(parent, "Choose an image folder", start)
    filters = {
        "dsprites": "dSprites (*.npz)",
        "shapes3d": "3D Shapes (*.h5 *.hdf5)",
        "mnist": "MNIST (*.npz *ubyte *ubyte.gz *.gz)",
    }
    path, _ = QFileDialog.getOpenFileName(
        parent, "Choose the data file", start, filters.get(dataset, "All files (*)") + ";;All files (*)"
    )
    return path
