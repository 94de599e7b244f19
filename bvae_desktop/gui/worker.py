"""The bridge between the trainer and the window: a QObject worker living in a QThread.

Commands (pause, resume, stop, set β) go straight to the trainer's thread-safe events, never
through queued slots, which would wait until the loop ends. Results go back as signals carrying
plain numbers and numpy arrays, batched to at most ~10 emissions a second.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal

from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data import ImageSet, dataset_spec, load_dataset
from bvae_desktop.core.errors import BvaeError, TrainingError
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.trainer import StepEvent, Trainer

EMIT_INTERVAL_S = 0.2
SAMPLE_INTERVAL_S = 15.0
SAMPLE_COUNT = 6


class _LoadStopped(Exception):
    """Stop was pressed while the data source was still opening."""


@dataclass(frozen=True)
class StepBatch:
    """Every step since the last emission, as arrays: what the plots append in one go."""

    steps: np.ndarray
    loss: np.ndarray
    recon: np.ndarray
    kl: np.ndarray
    last: StepEvent
    validation: list[tuple[int, dict[str, float]]]
    beta_changes: list[tuple[int, float]]
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # the objective's own terms, by name


def gui_thread_count() -> int:
    """Torch threads for training: every core but one, which stays with the GUI.

    Below 4 cores that spare core would sit mostly idle (a live update costs the GUI ~10 ms,
    a few times a second) while training lost a third to a half of its speed, so there the
    trainer gets every core (benchmarks/gui_responsiveness.py measures both).
    """
    cores = os.cpu_count() or 1
    return cores - 1 if cores >= 4 else cores


class TrainingWorker(QObject):
    """Runs one Trainer in its thread. Create with no parent, then `moveToThread`."""

    loading = Signal(str, int, int)  # what is being opened, done, total (0: no count, a busy bar)
    started = Signal(str, int)  # dataset description, starting step
    stepsReady = Signal(object)  # StepBatch
    samplesReady = Signal(object, object, int)  # originals, reconstructions (uint8 NCHW), step
    snapshotReady = Signal(object)  # ModelSource: a CPU copy of the model, for the explorer views
    halted = Signal(str)  # a non-finite loss: paused, the message says at which step
    failed = Signal(str)  # the run could not start or broke: the engine's message
    finished = Signal(int, str)  # last step, checkpoint path ("" if none)

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        resume: Path | None = None,
        sample_interval_s: float = SAMPLE_INTERVAL_S,
    ) -> None:
        super().__init__()
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume_from = resume
        self.sample_interval_s = sample_interval_s
        self.trainer: Trainer | None = None
        self._lock = threading.Lock()
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._pending_beta: float | None = None
        self._last_kl: tuple[float, ...] | None = None

    # ----- commands, called from the GUI thread ---------------------------------------------
    def pause(self) -> None:
        with self._lock:
            self._paused.set()
            if self.trainer is not None:
                self.trainer.pause()

    def resume(self) -> None:
        with self._lock:
            self._paused.clear()
            if self.trainer is not None:
                self.trainer.resume()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            self._paused.clear()
            if self.trainer is not None:
                self.trainer.stop()
                self.trainer.resume()

    def set_beta(self, value: float) -> None:
        with self._lock:
            if self.trainer is not None:
                self.trainer.set_beta(value)
            else:
                self._pending_beta = value

    @property
    def is_paused(self) -> bool:
        return self._paused.is_set()

    # ----- the loop, in the worker thread ---------------------------------------------------
    def run(self) -> None:
        import torch

        torch.set_num_threads(gui_thread_count())
        try:
            dataset = self._open_dataset()
            if self._stop.is_set():  # stopped while the data loaded: no run, nothing written
                self.finished.emit(0, "")
                return
            trainer = Trainer(self.config, dataset=dataset, run_dir=self.run_dir, resume=self.resume_from)
        except _LoadStopped:
            self.finished.emit(0, "")
            return
        except BvaeError as exc:
            self.failed.emit(str(exc))
            self.finished.emit(0, "")
            return
        except Exception as exc:  # a bug or an OS error: still a message, never a dead thread
            self.failed.emit(f"{type(exc).__name__}: {exc}")
            self.finished.emit(0, "")
            return
        with self._lock:
            self.trainer = trainer
            if self._pending_beta is not None:
                trainer.set_beta(self._pending_beta)
            if self._paused.is_set():
                trainer.pause()
            if self._stop.is_set():
                trainer.stop()
        self.started.emit(trainer.dataset.describe(), trainer.step)
        sample_indices = spread_sample(trainer.val_indices, SAMPLE_COUNT, trainer.config.seed)
        self._emit_samples(trainer, sample_indices)
        try:
            self._train(trainer, sample_indices)
        except Exception as exc:
            self.failed.emit(str(exc) if isinstance(exc, BvaeError) else f"{type(exc).__name__}: {exc}")
        path = trainer.checkpoint_path if trainer.checkpoint_path and trainer.checkpoint_path.exists() else None
        self.finished.emit(trainer.step, str(path) if path else "")

    def _open_dataset(self) -> ImageSet:
        """Open the data source here, saying so: a large file takes seconds to minutes (3D Shapes decodes
        its chunks once); the window shows a busy or counting bar meanwhile, and Stop ends the wait."""
        spec = dataset_spec(self.config.dataset)
        where = Path(self.config.data_path).name if self.config.data_path else spec.label
        self.loading.emit(f"opening {where}…", 0, 0)
        options: dict[str, object] = {}
        if spec.reports_progress:
            last = [0.0]

            def progress(done: int, total: int) -> None:
                if self._stop.is_set():
                    raise _LoadStopped
                now = time.perf_counter()
                if now - last[0] >= EMIT_INTERVAL_S or done >= total:
                    last[0] = now
                    self.loading.emit(f"reading {where}: {done:,} of {total:,} images", done, total)

            options["progress"] = progress
        return load_dataset(self.config.dataset, self.config.data_path, **options)

    def _train(self, trainer: Trainer, sample_indices: np.ndarray) -> None:
        while True:
            try:
                self._loop(trainer, sample_indices)
                return
            except TrainingError as exc:
                # The optimizer never applied the bad step: pause, let the user lower β or stop.
                trainer.pause()
                self._paused.set()
                self.halted.emit(str(exc))
                if not trainer.wait_while_paused() or self._stop.is_set():
                    return

    def _loop(self, trainer: Trainer, sample_indices: np.ndarray) -> None:
        pending: list[StepEvent] = []
        last_emit = time.perf_counter()
        last_sample = last_emit
        for event in trainer.steps():
            pending.append(event)
            now = time.perf_counter()
            if now - last_emit >= EMIT_INTERVAL_S or event.done:
                self._emit_steps(pending)
                pending = []
                last_emit = now
            if now - last_sample >= self.sample_interval_s:
                self._emit_samples(trainer, sample_indices)
                last_sample = time.perf_counter()
        if pending:
            self._emit_steps(pending)
        self._emit_samples(trainer, sample_indices)

    def _emit_steps(self, events: list[StepEvent]) -> None:
        self._last_kl = events[-1].kl_per_dim
        self.stepsReady.emit(
            StepBatch(
                steps=np.array([e.step for e in events], dtype=np.int64),
                loss=np.array([e.loss for e in events]),
                recon=np.array([e.recon for e in events]),
                kl=np.array([e.kl for e in events]),
                last=events[-1],
                validation=[(e.step, dict(e.validation)) for e in events if e.validation],
                beta_changes=[(e.step - 1, e.beta) for e in events if e.beta_changed],
                extras={name: np.array([e.extras.get(name, np.nan) for e in events]) for name in events[-1].extras},
            )
        )

    def _emit_samples(self, trainer: Trainer, indices: np.ndarray) -> None:
        """Reconstructions and a weights copy, between steps in this thread (never mid-update)."""
        if len(indices) > 0:
            originals, reconstructions = trainer.reconstruct(indices)
            self.samplesReady.emit(originals, reconstructions, trainer.step)
        kl = np.asarray(self._last_kl) if self._last_kl is not None else None
        self.snapshotReady.emit(
            ModelSource.from_state(
                trainer.model_snapshot(),
                trainer.config,
                trainer.image_shape,
                step=trainer.step,
                beta=trainer.beta,
                label=f"training model, step {trainer.step:,}",
                kl_per_dim=kl,
                dataset=trainer.dataset,
                val_indices=trainer.val_indices,
            )
        )


def start_worker(worker: QObject, name: str = "trainingThread") -> QThread:
    """Move `worker` (a QObject with `run` and a `finished` signal) to a new QThread and start it;
    the thread quits when the worker finishes."""
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit)
    thread.start()
    return thread


def stop_worker(thread: QThread | None, worker: QObject | None) -> None:
    """Cancel a cancellable worker (its `cancel_event`), join its thread and schedule both for deletion:
    what every view does before it starts anew or goes away."""
    if worker is not None:
        worker.cancel_event.set()
    if thread is not None:
        thread.quit()
        thread.wait()
        if worker is not None:
            worker.deleteLater()
        thread.deleteLater()


def spread_sample(indices: np.ndarray, count: int, seed: int) -> np.ndarray:
    """A seeded sample of `count` indices spread over the split, in order: the split is sorted, so its
    first images are all one kind (small squares on dSprites, zeros on MNIST)."""
    indices = np.asarray(indices)
    if len(indices) <= count:
        return indices
    chosen = np.random.default_rng(seed + 2).choice(len(indices), count, replace=False)
    return indices[np.sort(chosen)]
