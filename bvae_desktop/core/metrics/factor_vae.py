"""The FactorVAE metric (Kim & Mnih 2018), exactly as disentanglement_lib's `factor_vae.py` computes it.

1. Each code dimension's variance over `num_variance_estimate` random observations (ddof=1).
   A dimension is active when its standard deviation, sqrt(variance), is at least
   `prune_threshold` (disentanglement_lib's `prune_dims`, threshold 0.05 in all its study
   configs): a threshold on the standard deviation, i.e. variance ≥ 0.0025, not variance ≥ 0.05.
2. Each vote: choose a factor k uniformly, draw `batch_size` observations all sharing the class
   of k that the first of them drew, divide each active dimension's variance over the batch
   (ddof=1) by its global variance, and vote (dimension with the smallest ratio, k).
3. A majority-vote classifier (each active dimension → the factor that voted for it most on the
   training votes; np.argmax, so ties and dimensions no training vote chose go to the first
   factor) is scored on the training votes and on fresh evaluation votes.

Random draws come from `np.random.RandomState(seed)` in disentanglement_lib's order (the
variance sample, then per vote: the factor, then the factors of the batch, see
`dl_sample_factors`), and the variances are computed in the representation's own float type, so
on the same data and representation the accuracies equal its function's. Factors with a single
class (dSprites colour) are not factors to it (dsprites_full uses latent factors 1..5): they are
never chosen, and the votes table has a row per factor with more than one class only.

A neural encoder may round differently for different batch sizes; `represent_batch=64` (with
batch_size 64) calls the representation on the same batches disentanglement_lib does.

Two differences in what is reported, none in the scores: with no active dimension the accuracies
are 0 as in disentanglement_lib; `num_active_dims` is the number of active dimensions (its
function reports the width of the code there, `len` of the boolean mask).
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
    dl_random_state,
    dl_sample_factors,
    factor_names,
    indices_of,
    report_images,
    represent_groups,
    represent_indices,
    require_factors,
    varying_factors,
)
from bvae_desktop.core.progress import ProgressReport


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
    progress: ProgressReport | None = None,
) -> Scores:
    """FactorVAE metric → train_accuracy, eval_accuracy, num_active_dims, plus the settings used.

    `prune_threshold` applies to each dimension's standard deviation (disentanglement_lib's prune_dims).
    `progress(done, total, "images")` as the variance sample and the votes' batches are represented.
    """
    factors = require_factors(data, "FactorVAE")
    batch_size = check_count("batch_size", batch_size, 2)
    num_train = check_count("num_train", num_train)
    num_eval = check_count("num_eval", num_eval)
    num_variance_estimate = check_count("num_variance_estimate", num_variance_estimate, 2)
    random_state = dl_random_state(seed)
    choices = varying_factors(factors)
    total = num_variance_estimate + batch_size * (num_train + num_eval)
    on_images = report_images(progress, 0, total)
    global_var = _global_variances(
        data, represent, factors, num_variance_estimate, random_state, represent_batch, on_images
    )
    active = np.sqrt(global_var) >= prune_threshold
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
        if progress is not None:
            progress(total, total, "images")  # no vote to take
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0, **settings}
    args = (data, represent, factors, choices, batch_size, random_state, global_var, active, represent_batch)
    train_votes = _votes(*args, num_train, report_images(progress, num_variance_estimate, total))
    classifier = np.argmax(train_votes, axis=0)  # per active dimension: the factor voted most, ties → first
    columns = np.arange(train_votes.shape[1])
    train_accuracy = float(train_votes[classifier, columns].sum() / train_votes.sum())
    eval_votes = _votes(*args, num_eval, report_images(progress, num_variance_estimate + batch_size * num_train, total))
    return {
        "train_accuracy": train_accuracy,
        "eval_accuracy": float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
        "num_active_dims": int(active.sum()),
        **settings,
    }


def _global_variances(data, represent, factors, count, random_state, represent_batch, on_images=None) -> np.ndarray:
    """Each dimension's variance (ddof=1) over `count` observations, in the representation's float type."""
    classes = dl_sample_factors(factors, count, random_state)
    indices = indices_of(factors, classes)
    codes = represent_indices(data, represent, indices, represent_batch, native=True, on_images=on_images)
    return np.var(codes, axis=0, ddof=1)


def _votes(
    data, represent, factors, choices, batch_size, random_state, global_var, active, represent_batch, count, on_images
):
    """Vote counts (factors with more than one class, active dimensions); `on_images(n)`: n images represented."""
    votes = np.zeros((len(choices), int(active.sum())), dtype=np.int64)
    per_chunk = chunk_size(batch_size, represent_batch)
    for start in range(0, count, per_chunk):
        rows, groups = [], []
        for _ in range(start, min(start + per_chunk, count)):
            row = int(random_state.randint(len(choices)))
            k = choices[row]
            classes = dl_sample_factors(factors, batch_size, random_state)
            classes[:, k] = classes[0, k]
            rows.append(row)
            groups.append(indices_of(factors, classes))
        batches = represent_groups(data, represent, groups, represent_batch, native=True)
        for row, codes in zip(rows, batches, strict=True):
            local_var = np.var(codes, axis=0, ddof=1)
            with np.errstate(invalid="ignore", divide="ignore"):  # prune_threshold 0 keeps constant dims: 0/0
                votes[row, int(np.argmin(local_var[active] / global_var[active]))] += 1
        if on_images is not None:
            on_images(batch_size * min(start + per_chunk, count))
    return votes
