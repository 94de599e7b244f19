"""Where an experiment's runs train: one registry of executors (design §7).

    local       one run (or stack of runs) after another, in this process
    processes   `workers` worker processes on this machine (the spawn pool)
    ray         a Ray task per run or stack, on a Ray cluster (core/ray_executor.py; `pip install bvae-desktop[cluster]`)

An entry says its name, a label for people, what it needs (modules, and the one line saying how to
install them), its options (name, type, default, range, CLI flag, help) and a factory. The CLI's
`--executor` choices and flags, the Experiments tab's combo and fields, and the validation of an
experiment's `executor_options` all come from here, so a new executor is one entry and its module.

An executor runs the pending runs of an experiment: `run(pending, sink, failed)`, reporting through
`sink` the same ExperimentEvents (started, step, metric, finished, stopped, failed) whichever it is,
appending the names of failed runs to `failed`, and stopping at the runs' next step once
`experiment.stopping` turns true, each run keeping its checkpoint.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bvae_desktop.core.errors import ConfigError

if TYPE_CHECKING:  # no import at run time: experiments.py imports this module
    from bvae_desktop.core.experiment_run import RunSpec
    from bvae_desktop.core.experiments import EventSink, Experiment, ExperimentSpec


class Executor(Protocol):
    def run(self, pending: list[RunSpec], sink: EventSink, failed: list[str]) -> None: ...


@dataclass(frozen=True)
class ExecutorOption:
    """One setting of an executor, saved in experiment.json's `executor_options` under `name`."""

    name: str
    kind: type  # str, int or float
    default: Any  # None: decided when the experiment runs (see `help`)
    help: str
    flag: str  # the CLI flag, e.g. "--ray-address"
    label: str  # the Experiments tab's field label
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    env: str = ""  # where the default comes from when unset (RAY_ADDRESS): read by the executor, never saved

    def coerce(self, value: Any, executor: str) -> Any:
        """The value as this option's type, or ConfigError naming the option."""
        where = f"{executor} option {self.name} ({self.flag})"
        if self.kind is str:
            if not isinstance(value, str) or "\x00" in value:
                raise ConfigError(f"{where} must be text; got {value!r}")
            value = value.strip()
            if self.choices and value not in self.choices:
                raise ConfigError(f"{where} must be one of {', '.join(self.choices)}; got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number; got {value!r}")
        if self.kind is int:
            if value != int(value):
                raise ConfigError(f"{where} must be a whole number; got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"{where} must be a finite number; got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{where} must be at least {self.minimum:g}; got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"{where} must be at most {self.maximum:g}; got {value!r}")
        return value


@dataclass(frozen=True)
class ExecutorSpec:
    """A registry entry: what an executor is, needs and takes, and how to make one for an experiment."""

    name: str
    label: str
    description: str
    factory: Callable[[Experiment], Executor]
    needs: tuple[str, ...] = ()  # modules that must import
    install_hint: str = ""  # the one line saying how to get them
    options: tuple[ExecutorOption, ...] = ()
    describe: Callable[[ExperimentSpec], str] = field(default=lambda spec: "")
    # "test connection": lines saying what the executor would run on (the Ray cluster's nodes, CPUs, GPUs)
    probe: Callable[[Mapping[str, Any]], list[str]] | None = None

    def missing(self) -> str | None:
        """None when everything it needs is installed, else the one line saying how to install it."""
        for module in self.needs:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                return self.install_hint or f"the {self.name} executor needs {module}, which is not installed"
        return None

    def check(self) -> None:
        message = self.missing()
        if message is not None:
            raise ConfigError(message)

    def option(self, name: str) -> ExecutorOption:
        for option in self.options:
            if option.name == name:
                return option
        raise KeyError(name)

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options coerced to their types; unknown names and bad values raise ConfigError."""
        if not isinstance(options, Mapping):
            raise ConfigError(f"executor options must be an object; got {options!r}")
        known = {option.name: option for option in self.options}
        checked: dict[str, Any] = {}
        for name, value in options.items():
            if name not in known:
                accepted = ", ".join(known) or "none"
                raise ConfigError(f"the {self.name} executor has no option {name!r} (it takes: {accepted})")
            if value is None:
                continue  # unset: the default
            checked[name] = known[name].coerce(value, self.name)
        return checked

    def value(self, options: Mapping[str, Any], name: str) -> Any:
        """An option's value: as set, else its default."""
        return options.get(name, self.option(name).default)


_REGISTRY: dict[str, ExecutorSpec] = {}


def register_executor(spec: ExecutorSpec) -> ExecutorSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"executor {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def executor_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def executors() -> tuple[ExecutorSpec, ...]:
    return tuple(_REGISTRY.values())


def get_executor(name: str) -> ExecutorSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown executor {name!r}; use one of {', '.join(_REGISTRY)}") from None


