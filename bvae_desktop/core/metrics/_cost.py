"""How long the metrics will take on this machine: a short measured probe, extrapolated with the configured counts.

Nearly all of a metric's time goes to three things, each timed on a small sample here: representing
images (reading or rendering them, then encoding; the β-VAE and FactorVAE metrics represent ~1.9 M
images at the published counts), DCI's gradient-boosted trees and SAP's LinearSVCs. Each metric's
amount of each comes from its settings (`WORK`). A fit costs a fixed part plus a part per training
row; the probe fits at two sizes to tell them apart.
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bvae_desktop.core.data.imageset import ImageSet
from bvae_desktop.core.metrics._common import DEFAULT_REPRESENT_BATCH, Represent, varying_factors

PROBE_ROWS = (100, 800)  # training rows of the probe's tree ensembles and LinearSVCs: a small and a larger fit
PROBE_STAGES = 2  # boosting stages of the probe's tree ensembles
PROBE_CLASSES = 10  # classes of the probe's labels: 10 trees per stage
PROBE_MIN_S = 0.15  # time the representation at least this long (more batches when one is quicker)


@dataclass(frozen=True)
class MachineCosts:
    """Seconds per unit of each kind of work, measured here."""

    image_s: float  # represent one image (read or render it, encode it), in batches of `batch`
    tree_s: float = 0.0  # one tree of a GradientBoostingClassifier: per tree ...
    tree_row_s: float = 0.0  # ... and per tree and training row
    svc_s: float = 0.0  # one class of a LinearSVC on one feature: per class ...
    svc_row_s: float = 0.0  # ... and per class and training row
    probe_s: float = 0.0  # how long measuring took
    latent_dim: int = 0  # the representation's width
    batch: int = DEFAULT_REPRESENT_BATCH
    code_std: tuple[float, ...] = ()  # each dimension's spread over the probe's images (FactorVAE skips its votes
    # when no dimension reaches its prune threshold)


@dataclass(frozen=True)
class Work:
    """How much of each costly thing a metric does with its settings."""

    images: int = 0
    trees: int = 0
    tree_rows: int = 0  # training rows of each tree
    svc_classes: int = 0
    svc_rows: int = 0  # training rows of each LinearSVC

    def seconds(self, costs: MachineCosts) -> float:
        return (
            self.images * costs.image_s
            + self.trees * (costs.tree_s + self.tree_rows * costs.tree_row_s)
            + self.svc_classes * (costs.svc_s + self.svc_rows * costs.svc_row_s)
        )


def settings_of(func: Callable[..., Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A metric's settings as it will run: its defaults, then `kwargs`."""
    params = inspect.signature(func).parameters
    values = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    values.update(kwargs)
    return values


def _classifiers(classes: int) -> int:
    """Trees per boosting stage / LinearSVC one-vs-rest problems for a factor with `classes` classes."""
    return classes if classes > 2 else 1


def _factor_sizes(data: ImageSet) -> list[int]:
    factors = getattr(data, "factors", None)
    return [] if factors is None else [factors.sizes[k] for k in varying_factors(factors)]


def _beta_vae(s: dict[str, Any], data: ImageSet, costs: MachineCosts) -> Work:
    return Work(images=2 * int(s["batch_size"]) * (int(s["num_train"]) + int(s["num_eval"])))


def _factor_vae(s: dict[str, Any], data: ImageSet, costs: MachineCosts) -> Work:
    votes = int(s["num_train"]) + int(s["num_eval"])
    if costs.code_std and max(costs.code_std) < float(s["prune_threshold"]):
        votes = 0  # no active dimension: the metric stops after the variance sample
    return Work(images=int(s["num_variance_estimate"]) + int(s["batch_size"]) * votes)


def _mig(s: dict[str, Any], data: ImageSet, costs: MachineCosts) -> Work:
    return Work(images=int(s["num_train"]))


def _dci(s: dict[str, Any], data: ImageSet, costs: MachineCosts) -> Work:
    trees = sum(_classifiers(c) for c in _factor_sizes(data)) * int(s["n_estimators"])
    return Work(images=int(s["num_train"]) + int(s["num_test"]), trees=trees, tree_rows=int(s["num_train"]))


