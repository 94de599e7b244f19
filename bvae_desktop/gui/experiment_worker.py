"""Runs an Experiment in a QThread: its events become signals, step progress at most ~5 a second a run.

Stop goes straight to the experiment's thread-safe event (runs in worker processes see it too);
the thread ends when the experiment returns, every run then either finished or checkpointed.
"""

from __future__ import annotations

import time

import torch
from PySide6.QtCore import QObject, Signal

from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.experiments import Experiment, ExperimentEvent
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
