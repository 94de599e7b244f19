"""Runs an Experiment in a QThread: its events become signals, step progress at most ~5 a second a run.

Stop goes straight to the experiment's thread-safe event (runs in worker processes see it too);
the thread ends when the experiment returns, every run then either finished or checkpointed.
`EstimateWorker` measures, in its own QThread, how long an experiment should take (a probe of a
couple of seconds that writes nothing), so the window never waits on it.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from PySide6.QtCore import QObject, Signal

from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.experiments import (
    SPEC_NAME,
    Experiment,
    ExperimentEvent,
    ExperimentSpec,
    estimate_experiment,
)
from bvae_desktop.gui.worker import gui_thread_count

STEP_INTERVAL_S = 0.2


class ExperimentWorker(QObject):
    """Create with no parent, then `start_experiment_worker`."""

    runEvent = Signal(object)  # ExperimentEvent other than "step" and "done"
    runProgress = Signal(str, int, int)  # run name, step, total steps
    failed = Signal(str)  # the experiment could not run at all
    finished = Signal(bool)  # True when every run has finished

    def __init__(self, experiment: Experiment) -> None:
        super().__init__()
        self.experiment = experiment
        self._last_progress: dict[str, float] = {}

    def stop(self) -> None:
        self.experiment.stop()

    def run(self) -> None:
        torch.set_num_threads(gui_thread_count())
        complete = False
        try:
            complete = self.experiment.run(self._on_event)
        except (BvaeError, OSError) as exc:
            self.failed.emit(str(exc))
        finally:
            self.finished.emit(complete)

    def _on_event(self, event: ExperimentEvent) -> None:
        if event.kind == "step":
            now = time.monotonic()
            info = event.info
            if now - self._last_progress.get(event.run, 0.0) >= STEP_INTERVAL_S or info["step"] >= info["total"]:
                self._last_progress[event.run] = now
                self.runProgress.emit(event.run, int(info["step"]), int(info["total"]))
        elif event.kind != "done":
            self.runEvent.emit(event)


class EstimateWorker(QObject):
    """How long `spec` (continuing the experiment in `folder`, when there is one) should take; create with no
    parent, then `start_worker`."""

    estimated = Signal(object)  # ExperimentEstimate
    failed = Signal(str)  # the reason it could not measure (bad data path, a different experiment in the folder)
    finished = Signal()

    def __init__(self, spec: ExperimentSpec, folder: Path | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.folder = folder

    def run(self) -> None:
        torch.set_num_threads(gui_thread_count())  # the threads a run in this process gets (ExperimentWorker)
        try:
            if self.folder is not None and (self.folder / SPEC_NAME).exists():
                found = Experiment(self.folder, self.spec).estimate()  # its own copy: the images go with it
            else:
                found = estimate_experiment(self.spec)
            self.estimated.emit(found)
        except (BvaeError, OSError, RuntimeError, ValueError) as exc:
            self.failed.emit(str(exc))
        finally:
            self.finished.emit()