def _sap(s: dict[str, Any], data: ImageSet, costs: MachineCosts) -> Work:
    linear = s["classifier"] == "linear_svc" and not s["continuous"]
    problems = costs.latent_dim * sum(_classifiers(c) for c in _factor_sizes(data)) if linear else 0
    return Work(images=int(s["num_train"]) + int(s["num_test"]), svc_classes=problems, svc_rows=int(s["num_train"]))


def _unsupervised(s: dict[str, Any], data: ImageSet, costs: MachineCosts) -> Work:
    indices = s.get("indices")
    pool = len(indices) if indices is not None else None
    if pool is None and getattr(data, "factors", None) is None:
        pool = len(data)
    n = min(int(s["num_points"]), pool) if pool is not None else int(s["num_points"])
    passes = 1 + (s.get("represent_stats") is not None) + 2 * (s.get("reconstruct") is not None)  # decode ≈ encode
    return Work(images=n * passes)


WORK: dict[str, Callable[[dict[str, Any], ImageSet, MachineCosts], Work]] = {
    "beta_vae": _beta_vae,
    "factor_vae": _factor_vae,
    "mig": _mig,
    "dci": _dci,
    "sap": _sap,
    "unsupervised": _unsupervised,
}


def probe_costs(
    data: ImageSet,
    represent: Represent,
    settings: Mapping[str, Mapping[str, Any]],
    *,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> MachineCosts:
    """Time each kind of work the metrics in `settings` (name → resolved settings) will do, on a small seeded sample."""
    started = clock()
    rng = np.random.default_rng(seed)
    batch = max((int(s.get("represent_batch", DEFAULT_REPRESENT_BATCH)) for s in settings.values()), default=256)
    blank = MachineCosts(0.0, latent_dim=1)
    needed = max((WORK[n](dict(s), data, blank).images for n, s in settings.items() if n in WORK), default=batch)
    n = max(1, min(batch, needed, len(data) // 2))
    drawn = rng.choice(len(data), size=2 * n, replace=len(data) < 2 * n)
    # warm-up on other images of the same batch shape: the first call of a shape allocates and picks kernels
    represent(data.batch(np.sort(drawn[n:])).numpy())
    indices = np.sort(drawn[:n])
    timed, images, codes = 0.0, 0, None
    while images == 0 or (timed < PROBE_MIN_S and images < 4 * n):
        t = clock()
        codes = np.asarray(represent(data.batch(indices).numpy()))
        timed += clock() - t
        images += n
    assert codes is not None
    codes = codes.reshape(len(codes), -1).astype(np.float64)
    dim = int(codes.shape[1])
    spread = tuple(float(v) for v in codes.std(axis=0, ddof=1)) if len(codes) > 1 else ()
    # fits on distinct values, as codes of many images are (a split costs more the more distinct values it weighs)
    x = rng.standard_normal((max(PROBE_ROWS), dim))
    y = rng.integers(PROBE_CLASSES, size=len(x))
    tree = (0.0, 0.0)
    if "dci" in settings:
        from sklearn.ensemble import GradientBoostingClassifier  # imported before the clock runs

        def trees(rows: int) -> object:
            return GradientBoostingClassifier(n_estimators=PROBE_STAGES, random_state=0).fit(x[:rows], y[:rows])

        tree = _fit_costs(trees, PROBE_STAGES * PROBE_CLASSES, clock)
    svc = (0.0, 0.0)
    sap = settings.get("sap")
    if sap is not None and sap.get("classifier") == "linear_svc" and not sap.get("continuous"):
        from sklearn.svm import LinearSVC

        def svcs(rows: int) -> object:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # liblinear's ConvergenceWarning, as in the metric
                return LinearSVC(C=0.01, class_weight="balanced", random_state=0).fit(x[:rows, :1], y[:rows])

        svc = _fit_costs(svcs, PROBE_CLASSES, clock)
    return MachineCosts(timed / images, *tree, *svc, clock() - started, dim, batch, spread)


def _fit_costs(fit: Callable[[int], object], units: int, clock: Callable[[], float]) -> tuple[float, float]:
    """(seconds per unit, seconds per unit and row) from fits on PROBE_ROWS rows, `units` trees or classes each."""
    times = []
    for rows in PROBE_ROWS:
        t = clock()
        fit(rows)
        times.append((clock() - t) / units)
    (small, large), (few, many) = times, PROBE_ROWS
    per_row = max(0.0, (large - small) / (many - few))
    return max(0.0, small - per_row * few), per_row
