"""Disentanglement metrics on a tiny ground-truth grid with hand-built representations.

The grid: 3 factors of sizes (4, 5, 6) = 120 images of 1 x 1 x 3 pixels, pixel k = class of factor k x 40,
so a representation can read the classes back from the image. Counts are small (500 / 250).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bvae_desktop.core.data.imageset import ArrayImageSet, Factors
from bvae_desktop.core.metrics import (
    METRICS,
    MetricError,
    compute_beta_vae,
    compute_dci,
    compute_factor_vae,
    compute_mig,
    compute_sap,
    compute_unsupervised,
    count_defaults,
    evaluate,
    metric_names,
    scaled_counts,
    split_result,
)
from bvae_desktop.core.metrics.dci import completeness, disentanglement

SIZES = (4, 5, 6)
SMALL = {"num_train": 500, "num_eval": 250, "num_test": 250, "num_variance_estimate": 500, "num_points": 500}
FAST_DCI = {"dci": {"n_estimators": 20}}


def grid_data(with_factors: bool = True) -> ArrayImageSet:
    classes = np.stack(np.unravel_index(np.arange(int(np.prod(SIZES))), SIZES), axis=1)
    images = (classes * 40).astype(np.uint8).reshape(-1, 1, 1, len(SIZES))
    factors = Factors(("a", "b", "c"), SIZES, tuple(np.linspace(0.0, 1.0, s) for s in SIZES))
    return ArrayImageSet(images, name="grid", factors=factors if with_factors else None)


_JITTER = np.random.default_rng(99).normal(size=(int(np.prod(SIZES)), len(SIZES))) * 0.01


def perfect(images: np.ndarray) -> np.ndarray:
    """code_j = class of factor j, plus a tiny fixed jitter per image."""
    classes = images[:, 0, 0, :].astype(np.int64) // 40
    return classes + _JITTER[np.ravel_multi_index(tuple(classes.T), SIZES)]


def _rotation() -> np.ndarray:
    t = math.pi / 4
    first = np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])
    second = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
    return first @ second


def rotated(images: np.ndarray) -> np.ndarray:
    return perfect(images) @ _rotation().T


def make_noise(seed: int = 5):
    rng = np.random.default_rng(seed)
    return lambda images: rng.normal(size=(len(images), len(SIZES)))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread (image batches are torch indexing): a shared busy CPU makes the pool slow."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scores(one_thread) -> dict[str, dict[str, dict]]:
    data = grid_data()
    return {
        name: evaluate(data, represent, **SMALL, **FAST_DCI)
        for name, represent in (("perfect", perfect), ("rotated", rotated), ("noise", make_noise()))
    }


def test_perfect_code_scores_at_the_top(scores):
    s = scores["perfect"]
    assert s["beta_vae"]["eval_accuracy"] > 0.98 and s["beta_vae"]["train_accuracy"] > 0.98
    assert s["factor_vae"]["eval_accuracy"] > 0.98 and s["factor_vae"]["num_active_dims"] == 3
    assert s["mig"]["mig"] > 0.8
    assert s["dci"]["disentanglement"] > 0.95 and s["dci"]["completeness"] > 0.95
    assert s["dci"]["informativeness_test"] > 0.95
    assert s["sap"]["sap"] > 0.3  # LinearSVC(C=0.01) in 1-D: a high but not perfect score
    assert s["unsupervised"]["active_units"] == 3


def test_rotated_code_scores_lower_where_rotation_matters(scores):
    p, r = scores["perfect"], scores["rotated"]
    assert r["mig"]["mig"] < p["mig"]["mig"] - 0.5
    assert r["dci"]["disentanglement"] < p["dci"]["disentanglement"] - 0.5
    assert r["sap"]["sap"] < p["sap"]["sap"] - 0.2
    assert r["factor_vae"]["eval_accuracy"] < p["factor_vae"]["eval_accuracy"] - 0.1
    # the β-VAE metric's linear classifier partly undoes a rotation: still well above chance
    assert r["beta_vae"]["eval_accuracy"] > 0.6
    # the information is all still there
    assert r["dci"]["informativeness_test"] > 0.9
    assert r["unsupervised"]["gaussian_total_correlation"] > p["unsupervised"]["gaussian_total_correlation"] + 0.03


def test_noise_scores_at_chance(scores):
    n = scores["noise"]
    assert abs(n["beta_vae"]["eval_accuracy"] - 1 / 3) < 0.12 and n["beta_vae"]["chance"] == pytest.approx(1 / 3)
    assert abs(n["factor_vae"]["eval_accuracy"] - 1 / 3) < 0.12
    assert n["mig"]["mig"] < 0.05
    chance = np.mean([1 / s for s in SIZES])
    assert abs(n["dci"]["informativeness_test"] - chance) < 0.08
    assert n["sap"]["sap"] < 0.05
    assert abs(n["unsupervised"]["gaussian_total_correlation"]) < 0.02


def test_results_carry_their_settings(scores):
    s = scores["perfect"]
    assert s["beta_vae"]["batch_size"] == 64 and s["beta_vae"]["num_train"] == 500 and s["beta_vae"]["seed"] == 0
    assert s["factor_vae"]["num_variance_estimate"] == 500 and s["factor_vae"]["prune_threshold"] == 0.05
    assert s["mig"]["num_bins"] == 20 and s["dci"]["num_test"] == 250 and "n_estimators=20" in s["dci"]["classifier"]
    assert s["sap"]["classifier"] == "linear_svc" and s["unsupervised"]["num_points"] == 500
    assert all("seconds" in r for r in s.values())
    main, settings = split_result(s["beta_vae"])
    assert set(main) == {"train_accuracy", "eval_accuracy"} and "num_eval" in settings


def test_defaults_are_design_section_5():
    assert count_defaults("beta_vae") == {"num_train": 10_000, "num_eval": 5_000}
    assert count_defaults("factor_vae") == {"num_train": 10_000, "num_eval": 5_000, "num_variance_estimate": 10_000}
    assert count_defaults("mig") == {"num_train": 10_000}
    assert count_defaults("dci") == count_defaults("sap") == {"num_train": 10_000, "num_test": 5_000}
    assert scaled_counts("factor_vae") == {"num_train": 1000, "num_eval": 500, "num_variance_estimate": 1000}


def test_same_seed_same_scores_and_another_seed_other_draws():
    data = grid_data()
    small = {"num_train": 200, "num_eval": 100}
    first = compute_beta_vae(data, make_noise(1), seed=3, **small)
    again = compute_beta_vae(data, make_noise(1), seed=3, **small)
    assert first == again
    a = compute_mig(data, make_noise(1), seed=3, num_train=300)
    b = compute_mig(data, make_noise(1), seed=3, num_train=300)
    c = compute_mig(data, make_noise(1), seed=4, num_train=300)
    assert a == b and c["mig"] != a["mig"] and c["seed"] == 4
    d1 = compute_factor_vae(data, rotated, seed=7, num_train=100, num_eval=50, num_variance_estimate=200)
    d2 = compute_factor_vae(data, rotated, seed=7, num_train=100, num_eval=50, num_variance_estimate=200)
    assert d1 == d2


def test_supervised_metrics_need_factors_and_evaluate_skips_them():
    data = grid_data(with_factors=False)
    for compute in (compute_beta_vae, compute_factor_vae, compute_mig, compute_dci, compute_sap):
        with pytest.raises(MetricError, match="needs ground-truth factors"):
            compute(data, perfect)
    results = evaluate(data, lambda x: x[:, 0, 0, :].astype(float), "all", num_points=100)
    assert set(results) == set(METRICS)
    assert "needs ground-truth factors" in results["mig"]["skipped"]
    assert results["unsupervised"]["num_points"] == 100 and "skipped" not in results["unsupervised"]


def test_metric_names_and_overrides():
    assert metric_names("all") == list(METRICS)
    assert metric_names("mig, sap,mig") == ["mig", "sap"]
    with pytest.raises(MetricError, match="unknown metric"):
        metric_names("mig,bogus")
    with pytest.raises(MetricError, match="takes no setting"):
        evaluate(grid_data(), perfect, "mig", mig={"num_eval": 3})
    out = evaluate(grid_data(), perfect, ["mig"], num_train=200, mig={"num_bins": 10})
    assert out["mig"]["num_train"] == 200 and out["mig"]["num_bins"] == 10


def test_single_class_factors_are_left_out():
    classes = np.stack(np.unravel_index(np.arange(20), (1, 4, 5)), axis=1)
    images = (classes * 40).astype(np.uint8).reshape(-1, 1, 1, 3)
    values = (np.array([1.0]), np.arange(4.0), np.arange(5.0))
    data = ArrayImageSet(images, name="with colour", factors=Factors(("color", "b", "c"), (1, 4, 5), values))
    code = lambda x: x[:, 0, 0, 1:].astype(float) / 40  # noqa: E731
    beta = compute_beta_vae(data, code, num_train=100, num_eval=50, batch_size=8)
    assert beta["factors"] == "b,c" and beta["chance"] == 0.5
    mig = compute_mig(data, code, num_train=200)
    assert mig["factors"] == "b,c" and "mig_color" not in mig and mig["mig"] > 0.8
    assert compute_sap(data, code, num_train=200, num_test=100, classifier="threshold")["sap"] > 0.7


def test_bad_representations_fail_clearly():
    data = grid_data()
    with pytest.raises(MetricError, match=r"\(n, D\)"):
        compute_mig(data, lambda x: np.zeros((len(x) + 1, 2)), num_train=10)
    with pytest.raises(MetricError, match="non-finite"):
        compute_mig(data, lambda x: np.full((len(x), 2), np.nan), num_train=10)
    with pytest.raises(MetricError, match="num_train"):
        compute_mig(data, perfect, num_train=0)
    with pytest.raises(MetricError, match="classifier"):
        compute_sap(data, perfect, classifier="forest")


def test_sap_threshold_classifier_needs_no_sklearn():
    data = grid_data()
    p = compute_sap(data, perfect, num_train=300, num_test=200, classifier="threshold")
    r = compute_sap(data, rotated, num_train=300, num_test=200, classifier="threshold")
    assert p["sap"] > 0.7 and r["sap"] < p["sap"] - 0.3 and p["classifier"] == "threshold"


def test_dci_scores_of_known_importance_matrices():
    assert disentanglement(np.eye(3)) == pytest.approx(1.0) and completeness(np.eye(3)) == pytest.approx(1.0)
    assert disentanglement(np.ones((3, 3))) == pytest.approx(0.0, abs=1e-9)
    # one code dimension explains every factor: disentanglement 0, completeness 1
    one = np.zeros((3, 3))
    one[0] = 1.0
    assert disentanglement(one) == pytest.approx(0.0, abs=1e-6) and completeness(one) == pytest.approx(1.0)


def test_beta_vae_classifier_is_sklearns_default_logistic_regression():
    """disentanglement_lib's LogisticRegression(random_state=...): raw features, C = 1, lbfgs;
    its iterations and whether it converged are reported."""
    result = compute_beta_vae(grid_data(), rotated, num_train=200, num_eval=100)
    assert result["classifier"] == "sklearn LogisticRegression (C=1, max_iter=100)"
    assert result["converged"] == 1 and 0 < result["iterations"] < 100
    capped = compute_beta_vae(grid_data(), rotated, num_train=200, num_eval=100, max_iter=2)
    assert capped["converged"] == 0 and capped["iterations"] == 2


# ----- unsupervised -----------------------------------------------------------------------


def gaussian_set(codes: np.ndarray) -> tuple[ArrayImageSet, object]:
    """Images carrying their own index (two pixels), and a representation looking the code up."""
    n = len(codes)
    idx = np.arange(n)
    images = np.stack([idx // 256, idx % 256], axis=1).astype(np.uint8).reshape(n, 1, 1, 2)
    data = ArrayImageSet(images, name="gaussian")

    def represent(x: np.ndarray) -> np.ndarray:
        return codes[x[:, 0, 0, 0].astype(np.int64) * 256 + x[:, 0, 0, 1]]

    return data, represent


def test_total_correlation_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    n = 4000
    independent = rng.normal(size=(n, 4)) * np.array([1.0, 2.0, 0.5, 0.05])
    data, represent = gaussian_set(independent)
    result = compute_unsupervised(data, represent, num_points=n)
    assert abs(result["gaussian_total_correlation"]) < 0.01
    assert result["active_units"] == 3  # variance 0.0025 < 0.01
    rho = 0.8
    cov = np.array([[1.0, rho, 0.0], [rho, 1.0, 0.0], [0.0, 0.0, 1.0]])
    correlated = rng.multivariate_normal(np.zeros(3), cov, size=n)
    data, represent = gaussian_set(correlated)
    result = compute_unsupervised(data, represent, num_points=n)
    assert result["gaussian_total_correlation"] == pytest.approx(-0.5 * math.log(1 - rho**2), abs=0.05)
    assert result["mutual_info_score"] > 0.05 and result["observations"] == f"{n} of {n} images"


def test_posterior_stats_and_reconstruction_on_given_indices():
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(600, 2))
    data, represent = gaussian_set(codes)
    stats = lambda x: (represent(x), np.full((len(x), 2), math.log(0.25)))  # noqa: E731
    held_out = np.arange(500, 600)
    result = compute_unsupervised(
        data, represent, num_points=1000, represent_stats=stats, reconstruct=lambda x: x.copy(), indices=held_out
    )
    assert result["num_points"] == 100 and result["observations"] == "100 of 100 given images"
    assert result["mean_sigma"] == pytest.approx([0.5, 0.5])
    assert result["mean_abs_mu"] == pytest.approx(np.abs(codes[held_out]).mean(axis=0).tolist())
    assert result["recon_mse"] == 0.0
    black = compute_unsupervised(data, represent, num_points=50, reconstruct=np.zeros_like, indices=held_out)
    images = data.batch(held_out).numpy().astype(float) / 255
    assert black["recon_mse"] > 0 and black["recon_bce"] > black["recon_mse"]
    assert black["num_points"] == 50
    assert black["recon_mse"] <= (images**2).sum(axis=(1, 2, 3)).max()
