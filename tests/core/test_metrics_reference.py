"""The β-VAE and FactorVAE metrics return exactly disentanglement_lib's numbers (issue 12).

disentanglement_lib cannot run here (it needs TensorFlow and gin), so this file holds a
reference: its two metric functions and the ground-truth-data sampling they call, rewritten in
numpy + scikit-learn step for step from disentanglement_lib (evaluation/metrics/factor_vae.py,
beta_vae.py, utils.py; data/ground_truth/ground_truth_data.py, dsprites.py, util.py): one
`np.random.RandomState(seed)` shared by every draw, in its order; global variances with ddof=1
over `num_variance_estimate` observations; `prune_dims` on the standard deviation
(`sqrt(var) >= threshold`, the gin configs' threshold 0.05); a votes matrix over the latent factors
with `np.argmax` per code dimension (ties → the lowest factor); β-VAE features as the mean of
|z1 - z2| over the pairs and sklearn's `LogisticRegression(random_state=random_state)`.

The representation has dead dimensions (constant), weak ones with a standard deviation just
below and just above the pruning threshold, weakly informative ones that a threshold on the
variance (our old mistake) pruned, and informative ones; the data has a one-class factor
first, as dSprites colour.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bvae_desktop.core.data.imageset import ArrayImageSet, Factors
from bvae_desktop.core.metrics import MetricError, compute_beta_vae, compute_factor_vae

# ----- the reference ----------------------------------------------------------------------


class ReferenceGroundTruth:
    """disentanglement_lib's GroundTruthData for a full factor grid stored in canonical order.

    Latent factors are those with more than one class (dSprites' `latent_factor_indices` 1..5);
    the others are filled in when observations are made (SplitDiscreteStateSpace.sample_all_factors),
    drawing `randint(size)` for them as it does. Image index = Σ class_k · base_k (dsprites.py).
    """

    def __init__(self, images: np.ndarray, sizes: tuple[int, ...]) -> None:
        self.images = images
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.latent = [k for k, s in enumerate(sizes) if s > 1]
        self.observed = [k for k, s in enumerate(sizes) if s <= 1]
        self.bases = np.prod(self.sizes) // np.cumprod(self.sizes)

    @property
    def num_factors(self) -> int:
        return len(self.latent)

    def sample_factors(self, num: int, rs: np.random.RandomState) -> np.ndarray:
        out = np.zeros((num, len(self.latent)), dtype=np.int64)
        for column, k in enumerate(self.latent):
            out[:, column] = rs.randint(self.sizes[k], size=num)
        return out

    def sample_observations_from_factors(self, latent: np.ndarray, rs: np.random.RandomState) -> np.ndarray:
        full = np.zeros((len(latent), len(self.sizes)), dtype=np.int64)
        full[:, self.latent] = latent
        for k in self.observed:
            full[:, k] = rs.randint(self.sizes[k], size=len(latent))
        return self.images[full @ self.bases]

    def sample_observations(self, num: int, rs: np.random.RandomState) -> np.ndarray:
        return self.sample_observations_from_factors(self.sample_factors(num, rs), rs)


def reference_factor_vae(gt, fn, rs, batch_size, num_train, num_eval, num_variance_estimate, threshold=0.05):
    """disentanglement_lib's compute_factor_vae; also returns the active mask and both vote matrices."""
    observations = gt.sample_observations(num_variance_estimate, rs)
    # utils.obtain_representation: batches of 64
    codes = np.vstack([fn(observations[i : i + 64]) for i in range(0, num_variance_estimate, 64)])
    global_var = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(global_var) >= threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "active": active, "global_var": global_var}

    def votes(count):
        table = np.zeros((gt.num_factors, global_var.shape[0]), dtype=np.int64)
        for _ in range(count):
            k = rs.randint(gt.num_factors)
            latent = gt.sample_factors(batch_size, rs)
            latent[:, k] = latent[0, k]
            local_var = np.var(fn(gt.sample_observations_from_factors(latent, rs)), axis=0, ddof=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                table[k, np.argmin(local_var[active] / global_var[active])] += 1
        return table

    train = votes(num_train)
    majority = np.argmax(train, axis=0)
    columns = np.arange(train.shape[1])
    train_accuracy = np.sum(train[majority, columns]) * 1.0 / np.sum(train)
    evaluation = votes(num_eval)
    eval_accuracy = np.sum(evaluation[majority, columns]) * 1.0 / np.sum(evaluation)
    return {
        "train_accuracy": train_accuracy,
        "eval_accuracy": eval_accuracy,
        "active": active,
        "global_var": global_var,
        "train_votes": train,
        "eval_votes": evaluation,
    }


def reference_beta_vae(gt, fn, rs, batch_size, num_train, num_eval):
    """disentanglement_lib's compute_beta_vae_sklearn."""
    from sklearn.linear_model import LogisticRegression

    def points(count):
        x, y = None, np.zeros(count, dtype=np.int64)
        for i in range(count):
            k = rs.randint(gt.num_factors)
            first = gt.sample_factors(batch_size, rs)
            second = gt.sample_factors(batch_size, rs)
            second[:, k] = first[:, k]
            z1 = fn(gt.sample_observations_from_factors(first, rs))
            z2 = fn(gt.sample_observations_from_factors(second, rs))
            feature = np.mean(np.abs(z1 - z2), axis=0)
            if x is None:
                x = np.zeros((count, feature.shape[0]))
            x[i], y[i] = feature, k
        return x, y

    x_train, y_train = points(num_train)
    model = LogisticRegression(random_state=rs)
    model.fit(x_train, y_train)
    train_accuracy = np.mean(model.predict(x_train) == y_train)
    x_eval, y_eval = points(num_eval)
    return {"train_accuracy": train_accuracy, "eval_accuracy": model.score(x_eval, y_eval), "x_train": x_train}


# ----- data and representations -----------------------------------------------------------

NAMES = ("colour", "shape", "scale", "posx", "posy")
SIZES = (1, 3, 4, 5, 6)
PRUNE = 0.05  # disentanglement_lib's prune_dims.threshold, on the standard deviation


def grid(names=NAMES, sizes=SIZES) -> tuple[ArrayImageSet, ReferenceGroundTruth]:
    """Every grid point once, canonical order; pixel k holds the class of factor k."""
    count = int(np.prod(sizes))
    classes = np.stack(np.unravel_index(np.arange(count), sizes), axis=1)
    images = classes.astype(np.uint8).reshape(count, 1, 1, len(sizes))
    factors = Factors(tuple(names), tuple(sizes), tuple(np.arange(float(s)) for s in sizes))
    return ArrayImageSet(images, name="reference grid", factors=factors), ReferenceGroundTruth(images, sizes)


def _unit_noise(count: int, width: int, seed: int) -> np.ndarray:
    """A fixed table of per-image noise, each column exactly mean 0 and standard deviation 1."""
    noise = np.random.default_rng(seed).normal(size=(count, width))
    return (noise - noise.mean(axis=0)) / noise.std(axis=0)


_NOISE = _unit_noise(int(np.prod(SIZES)), 8, 12)


def mixed_code(images: np.ndarray, dtype=np.float64) -> np.ndarray:
    """8 dimensions: 0-1 informative, 2 and 7 dead, 3 weak below the threshold (std ≈ 0.044),
    4 weak above it (std ≈ 0.057, pure noise), 5 and 6 weakly informative (std ≈ 0.11 and 0.10,
    variance ≈ 0.01: kept by disentanglement_lib, pruned by a threshold of 0.05 on the variance)."""
    c = images[:, 0, 0, :].astype(np.int64)
    n = _NOISE[np.ravel_multi_index(tuple(c.T), SIZES)]
    shape, scale, posx, posy = c[:, 1], c[:, 2], c[:, 3], c[:, 4]
    z = np.stack(
        [
            posx / 4 + 0.12 * n[:, 0],
            posy / 5 + 0.3 * (shape == 2) + 0.12 * n[:, 1],
            np.full(len(c), 0.7),
            0.044 * n[:, 3],
            0.057 * n[:, 4],
            0.07 * (scale - 1.5) + 0.08 * n[:, 5],
            0.08 * (shape - 1) + 0.08 * n[:, 6],
            np.zeros(len(c)),
        ],
        axis=1,
    )
    return z.astype(dtype)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FACTOR_COUNTS = {"batch_size": 16, "num_train": 300, "num_eval": 200, "num_variance_estimate": 1000}
BETA_COUNTS = {"batch_size": 16, "num_train": 300, "num_eval": 200}


# ----- ours == the reference --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_factor_vae_is_disentanglement_libs(seed, dtype):
    data, gt = grid()
    fn = lambda x: mixed_code(x, dtype)  # noqa: E731
    ref = reference_factor_vae(gt, fn, np.random.RandomState(seed), **FACTOR_COUNTS)
    # the code is what the test says: dead and below-threshold dimensions pruned, the rest kept
    assert ref["active"].tolist() == [True, True, False, False, True, True, True, False]
    ours = compute_factor_vae(data, fn, seed=seed, **FACTOR_COUNTS)
    assert ours["train_accuracy"] == ref["train_accuracy"]
    assert ours["eval_accuracy"] == ref["eval_accuracy"]
    assert ours["num_active_dims"] == 5 and ours["prune_threshold"] == PRUNE


@pytest.mark.parametrize("seed", [0, 5])
def test_factor_vae_without_pruning_is_disentanglement_libs_too(seed):
    """prune_dims' own default threshold 0: constant dimensions stay, their 0/0 ratio is NaN and
    np.argmin takes the first NaN, as in disentanglement_lib."""
    data, gt = grid()
    ref = reference_factor_vae(gt, mixed_code, np.random.RandomState(seed), threshold=0.0, **FACTOR_COUNTS)
    ours = compute_factor_vae(data, mixed_code, seed=seed, prune_threshold=0.0, **FACTOR_COUNTS)
    assert (ours["train_accuracy"], ours["eval_accuracy"]) == (ref["train_accuracy"], ref["eval_accuracy"])
    assert ours["num_active_dims"] == 8


def test_a_dimension_with_no_training_vote_goes_to_the_first_factor():
    """The majority vote's ties: a code dimension no training vote chose is assigned, by np.argmax over
    an all-zero column, to the first latent factor (shape), not to the one-class colour. With few
    training votes the pure-noise dimension 4 (at times the shape dimension 6 too) is such a column here,
    and evaluation votes for shape land on it: they count as correct."""
    data, gt = grid()
    counts = {"batch_size": 16, "num_train": 8, "num_eval": 300, "num_variance_estimate": 1000}
    hits = 0
    for seed in range(12):
        ref = reference_factor_vae(gt, mixed_code, np.random.RandomState(seed), **counts)
        train, evaluation = ref["train_votes"], ref["eval_votes"]
        empty = train.sum(axis=0) == 0
        hits += int(evaluation[0, empty].sum() > 0)
        ours = compute_factor_vae(data, mixed_code, seed=seed, **counts)
        assert (ours["train_accuracy"], ours["eval_accuracy"]) == (ref["train_accuracy"], ref["eval_accuracy"])
    assert hits > 0  # the tie rule was exercised and mattered


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beta_vae_is_disentanglement_libs(seed, dtype):
    data, gt = grid()
    fn = lambda x: mixed_code(x, dtype)  # noqa: E731
    ref = reference_beta_vae(gt, fn, np.random.RandomState(seed), **BETA_COUNTS)
    ours = compute_beta_vae(data, fn, seed=seed, **BETA_COUNTS)
    assert ours["train_accuracy"] == ref["train_accuracy"]
    assert ours["eval_accuracy"] == ref["eval_accuracy"]
    assert ours["chance"] == pytest.approx(1 / 4) and ours["factors"] == "shape,scale,posx,posy"


def test_computed_in_the_representations_float_type():
    """disentanglement_lib computes variances and |z1 - z2| means on what the representation returns
    (float32 for a network), not on float64 copies: bit for bit the same numbers here. (The scores
    rarely show the difference; a near tie of two variance ratios or a prune decision at the
    threshold can.)"""
    from bvae_desktop.core.metrics import beta_vae, factor_vae

    data, gt = grid()
    fn = lambda x: mixed_code(x, np.float32)  # noqa: E731
    ref = reference_factor_vae(gt, fn, np.random.RandomState(0), **FACTOR_COUNTS)
    ours = factor_vae._global_variances(data, fn, data.factors, 1000, np.random.RandomState(0), 256)
    assert ours.dtype == np.float32 and np.array_equal(ours, ref["global_var"])
    as_float64 = np.var(fn(gt.sample_observations(1000, np.random.RandomState(0))).astype(np.float64), axis=0, ddof=1)
    assert not np.array_equal(as_float64, ref["global_var"])  # the float type does change the numbers

    ref = reference_beta_vae(gt, fn, np.random.RandomState(1), **BETA_COUNTS)
    choices = [1, 2, 3, 4]
    points, _ = beta_vae._points(data, fn, data.factors, choices, 16, 300, np.random.RandomState(1), 256)
    assert points.dtype == np.float64 and np.array_equal(points, ref["x_train"])


def test_represent_batch_64_makes_disentanglement_libs_calls():
    """With represent_batch = batch_size = 64 the representation sees the very batches (same images,
    same order) disentanglement_lib passes it, so a network's batch-dependent rounding matches too."""
    data, gt = grid()

    def recorder(calls):
        def fn(images):
            calls.append(images.copy())
            return mixed_code(images)

        return fn

    counts = {"batch_size": 64, "num_train": 6, "num_eval": 4}
    for ours_fn, ref_fn, extra in (
        (compute_factor_vae, reference_factor_vae, {"num_variance_estimate": 150}),
        (compute_beta_vae, reference_beta_vae, {}),
    ):
        ours_calls, ref_calls = [], []
        ours_fn(data, recorder(ours_calls), seed=4, represent_batch=64, **counts, **extra)
        ref_fn(gt, recorder(ref_calls), np.random.RandomState(4), **counts, **extra)
        assert [c.shape for c in ours_calls] == [c.shape for c in ref_calls]
        assert all(np.array_equal(a, b) for a, b in zip(ours_calls, ref_calls, strict=True))


def test_edge_cases_disentanglement_lib_leaves_open():
    data, _ = grid()
    # every dimension dead: accuracies 0, as disentanglement_lib returns them
    dead = compute_factor_vae(data, lambda x: np.zeros((len(x), 3)), **FACTOR_COUNTS)
    assert (dead["train_accuracy"], dead["eval_accuracy"], dead["num_active_dims"]) == (0.0, 0.0, 0)
    # one factor with more than one class: every label is the same, sklearn cannot fit (disentanglement_lib
    # stops there); the classifier predicts that label
    one, _ = grid(("colour", "posx"), (1, 5))
    single = compute_beta_vae(one, lambda x: x[:, 0, 0, :].astype(float), num_train=20, num_eval=10, batch_size=4)
    assert (single["train_accuracy"], single["eval_accuracy"], single["chance"]) == (1.0, 1.0, 1.0)
    # RandomState's seeds are 0 .. 2**32 - 1
    with pytest.raises(MetricError, match="seed"):
        compute_factor_vae(data, mixed_code, seed=-1, **FACTOR_COUNTS)


# ----- the issue's case, in miniature -----------------------------------------------------

DSPRITES_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
DSPRITES_SIZES = (1, 3, 6, 40, 32, 32)


def _hash_noise(index: np.ndarray, column: int) -> np.ndarray:
    """Deterministic noise per image index, roughly uniform on [-0.5, 0.5), no table needed."""
    return np.modf(np.abs(np.sin(index * 12.9898 + column * 78.233)) * 43758.5453)[0] - 0.5


def partly_trained_code(images: np.ndarray) -> np.ndarray:
    """10 dimensions imitating an encoder early in β-VAE training on dSprites: position and scale
    learnt, shape and orientation only faintly (std 0.06 to 0.16: variance below 0.05), and the
    other dimensions collapsed (constant or nearly so). float32, as an encoder's means."""
    c = images[:, 0, 0, :].astype(np.int64)
    i = np.ravel_multi_index(tuple(c.T), DSPRITES_SIZES)
    shape, scale, orient, posx, posy = (c[:, k] for k in range(1, 6))
    z = np.zeros((len(c), 10))
    z[:, 0] = (posx - 15.5) / 9 + _hash_noise(i, 0)
    z[:, 1] = (posy - 15.5) / 9 + _hash_noise(i, 1)
    z[:, 2] = (scale - 2.5) / 1.7 + 0.2 * (posx - 15.5) / 9 + _hash_noise(i, 2)
    z[:, 3] = 0.08 * (shape - 1) + 0.5 * _hash_noise(i, 3)
    z[:, 4] = 0.03 * np.cos(orient * 2 * math.pi / 40 * 4) + 0.2 * _hash_noise(i, 4)
    z[:, 5] = 0.02 * _hash_noise(i, 5)
    z[:, 6] = 0.001 * _hash_noise(i, 6)
    z[:, 7] = 0.25
    z[:, 8] = 0.08 * (shape == 2) + 0.4 * _hash_noise(i, 8)
    return z.astype(np.float32)


@pytest.fixture(scope="module")
def dsprites_grid():
    return grid(DSPRITES_NAMES, DSPRITES_SIZES)


@pytest.mark.slow
def test_the_issue_case_counts_over_ten(dsprites_grid):
    """disentanglement_lib's counts ÷ 10, seed 0, on a dSprites-sized grid and a partly trained
    code: ours equals the reference for both metrics, and the old threshold on the variance
    (= sqrt(0.05) on the standard deviation) scores visibly lower."""
    data, gt = dsprites_grid
    counts = {"batch_size": 64, "num_train": 1000, "num_eval": 500, "num_variance_estimate": 1000}
    ref = reference_factor_vae(gt, partly_trained_code, np.random.RandomState(0), **counts)
    ours = compute_factor_vae(data, partly_trained_code, seed=0, **counts)
    assert (ours["train_accuracy"], ours["eval_accuracy"]) == (ref["train_accuracy"], ref["eval_accuracy"])
    old = compute_factor_vae(data, partly_trained_code, seed=0, prune_threshold=math.sqrt(0.05), **counts)
    assert old["num_active_dims"] < ours["num_active_dims"]
    assert old["eval_accuracy"] < ours["eval_accuracy"] - 0.05

    beta_counts = {"batch_size": 64, "num_train": 1000, "num_eval": 500}
    ref = reference_beta_vae(gt, partly_trained_code, np.random.RandomState(0), **beta_counts)
    ours = compute_beta_vae(data, partly_trained_code, seed=0, **beta_counts)
    assert (ours["train_accuracy"], ours["eval_accuracy"]) == (ref["train_accuracy"], ref["eval_accuracy"])
