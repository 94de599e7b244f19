"""The FactorVAE metric (Kim & Mnih 2018), as disentanglement_lib's `factor_vae.py` computes it.

1. Each code dimension's variance over `num_variance_estimate` random observations (ddof=1);
   dimensions with variance below `prune_threshold` (0.05, DESIGN §5) count as collapsed and are left out.
2. Each vote: choose a factor k uniformly, draw `batch_size` observations sharing one class of k,
   divide each active dimension's variance over the batch by its global variance, and vote
   (dimension with the smallest ratio, k).
3. A majority-vote classifier (each dimension → the factor that voted for it most on the training
   votes) is scored on the training votes and on fresh evaluation votes.

Factors with a single class (dSprites colour) are never chosen (see `varying_factors`). With no
active dimension the accuracies are 0, as in disentanglement_lib.
"""

from __future__ import annotations

import numpy as np

from bvae_desktop.core.data.imageset import ImageSet
from bvae_desktop.core.metrics._common import (
    DEFAULT_REPRESENT_BATCH,
    Represent,
    Scores,
    check_count,
    chunk_size,
    factor_names,
    indices_of,
    represent_groups,
    represent_indices,
    require_factors,
    sample_observations,
    varying_factors,
)


def compute_factor_vae(
    data: ImageSet,
    represent: Represent,
    *,
    seed: int = 0,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = 0.05,
    represent_batch: int = DEFAULT_REPRESENT_BATCH,
) -> Scores:
    """FactorVAE metric → train_accuracy, eval_accuracy, num_active_dims, plus the settings used."""
    factors = require_factors(data, "FactorVAE")
    batch_size = check_count("batch_size", batch_size, 2)
    num_train = check_count("num_train", num_train)
    num_eval = check_count("num_eval", num_eval)
    num_variance_estimate = check_count("num_variance_estimate", num_variance_estimate, 2)
    rng = np.random.default_rng(seed)
    choices = varying_factors(factors)
    indices, _ = sample_observations(factors, num_variance_estimate, rng)
    global_var = np.var(represent_indices(data, represent, indices, represent_batch), axis=0, ddof=1)
    active = global_var >= prune_threshold
    settings: Scores = {
        "chance": 1.0 / len(choices),
        "seed": int(seed),
        "batch_size": batch_size,
        "num_train": num_train,
        "num_eval": num_eval,
        "num_variance_estimate": num_variance_estimate,
        "prune_threshold": float(prune_threshold),
        "factors": factor_names(factors, choices),
    }
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0, **settings}
    train_votes = _votes(
        data, represent, factors, choices, batch_size, num_train, rng, global_var, active, represent_batch
    )
    eval_votes = _votes(
        data, represent, factors, choices, batch_size, num_eval, rng, global_var, active, represent_batch
    )
    classifier = np.argmax(train_votes, axis=0)  # per active dimension: the factor voted most
    columns = np.arange(train_votes.shape[1])
    return {
        "train_accuracy": float(train_votes[classifier, columns].sum() / train_votes.sum()),
        "eval_accuracy": float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
        "num_active_dims": int(active.sum()),
        **settings,
    }


def _votes(data, represent, factors, choices, batch_size, count, rng, global_var, active, represent_batch):
    """Vote counts (num_factors, num_active_dims)."""
    votes = np.zeros((factors.num_factors, int(active.sum())), dtype=np.int64)
    scale = global_var[active]
    per_chunk = chunk_size(batch_size, represent_batch)
    for start in range(0, count, per_chunk):
        ks, groups = [], []
        for _ in range(start, min(start + per_chunk, count)):
            k = choices[int(rng.integers(len(choices)))]
            ks.append(k)
            groups.append(indices_of(factors, factors.sample_with_fixed(batch_size, k, rng)))
        for k, codes in zip(ks, represent_groups(data, represent, groups, represent_batch), strict=True):
            local = np.var(codes[:, active], axis=0, ddof=1)
            votes[k, int(np.argmin(local / scale))] += 1
    return votes
