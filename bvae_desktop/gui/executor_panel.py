"""Where an experiment's runs train: the executor combo and its settings, generated from the registry
(core/executors.py), with "Test connection" for executors that can say what they would run on (Ray: the
cluster's nodes, CPUs and GPUs). The probe runs in a QThread: connecting to a cluster takes seconds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from bvae_desktop.core.errors import BvaeError, ConfigError
from bvae_desktop.core.executors import ExecutorOption, executors, get_executor
from bvae_desktop.gui.worker import start_worker


def _camel(*parts: str) -> str:
    words = [w for part in parts for w in part.replace("-", "_").split("_") if w]
    return words[0].lower() + "".join(w.capitalize() for w in words[1:])


class ProbeWorker(QObject):
    """Runs an executor's probe (e.g. connect to the Ray cluster and list its nodes) off the GUI thread."""

    answered = Signal(list)  # lines to show
    failed = Signal(str)
    finished = Signal()

    def __init__(self, probe: Callable[[Mapping[str, Any]], list[str]], options: Mapping[str, Any]) -> None:
        super().__init__()
        self.probe, self.options = probe, dict(options)

    def run(self) -> None:
        try:
            self.answered.emit(list(self.probe(self.options)))
        except BvaeError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - a cluster can fail in many ways; show it, never crash
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        finally:
            self.finished.emit()


