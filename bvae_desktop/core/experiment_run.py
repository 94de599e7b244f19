"""One run of an experiment: train (or continue) it, then score it; the same code in-process and in workers.

A run is finished when its `result.json` exists: it is written last, atomically, so a run stopped
at any moment either has a complete result or none (and continues from its checkpoint next time).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bvae_desktop.core.atomic import atomic_write_text
from bvae_desktop.core.checkpoint import Checkpoint, load_checkpoint
from bvae_desktop.core.config import MAX_STEPS, TrainConfig
from bvae_desktop.core.data.imageset import ImageSet
from bvae_desktop.core.device import device_label
from bvae_desktop.core.errors import CheckpointError
from bvae_desktop.core.jsonfile import json_default
from bvae_desktop.core.metrics import SUPERVISED, evaluate, scaled_counts
from bvae_desktop.core.progress import ProgressRecord
from bvae_desktop.core.trainer import CHECKPOINT_NAME, Trainer

RESULT_NAME = "result.json"
RESULT_FORMAT = 1
_TRAIN_TAIL = 100  # steps averaged for the "train" numbers: one step is too noisy to tabulate


class RunStopped(Exception):
    """The experiment was asked to stop while this run was training or being scored."""


@dataclass
class RunSpec:
    """One point of a comparison or sweep: a name (its folder), a label for people, its config."""

    name: str
    label: str
    config: TrainConfig
    group: str = ""  # what runs with other seeds share: "β=4" or "VAE"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "group": self.group, "config": self.config.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        return cls(
            name=data["name"],
            label=data["label"],
            group=data.get("group", ""),
            config=TrainConfig.from_dict(data["config"], source=f"run {data['name']}", saved=True),
        )


@dataclass
class MetricPlan:
    """Which metrics score each run, with which counts: `divisor` 1 is disentanglement_lib's counts."""

    names: list[str] = field(default_factory=lambda: ["beta_vae", "factor_vae", "mig", "dci", "sap", "unsupervised"])
    divisor: int = 1
    seed: int = 0
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def keyword_arguments(self) -> dict[str, dict[str, Any]]:
        """Per-metric settings for `metrics.evaluate`: scaled counts, then explicit overrides."""
        kwargs: dict[str, dict[str, Any]] = {}
        for name in self.names:
            counts = scaled_counts(name, self.divisor) if self.divisor > 1 else {}
            kwargs[name] = {**counts, **self.overrides.get(name, {})}
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "divisor": self.divisor, "seed": self.seed, "overrides": self.overrides}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricPlan:
        return cls(
            names=list(data.get("names", [])),
            divisor=int(data.get("divisor", 1)),
            seed=int(data.get("seed", 0)),
            overrides=dict(data.get("overrides", {})),
        )


Progress = Callable[[str, dict[str, Any]], None]
"""progress(kind, info): kind "step" (info: step, total, loss, recon, kl) or "metric" (info: name as the metric
starts; then name with a ProgressRecord's fields, `ProgressRecord.to_info`, as it goes)."""


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The run's finished result, or None when it has none (or an unreadable one: it runs again)."""
    path = run_dir / RESULT_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != RESULT_FORMAT or data.get("status") != "finished":
        return None
    return data


def _resume_point(run_dir: Path) -> Checkpoint | None:
    """The run's checkpoint to continue from, if it has a readable one."""
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = run_dir / CHECKPOINT_NAME
    if not checkpoint_path.exists():
        return None
    try:
        return load_checkpoint(checkpoint_path)
    except CheckpointError:
        return None  # a damaged partial run starts over rather than blocking the sweep


@dataclass
class _Tally:
    """What a run's result needs from its training events."""

    start_step: int
    started: float = field(default_factory=time.perf_counter)
    tail: list[tuple[float, float, float]] = field(default_factory=list)
    kl_per_dim: tuple[float, ...] = ()
    last_report: float = 0.0

    def add(self, event: Any) -> None:
        self.tail.append((event.loss, event.recon, event.kl))
        del self.tail[:-_TRAIN_TAIL]
        self.kl_per_dim = event.kl_per_dim


