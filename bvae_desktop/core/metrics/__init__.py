"""Disentanglement metrics, one module each, all with disentanglement_lib's calling convention:

    compute_<name>(data, represent, *, seed=0, <counts, defaults as DESIGN §5>) -> dict

`data` is an ImageSet (with ground-truth `factors` for every metric but "unsupervised"),
`represent` maps uint8 images (n, C, H, W) to codes (n, D) as numpy, so any representation can be
scored. Each metric draws from its own random source made from `seed` only (the β-VAE and
FactorVAE metrics from disentanglement_lib's `np.random.RandomState(seed)`, in its order, so that
they return its numbers exactly; the others from `np.random.default_rng(seed)`), and returns its
scores beside the settings it used. Each also takes `progress`, called after each chunk of its
sampling and fitting (core/progress.py), which only watches: the numbers stay the same.
`estimate` says beforehand how long `evaluate` will take here (metrics/_cost.py).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bvae_desktop.core.data.imageset import ImageSet
from bvae_desktop.core.metrics._common import MetricError, Represent, Scores
from bvae_desktop.core.metrics._cost import WORK, MachineCosts, probe_costs, settings_of
from bvae_desktop.core.metrics.beta_vae import compute_beta_vae
from bvae_desktop.core.metrics.dci import compute_dci
from bvae_desktop.core.metrics.factor_vae import compute_factor_vae
from bvae_desktop.core.metrics.mig import compute_mig
from bvae_desktop.core.metrics.sap import compute_sap
from bvae_desktop.core.metrics.unsupervised import compute_unsupervised
from bvae_desktop.core.progress import ProgressSink, ProgressTracker, format_duration

__all__ = [
    "METRICS",
    "METRIC_LABELS",
    "SUPERVISED",
    "MetricError",
    "MetricEstimate",
    "compute_beta_vae",
    "compute_dci",
    "compute_factor_vae",
    "compute_mig",
    "compute_sap",
    "compute_unsupervised",
    "count_defaults",
    "estimate",
    "evaluate",
    "metric_names",
    "scaled_counts",
    "split_result",
]

METRICS: dict[str, Callable[..., Scores]] = {
    "beta_vae": compute_beta_vae,
    "factor_vae": compute_factor_vae,
    "mig": compute_mig,
    "dci": compute_dci,
    "sap": compute_sap,
    "unsupervised": compute_unsupervised,
}
SUPERVISED = frozenset(METRICS) - {"unsupervised"}
# what people read in progress lines and estimates
METRIC_LABELS = {
    "beta_vae": "β-VAE metric",
    "factor_vae": "FactorVAE metric",
    "mig": "MIG",
    "dci": "DCI",
    "sap": "SAP",
    "unsupervised": "unsupervised scores",
}

# keys of a result that describe how it was computed rather than what it scored
SETTING_KEYS = frozenset(
    {
        "seed",
        "batch_size",
        "prune_threshold",
        "classifier",
        "converged",
        "iterations",
        "factors",
        "discretizer",
        "observations",
        "active_threshold",
        "chance",
        "latent_dim",
        "seconds",
        "skipped",
    }
)


def split_result(result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(scores, settings) of one metric's result: counts (num_*) and SETTING_KEYS are settings."""
    settings = {k: v for k, v in result.items() if k in SETTING_KEYS or k.startswith("num_")}
    scores = {k: v for k, v in result.items() if k not in settings}
    return scores, settings


