"""The study's experiments on the Trainer: a VAE-vs-β-VAE comparison and β sweeps over seeds.

An experiment lives in one folder:

    experiment.json      what to run (the spec), so `resume` needs nothing else
    runs/<name>/         one Trainer run folder each (checkpoint, run log, config) + result.json
    results.json/.h5     every finished run's numbers and curves, rewritten as runs finish
    report.html          a self-contained page with the table and the figures (figures/*.png too)

Runs go one after another in this process, or in `workers` processes. Stopping keeps every
finished run and the checkpoint of each unfinished one; running again skips the finished runs
and continues the others from their checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bvae_desktop.core.atomic import atomic_write_text
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data import load_dataset
from bvae_desktop.core.data.imageset import ImageSet
from bvae_desktop.core.errors import BvaeError, ConfigError
from bvae_desktop.core.experiment_run import MetricPlan, RunSpec, RunStopped, execute_run, read_result
from bvae_desktop.core.jsonfile import read_json_object

SPEC_NAME = "experiment.json"
RUNS_DIR = "runs"
KINDS = ("sweep", "compare")
DEFAULT_BETAS = (0.001, 0.01, 0.1, 1.0, 2.0, 4.0, 8.0, 16.0)
SPEC_FORMAT = 1


class ExperimentError(BvaeError):
    """An experiment folder or spec that cannot be used as asked."""


@dataclass
class ExperimentSpec:
    """What an experiment runs. `base` holds everything the runs share; β and seed vary per run."""

    kind: str
    base: TrainConfig
    betas: list[float]
    seeds: list[int] = field(default_factory=lambda: [0])
    metrics: MetricPlan = field(default_factory=MetricPlan)
    workers: int = 1

    @classmethod
    def sweep(cls, base: TrainConfig, betas: Sequence[float] = DEFAULT_BETAS, **options: Any) -> ExperimentSpec:
        return cls("sweep", base, [float(b) for b in betas], **options).validate()

    @classmethod
    def compare(cls, base: TrainConfig, beta: float = 4.0, **options: Any) -> ExperimentSpec:
        """A VAE (β = 1, the plain ELBO) against a β-VAE at `beta`, same data, seed, steps and net."""
        return cls("compare", base, [float(beta)], **options).validate()

    def validate(self) -> ExperimentSpec:
        if self.kind not in KINDS:
            raise ConfigError(f"experiment kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        self.base.validate()
        if not self.betas:
            raise ConfigError("give at least one β")
        if self.base.objective == "beta-b":
            raise ConfigError("experiments vary β of the β-VAE (H) objective; the capacity objective (beta-b) has none")
        for beta in self.betas:
            if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
                raise ConfigError(f"every β must be a finite number >= 0; got {beta!r}")
        if len(set(self.betas)) != len(self.betas):
            raise ConfigError(f"β values repeat: {self.betas}")
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ConfigError(f"seeds must be non-negative integers; got {self.seeds!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds repeat: {self.seeds}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be a positive integer; got {self.workers!r}")
        if self.metrics.divisor < 1:
            raise ConfigError(f"the metric count divisor must be at least 1; got {self.metrics.divisor}")
        from bvae_desktop.core.metrics import metric_names

        self.metrics.names = metric_names(self.metrics.names) if self.metrics.names else []
        return self

    def runs(self) -> list[RunSpec]:
        """Every run, in the order they go: by β (the comparison: VAE first), then by seed."""
        runs: list[RunSpec] = []
        if self.kind == "compare":
            beta = self.betas[0]
            objective = self.base.objective if self.base.objective != "vae" else "beta-h"
            for seed in self.seeds:
                vae = dataclasses.replace(self.base, objective="vae", beta=1.0, seed=seed)
                runs.append(RunSpec(f"vae_seed-{seed}", f"VAE, seed {seed}", vae, group="VAE"))
            for seed in self.seeds:
                config = dataclasses.replace(self.base, objective=objective, beta=beta, seed=seed)
                group = f"β-VAE (β={beta:g})"
                runs.append(RunSpec(f"beta-{_beta_text(beta)}_seed-{seed}", f"{group}, seed {seed}", config, group))
            return runs
        for beta in self.betas:
            for seed in self.seeds:
                config = dataclasses.replace(self.base, beta=beta, seed=seed)
                if config.objective == "vae":
                    config = dataclasses.replace(config, objective="beta-h")
                runs.append(
                    RunSpec(f"beta-{_beta_text(beta)}_seed-{seed}", f"β={beta:g}, seed {seed}", config, f"β={beta:g}")
                )
        return runs

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SPEC_FORMAT,
            "kind": self.kind,
            "base": self.base.to_dict(),
            "betas": list(self.betas),
            "seeds": list(self.seeds),
            "metrics": self.metrics.to_dict(),
            "workers": self.workers,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "experiment") -> ExperimentSpec:
        try:
            if data.get("format") != SPEC_FORMAT:
                raise ConfigError(f"{source}: not an experiment spec of format {SPEC_FORMAT}")
            return cls(
                kind=data["kind"],
                base=TrainConfig.from_dict(data["base"], source=source),
                betas=[float(b) for b in data["betas"]],
                seeds=[int(s) for s in data["seeds"]],
                metrics=MetricPlan.from_dict(data.get("metrics", {})),
                workers=int(data.get("workers", 1)),
            ).validate()
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: damaged experiment spec ({exc!r})") from None

    def same_runs_as(self, other: ExperimentSpec) -> bool:
        """True when both would train and score the same runs (how many workers does not matter)."""
        ours = {r.name: r.config.to_dict() for r in self.runs()}
        theirs = {r.name: r.config.to_dict() for r in other.runs()}
        return ours == theirs and self.metrics.to_dict() == other.metrics.to_dict()


def _beta_text(beta: float) -> str:
    return f"{beta:g}".replace("+", "")


def load_spec(folder: str | Path) -> ExperimentSpec:
    path = Path(folder) / SPEC_NAME
    data = read_json_object(
        path,
        ExperimentError,
        missing=f"no experiment here (no {SPEC_NAME})",
        unreadable="not a readable experiment spec",
        not_object="an experiment spec must be a JSON object",
    )
    return ExperimentSpec.from_dict(data, source=str(path))


@dataclass
class ExperimentEvent:
    """What the runner reports. kind: skipped, started, step, metric, finished, failed, stopped, done."""

    kind: str
    run: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None


EventSink = Callable[[ExperimentEvent], None]


class Experiment:
    """Run (or continue) the experiment in `folder`; `stop()` may be called from any thread."""

    def __init__(self, folder: str | Path, spec: ExperimentSpec | None = None) -> None:
        self.folder = Path(folder)
        saved = load_spec(self.folder) if (self.folder / SPEC_NAME).exists() else None
        if spec is None and saved is None:
            raise ExperimentError(f"{self.folder}: no experiment here (no {SPEC_NAME}); give a spec to start one")
        if spec is not None and saved is not None and not spec.same_runs_as(saved):
            raise ExperimentError(
                f"{self.folder} holds a different experiment ({saved.kind}, β {saved.betas}, seeds {saved.seeds}); "
                f"choose another folder, or continue it as it is (bvae resume {self.folder})"
            )
        self.spec = (spec or saved).validate()  # type: ignore[union-attr]
        self._stop = threading.Event()

    @property
    def runs(self) -> list[RunSpec]:
        return self.spec.runs()

    def run_dir(self, run: RunSpec) -> Path:
        return self.folder / RUNS_DIR / run.name

    def results(self) -> dict[str, dict[str, Any] | None]:
        """Each run's finished result (None for runs still to do), in run order."""
        return {run.name: read_result(self.run_dir(run)) for run in self.runs}

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, on_event: EventSink | None = None) -> bool:
        """Run every unfinished run; True when all are finished, False when stopped or a run failed."""
        sink = on_event or (lambda _event: None)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / SPEC_NAME, json.dumps(self.spec.to_dict(), indent=2) + "\n")
        pending = []
        for run in self.runs:
            result = read_result(self.run_dir(run))
            if result is not None:
                sink(ExperimentEvent("skipped", run.name, {"label": run.label}, result))
            else:
                pending.append(run)
        self.publish()
        failed: list[str] = []
        if pending and not self.stopping:
            if self.spec.workers > 1 and len(pending) > 1:
                self._run_parallel(pending, sink, failed)
            else:
                self._run_here(pending, sink, failed)
        self.publish()
        finished = sum(r is not None for r in self.results().values())
        complete = finished == len(self.runs)
        sink(
            ExperimentEvent(
                "done",
                info={"finished": finished, "total": len(self.runs), "stopped": self.stopping, "failed": failed},
            )
        )
        return complete

    def publish(self) -> None:
        """Rewrite results.json/.h5 and the report from the finished runs."""
        from bvae_desktop.core.experiment_report import write_report
        from bvae_desktop.core.experiment_results import write_results

        write_results(self)
        write_report(self)

    # ----- in this process ---------------------------------------------------------------------
    def _run_here(self, pending: list[RunSpec], sink: EventSink, failed: list[str]) -> None:
        datasets: dict[tuple[str, str | None], ImageSet] = {}
        for run in pending:
            if self.stopping:
                break
            key = (run.config.dataset, run.config.data_path)
            sink(ExperimentEvent("started", run.name, {"label": run.label, "total": run.config.steps}))
            try:
                if key not in datasets:
                    datasets[key] = load_dataset(*key)
                result = execute_run(
                    run,
                    self.run_dir(run),
                    self.spec.metrics,
                    dataset=datasets[key],
                    should_stop=self._stop.is_set,
                    progress=lambda kind, info, name=run.name: sink(ExperimentEvent(kind, name, info)),
                )
            except RunStopped as exc:
                sink(ExperimentEvent("stopped", run.name, {"message": str(exc)}))
                break
            except (BvaeError, RuntimeError, ValueError, OSError) as exc:
                failed.append(run.name)
                sink(ExperimentEvent("failed", run.name, {"message": f"{type(exc).__name__}: {exc}"}))
                continue
            self.publish()
            sink(ExperimentEvent("finished", run.name, {"label": run.label}, result))

    # ----- in worker processes -----------------------------------------------------------------
    def _run_parallel(self, pending: list[RunSpec], sink: EventSink, failed: list[str]) -> None:
        context = multiprocessing.get_context("spawn")  # fork would copy torch's threads and CUDA state
        messages = context.Queue()
        stop = context.Event()
        workers = min(self.spec.workers, len(pending))
        threads = max(1, (os.cpu_count() or 1) // workers)
        by_name = {run.name: run for run in pending}
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(messages, stop, threads)
        ) as pool:
            futures: dict[Future, str] = {
                pool.submit(_work, run.to_dict(), str(self.run_dir(run)), self.spec.metrics.to_dict()): run.name
                for run in pending
            }
            while futures:
                if self.stopping:
                    stop.set()
                self._drain(messages, sink, timeout=0.2)
                for future in [f for f in futures if f.done()]:
                    name = futures.pop(future)
                    self._drain(messages, sink, timeout=0.0)
                    outcome = _outcome(future)
                    if outcome["status"] == "finished":
                        self.publish()
                        sink(ExperimentEvent("finished", name, {"label": by_name[name].label}, outcome["result"]))
                    elif outcome["status"] == "stopped":
                        sink(ExperimentEvent("stopped", name, {"message": outcome["message"]}))
                    else:
                        failed.append(name)
                        sink(ExperimentEvent("failed", name, {"message": outcome["message"]}))
        self._drain(messages, sink, timeout=0.0)

    @staticmethod
    def _drain(messages: Any, sink: EventSink, timeout: float) -> None:
        try:
            first = messages.get(timeout=timeout) if timeout > 0 else messages.get_nowait()
        except queue.Empty:
            return
        pending = [first]
        while True:
            try:
                pending.append(messages.get_nowait())
            except queue.Empty:
                break
        for kind, name, info in pending:
            sink(ExperimentEvent(kind, name, info))