def execute_run(
    run: RunSpec,
    run_dir: Path,
    plan: MetricPlan,
    *,
    dataset: ImageSet | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Progress | None = None,
    progress_every: float = 0.25,
) -> dict[str, Any]:
    """Train `run` in `run_dir` (continuing its checkpoint if any), score it, write and return its result.

    Raises RunStopped when `should_stop()` turns true; the checkpoint then holds the last step.
    """
    trainer = Trainer(run.config, dataset=dataset, run_dir=run_dir, resume=_resume_point(run_dir))
    tally = _Tally(trainer.step)
    for event in trainer.steps():
        tally.add(event)
        if should_stop():
            trainer.stop()
        _report(progress, event, tally, progress_every)
    if trainer.step < run.config.steps:
        raise RunStopped(f"{run.name} stopped at step {trainer.step:,} of {run.config.steps:,}")
    return finish_run(run, run_dir, trainer, tally, plan, should_stop=should_stop, progress=progress)


StackProgress = Callable[[str, str, dict[str, Any]], None]
"""progress(kind, run name, info), as `Progress` with the run's name first."""


def execute_stack(
    runs: list[RunSpec],
    run_dirs: list[Path],
    plan: MetricPlan,
    *,
    dataset: ImageSet | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    progress: StackProgress | None = None,
    progress_every: float = 0.25,
) -> dict[str, dict[str, Any] | BaseException]:
    """Train `runs` as one stack (`core/stacked.py`), then score each; per run its result or its exception.

    A run that goes non-finite fails alone (TrainingError); when stopped, every unfinished run gets
    RunStopped and keeps its checkpoint. Scoring goes run after run, on the stack's device.
    """
    from bvae_desktop.core.stacked import StackedTrainer

    stack = StackedTrainer(
        [run.config for run in runs],
        run_dirs=run_dirs,
        dataset=dataset,
        resumes=[_resume_point(run_dir) for run_dir in run_dirs],
    )
    tallies = [_Tally(member.step) for member in stack.members]
    for index, event in stack.steps():
        tallies[index].add(event)
        if should_stop() and not stack.stopped:
            stack.stop()
        if progress is not None:
            name = runs[index].name
            _report(lambda kind, info, name=name: progress(kind, name, info), event, tallies[index], progress_every)
    outcomes: dict[str, dict[str, Any] | BaseException] = {}
    for index, (run, run_dir, member) in enumerate(zip(runs, run_dirs, stack.members, strict=True)):
        if index in stack.failures:
            outcomes[run.name] = stack.failures[index]
        elif member.step < run.config.steps:
            outcomes[run.name] = RunStopped(f"{run.name} stopped at step {member.step:,} of {run.config.steps:,}")
        else:
            run_progress = None if progress is None else (lambda kind, info, name=run.name: progress(kind, name, info))
            try:
                outcomes[run.name] = finish_run(
                    run, run_dir, member, tallies[index], plan, should_stop=should_stop, progress=run_progress
                )
            except RunStopped as exc:
                outcomes[run.name] = exc
    return outcomes


def _report(progress: Progress | None, event: Any, tally: _Tally, every: float) -> None:
    now = time.perf_counter()
    if progress is not None and (now - tally.last_report >= every or event.done):
        tally.last_report = now
        progress("step", _step_info(event))