def default_executor(workers: int) -> str:
    """What an experiment without an executor setting uses (experiment.json before executors existed,
    `--workers` alone): worker processes when more than one run goes at once, else this process."""
    return "processes" if workers > 1 else "local"


def make_executor(experiment: Experiment) -> Executor:
    """The spec's executor for `experiment`; ConfigError (one line) when what it needs is not installed."""
    entry = get_executor(experiment.spec.executor)
    entry.check()
    return entry.factory(experiment)


def describe(spec: ExperimentSpec) -> str:
    """How the runs go, for a progress line: "2 at a time in worker processes, up to 1 in one pass"."""
    return get_executor(spec.executor).describe(spec)


# ----- local and processes: the runner's own in-process loop and spawn pool ------------------------
class _Here:
    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment

    def run(self, pending: list[RunSpec], sink: EventSink, failed: list[str]) -> None:
        self.experiment._run_here(self.experiment.stacks(pending), sink, failed)


class _Processes(_Here):
    def run(self, pending: list[RunSpec], sink: EventSink, failed: list[str]) -> None:
        stacks = self.experiment.stacks(pending)
        if self.experiment.spec.workers > 1 and len(stacks) > 1:
            self.experiment._run_parallel(stacks, sink, failed)
        else:  # one process is enough: no pool to start
            self.experiment._run_here(stacks, sink, failed)


def _stack_text(spec: ExperimentSpec) -> str:
    from bvae_desktop.core.stacked import resolve_stack_size

    return f"up to {resolve_stack_size(spec.stack, spec.base.device)} in one pass"


register_executor(
    ExecutorSpec(
        name="local",
        label="In this process",
        description="one run after another in this process",
        factory=_Here,
        describe=lambda spec: f"one at a time in this process, {_stack_text(spec)}",
    )
)
register_executor(
    ExecutorSpec(
        name="processes",
        label="Worker processes",
        description="--workers runs at once, each in a worker process on this machine",
        factory=_Processes,
        describe=lambda spec: (
            f"{spec.workers} at a time in worker processes, {_stack_text(spec)}"
            if spec.workers > 1
            else f"one at a time in this process (--workers 1), {_stack_text(spec)}"
        ),
    )
)


def _ray_factory(experiment: Experiment) -> Executor:
    from bvae_desktop.core.ray_executor import RayExecutor

    return RayExecutor(experiment)


def _ray_probe(options: Mapping[str, Any]) -> list[str]:
    from bvae_desktop.core.ray_executor import cluster_info

    return cluster_info(str(options.get("address", "") or "")).lines()


def _ray_describe(spec: ExperimentSpec) -> str:
    from bvae_desktop.core.ray_executor import describe_ray

    return describe_ray(spec)


RAY_INSTALL_HINT = "the ray executor needs Ray, which is not installed: pip install 'bvae-desktop[cluster]' (or pip install 'ray>=2.9')"

register_executor(
    ExecutorSpec(
        name="ray",
        label="Ray cluster",
        description="a Ray task per run or stack of runs, on a Ray cluster or a Ray started here",
        factory=_ray_factory,
        needs=("ray",),
        install_hint=RAY_INSTALL_HINT,
        describe=_ray_describe,
        probe=_ray_probe,
        options=(
            ExecutorOption(
                "address",
                str,
                "",
                "the cluster's head, e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001 (default: RAY_ADDRESS, "
                "else a Ray started on this machine)",
                flag="--ray-address",
                label="Ray address",
                env="RAY_ADDRESS",
            ),
            ExecutorOption(
                "storage",
                str,
                "auto",
                "shared: tasks write into the experiment folder (a filesystem every node mounts at the same path); "
                "unshared: tasks train in a temporary folder and send the run's files back; auto: shared where the "
                "folder is reachable from the task's node",
                flag="--ray-storage",
                label="Storage",
                choices=("auto", "shared", "unshared"),
            ),
            ExecutorOption(
                "cpus",
                float,
                1.0,
                "CPUs each task asks for (its torch threads)",
                flag="--task-cpus",
                label="CPUs per task",
                minimum=0.0,
                maximum=1024.0,
            ),
            ExecutorOption(
                "gpus",
                float,
                None,
                "GPUs each task asks for; a fraction shares a GPU between tasks (default: 1 when --device is "
                "cuda, or auto on a cluster with GPUs; else 0)",
                flag="--task-gpus",
                label="GPUs per task",
                minimum=0.0,
                maximum=64.0,
            ),
            ExecutorOption(
                "retries",
                int,
                3,
                "times a task whose worker died is started again, from the runs' last checkpoints",
                flag="--task-retries",
                label="Retries",
                minimum=0,
                maximum=100,
            ),
        ),
    )
)

__all__ = [
    "RAY_INSTALL_HINT",
    "Executor",
    "ExecutorOption",
    "ExecutorSpec",
    "default_executor",
    "describe",
    "executor_names",
    "executors",
    "get_executor",
    "make_executor",
    "register_executor",
]