def metric_names(names: str | Iterable[str] = "all") -> list[str]:
    """Names from "all", "mig,dci" or a list of names → the list of registry names, in registry order for "all"."""
    if isinstance(names, str):
        names = list(METRICS) if names.strip() == "all" else [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise MetricError(f"unknown metric {', '.join(unknown) or '(none)'}; choose from all, {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def count_defaults(name: str) -> dict[str, int]:
    """The sample-count parameters of a metric (num_*) with their defaults."""
    params = inspect.signature(METRICS[name]).parameters
    return {k: p.default for k, p in params.items() if k.startswith("num_") and k != "num_bins"}


def scaled_counts(name: str, divisor: int = 10, minimum: int = 10) -> dict[str, int]:
    """Every count of a metric divided by `divisor` (at least `minimum`): a quick look, not a published number."""
    return {k: max(minimum, int(v) // divisor) for k, v in count_defaults(name).items()}


def _runnable(data: ImageSet, names: str | Iterable[str], overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The keyword arguments of each metric that can run on `data` (see `evaluate` for `overrides`)."""
    per_metric = {k: v for k, v in overrides.items() if k in METRICS}
    shared = {k: v for k, v in overrides.items() if k not in METRICS}
    out: dict[str, dict[str, Any]] = {}
    for name in metric_names(names):
        if name in SUPERVISED and getattr(data, "factors", None) is None:
            continue
        params = inspect.signature(METRICS[name]).parameters
        kwargs = {k: v for k, v in shared.items() if k in params}
        extra = dict(per_metric.get(name) or {})
        bad = [k for k in extra if k not in params or k == "progress"]
        if bad:
            raise MetricError(f"{name} takes no setting {', '.join(bad)}")
        kwargs.update(extra)
        out[name] = kwargs
    return out


def _skip_reason(data: ImageSet) -> str:
    return f"needs ground-truth factors; {getattr(data, 'name', 'the data')} has none"


def evaluate(
    data: ImageSet,
    represent: Represent,
    names: str | Iterable[str] = "all",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    *,
    on_progress: ProgressSink | None = None,
    progress_every: float = 0.5,
    **overrides: Any,
) -> dict[str, dict[str, Any]]:
    """Run several metrics; results keyed by metric name.

    `overrides`: a keyword a metric accepts (num_train=1000, represent_stats=..., reconstruct=...,
    indices=...) goes to every metric that takes it; a metric's name with a dict
    (dci={"n_estimators": 20}) goes to that metric only and wins. Supervised metrics on data with
    no factors are skipped, with the reason under "skipped". `progress(name)` is called before each;
    `on_progress` gets each metric's ProgressRecords (label from METRIC_LABELS, with an ETA), at most
    one per `progress_every` seconds plus the first and last of each part. Each result gets the wall
    time it took under "seconds".
    """
    runnable = _runnable(data, names, overrides)
    results: dict[str, dict[str, Any]] = {}
    for name in metric_names(names):
        if name not in runnable:
            results[name] = {"skipped": _skip_reason(data)}
            continue
        func = METRICS[name]
        kwargs = runnable[name]
        if on_progress is not None and "progress" in inspect.signature(func).parameters:
            kwargs["progress"] = ProgressTracker(METRIC_LABELS.get(name, name), on_progress, every_s=progress_every)
        if progress is not None:
            progress(name)
        started = time.perf_counter()
        results[name] = func(data, represent, seed=seed, **kwargs)
        results[name]["seconds"] = round(time.perf_counter() - started, 3)
    return results


@dataclass(frozen=True)
class MetricEstimate:
    """Seconds each metric should take here (skipped ones left out), and what the probe measured."""

    seconds: dict[str, float]
    costs: MachineCosts

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())

    def breakdown(self) -> str:
        """'β-VAE metric 31m, MIG 12s, ...'"""
        return ", ".join(f"{METRIC_LABELS.get(n, n)} {format_duration(s)}" for n, s in self.seconds.items())


def estimate(
    data: ImageSet,
    represent: Represent,
    names: str | Iterable[str] = "all",
    seed: int = 0,
    **overrides: Any,
) -> MetricEstimate:
    """How long `evaluate` with the same arguments would take here, from a short seeded probe (about a second).

    The probe represents one batch of images (more when that is quick) and, when DCI or SAP are asked
    for, fits a tiny tree ensemble / LinearSVC; each metric's counts scale those costs (metrics/_cost.py).
    """
    runnable = _runnable(data, names, overrides)
    settings = {n: settings_of(METRICS[n], kwargs) for n, kwargs in runnable.items()}
    if not settings:
        return MetricEstimate({}, MachineCosts(0.0))
    costs = probe_costs(data, represent, settings, seed=seed)
    seconds = {n: WORK[n](s, data, costs).seconds(costs) for n, s in settings.items() if n in WORK}
    return MetricEstimate(seconds, costs)
