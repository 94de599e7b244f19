"""The β-VAE metric (Higgins et al. 2017), exactly as disentanglement_lib's `beta_vae.py` computes it.

Each training point: choose a factor k uniformly, draw `batch_size` pairs of observations whose
pair members share factor k's class (each pair its own class; every other factor drawn anew),
feature = mean over the pairs of |z1 - z2|, label = k. A linear classifier predicts k from the
feature; the score is its accuracy on fresh points (`eval_accuracy`), beside its accuracy on the
points it was fitted to (`train_accuracy`).

As disentanglement_lib (`compute_beta_vae_sklearn`):
- Draws from `np.random.RandomState(seed)` in its order: per point the factor, then the factors of
  the first and of the second batch (see `dl_sample_factors`); the training points are drawn, the
  classifier fitted, then the evaluation points drawn. Features are computed in the
  representation's own float type (float32 for an encoder) and stored as float64.
- Classifier: scikit-learn's `LogisticRegression(random_state=...)` with its defaults (today L2,
  C = 1, lbfgs, multinomial, at most 100 iterations, raw features, no standardising); `l2_c` and
  `max_iter` change C and max_iter. Its numbers therefore follow the installed scikit-learn, as
  disentanglement_lib's do: before scikit-learn 0.22 the default was liblinear one-vs-rest.
- Factors with one class (dSprites colour) are not factors (its dsprites_full uses latent factors
  1..5): never chosen; chance is 1 / (number of factors with more than one class).
A neural encoder may round differently for different batch sizes; `represent_batch=64` (with
batch_size 64) calls the representation on the same batches disentanglement_lib does.
Where every training point has the same label (possible only with tiny counts) scikit-learn
cannot fit; the classifier then predicts that label (disentanglement_lib would stop with an error).
"""

from __future__ import annotations

import warnings

import numpy as np

from bvae_desktop.core.data.imageset import ImageSet
from bvae_desktop.core.metrics._common import (
    DEFAULT_REPRESENT_BATCH,
    MetricError,
    Represent,
    Scores,
    check_count,
    chunk_size,
    dl_random_state,
    dl_sample_factors,
    factor_names,
    indices_of,
    represent_groups,
    require_factors,
    varying_factors,
)
from bvae_desktop.core.progress import ProgressReport


def compute_beta_vae(
    data: ImageSet,
    represent: Represent,
    *,
    seed: int = 0,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    l2_c: float = 1.0,
    max_iter: int = 100,
    represent_batch: int = DEFAULT_REPRESENT_BATCH,
    progress: ProgressReport | None = None,
) -> Scores:
    """β-VAE metric → train_accuracy, eval_accuracy, plus the settings used.

    `progress(done, total, "points")` after each chunk of training and evaluation points.
    """
    factors = require_factors(data, "β-VAE")
    batch_size = check_count("batch_size", batch_size)
    num_train = check_count("num_train", num_train, 2)
    num_eval = check_count("num_eval", num_eval)
    max_iter = check_count("max_iter", max_iter)
    random_state = dl_random_state(seed)
    choices = varying_factors(factors)
    total = num_train + num_eval
    report = None if progress is None else (lambda done: progress(done, total, "points"))
    args = (data, represent, factors, choices, batch_size)
    x_train, y_train = _points(*args, num_train, random_state, represent_batch, report)
    model = _fit(x_train, y_train, l2_c, max_iter, random_state)
    train_accuracy = float(np.mean(model.predict(x_train) == y_train))
    after_train = None if report is None else (lambda done: report(num_train + done))
    x_eval, y_eval = _points(*args, num_eval, random_state, represent_batch, after_train)
    return {
        "train_accuracy": train_accuracy,
        "eval_accuracy": float(np.mean(model.predict(x_eval) == y_eval)),
        "chance": 1.0 / len(choices),
        "classifier": f"sklearn LogisticRegression (C={l2_c:g}, max_iter={max_iter})",
        "converged": int(model.converged),
        "iterations": int(model.iterations),
        "seed": int(seed),
        "batch_size": batch_size,
        "num_train": num_train,
        "num_eval": num_eval,
        "factors": factor_names(factors, choices),
    }


def _points(data, represent, factors, choices, batch_size, count, random_state, represent_batch, report=None):
    """Features (count, D) float64 and labels (count,): the position of the fixed factor among `choices`.

    `report(points done)` after each chunk."""
    labels = np.zeros(count, dtype=np.int64)
    points = None
    per_chunk = chunk_size(2 * batch_size, represent_batch)
    for start in range(0, count, per_chunk):
        groups = []
        stop = min(start + per_chunk, count)
        for i in range(start, stop):
            labels[i] = random_state.randint(len(choices))
            k = choices[labels[i]]
            first = dl_sample_factors(factors, batch_size, random_state)
            second = dl_sample_factors(factors, batch_size, random_state)
            second[:, k] = first[:, k]
            groups += [indices_of(factors, first), indices_of(factors, second)]
        codes = represent_groups(data, represent, groups, represent_batch, native=True)
        if points is None:
            points = np.zeros((count, codes[0].shape[1]))
        for i, j in zip(range(start, stop), range(0, len(codes), 2), strict=True):
            points[i] = np.mean(np.abs(codes[j] - codes[j + 1]), axis=0)
        if report is not None:
            report(stop)
    return points, labels


class _Fitted:
    """The fitted classifier: sklearn's model, or a constant for one-label training data."""

    def __init__(self, model=None, label: int = 0, converged: bool = True, iterations: int = 0) -> None:
        self.model, self.label, self.converged, self.iterations = model, label, converged, iterations

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.model is None:
            return np.full(len(x), self.label, dtype=np.int64)
        return self.model.predict(x)


def _fit(x: np.ndarray, y: np.ndarray, l2_c: float, max_iter: int, random_state: np.random.RandomState) -> _Fitted:
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise MetricError("the β-VAE metric needs scikit-learn (pip install scikit-learn)") from exc
    if len(np.unique(y)) < 2:
        return _Fitted(label=int(y[0]))
    # as disentanglement_lib: LogisticRegression(random_state=random_state); lbfgs draws nothing from it
    model = LogisticRegression(C=float(l2_c), max_iter=max_iter, random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    iterations = int(np.max(model.n_iter_))
    return _Fitted(model, converged=iterations < max_iter, iterations=iterations)
