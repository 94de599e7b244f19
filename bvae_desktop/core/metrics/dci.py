"""DCI: disentanglement, completeness, informativeness (Eastwood & Williams 2018), as disentanglement_lib.

Per factor, a gradient-boosted tree classifier (scikit-learn's `GradientBoostingClassifier`, as
disentanglement_lib; default 100 depth-3 trees per class) predicts the factor's class from the
code on `num_train` observations. Its feature importances form column k of the importance matrix
R (D x K). Disentanglement = Σ_j ρ_j (1 − H_K(R_j·)), ρ_j = dimension j's share of all importance;
completeness = Σ_k ρ_k (1 − H_D(R_·k)); informativeness = the classifiers' mean accuracy on the
training observations and on `num_test` fresh ones. One-class factors (dSprites colour) are left out.

scikit-learn is imported here only, so every other metric works without it. Tree ensembles on
tens of classes are slow: `n_estimators` and the counts can be lowered for a quick look.
"""

from __future__ import annotations

import numpy as np

from bvae_desktop.core.data.imageset import ImageSet
from bvae_desktop.core.metrics._common import (
    DEFAULT_REPRESENT_BATCH,
    MetricError,
    Represent,
    Scores,
    check_count,
    factor_names,
    report_images,
    represent_indices,
    require_factors,
    sample_observations,
    varying_factors,
)
from bvae_desktop.core.progress import ProgressReport


def compute_dci(
    data: ImageSet,
    represent: Represent,
    *,
    seed: int = 0,
    num_train: int = 10_000,
    num_test: int = 5_000,
    n_estimators: int = 100,
    represent_batch: int = DEFAULT_REPRESENT_BATCH,
    progress: ProgressReport | None = None,
) -> Scores:
    """DCI → disentanglement, completeness, informativeness_train/_test, plus the settings used.

    `progress(done, total, unit, part, 2)`: part 1 the observations represented ("images"), part 2
    the classifiers' boosting stages (each fit's `monitor`, which only watches: the trees stay the same).
    """
    try:
        from sklearn.ensemble import GradientBoostingClassifier
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise MetricError("the DCI metric needs scikit-learn (pip install scikit-learn)") from exc

    factors = require_factors(data, "DCI")
    num_train = check_count("num_train", num_train, 2)
    num_test = check_count("num_test", num_test)
    n_estimators = check_count("n_estimators", n_estimators)
    rng = np.random.default_rng(seed)
    used = varying_factors(factors)
    train_idx, train_y = sample_observations(factors, num_train, rng)
    test_idx, test_y = sample_observations(factors, num_test, rng)
    images = num_train + num_test
    train_x = represent_indices(
        data, represent, train_idx, represent_batch, on_images=report_images(progress, 0, images, 1, 2)
    )
    test_x = represent_indices(
        data, represent, test_idx, represent_batch, on_images=report_images(progress, num_train, images, 1, 2)
    )
    importance = np.zeros((train_x.shape[1], len(used)))
    train_acc, test_acc = [], []
    stages = n_estimators * len(used)
    for col, k in enumerate(used):
        if len(np.unique(train_y[:, k])) < 2:  # a tiny sample may miss classes; nothing to learn
            train_acc.append(1.0)
            test_acc.append(float(np.mean(test_y[:, k] == train_y[0, k])))
            continue
        model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=int(rng.integers(2**31 - 1)))
        model.fit(train_x, train_y[:, k], monitor=_stage_monitor(progress, col * n_estimators, stages))
        importance[:, col] = np.abs(model.feature_importances_)
        train_acc.append(float(np.mean(model.predict(train_x) == train_y[:, k])))
        test_acc.append(float(np.mean(model.predict(test_x) == test_y[:, k])))
    return {
        "disentanglement": disentanglement(importance),
        "completeness": completeness(importance),
        "informativeness_train": float(np.mean(train_acc)),
        "informativeness_test": float(np.mean(test_acc)),
        "seed": int(seed),
        "num_train": num_train,
        "num_test": num_test,
        "classifier": f"GradientBoostingClassifier(n_estimators={n_estimators})",
        "factors": factor_names(factors, used),
    }


def _stage_monitor(progress: ProgressReport | None, offset: int, total: int):
    """A GradientBoostingClassifier `monitor` that reports boosting stages and never asks to stop early."""
    if progress is None:
        return None

    def monitor(stage: int, _model: object, _locals: dict) -> bool:
        progress(offset + stage + 1, total, "boosting stages", 2, 2)
        return False

    return monitor


def _entropy_columns(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy of each column of `p` (normalised to sum 1), in the given base (scipy.stats.entropy)."""
    p = p / p.sum(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=0) / np.log(base) if base > 1 else np.zeros(p.shape[1])


def disentanglement_per_code(importance: np.ndarray) -> np.ndarray:
    return 1.0 - _entropy_columns(importance.T + 1e-11, importance.shape[1])


def disentanglement(importance: np.ndarray) -> float:
    per_code = disentanglement_per_code(importance)
    if importance.sum() == 0.0:
        importance = np.ones_like(importance)
    weights = importance.sum(axis=1) / importance.sum()
    return float(np.sum(per_code * weights))


def completeness_per_factor(importance: np.ndarray) -> np.ndarray:
    return 1.0 - _entropy_columns(importance + 1e-11, importance.shape[0])


def completeness(importance: np.ndarray) -> float:
    per_factor = completeness_per_factor(importance)
    if importance.sum() == 0.0:
        importance = np.ones_like(importance)
    weights = importance.sum(axis=0) / importance.sum()
    return float(np.sum(per_factor * weights))
