"""The β-VAE metric (Higgins et al. 2017), as disentanglement_lib's `beta_vae.py` computes it.

Each training point: choose a factor k uniformly, draw `batch_size` pairs of observations whose
pair members share factor k's class (each pair its own class; every other factor drawn anew),
feature = mean over the pairs of |z1 - z2|, label = k. A linear classifier predicts k from the
feature; the score is its accuracy on fresh points.

Choices, written down:
- Factors with one class (dSprites colour) are never chosen: for them every pair trivially shares
  the factor, and disentanglement_lib's dsprites_full leaves colour out of the factors anyway.
  Chance level is therefore 1 / (number of factors with more than one class).
- Classifier: multinomial logistic regression like sklearn's `LogisticRegression()` default that
  disentanglement_lib uses (L2, C = 1, i.e. mean cross-entropy + ||W||² / (2 C n)), fitted here
  with full-batch L-BFGS in float64 numpy from zero weights (deterministic; at most `max_iter` = 100
  iterations, sklearn's default; `converged` says whether it stopped on its tolerance), on features
  standardised with the training points' mean and standard deviation (sklearn's default does not
  standardise; standardising only helps the optimiser converge and barely moves the accuracy).
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
    require_factors,
    varying_factors,
)


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
) -> Scores:
    """β-VAE metric → train_accuracy, eval_accuracy, plus the settings used."""
    factors = require_factors(data, "β-VAE")
    batch_size = check_count("batch_size", batch_size)
    num_train = check_count("num_train", num_train, 2)
    num_eval = check_count("num_eval", num_eval)
    rng = np.random.default_rng(seed)
    choices = varying_factors(factors)
    x_train, y_train = _points(data, represent, factors, choices, batch_size, num_train, rng, represent_batch)
    x_eval, y_eval = _points(data, represent, factors, choices, batch_size, num_eval, rng, represent_batch)
    model = LogisticRegression(l2_c=l2_c, max_iter=max_iter).fit(x_train, y_train)
    return {
        "train_accuracy": float(np.mean(model.predict(x_train) == y_train)),
        "eval_accuracy": float(np.mean(model.predict(x_eval) == y_eval)),
        "chance": 1.0 / len(choices),
        "classifier": f"logistic regression (L2, C={l2_c:g}, standardised, L-BFGS)",
        "converged": int(model.converged),
        "iterations": int(model.iterations),
        "seed": int(seed),
        "batch_size": batch_size,
        "num_train": num_train,
        "num_eval": num_eval,
        "factors": factor_names(factors, choices),
    }


def _points(data, represent, factors, choices, batch_size, count, rng, represent_batch):
    labels = np.zeros(count, dtype=np.int64)
    per_chunk = chunk_size(2 * batch_size, represent_batch)
    rows = []
    for start in range(0, count, per_chunk):
        groups = []
        for i in range(start, min(start + per_chunk, count)):
            k = choices[int(rng.integers(len(choices)))]
            first = factors.sample_classes(batch_size, rng)
            second = factors.sample_classes(batch_size, rng)
            second[:, k] = first[:, k]
            labels[i] = k
            groups += [indices_of(factors, first), indices_of(factors, second)]
        codes = represent_groups(data, represent, groups, represent_batch)
        rows += [np.mean(np.abs(codes[j] - codes[j + 1]), axis=0) for j in range(0, len(codes), 2)]
    return np.stack(rows), labels


class LogisticRegression:
    """Multinomial logistic regression with an L2 penalty (sklearn's objective), fitted by L-BFGS in numpy.

    numpy rather than torch: on a busy machine torch's thread pool makes these tiny matrix products
    twenty times slower, and the problem (a few thousand points, ten features) needs no more.
    """

    def __init__(self, *, l2_c: float = 1.0, max_iter: int = 100, tol: float = 1e-4) -> None:
        self.l2_c = float(l2_c)
        self.max_iter = int(max_iter)
        self.tol = tol
        self.converged = False
        self.iterations = 0

    def fit(self, x: np.ndarray, y: np.ndarray) -> LogisticRegression:
        x = np.asarray(x, dtype=np.float64)
        self.classes_, target = np.unique(np.asarray(y), return_inverse=True)
        self.mean_ = x.mean(axis=0)
        std = x.std(axis=0)
        self.scale_ = np.where(std > 1e-12, std, 1.0)
        n, d = x.shape
        c = len(self.classes_)
        xs = np.hstack([(x - self.mean_) / self.scale_, np.ones((n, 1))])  # last column: the bias
        onehot = np.zeros((n, c))
        onehot[np.arange(n), target.reshape(-1)] = 1.0
        penalty = 1.0 / (self.l2_c * n)
        mask = np.ones((d + 1, c))
        mask[-1] = 0.0  # the bias is not penalised (as sklearn)

        def loss_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
            w = flat.reshape(d + 1, c)
            logits = xs @ w
            logits -= logits.max(axis=1, keepdims=True)
            log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            loss = -np.sum(onehot * log_p) / n + 0.5 * penalty * np.sum(mask * w * w)
            grad = xs.T @ (np.exp(log_p) - onehot) / n + penalty * mask * w
            return float(loss), grad.reshape(-1)

        if c > 1:
            flat, self.converged, self.iterations = _lbfgs(
                loss_grad, np.zeros((d + 1) * c), self.max_iter, self.tol / n
            )
        else:
            flat, self.converged = np.zeros((d + 1) * c), True
        w = flat.reshape(d + 1, c)
        self.weight_, self.bias_ = w[:-1], w[-1]
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - self.mean_) / self.scale_) @ self.weight_ + self.bias_

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(x), axis=1)]


def _lbfgs(loss_grad, x0: np.ndarray, max_iter: int, gtol: float, memory: int = 10) -> tuple[np.ndarray, bool, int]:
    """Minimise a smooth convex function: L-BFGS two-loop recursion with a backtracking (Armijo) line search."""
    x = x0
    f, g = loss_grad(x)
    pairs: list[tuple[np.ndarray, np.ndarray, float]] = []
    for it in range(max_iter):
        if np.max(np.abs(g)) <= gtol:
            return x, True, it
        q = g.copy()
        alphas = []
        for s, yv, rho in reversed(pairs):
            a = rho * (s @ q)
            q -= a * yv
            alphas.append(a)
        if pairs:
            s, yv, _ = pairs[-1]
            q *= (s @ yv) / (yv @ yv)
        else:
            q /= max(1.0, float(np.linalg.norm(g)))
        for (s, yv, rho), a in zip(pairs, reversed(alphas), strict=True):
            q += s * (a - rho * (yv @ q))
        direction = -q
        slope = float(g @ direction)
        if slope >= 0:  # not a descent direction: restart from the gradient
            pairs.clear()
            direction, slope = -g, -float(g @ g)
        step = 1.0
        while True:
            f_new, g_new = loss_grad(x + step * direction)
            if f_new <= f + 1e-4 * step * slope or step < 1e-12:
                break
            step *= 0.5
        s = step * direction
        yv = g_new - g
        sy = float(s @ yv)
        if sy > 1e-12:
            pairs.append((s, yv, 1.0 / sy))
            if len(pairs) > memory:
                pairs.pop(0)
        if f - f_new <= 1e-12 * max(1.0, abs(f)) and np.max(np.abs(g_new)) <= 1e3 * gtol:
            return x + s, True, it + 1
        x, f, g = x + s, f_new, g_new
    return x, bool(np.max(np.abs(g)) <= gtol), max_iter