class ExecutorPanel(QWidget):
    """objectName executorPanel: `executorCombo` and, per executor, one field per option (objectName
    executor + option + role, e.g. rayAddressEdit, rayStorageCombo, rayCpusSpin, rayGpusEdit), shown for
    the chosen executor; `testConnectionButton` and `clusterInfoLabel` for executors with a probe."""

    executorChanged = Signal(str)
    probeFinished = Signal(bool)  # True when the probe answered
    busyChanged = Signal(bool)  # a probe started (True) or ended: the view holds Start meanwhile

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, objectName="executorPanel")
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.executorCombo = QComboBox(objectName="experimentExecutorCombo")
        for entry in executors():
            self.executorCombo.addItem(entry.label, entry.name)
            self.executorCombo.setItemData(
                self.executorCombo.count() - 1, entry.description, Qt.ItemDataRole.ToolTipRole
            )
        self.executorCombo.setToolTip("where the runs train")
        self.form.addRow("Runs go", self.executorCombo)
        self.fields: dict[tuple[str, str], QWidget] = {}
        for entry in executors():
            for option in entry.options:
                widget = self._field(entry.name, option)
                self.fields[(entry.name, option.name)] = widget
                self.form.addRow(option.label, widget)
        self.testConnectionButton = QPushButton("Test connection", objectName="testConnectionButton")
        self.testConnectionButton.clicked.connect(self.test_connection)
        self.form.addRow(self.testConnectionButton)
        self.clusterInfoLabel = QLabel("", objectName="clusterInfoLabel")
        self.clusterInfoLabel.setWordWrap(True)
        self.form.addRow(self.clusterInfoLabel)
        self.worker: ProbeWorker | None = None
        self.thread: QThread | None = None
        self._answered = False
        self.executorCombo.currentIndexChanged.connect(self._on_executor_changed)
        self.set_executor("local")
        self._on_executor_changed()

    def _field(self, executor: str, option: ExecutorOption) -> QWidget:
        name = _camel(executor, option.name)
        widget: QWidget
        if option.choices:
            widget = QComboBox(objectName=f"{name}Combo")
            for choice in option.choices:
                widget.addItem(choice, choice)
            widget.setCurrentIndex(max(0, widget.findData(option.default)))
        elif option.kind is str or option.default is None:
            widget = QLineEdit(objectName=f"{name}Edit")
            widget.setPlaceholderText(f"{option.env} or default" if option.env else "auto")
        elif option.kind is int:
            widget = QSpinBox(objectName=f"{name}Spin")
            widget.setRange(int(option.minimum or 0), int(option.maximum or 1_000_000))
            widget.setValue(int(option.default))
        else:
            widget = QDoubleSpinBox(objectName=f"{name}Spin", decimals=2, singleStep=0.25)
            widget.setRange(float(option.minimum or 0.0), float(option.maximum or 1e6))
            widget.setValue(float(option.default))
        widget.setToolTip(f"{option.help} ({option.flag})")
        return widget

    # ----- values ------------------------------------------------------------------------------
    def executor(self) -> str:
        return str(self.executorCombo.currentData())

    def set_executor(self, name: str) -> None:
        index = self.executorCombo.findData(name)
        if index >= 0:
            self.executorCombo.setCurrentIndex(index)

    def options(self) -> dict[str, Any]:
        """The chosen executor's settings that differ from their defaults (ConfigError for a bad entry)."""
        entry = get_executor(self.executor())
        values: dict[str, Any] = {}
        for option in entry.options:
            widget = self.fields[(entry.name, option.name)]
            if isinstance(widget, QComboBox):
                value: Any = widget.currentData()
            elif isinstance(widget, QLineEdit):
                text = widget.text().strip()
                if not text:
                    continue
                try:
                    value = text if option.kind is str else option.kind(text)
                except ValueError:
                    raise ConfigError(f"{option.label}: not a number: {text!r} (leave it empty for auto)") from None
            else:
                value = widget.value()  # type: ignore[attr-defined]
            if value != option.default:
                values[option.name] = value
        return entry.validate_options(values)

    def settings(self) -> dict[str, Any]:
        """`executor` and `executor_options` for an ExperimentSpec."""
        return {"executor": self.executor(), "executor_options": self.options()}

    def show_settings(self, executor: str, options: Mapping[str, Any]) -> None:
        """Show a saved experiment's executor and settings."""
        self.set_executor(executor)
        entry = get_executor(executor)
        for option in entry.options:
            widget = self.fields[(entry.name, option.name)]
            value = options.get(option.name, option.default)
            if isinstance(widget, QComboBox):
                widget.setCurrentIndex(max(0, widget.findData(value)))
            elif isinstance(widget, QLineEdit):
                widget.setText(
                    "" if value is None or value == "" else f"{value:g}" if option.kind is not str else value
                )
            else:
                widget.setValue(value)  # type: ignore[attr-defined]

    # ----- showing ------------------------------------------------------------------------------
    def _on_executor_changed(self) -> None:
        name = self.executor()
        entry = get_executor(name)
        for (executor, _option), widget in self.fields.items():
            self.form.setRowVisible(widget, executor == name)
        self.form.setRowVisible(self.testConnectionButton, entry.probe is not None)
        missing = entry.missing()
        self.clusterInfoLabel.setText(missing or "")
        self.form.setRowVisible(self.clusterInfoLabel, bool(missing) or entry.probe is not None)
        self._update_enabled()
        self.executorChanged.emit(name)

    def setEnabled(self, enabled: bool) -> None:  # noqa: N802 - Qt's name
        super().setEnabled(enabled)
        self._update_enabled()

    def _update_enabled(self) -> None:
        entry = get_executor(self.executor())
        self.testConnectionButton.setEnabled(
            self.isEnabled() and self.thread is None and entry.probe is not None and entry.missing() is None
        )

    # ----- test connection --------------------------------------------------------------------------
    @property
    def probing(self) -> bool:
        return self.thread is not None

    def test_connection(self) -> bool:
        """Ask the chosen executor what it would run on; the answer goes to clusterInfoLabel."""
        entry = get_executor(self.executor())
        if entry.probe is None or self.probing:
            return False
        missing = entry.missing()
        if missing is not None:
            self.clusterInfoLabel.setText(missing)
            return False
        try:
            options = self.options()
        except ConfigError as exc:
            self.clusterInfoLabel.setText(str(exc))
            return False
        self.clusterInfoLabel.setText("connecting…")
        self.worker = ProbeWorker(entry.probe, options)
        self.worker.answered.connect(self._on_answered)
        self.worker.failed.connect(self._on_probe_failed)
        self.worker.finished.connect(self._on_probe_done)
        self.thread = start_worker(self.worker, "executorProbeThread")
        self._update_enabled()
        self.busyChanged.emit(True)
        return True

    def _on_answered(self, lines: list) -> None:
        self.clusterInfoLabel.setText("\n".join(str(line) for line in lines))
        self._answered = True

    def _on_probe_failed(self, message: str) -> None:
        self.clusterInfoLabel.setText(f"cannot connect: {message}")
        self._answered = False

    def _on_probe_done(self) -> None:
        answered, self._answered = self._answered, False
        self.shutdown()
        self.busyChanged.emit(False)
        self.probeFinished.emit(answered)

    def shutdown(self, timeout_ms: int = 120_000) -> None:
        """Wait for a probe in progress (window closing, tests)."""
        if self.thread is not None:
            self.thread.quit()
            self.thread.wait(timeout_ms)
        self.thread = None
        self.worker = None
        self._update_enabled()


__all__ = ["ExecutorPanel", "ProbeWorker"]
