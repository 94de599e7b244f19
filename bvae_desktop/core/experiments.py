"""The study's experiments on the Trainer: a VAE-vs-β-VAE comparison and β sweeps over seeds.

An experiment lives in one folder:

    experiment.json      what to run (the spec), so `resume` needs nothing else
    runs/<name>/         one Trainer run folder each (checkpoint, run log, config) + result.json
    results.json/.h5     every finished run's numbers and curves, rewritten as runs finish
    report.html          a self-contained page with the table and the figures (figures/*.png too)

Runs go one after another in this process, in `workers` processes, or as tasks on a Ray cluster (the
executors: core/executors.py, core/ray_executor.py). Stopping keeps every
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
import time
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
from bvae_desktop.core.executors import default_executor, get_executor, make_executor
from bvae_desktop.core.experiment_run import (
    MetricPlan,
    RunSpec,
    RunStopped,
    execute_run,
    execute_stack,
    read_result,
)
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
    stack: int = 0  # runs trained in one pass (core/stacked.py); 0: automatic (24 on a GPU, 1 on a CPU)
    executor: str = ""  # where runs train: local, processes, ray (core/executors.py); "": processes if workers > 1
    executor_options: dict[str, Any] = field(default_factory=dict)  # the executor's settings (ray: address, ...)

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
        if _varied_objective(self.base).main is None:
            raise ConfigError(f"the {self.base.objective} objective has no weight for an experiment to vary")
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
        if not isinstance(self.stack, int) or isinstance(self.stack, bool) or self.stack < 0:
            raise ConfigError(f"stack must be a non-negative integer (0: automatic); got {self.stack!r}")
        self.executor = self.executor or default_executor(self.workers)  # as before executors existed
        self.executor_options = get_executor(self.executor).validate_options(self.executor_options)
        if self.metrics.divisor < 1:
            raise ConfigError(f"the metric count divisor must be at least 1; got {self.metrics.divisor}")
        from bvae_desktop.core.metrics import metric_names

        self.metrics.names = metric_names(self.metrics.names) if self.metrics.names else []
        return self

    def runs(self) -> list[RunSpec]:
        """Every run, in the order they go: by weight (the comparison: VAE first), then by seed.

        A sweep varies the objective's main weight (β for the β-VAE, γ for capacity, λ_od for DIP-VAE...);
        the β-VAE's runs keep their historical names (beta-4_seed-0), others are named after the objective.
        """
        from bvae_desktop.core.objectives import with_main_weight

        base = self.base
        spec = _varied_objective(base)
        if base.objective == "vae":
            base = dataclasses.replace(base, objective="beta-h")
        label = spec.main_param.label if spec.main_param is not None else "β"
        prefix = "beta" if spec.name == "beta-h" else spec.name
        runs: list[RunSpec] = []
        if self.kind == "compare":
            weight = self.betas[0]
            for seed in self.seeds:
                vae = dataclasses.replace(self.base, objective="vae", beta=1.0, seed=seed)
                runs.append(RunSpec(f"vae_seed-{seed}", f"VAE, seed {seed}", vae, group="VAE"))
            for seed in self.seeds:
                config = dataclasses.replace(with_main_weight(base, weight), seed=seed)
                group = f"{spec.label} ({label}={weight:g})"
                name = f"{prefix}-{_beta_text(weight)}_seed-{seed}"
                runs.append(RunSpec(name, f"{group}, seed {seed}", config, group))
            return runs
        for weight in self.betas:
            for seed in self.seeds:
                config = dataclasses.replace(with_main_weight(base, weight), seed=seed)
                group = f"{label}={weight:g}" if spec.name == "beta-h" else f"{spec.label} {label}={weight:g}"
                name = f"{prefix}-{_beta_text(weight)}_seed-{seed}"
                runs.append(RunSpec(name, f"{group}, seed {seed}", config, group))
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
            "stack": self.stack,
            "executor": self.executor,
            "executor_options": dict(self.executor_options),
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
                stack=int(data.get("stack", 0)),
                executor=data.get("executor") or "",
                executor_options=data.get("executor_options") or {},
            ).validate()
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: damaged experiment spec ({exc!r})") from None

    def same_runs_as(self, other: ExperimentSpec) -> bool:
        """True when both would train and score the same runs (workers, stacking and executor do not matter)."""
        ours = {r.name: r.config.to_dict() for r in self.runs()}
        theirs = {r.name: r.config.to_dict() for r in other.runs()}
        return ours == theirs and self.metrics.to_dict() == other.metrics.to_dict()


def _varied_objective(base: TrainConfig) -> Any:
    """The objective a sweep or comparison trains (a VAE base means the β-VAE: the VAE has β fixed)."""
    from bvae_desktop.core.objectives import objective_spec

    return objective_spec("beta-h" if base.objective == "vae" else base.objective)


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
    """What the runner reports. kind: skipped, started, step, metric, finished, failed, stopped, done; and
    note (no run: the executor's word for people, info["message"], e.g. which Ray cluster)."""

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
        executor = make_executor(self)  # before anything is written: a missing extra (ray) is one clear line
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
            executor.run(pending, sink, failed)  # local: _run_here; processes: _run_parallel; ray: core/ray_executor.py
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

    def stacks(self, pending: list[RunSpec]) -> list[list[RunSpec]]:
        """The pending runs in groups that train in one pass: `spec.stack` compatible runs each."""
        from bvae_desktop.core.stacked import group_stackable, resolve_stack_size

        size = resolve_stack_size(self.spec.stack, self.spec.base.device)
        return [[pending[i] for i in group] for group in group_stackable([r.config for r in pending], size)]

    def publish(self) -> None:
        """Rewrite results.json/.h5 and the report from the finished runs."""
        from bvae_desktop.core.experiment_report import write_report
        from bvae_desktop.core.experiment_results import write_results

        write_results(self)
        write_report(self)

    # ----- in this process ---------------------------------------------------------------------
    def _run_here(self, stacks: list[list[RunSpec]], sink: EventSink, failed: list[str]) -> None:
        datasets: dict[tuple[str, str | None], ImageSet] = {}
        for stack in stacks:
            if self.stopping:
                break
            key = (stack[0].config.dataset, stack[0].config.data_path)
            for run in stack:
                sink(ExperimentEvent("started", run.name, {"label": run.label, "total": run.config.steps}))
            try:
                if key not in datasets:
                    datasets[key] = load_dataset(*key)
                outcomes = self._train_here(stack, datasets[key], sink)
            except (BvaeError, RuntimeError, ValueError, OSError) as exc:
                outcomes = {run.name: exc for run in stack}
            stopped = False
            for run in stack:
                outcome = outcomes[run.name]
                if isinstance(outcome, RunStopped):
                    stopped = True
                    sink(ExperimentEvent("stopped", run.name, {"message": str(outcome)}))
                elif isinstance(outcome, BaseException):
                    failed.append(run.name)
                    sink(ExperimentEvent("failed", run.name, {"message": f"{type(outcome).__name__}: {outcome}"}))
                else:
                    self.publish()
                    sink(ExperimentEvent("finished", run.name, {"label": run.label}, outcome))
            if stopped:
                break

    def _train_here(
        self, stack: list[RunSpec], dataset: ImageSet, sink: EventSink
    ) -> dict[str, dict[str, Any] | BaseException]:
        """One run alone, or a stack of runs in one pass; each run's result or exception."""
        if len(stack) > 1:
            return execute_stack(
                stack,
                [self.run_dir(run) for run in stack],
                self.spec.metrics,
                dataset=dataset,
                should_stop=self._stop.is_set,
                progress=lambda kind, name, info: sink(ExperimentEvent(kind, name, info)),
            )
        run = stack[0]
        try:
            return {
                run.name: execute_run(
                    run,
                    self.run_dir(run),
                    self.spec.metrics,
                    dataset=dataset,
                    should_stop=self._stop.is_set,
                    progress=lambda kind, info: sink(ExperimentEvent(kind, run.name, info)),
                )
            }
        except (RunStopped, BvaeError, RuntimeError, ValueError, OSError) as exc:
            return {run.name: exc}

    # ----- in worker processes -----------------------------------------------------------------
    def _run_parallel(self, stacks: list[list[RunSpec]], sink: EventSink, failed: list[str]) -> None:
        context = multiprocessing.get_context("spawn")  # fork would copy torch's threads and CUDA state
        messages = context.Queue()
        stop = context.Event()
        workers = min(self.spec.workers, len(stacks))
        threads = max(1, (os.cpu_count() or 1) // workers)
        by_name = {run.name: run for stack in stacks for run in stack}
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(messages, stop, threads)
        ) as pool:
            futures: dict[Future, list[str]] = {
                pool.submit(
                    _work,
                    [run.to_dict() for run in stack],
                    [str(self.run_dir(run)) for run in stack],
                    self.spec.metrics.to_dict(),
                ): [run.name for run in stack]
                for stack in stacks
            }
            while futures:
                if self.stopping:
                    stop.set()
                self._drain(messages, sink, timeout=0.2)
                for future in [f for f in futures if f.done()]:
                    names = futures.pop(future)
                    self._drain(messages, sink, timeout=0.0)
                    outcomes = _outcomes(future, names)
                    for name in names:
                        outcome = outcomes[name]
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


def _outcomes(future: Future, names: list[str]) -> dict[str, dict[str, Any]]:
    try:
        return future.result()
    except Exception as exc:  # a worker that died (killed, out of memory) fails its runs, not the sweep
        message = f"worker process failed: {type(exc).__name__}: {exc}"
        return {name: {"status": "failed", "message": message} for name in names}


_worker_messages: Any = None
_worker_stop: Any = None
_worker_parent: int | None = None


_worker_busy = threading.Event()
ORPHAN_POLL_S = 0.5  # how often a worker checks that its parent lives
ORPHAN_GRACE_S = 60.0  # how long a worker in a run may take to stop and save before it exits anyway


def _init_worker(messages: Any, stop: Any, threads: int) -> None:
    global _worker_messages, _worker_stop, _worker_parent
    _worker_messages, _worker_stop, _worker_parent = messages, stop, os.getppid()
    # Ctrl-C reaches every process of the terminal's group: workers stop through `stop`, as the
    # parent decides, so each keeps a loadable checkpoint instead of dying mid-step
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, name="orphan-watch", daemon=True).start()
    import torch

    torch.set_num_threads(threads)


