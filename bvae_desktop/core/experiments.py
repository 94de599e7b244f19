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

Before it starts, `Experiment.estimate()` says how long the runs still to do should take here (a
short probe: `probe_runs`); while it runs, `ExperimentProgress` folds its events into each run's
progress and one ETA for all of them.
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
    probe_runs,
    read_result,
)
from bvae_desktop.core.jsonfile import read_json_object
from bvae_desktop.core.progress import EtaEstimator, ProgressRecord, WeightedProgress, format_duration

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
                base=TrainConfig.from_dict(data["base"], source=source, saved=True),
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
        self._datasets: dict[tuple[str, str | None], ImageSet] = {}  # loaded once, for the probe and the runs

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

    def pending(self) -> list[RunSpec]:
        """The runs with no finished result yet, in run order."""
        return [run for run in self.runs if read_result(self.run_dir(run)) is None]

    def dataset(self, config: TrainConfig) -> ImageSet:
        key = (config.dataset, config.data_path)
        if key not in self._datasets:
            self._datasets[key] = load_dataset(*key)
        return self._datasets[key]

    def estimate(self, threads: int | None = None) -> ExperimentEstimate:
        """How long the runs still to do should take here, from a short probe that writes nothing."""
        pending = self.pending()
        if not pending:
            return ExperimentEstimate.nothing_to_do(self.spec)
        dataset = self.dataset(pending[0].config)
        resumed = sum((self.run_dir(run) / "checkpoint.pt").exists() for run in pending)
        return estimate_experiment(self.spec, pending, dataset=dataset, threads=threads, resumed=resumed)

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
        self._datasets.clear()  # the window keeps the experiment: not its images
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
        for stack in stacks:
            if self.stopping:
                break
            for run in stack:
                sink(ExperimentEvent("started", run.name, {"label": run.label, "total": run.config.steps}))
            try:
                outcomes = self._train_here(stack, self.dataset(stack[0].config), sink)
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


# ----- before and while running: the estimate and the progress ------------------------------------------
@dataclass(frozen=True)
class ExperimentEstimate:
    """How long runs should take here, from `probe_runs` scaled by the steps, the stacks and the runs at once."""

    runs: int  # runs still to do
    total_s: float  # wall time for all of them
    train_s: float  # one run's training, validation included (its share of a stack's pass)
    metrics_s: dict[str, float]  # scoring one run, per metric
    parallel: int  # stacks training at once (worker processes)
    stack: int  # runs trained in one pass
    device: str
    threads: int  # torch threads per run, as timed
    probe_s: float
    notes: tuple[str, ...] = ()  # what else it assumed

    @classmethod
    def nothing_to_do(cls, spec: ExperimentSpec) -> ExperimentEstimate:
        return cls(0, 0.0, 0.0, {}, 1, 1, spec.base.device, 0, 0.0)

    @property
    def scoring_s(self) -> float:
        return sum(self.metrics_s.values())

    def describe(self) -> str:
        """One paragraph: the time, what it is made of, and what it assumed."""
        if not self.runs:
            return "Estimate: nothing to do, every run has finished."
        at_once = f"{self.parallel} runs at a time" if self.parallel > 1 else "one run at a time"
        stacked = f", {self.stack} in one pass" if self.stack > 1 else ""
        threads = f" with {self.threads} torch thread{'s' if self.threads != 1 else ''}" if self.threads else ""
        each = f"training {format_duration(self.train_s)}" + (
            f" + metrics {format_duration(self.scoring_s)}" if self.metrics_s else ""
        )
        notes = "".join(f" {note}" for note in self.notes)
        return (
            f"Estimate: about {format_duration(self.total_s)} for {self.runs} run{'s' if self.runs != 1 else ''} "
            f"(each: {each}); assumes {at_once}{stacked} on {self.device}{threads}, "
            f"from a {self.probe_s:.1f} s probe.{notes}"
        )