def _outcome(future: Future) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as exc:  # a worker that died (killed, out of memory) fails its run, not the sweep
        return {"status": "failed", "message": f"worker process failed: {type(exc).__name__}: {exc}"}


_worker_messages: Any = None
_worker_stop: Any = None
_worker_parent: int | None = None


def _init_worker(messages: Any, stop: Any, threads: int) -> None:
    global _worker_messages, _worker_stop, _worker_parent
    _worker_messages, _worker_stop, _worker_parent = messages, stop, os.getppid()
    # Ctrl-C reaches every process of the terminal's group: workers stop through `stop`, as the
    # parent decides, so each keeps a loadable checkpoint instead of dying mid-step
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(threads)


def _worker_should_stop() -> bool:
    """Stop when asked, and when the parent is gone (killed, crashed): an orphan would go on training
    and write results into a folder that a new run of the experiment may be using."""
    return _worker_stop.is_set() or os.getppid() != _worker_parent


def _work(run_data: dict[str, Any], run_dir: str, plan_data: dict[str, Any]) -> dict[str, Any]:
    """One run in a worker process; returns plain data (exceptions do not always pickle)."""
    run = RunSpec.from_dict(run_data)
    if _worker_should_stop():
        return {"status": "stopped", "message": f"{run.name} not started: the experiment was stopped"}
    _worker_messages.put(("started", run.name, {"label": run.label, "total": run.config.steps}))
    try:
        result = execute_run(
            run,
            Path(run_dir),
            MetricPlan.from_dict(plan_data),
            should_stop=_worker_should_stop,
            progress=lambda kind, info: _worker_messages.put((kind, run.name, info)),
        )
    except RunStopped as exc:
        return {"status": "stopped", "message": str(exc)}
    except Exception as exc:
        return {"status": "failed", "message": f"{type(exc).__name__}: {exc}"}
    return {"status": "finished", "result": result}
