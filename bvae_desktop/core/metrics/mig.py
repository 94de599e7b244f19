"""Mutual Information Gap (Chen et al. 2018), as disentanglement_lib's `mig.py` computes it.

Draw `num_train` observations, discretise each code dimension into `num_bins` equal-width bins
over its observed range, compute the MI (nats) between every discretised dimension and every
factor's class, divide the gap between the two most informative dimensions by the factor's
empirical entropy, and average over factors. Factors whose sampled entropy is 0 (one class, as
dSprites colour) are skipped. With a one-dimensional code the gap is the top MI itself.
"""

from __future__ import annotations

import numpy as np

from bvae_desktop.core.data.imageset import ImageSet
from bvae_desktop.core.metrics._common import (
    DEFAULT_REPRESENT_BATCH,
    Represent,
    Scores,
    check_count,
    discretize,
    entropy,
    factor_names,
    gap_top_two,
    mutual_info_matrix,
    report_images,
    represent_indices,
    require_factors,
    sample_observations,
)
from bvae_desktop.core.progress import ProgressReport


def compute_mig(
    data: ImageSet,
    represent: Represent,
    *,
    seed: int = 0,
    num_train: int = 10_000,
    num_bins: int = 20,
    represent_batch: int = DEFAULT_REPRESENT_BATCH,
    progress: ProgressReport | None = None,
) -> Scores:
    """MIG → mig (mean over factors), mig_<factor> per factor, plus the settings used.

    `progress(done, total, "images")` as the observations are represented."""
    factors = require_factors(data, "MIG")
    num_train = check_count("num_train", num_train, 2)
    num_bins = check_count("num_bins", num_bins, 2)
    rng = np.random.default_rng(seed)
    indices, classes = sample_observations(factors, num_train, rng)
    codes = represent_indices(
        data, represent, indices, represent_batch, on_images=report_images(progress, 0, num_train)
    )
    entropies = np.array([entropy(classes[:, k]) for k in range(factors.num_factors)])
    used = [k for k in range(factors.num_factors) if entropies[k] > 0]
    mi = mutual_info_matrix(discretize(codes, num_bins), classes[:, used])
    per_factor = gap_top_two(mi) / entropies[used]
    scores: Scores = {"mig": float(np.mean(per_factor))}
    scores.update({f"mig_{factors.names[k]}": float(v) for k, v in zip(used, per_factor, strict=True)})
    scores.update(
        {
            "seed": int(seed),
            "num_train": num_train,
            "num_bins": num_bins,
            "discretizer": "histogram (equal-width bins per dimension)",
            "factors": factor_names(factors, used),
        }
    )
    return scores
