"""Helpers shared by the metrics: checking the data, drawing observations, representing them in batches.

Every metric draws from one random source made from its seed and passed down; nothing touches a
global random state. Observations are drawn as disentanglement_lib does: sample factor classes
(each factor uniform over its classes), map them to image indices, render/read the images.

Two sources: MIG, DCI, SAP and the unsupervised scores use a `np.random.Generator`
(`np.random.default_rng(seed)`); the β-VAE and FactorVAE metrics use disentanglement_lib's own
`np.random.RandomState(seed)` and `dl_sample_factors`, drawing in its order, so that on the same
data and representation they return exactly the numbers its functions return.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from bvae_desktop.core.data.imageset import Factors, ImageSet
from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.progress import ProgressReport

Represent = Callable[[np.ndarray], np.ndarray]
Scores = dict[str, float | int | str | list]

DEFAULT_REPRESENT_BATCH = 256


class MetricError(BvaeError, ValueError):
    """A metric cannot run on this data or representation (no factors, wrong code shape, bad count)."""


def require_factors(data: ImageSet, metric: str) -> Factors:
    """The data's ground-truth factors, or a MetricError saying the metric needs them."""
    factors = getattr(data, "factors", None)
    if factors is None:
        raise MetricError(
            f"the {metric} metric needs ground-truth factors; {getattr(data, 'name', 'this data')} has none "
            "(use dSprites, 3D Shapes or another factor-labelled set, or the unsupervised metrics)"
        )
    if not varying_factors(factors):
        raise MetricError(f"the {metric} metric needs at least one factor with more than one class")
    return factors


def varying_factors(factors: Factors) -> list[int]:
    """Factors with more than one class. A 1-class factor (dSprites colour) carries no information,
    and disentanglement_lib leaves it out too (its dsprites_full uses latent factors 1..5)."""
    return [k for k, size in enumerate(factors.sizes) if size > 1]


def check_count(name: str, value: int, minimum: int = 1) -> int:
    value = int(value)
    if value < minimum:
        raise MetricError(f"{name} must be at least {minimum}; got {value}")
    return value