def estimate_experiment(
    spec: ExperimentSpec,
    pending: Sequence[RunSpec] | None = None,
    *,
    dataset: ImageSet | None = None,
    threads: int | None = None,
    resumed: int = 0,
) -> ExperimentEstimate:
    """How long `pending` (default: every run of `spec`) should take here.

    One probe trains the first stack for a few seeded steps and times the metrics' slow parts on its
    model; every stack is then taken to cost that per step (scaled by its size) and per metric. Runs
    in worker processes are timed with their share of the cores (`threads` overrides; it is set for
    the probe only). Writes nothing.
    """
    import torch

    from bvae_desktop.core.stacked import group_stackable, resolve_stack_size

    runs = list(spec.runs() if pending is None else pending)
    if not runs:
        return ExperimentEstimate.nothing_to_do(spec)
    size = resolve_stack_size(spec.stack, spec.base.device)
    groups = group_stackable([r.config for r in runs], size)
    parallel = min(spec.workers, len(groups)) if spec.executor == "processes" else 1
    if threads is None and parallel > 1:
        threads = max(1, (os.cpu_count() or 1) // parallel)  # as _run_parallel gives each worker
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        timed_threads = torch.get_num_threads()
        costs = probe_runs([runs[i].config for i in groups[0]], spec.metrics, dataset=dataset)
    finally:
        if threads is not None:
            torch.set_num_threads(before)
    scoring = sum(costs.metrics_s.values())
    stack_seconds, train_seconds = [], []
    for group in groups:
        configs = [runs[i].config for i in group]
        steps = max(c.steps for c in configs)
        validations = sum(c.steps // c.val_every for c in configs)
        train = steps * costs.step_s * len(group) / costs.stack + validations * costs.validate_s
        train_seconds.append(train / len(group))
        stack_seconds.append(train + scoring * len(group))
    notes = []
    if costs.compiled:
        notes.append("Timed without torch.compile: compiled runs add their compile time, then usually go faster.")
    if spec.executor == "ray":
        notes.append("On a Ray cluster runs may go several at a time: this assumes one at a time, on this machine.")
    if resumed:
        notes.append(f"{resumed} run{'s' if resumed != 1 else ''} with a checkpoint counted from the start.")
    return ExperimentEstimate(
        runs=len(runs),
        total_s=sum(stack_seconds) / parallel,
        train_s=sum(train_seconds) / len(train_seconds),
        metrics_s=dict(costs.metrics_s),
        parallel=parallel,
        stack=max(len(g) for g in groups),
        device=costs.device,
        threads=timed_threads,
        probe_s=costs.probe_s,
        notes=tuple(notes),
    )


@dataclass
class _RunState:
    step: int = 0
    total: int = 0
    metric: str = ""  # the metric being scored
    scored: list[str] = field(default_factory=list)  # metrics done
    record: ProgressRecord | None = None  # where the metric stands
    state: str = "waiting"


class ExperimentProgress:
    """An experiment's events → where each run stands and one ETA for all runs (the CLI's lines, the window's label).

    With an estimate each run weighs its estimated training and scoring time, so the ETA covers the
    scoring; without one it weighs its steps, and the ETA is the training's only (`covers_scoring`).
    Runs that finished before (skipped) count for nothing; a run that fails or stops leaves the plan.
    """

    def __init__(
        self,
        runs: Sequence[RunSpec],
        estimate: ExperimentEstimate | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.estimate = estimate
        self.covers_scoring = estimate is not None and bool(estimate.runs)
        self._train = {r.name: (estimate.train_s if self.covers_scoring else float(r.config.steps)) for r in runs}
        self._metrics = dict(estimate.metrics_s) if self.covers_scoring and estimate is not None else {}
        weights = {name: train + sum(self._metrics.values()) for name, train in self._train.items()}
        self.overall = WeightedProgress(weights, clock=clock)
        self.clock = clock
        self.runs = {r.name: _RunState(total=r.config.steps) for r in runs}
        self._steps = {r.name: EtaEstimator(clock=clock) for r in runs}
        self._stopping = False

    def add(self, event: ExperimentEvent) -> None:
        run = self.runs.get(event.run)
        if run is None:
            return
        kind, info = event.kind, event.info
        if kind == "started":
            run.state = "training"
        elif kind == "step":
            run.state, run.step, run.total = "training", int(info["step"]), int(info["total"])
            self._steps[event.run].update(run.step, run.total)
        elif kind == "metric":
            run.state = "scoring"
            record = ProgressRecord.from_info(info)
            if record is None:  # a metric starts: the one before is done
                if run.metric:
                    run.scored.append(run.metric)
                run.metric, run.record = str(info.get("name", "")), None
            else:
                run.record = record
        elif kind in ("finished", "skipped"):
            run.state = "finished"
            self.overall.set(event.run, 1.0)
            return
        elif kind in ("failed", "stopped"):
            run.state = kind
            self.overall.settle(event.run)
            return
        self.overall.set(event.run, self.fraction(event.run))

    def fraction(self, name: str) -> float:
        """How far a run is: training and scoring weighed by their estimated time."""
        run = self.runs[name]
        train = self._train[name]
        done = train * (run.step / run.total if run.total else 0.0)
        if run.state == "scoring":
            done = train + sum(self._metrics.get(m, 0.0) for m in run.scored)
            if run.record is not None:
                done += self._metrics.get(run.metric, 0.0) * run.record.fraction
        whole = train + sum(self._metrics.values())
        return min(1.0, done / whole) if whole > 0 else 0.0

    def stopping(self) -> None:
        """Asked to stop: no ETA from here on."""
        self._stopping = True
        self.overall.pause()
        for estimator in self._steps.values():
            estimator.pause()

    def eta_s(self) -> float | None:
        return self.overall.eta_s()

    def run_text(self, name: str) -> str:
        """'beta-4_seed-0: step 1,200/5,000 · 3m 10s left' or '...: β-VAE metric 1,200/15,000 points · 2m left'."""
        run = self.runs[name]
        if run.state == "scoring":
            from bvae_desktop.core.metrics import METRIC_LABELS

            what = (
                run.record.text()
                if run.record is not None
                else f"scoring the {METRIC_LABELS.get(run.metric, run.metric)}"
            )
            return f"{name}: {what}"
        if run.state == "training":
            eta = self.run_eta(name)
            left = f" · {format_duration(eta)} left" if eta is not None else ""
            return f"{name}: step {run.step:,}/{run.total:,}{left}"
        return f"{name}: {run.state}"

    def run_eta(self, name: str) -> float | None:
        """Seconds left in a run's training (None until its pace is known, and once it trains no more)."""
        run = self.runs[name]
        return self._steps[name].eta() if run.state == "training" and run.step < run.total else None

    def overall_text(self) -> str:
        """'All runs: about 42m left' (or what is still unknown)."""
        finished = sum(r.state == "finished" for r in self.runs.values())
        count = f"{finished} of {len(self.runs)} runs finished"
        if self._stopping:
            return f"{count}; stopping"
        eta = self.eta_s()
        if eta is None:
            return f"{count}; measuring the pace…"
        what = "left" if self.covers_scoring else "of training left (scoring not included: estimate first)"
        return f"{count}; about {format_duration(eta)} {what}"
