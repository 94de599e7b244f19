"""SAP score (Kumar et al. 2018), as disentanglement_lib's `sap_score.py` computes it for discrete factors.

Draw `num_train` and `num_test` observations. For every (code dimension j, factor k) train a
classifier on the single feature z_j to predict k's class and score its accuracy on the test
observations: that is the score matrix S (D x K). SAP = mean over factors of the gap between
the two largest entries of S's column.

`classifier`:
- "linear_svc" (default, disentanglement_lib): scikit-learn `LinearSVC(C=0.01, class_weight="balanced")`,
  one-vs-rest on the 1-D feature. Its scores are low in absolute terms (a line per class in 1-D
  cannot single out middle classes well), which is why published SAP values are small.
- "threshold": numpy only; a 1-D threshold classifier with a cut halfway between consecutive
  sorted class means (nearest class mean). Not the published protocol; numbers do not compare.
One-class factors (dSprites colour) are left out. `continuous=True` uses disentanglement_lib's
continuous-factor score instead (squared correlation of z_j and the factor's value, train data only).
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
    factor_names,
    gap_top_two,
    report_images,
    represent_indices,
    require_factors,
    sample_observations,
    varying_factors,
)
from bvae_desktop.core.progress import ProgressReport

CLASSIFIERS = ("linear_svc", "threshold")


def compute_sap(
    data: ImageSet,
    represent: Represent,
    *,
    seed: int = 0,
    num_train: int = 10_000,
    num_test: int = 5_000,
    classifier: str = "linear_svc",
    continuous: bool = False,
    represent_batch: int = DEFAULT_REPRESENT_BATCH,
    progress: ProgressReport | None = None,
) -> Scores:
    """SAP → sap, plus the settings used.

    `progress(done, total, unit, part, 2)`: part 1 the observations represented ("images"), part 2
    the (dimension, factor) classifiers.
    """
    if classifier not in CLASSIFIERS:
        raise MetricError(f"SAP classifier must be one of {', '.join(CLASSIFIERS)}; got {classifier!r}")
    factors = require_factors(data, "SAP")
    num_train = check_count("num_train", num_train, 2)
    num_test = check_count("num_test", num_test)
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
    matrix = np.zeros((train_x.shape[1], len(used)))
    pairs = train_x.shape[1] * len(used)
    for col, k in enumerate(used):
        for j in range(train_x.shape[1]):
            if continuous:
                matrix[j, col] = _squared_correlation(train_x[:, j], factors.values[k][train_y[:, k]])
            else:
                matrix[j, col] = _accuracy(classifier, train_x[:, j], train_y[:, k], test_x[:, j], test_y[:, k], seed)
            if progress is not None:
                progress(col * train_x.shape[1] + j + 1, pairs, "classifiers", 2, 2)
    return {
        "sap": float(np.mean(gap_top_two(matrix))),
        "seed": int(seed),
        "num_train": num_train,
        "num_test": num_test,
        "classifier": "continuous (squared correlation)" if continuous else classifier,
        "factors": factor_names(factors, used),
    }


def _squared_correlation(z: np.ndarray, y: np.ndarray) -> float:
    cov = np.cov(z, y, ddof=1)
    if cov[0, 0] <= 1e-12 or cov[1, 1] <= 0:
        return 0.0
    return float(cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1]))


def _accuracy(classifier, z, y, z_test, y_test, seed) -> float:
    classes = np.unique(y)
    if len(classes) < 2:
        return float(np.mean(y_test == classes[0]))
    if classifier == "threshold":
        return float(np.mean(_threshold_predict(z, y, classes, z_test) == y_test))
    try:
        from sklearn.svm import LinearSVC
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise MetricError("SAP with classifier='linear_svc' needs scikit-learn; or use classifier='threshold'") from exc
    model = LinearSVC(C=0.01, class_weight="balanced", random_state=int(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liblinear's ConvergenceWarning: disentanglement_lib ignores it too
        model.fit(z[:, None], y)
    return float(np.mean(model.predict(z_test[:, None]) == y_test))


def _threshold_predict(z, y, classes, z_test) -> np.ndarray:
    means = np.array([z[y == c].mean() for c in classes])
    order = np.argsort(means, kind="stable")
    cuts = (means[order][1:] + means[order][:-1]) / 2
    return classes[order][np.searchsorted(cuts, z_test)]
