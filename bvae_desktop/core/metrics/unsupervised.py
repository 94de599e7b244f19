"""Metrics that need no ground-truth factors, so any data set (MNIST, a folder) gets numbers.

From the codes (encoder means) of `num_points` observations:
- `active_units`: dimensions whose variance of the mean over the data exceeds 0.01 (Burda et al. 2016).
- `gaussian_total_correlation`: 0.5 (Σ log diag Σ − log det Σ) of the codes' covariance Σ, the total
  correlation of a Gaussian with that covariance (disentanglement_lib's `gaussian_total_correlation`);
  0 for independent dimensions. Computed over dimensions with non-zero variance.
- `gaussian_wasserstein_correlation` (and `_norm`, divided by trace Σ): disentanglement_lib's
  2 tr Σ − 2 tr sqrt(Σ diag Σ).
- `mutual_info_score`: mean MI between pairs of distinct dimensions, each discretised into 20 bins.
With `represent_stats` (images → (means, log-variances), e.g. `ModelSource.encode`):
- `mean_abs_mu` and `mean_sigma`: per dimension, the mean of |μ| and of σ = exp(logvar / 2) (lists).
With `reconstruct` (uint8 images → uint8 reconstructions of the same shape, e.g. decode(encode mean)):
- `recon_mse`: squared error summed over pixels (pixels scaled to [0, 1]), averaged over images;
- `recon_bce`: binary cross-entropy summed over pixels, reconstructions clipped to [1/512, 1 − 1/512]
  (they arrive quantised to uint8), averaged over images. Use `indices` = the validation split to
  measure on held-out images.

Observations: with `indices` given, up to `num_points` of them drawn without replacement; otherwise
(data with factors) factor classes sampled as the other metrics do, or (no factors) up to
`num_points` images drawn without replacement from the whole set.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bvae_desktop.core.data.imageset import ImageSet
from bvae_desktop.core.metrics._common import (
    DEFAULT_REPRESENT_BATCH,
    MetricError,
    Represent,
    Scores,
    check_count,
    discretize,
    mutual_info,
    report_images,
    represent_indices,
    sample_observations,
)
from bvae_desktop.core.progress import ProgressReport

ACTIVE_THRESHOLD = 0.01


def compute_unsupervised(
    data: ImageSet,
    represent: Represent,
    *,
    seed: int = 0,
    num_points: int = 10_000,
    represent_stats: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    reconstruct: Callable[[np.ndarray], np.ndarray] | None = None,
    indices: np.ndarray | None = None,
    num_bins: int = 20,
    represent_batch: int = DEFAULT_REPRESENT_BATCH,
    progress: ProgressReport | None = None,
) -> Scores:
    """Unsupervised scores (see the module docstring), plus the settings used.

    `progress(done, total, "images")` over every pass: codes, then posterior statistics and
    reconstructions when asked for.
    """
    num_points = check_count("num_points", num_points, 2)
    rng = np.random.default_rng(seed)
    if indices is not None:
        pool = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(pool) < 2:
            raise MetricError("the unsupervised metrics need at least 2 images")
        chosen = np.sort(rng.choice(pool, size=min(num_points, len(pool)), replace=False))
        drawn = f"{len(chosen)} of {len(pool)} given images"
    elif getattr(data, "factors", None) is not None:
        chosen, _ = sample_observations(data.factors, num_points, rng)
        drawn = "sampled factor classes"
    else:
        if len(data) < 2:
            raise MetricError("the unsupervised metrics need at least 2 images")
        chosen = np.sort(rng.choice(len(data), size=min(num_points, len(data)), replace=False))
        drawn = f"{len(chosen)} of {len(data)} images"
    n = len(chosen)
    total = n * (1 + (represent_stats is not None) + (reconstruct is not None))
    codes = represent_indices(data, represent, chosen, represent_batch, on_images=report_images(progress, 0, total))
    scores: Scores = code_statistics(codes, num_bins)
    done = n
    if represent_stats is not None:
        mean_abs, mean_sigma = _posterior_stats(
            data, represent_stats, chosen, represent_batch, report_images(progress, done, total)
        )
        scores["mean_abs_mu"] = [float(v) for v in mean_abs]
        scores["mean_sigma"] = [float(v) for v in mean_sigma]
        done += n
    if reconstruct is not None:
        scores.update(_reconstruction(data, reconstruct, chosen, represent_batch, report_images(progress, done, total)))
    scores.update(
        {
            "seed": int(seed),
            "num_points": int(len(chosen)),
            "num_bins": num_bins,
            "active_threshold": ACTIVE_THRESHOLD,
            "observations": drawn,
        }
    )
    return scores


def code_statistics(codes: np.ndarray, num_bins: int = 20) -> Scores:
    """The factor-free scores of an (n, D) code matrix."""
    variances = codes.var(axis=0, ddof=1)
    live = variances > 1e-12
    cov = np.atleast_2d(np.cov(codes[:, live], rowvar=False)) if live.any() else np.zeros((0, 0))
    wasserstein = gaussian_wasserstein_correlation(cov) if live.any() else 0.0
    trace = float(np.trace(cov)) if live.any() else 0.0
    d = codes.shape[1]
    discrete = discretize(codes, num_bins)
    pairs = [mutual_info(discrete[:, i], discrete[:, j]) for i in range(d) for j in range(d) if i != j]
    return {
        "active_units": int(np.sum(variances > ACTIVE_THRESHOLD)),
        "gaussian_total_correlation": gaussian_total_correlation(cov) if live.any() else 0.0,
        "gaussian_wasserstein_correlation": wasserstein,
        "gaussian_wasserstein_correlation_norm": wasserstein / trace if trace > 0 else 0.0,
        "mutual_info_score": float(np.mean(pairs)) if pairs else 0.0,
        "latent_dim": int(d),
    }


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """KL between N(0, Σ) and N(0, diag Σ): 0.5 (Σ log Σ_ii − log det Σ)."""
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return float("inf")
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - logdet))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """2 tr Σ − 2 tr sqrt(Σ diag Σ); tr sqrt(Σ D) = Σ sqrt(eig(D^½ Σ D^½)), a symmetric PSD matrix."""
    root_d = np.sqrt(np.diag(cov))
    eig = np.linalg.eigvalsh(root_d[:, None] * cov * root_d[None, :])
    return float(2 * np.trace(cov) - 2 * np.sum(np.sqrt(np.clip(eig, 0.0, None))))


def _posterior_stats(data, represent_stats, chosen, batch_size, on_images=None):
    abs_sum = sigma_sum = None
    for start in range(0, len(chosen), batch_size):
        images = data.batch(chosen[start : start + batch_size]).numpy()
        result = represent_stats(images)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise MetricError("represent_stats must return (means, log-variances)")
        mean, logvar = (np.asarray(a, dtype=np.float64) for a in result)
        if mean.shape != logvar.shape or mean.ndim != 2 or mean.shape[0] != len(images):
            raise MetricError(f"represent_stats returned {mean.shape} and {logvar.shape} for {len(images)} images")
        a, s = np.abs(mean).sum(axis=0), np.exp(0.5 * logvar).sum(axis=0)
        abs_sum = a if abs_sum is None else abs_sum + a
        sigma_sum = s if sigma_sum is None else sigma_sum + s
        if on_images is not None:
            on_images(start + len(images))
    return abs_sum / len(chosen), sigma_sum / len(chosen)


def _reconstruction(data, reconstruct, chosen, batch_size, on_images=None) -> Scores:
    mse = bce = 0.0
    eps = 1.0 / 512
    for start in range(0, len(chosen), batch_size):
        images = data.batch(chosen[start : start + batch_size]).numpy()
        recon = np.asarray(reconstruct(images))
        if recon.shape != images.shape:
            raise MetricError(f"reconstruct returned {recon.shape} for images {images.shape}")
        x = images.astype(np.float64) / 255.0
        r = recon.astype(np.float64) / 255.0
        axes = tuple(range(1, x.ndim))
        mse += float(np.sum(((x - r) ** 2).sum(axis=axes)))
        r = np.clip(r, eps, 1 - eps)
        bce += float(np.sum(-(x * np.log(r) + (1 - x) * np.log(1 - r)).sum(axis=axes)))
        if on_images is not None:
            on_images(start + len(images))
    return {"recon_mse": mse / len(chosen), "recon_bce": bce / len(chosen)}