def finish_run(
    run: RunSpec,
    run_dir: Path,
    trainer: Trainer,
    tally: _Tally,
    plan: MetricPlan,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Validate and score a trained run, then write its result.json (last, atomically) and return it."""
    train_seconds = time.perf_counter() - tally.started
    validation = trainer.validate()
    kl_per_dim = tally.kl_per_dim or tuple(_kl_per_dim_on_validation(trainer))
    scored_at = time.perf_counter()
    metrics = score_trainer(trainer, plan, should_stop=should_stop, progress=progress)
    result = {
        "format": RESULT_FORMAT,
        "status": "finished",
        "name": run.name,
        "label": run.label,
        "group": run.group,
        "objective": run.config.objective,
        "beta": trainer.beta,
        "beta_norm": trainer.beta_norm,
        "seed": run.config.seed,
        "steps": trainer.step,
        "device": device_label(trainer.device),
        "train": _tail_means(tally.tail),
        "validation": {k: float(v) for k, v in validation.items()},
        "kl_per_dim": [float(v) for v in kl_per_dim],
        "metrics": metrics,
        "metric_plan": plan.to_dict(),
        "seconds": {
            "train": round(train_seconds, 2),
            "metrics": round(time.perf_counter() - scored_at, 2),
            "trained_steps_this_session": trainer.step - tally.start_step,
        },
    }
    atomic_write_text(run_dir / RESULT_NAME, json.dumps(result, indent=2, default=json_default) + "\n")
    return result


def _scoring_arguments(trainer: Trainer) -> dict[str, Any]:
    """What `evaluate` (and `estimate`) need to score the trainer's encoder means on its device (the model is idle)."""
    trainer.sync_model()
    model = trainer.model.eval()
    device = trainer.device

    @torch.no_grad()
    def stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.as_tensor(images).to(device).float().div_(255.0)
        mean, logvar = model.encode(x)
        return mean.float().cpu().numpy(), logvar.float().cpu().numpy()

    @torch.no_grad()
    def reconstruct(images: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(images).to(device).float().div_(255.0)
        mean, _ = model.encode(x)
        out = torch.sigmoid(model.decode(mean).float()).mul_(255).round_().to(torch.uint8)
        return out.cpu().contiguous().numpy()

    # on a GPU, big batches amortise the launches of rendering and encoding many small images
    batch = {"represent_batch": 4096} if device.type == "cuda" else {}
    return {
        "data": trainer.dataset,
        "represent": lambda images: stats(images)[0],
        "represent_stats": stats,
        "reconstruct": reconstruct,
        "indices": trainer.val_indices,
        **batch,
    }


def _scored(plan: MetricPlan, data: ImageSet) -> list[str]:
    """The planned metrics that can run on `data` (supervised ones need factors)."""
    return [n for n in plan.names if n not in SUPERVISED or data.factors is not None]


def score_trainer(
    trainer: Trainer,
    plan: MetricPlan,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Progress | None = None,
) -> dict[str, dict[str, Any]]:
    """Every planned metric on the trained encoder's means, on the trainer's device (the model is idle now).

    Stops (RunStopped) between metrics and between chunks of a metric's sampling once `should_stop()`.
    """
    data = trainer.dataset
    current = {"name": ""}

    def on_metric(name: str) -> None:
        if should_stop():
            raise RunStopped(f"stopped before the {name} metric")
        current["name"] = name
        if progress is not None:
            progress("metric", {"name": name})

    def on_record(record: ProgressRecord) -> None:
        if should_stop():
            raise RunStopped(f"stopped during the {current['name']} metric")
        if progress is not None:
            progress("metric", {"name": current["name"], **record.to_info()})

    names = _scored(plan, data)
    skipped = {
        n: {"skipped": f"needs ground-truth factors; {data.name} has none"} for n in plan.names if n not in names
    }
    if not names:
        return skipped
    arguments = _scoring_arguments(trainer)
    results = evaluate(
        arguments.pop("data"),
        arguments.pop("represent"),
        names,
        seed=plan.seed,
        progress=on_metric,
        on_progress=on_record,
        **arguments,
        **plan.keyword_arguments(),
    )
    return {**results, **skipped}


# ----- estimates before a run: a short, seeded probe on this machine ---------------------------------------
PROBE_TRAIN_S = 0.8  # time the training steps at least this long (fewer when the runs are shorter) ...
PROBE_MAX_STEPS = 40  # ... and at most this many steps
PROBE_WARMUP_STEPS = 2  # first steps allocate and pick kernels: not timed


@dataclass(frozen=True)
class RunCosts:
    """What one run (or one stack of runs trained together) costs here, from `probe_runs`."""

    step_s: float  # one training step of the whole stack
    validate_s: float  # one validation of one run
    metrics_s: dict[str, float]  # scoring one run, per metric
    stack: int  # runs in the probed stack
    device: str  # where it was measured (device_label)
    probe_s: float  # how long probing took
    compiled: bool  # the configs ask for torch.compile: the probe ran eager


def probe_runs(
    configs: list[TrainConfig],
    plan: MetricPlan,
    *,
    dataset: ImageSet | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> RunCosts:
    """Train `configs` together (one run, or a stack) for a few seeded steps in no folder, time them, then time
    the planned metrics' slow parts on the probe's model (core/metrics/_cost.py). About two seconds on a CPU."""
    from bvae_desktop.core.metrics import estimate
    from bvae_desktop.core.stacked import StackedTrainer

    started = clock()
    warmup = min(min(c.steps for c in configs), PROBE_WARMUP_STEPS)
    quiet = {"steps": warmup, "val_every": MAX_STEPS, "checkpoint_every": MAX_STEPS, "compile": "off"}  # no pauses
    probe_configs = [dataclasses.replace(c, **quiet).validate() for c in configs]
    stack = StackedTrainer(probe_configs, dataset=dataset) if len(probe_configs) > 1 else None
    members = stack.members if stack is not None else [Trainer(probe_configs[0], dataset=dataset)]
    trainer = members[0]

    def train() -> None:
        for _ in stack.steps() if stack is not None else trainer.steps():
            if trainer.step > warmup and clock() - phase >= PROBE_TRAIN_S:
                (stack or trainer).stop()

    phase = clock()
    train()  # the first steps allocate and pick kernels: not timed
    more = min(min(c.steps for c in configs) - warmup, PROBE_MAX_STEPS)
    if more > 0:
        for member in members:
            member.config.steps = warmup + more
        phase = clock()
        train()
        step_s = (clock() - phase) / max(1, trainer.step - warmup)
    else:  # runs of a step or two: time what there was
        step_s = (clock() - phase) / max(1, trainer.step)
    t = clock()
    trainer.validate()
    validate_s = clock() - t
    data = trainer.dataset
    names = _scored(plan, data)
    metrics_s: dict[str, float] = {}
    if names:
        arguments = _scoring_arguments(trainer)
        found = estimate(
            arguments.pop("data"),
            arguments.pop("represent"),
            names,
            seed=plan.seed,
            **arguments,
            **plan.keyword_arguments(),
        )
        metrics_s = dict(found.seconds)
    return RunCosts(
        step_s=step_s,
        validate_s=validate_s,
        metrics_s=metrics_s,
        stack=len(configs),
        device=device_label(trainer.device),
        probe_s=clock() - started,
        compiled=any(c.compile == "on" or (c.compile == "auto" and trainer.device.type == "cuda") for c in configs),
    )


def _step_info(event: Any) -> dict[str, Any]:
    return {
        "step": event.step,
        "total": event.total_steps,
        "loss": event.loss,
        "recon": event.recon,
        "kl": event.kl,
        "images_per_s": event.images_per_s,
    }


def _tail_means(tail: list[tuple[float, float, float]]) -> dict[str, float]:
    if not tail:  # resumed at the last step: nothing trained this session
        return {}
    loss, recon, kl = np.asarray(tail, dtype=np.float64).mean(axis=0)
    return {"loss": float(loss), "recon": float(recon), "kl": float(kl), "steps_averaged": len(tail)}


@torch.no_grad()
def _kl_per_dim_on_validation(trainer: Trainer) -> np.ndarray:
    trainer.sync_model()
    indices = torch.as_tensor(trainer.val_indices[: trainer.config.batch_size * trainer.config.val_batches])
    x = trainer.dataset.batch(indices, trainer.device).float().div_(255.0)
    mean, logvar = trainer.model.eval().encode(x)
    kl = 0.5 * (mean.float().pow(2) + logvar.float().exp() - logvar.float() - 1.0)
    return kl.mean(dim=0).cpu().numpy()


__all__ = [
    "RESULT_NAME",
    "MetricPlan",
    "RunCosts",
    "RunSpec",
    "RunStopped",
    "execute_run",
    "execute_stack",
    "finish_run",
    "probe_runs",
    "read_result",
    "score_trainer",
]