def _exit_when_orphaned() -> None:
    """An idle pool worker blocks on a pipe read forever once its parent is killed (SIGKILL runs no
    cleanup). Exit as soon as the parent is gone; a worker in a run first lets it stop at its next step
    and save its checkpoint (`_worker_should_stop`), within `ORPHAN_GRACE_S`."""
    while os.getppid() == _worker_parent:
        time.sleep(ORPHAN_POLL_S)
    deadline = time.monotonic() + ORPHAN_GRACE_S
    while _worker_busy.is_set() and time.monotonic() < deadline:
        time.sleep(ORPHAN_POLL_S)
    os._exit(0)


def _worker_should_stop() -> bool:
    """Stop when asked, and when the parent is gone (killed, crashed): an orphan would go on training
    and write results into a folder that a new run of the experiment may be using."""
    return _worker_stop.is_set() or os.getppid() != _worker_parent


def _work(run_data: list[dict[str, Any]], run_dirs: list[str], plan_data: dict[str, Any]) -> dict[str, Any]:
    """One run, or one stack of runs, in a worker process; per run plain data (exceptions do not always pickle)."""
    runs = [RunSpec.from_dict(data) for data in run_data]
    if _worker_should_stop():
        return {
            run.name: {"status": "stopped", "message": f"{run.name} not started: the experiment was stopped"}
            for run in runs
        }
    for run in runs:
        _worker_messages.put(("started", run.name, {"label": run.label, "total": run.config.steps}))
    plan = MetricPlan.from_dict(plan_data)
    _worker_busy.set()
    try:
        outcomes = _train_in_worker(runs, run_dirs, plan)
    finally:
        _worker_busy.clear()
    return {name: _plain_outcome(outcome) for name, outcome in outcomes.items()}


def _train_in_worker(runs: list[RunSpec], run_dirs: list[str], plan: MetricPlan) -> dict[str, Any]:
    if len(runs) == 1:
        run = runs[0]
        try:
            outcomes: dict[str, Any] = {
                run.name: execute_run(
                    run,
                    Path(run_dirs[0]),
                    plan,
                    should_stop=_worker_should_stop,
                    progress=lambda kind, info: _worker_messages.put((kind, run.name, info)),
                )
            }
        except Exception as exc:
            outcomes = {run.name: exc}
    else:
        try:
            outcomes = execute_stack(
                runs,
                [Path(d) for d in run_dirs],
                plan,
                should_stop=_worker_should_stop,
                progress=lambda kind, name, info: _worker_messages.put((kind, name, info)),
            )
        except Exception as exc:
            outcomes = {run.name: exc for run in runs}
    return outcomes


def _plain_outcome(outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, RunStopped):
        return {"status": "stopped", "message": str(outcome)}
    if isinstance(outcome, BaseException):
        return {"status": "failed", "message": f"{type(outcome).__name__}: {outcome}"}
    return {"status": "finished", "result": outcome}