def sample_observations(factors: Factors, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n random observations: (image indices (n,), factor classes (n, K))."""
    classes = factors.sample_classes(n, rng)
    return indices_of(factors, classes), classes


def dl_random_state(seed: int) -> np.random.RandomState:
    """disentanglement_lib's random source for a metric: `np.random.RandomState(seed)` (evaluate.py)."""
    try:
        return np.random.RandomState(seed)
    except (TypeError, ValueError) as exc:
        raise MetricError(f"seed must be an integer from 0 to 2**32 - 1; got {seed!r}") from exc


def dl_sample_factors(factors: Factors, n: int, random_state: np.random.RandomState) -> np.ndarray:
    """n factor combinations (n, K) drawn exactly as disentanglement_lib draws them.

    Its `sample_factors` draws the latent factors (those with more than one class) one after the
    other, `random_state.randint(size, size=n)` each, in factor order
    (SplitDiscreteStateSpace.sample_latent_factors). Its `sample_observations_from_factors` then
    fills the other factors (dSprites colour) with `randint(1, size=n)`, which is 0 and does not
    advance the state; here those columns are simply 0.
    """
    classes = np.zeros((n, factors.num_factors), dtype=np.int64)
    for k in varying_factors(factors):
        classes[:, k] = random_state.randint(factors.sizes[k], size=n)
    return classes


def indices_of(factors: Factors, classes: np.ndarray) -> np.ndarray:
    try:
        return factors.index_of(classes)
    except KeyError as exc:
        raise MetricError(f"the factor grid is incomplete: {exc.args[0] if exc.args else exc}") from exc


def represent_indices(
    data: ImageSet,
    represent: Represent,
    indices: np.ndarray,
    batch_size: int = DEFAULT_REPRESENT_BATCH,
    *,
    native: bool = False,
    on_images: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Codes (n, D) for the images at `indices`, represented `batch_size` images at a time.

    float64, or with `native` in the representation's own float type (float32 for an encoder),
    as disentanglement_lib computes on what the representation returns. `on_images(n)` is told
    how many images are done after each batch (progress; it draws nothing, so results stay the same).
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    parts = []
    for start in range(0, len(indices), batch_size):
        images = data.batch(indices[start : start + batch_size]).numpy()
        parts.append(_check_codes(represent(images), len(images), native))
        if on_images is not None:
            on_images(start + len(images))
    if not parts:
        raise MetricError("no observations to represent")
    width = {p.shape[1] for p in parts}
    if len(width) != 1:
        raise MetricError(f"the representation changed width between batches: {sorted(width)}")
    return np.concatenate(parts, axis=0)


def _check_codes(codes: np.ndarray, n: int, native: bool = False) -> np.ndarray:
    codes = np.asarray(codes)
    if not (native and codes.dtype.kind == "f"):
        codes = codes.astype(np.float64, copy=False)
    if codes.ndim == 1 and n == 1:
        codes = codes[None, :]
    if codes.ndim != 2 or codes.shape[0] != n:
        raise MetricError(f"the representation must return (n, D) codes for n images; got {codes.shape} for n={n}")
    if not np.isfinite(codes).all():
        raise MetricError("the representation returned non-finite codes (NaN or inf)")
    return codes


def represent_groups(
    data: ImageSet,
    represent: Represent,
    groups: Sequence[np.ndarray],
    batch_size: int = DEFAULT_REPRESENT_BATCH,
    *,
    native: bool = False,
    on_images: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Represent several equally long index arrays in shared batches; one (len, D) code array per group."""
    if not groups:
        return []
    size = len(groups[0])
    codes = represent_indices(data, represent, np.concatenate(groups), batch_size, native=native, on_images=on_images)
    return [codes[i * size : (i + 1) * size] for i in range(len(groups))]


def chunk_size(images_per_item: int, batch_size: int) -> int:
    """How many items (votes, points) to represent together so one call holds about `batch_size` images."""
    return max(1, batch_size // max(images_per_item, 1))


def discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """disentanglement_lib's histogram discretiser: per dimension, `num_bins` equal-width bins over its range.

    codes (n, D) -> bin ids (n, D) int64 in 1..num_bins.
    """
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], num_bins)[1][:-1]
        out[:, j] = np.digitize(codes[:, j], edges)
    return out


def mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Empirical mutual information (nats) between two discrete label arrays (sklearn's mutual_info_score)."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1), dtype=np.float64)
    np.add.at(joint, (ai.reshape(-1), bi.reshape(-1)), 1.0)
    joint /= joint.sum()
    pa = joint.sum(axis=1, keepdims=True)
    pb = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float(max(0.0, np.sum(joint[nz] * np.log(joint[nz] / (pa @ pb)[nz]))))


def entropy(a: np.ndarray) -> float:
    """Empirical entropy (nats) of a discrete label array."""
    _, counts = np.unique(a, return_counts=True)
    p = counts / counts.sum()
    return float(-np.sum(p * np.log(p)))


def mutual_info_matrix(discrete_codes: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """MI (D, K) between each discretised code dimension and each factor."""
    return np.array(
        [
            [mutual_info(discrete_codes[:, j], classes[:, k]) for k in range(classes.shape[1])]
            for j in range(discrete_codes.shape[1])
        ]
    )


def gap_top_two(matrix: np.ndarray) -> np.ndarray:
    """Per column: largest minus second largest entry (the whole largest entry when there is one row)."""
    ordered = np.sort(matrix, axis=0)[::-1]
    if ordered.shape[0] < 2:
        return ordered[0]
    return ordered[0] - ordered[1]


def factor_names(factors: Factors, ks: Sequence[int]) -> str:
    return ",".join(factors.names[k] for k in ks)


def report_images(
    progress: ProgressReport | None, offset: int, total: int, part: int = 1, parts: int = 1
) -> Callable[[int], None] | None:
    """An `on_images` callback reporting `offset + n` of `total` images to `progress` (None without one)."""
    if progress is None:
        return None
    return lambda n: progress(offset + n, total, "images", part, parts)
