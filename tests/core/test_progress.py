"""Progress records, the ETA's arithmetic (a fake clock: no sleeping), the metrics' progress, and the metric estimate."""

from __future__ import annotations

import numpy as np
import pytest

from bvae_desktop.core.data.imageset import ArrayImageSet, Factors
from bvae_desktop.core.metrics import METRICS, estimate, evaluate
from bvae_desktop.core.metrics._cost import WORK, MachineCosts, settings_of
from bvae_desktop.core.progress import (
    EtaEstimator,
    ProgressRecord,
    ProgressTracker,
    WeightedProgress,
    format_duration,
)


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_durations_read_as_people_write_them():
    assert [format_duration(s) for s in (0, 44.6, 59.4, 60, 130, 599, 600, 2520, 3600, 3930, 26 * 3600)] == [
        "0s",
        "45s",
        "59s",
        "1m 00s",
        "2m 10s",
        "9m 59s",
        "10m",
        "42m",
        "1h 00m",
        "1h 06m",
        "26h 00m",
    ]
    assert format_duration(None) == "?" and format_duration(float("inf")) == "?"


def test_no_eta_until_enough_work_is_measured_then_the_rate_gives_it():
    clock = FakeClock()
    eta = EtaEstimator(clock=clock, min_seconds=2.0, min_intervals=2)
    assert eta.update(0, 100) is None  # the first call only starts the clock
    clock.advance(1.0)
    assert eta.update(10, 100) is None  # 1 s, one interval: not enough yet
    clock.advance(1.0)
    assert eta.update(20, 100) == pytest.approx(8.0)  # 10 per second, 80 to go
    clock.advance(0.1)
    assert eta.update(21, 100) == pytest.approx(7.9)  # under min_interval_s: the rate stays, the work left moves
    clock.advance(1.0)
    eta.update(100, 100)
    assert eta.eta() == 0.0


def test_the_rate_is_smoothed_a_slow_spell_moves_it_part_way():
    clock = FakeClock()
    eta = EtaEstimator(clock=clock, min_seconds=1.0, half_life_s=10.0)
    eta.update(0, 1000)
    for done in (10, 20, 30):  # 10 per second
        clock.advance(1.0)
        eta.update(done, 1000)
    clock.advance(10.0)  # one half-life at 1 per second
    eta.update(40, 1000)
    assert eta.rate == pytest.approx(5.5)  # half-way from 10 to 1
    assert eta.eta() == pytest.approx(960 / 5.5)


def test_a_pause_is_not_measured_and_the_pace_from_before_goes_on():
    clock = FakeClock()
    eta = EtaEstimator(clock=clock, min_seconds=2.0)
    eta.update(0, 100)
    for done in (10, 20):
        clock.advance(1.0)
        eta.update(done, 100)
    assert eta.eta() == pytest.approx(8.0)
    eta.pause()
    assert eta.eta() is None and eta.update(20, 100) is None  # no ETA while paused
    clock.advance(600.0)  # ten minutes away
    eta.resume()
    assert eta.update(20, 100) == pytest.approx(8.0)  # the pause did not slow the rate
    clock.advance(1.0)
    assert eta.update(30, 100) == pytest.approx(7.0)


def test_work_that_goes_backwards_starts_the_measurement_over():
    clock = FakeClock()
    eta = EtaEstimator(clock=clock, min_seconds=1.0)
    eta.update(0, 100)
    for done in (50, 60):
        clock.advance(1.0)
        eta.update(done, 100)
    assert eta.eta() is not None
    clock.advance(1.0)
    assert eta.update(5, 100) is None  # restarted: a new run of the same work
    assert eta.rate is None and eta.measured_s == 0.0


def test_the_tracker_throttles_records_but_keeps_each_parts_first_and_last():
    clock = FakeClock()
    records: list[ProgressRecord] = []
    track = ProgressTracker("DCI", records.append, every_s=3.0, clock=clock, min_seconds=1.0)
    for done in range(0, 101, 10):
        track(done, 100, "images", 1, 2)
        clock.advance(1.0)  # 10 images a second
    assert [r.done for r in records] == [0, 30, 60, 90, 100]  # the first, one every 3 s, the last
    track(1, 50, "boosting stages", 2, 2)  # a new part: sent at once, its ETA measured anew
    assert records[-1].unit == "boosting stages" and records[-1].eta_s is None
    assert records[-1].fraction == pytest.approx(0.51)
    assert records[3].text() == "DCI 90/100 images (part 1 of 2) · 1s left"


def test_records_travel_as_plain_data():
    record = ProgressRecord("β-VAE metric", 1200, 15000, "points", 130.0)
    assert ProgressRecord.from_info({"name": "beta_vae", **record.to_info()}) == record
    assert ProgressRecord.from_info({"name": "beta_vae"}) is None  # a metric's start carries no record
    assert record.text() == "β-VAE metric 1,200/15,000 points · 2m 10s left"


def test_weighted_jobs_share_one_eta_and_work_done_before_is_not_pace():
    clock = FakeClock()
    plan = WeightedProgress({"a": 10.0, "b": 30.0, "c": 60.0}, clock=clock, min_seconds=1.0)
    plan.set("c", 0.5)  # resumed half-way: 30 units that were not done now
    plan.set("a", 0.0)
    clock.advance(1.0)
    plan.set("a", 0.5)  # 5 units in a second
    clock.advance(1.0)
    plan.set("a", 1.0)
    assert plan.done == pytest.approx(40.0) and plan.fraction == pytest.approx(0.4)
    assert plan.eta_s() == pytest.approx(60 / 5.0)  # 60 units left at 5 per second
    plan.settle("b")  # failed before it started: its work leaves the plan
    assert plan.total == pytest.approx(70.0) and plan.eta_s() == pytest.approx(30 / 5.0)


# ----- the metrics: progress that only watches, and an estimate of their time ---------------------------------
SIZES = (4, 5, 6)


def grid() -> ArrayImageSet:
    classes = np.stack(np.unravel_index(np.arange(int(np.prod(SIZES))), SIZES), axis=1)
    images = (classes * 40).astype(np.uint8).reshape(-1, 1, 1, len(SIZES))
    factors = Factors(("a", "b", "c"), SIZES, tuple(np.linspace(0.0, 1.0, s) for s in SIZES))
    return ArrayImageSet(images, name="grid", factors=factors)


def code(images: np.ndarray) -> np.ndarray:
    classes = images[:, 0, 0, :].astype(np.float64) / 40
    return classes @ np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.2], [0.1, 0.0, 1.0]])


COUNTS = {
    "num_train": 60,
    "num_eval": 30,
    "num_test": 30,
    "num_variance_estimate": 60,
    "num_points": 60,
    "batch_size": 4,
    "represent_batch": 16,
    "dci": {"n_estimators": 3},
}


def test_metric_results_are_the_same_with_progress_watching_and_each_part_reaches_its_total():
    data = grid()
    plain = evaluate(data, code, "all", seed=2, **COUNTS)
    records: list[ProgressRecord] = []
    watched = evaluate(data, code, "all", seed=2, on_progress=records.append, progress_every=0.0, **COUNTS)
    for name in METRICS:
        plain[name].pop("seconds"), watched[name].pop("seconds")
    assert watched == plain
    by_label: dict[str, list[ProgressRecord]] = {}
    for record in records:
        by_label.setdefault(record.label, []).append(record)
    assert set(by_label) == {"β-VAE metric", "FactorVAE metric", "MIG", "DCI", "SAP", "unsupervised scores"}
    for label, seen in by_label.items():
        fractions = [r.fraction for r in seen]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0, label
        assert all(r.done <= r.total for r in seen), label
    assert by_label["β-VAE metric"][-1].total == 90 and by_label["β-VAE metric"][-1].unit == "points"
    assert by_label["FactorVAE metric"][-1].total == 60 + 4 * 90
    assert [r.total for r in by_label["DCI"] if r.part == 2][-1] == 3 * 3  # boosting stages × factors
    assert [r.total for r in by_label["SAP"] if r.part == 2][-1] == 3 * 3  # dimensions × factors


def test_each_metrics_work_follows_its_counts():
    data = grid()
    costs = MachineCosts(image_s=1.0, tree_s=0.5, tree_row_s=0.01, svc_s=0.25, svc_row_s=0.001, latent_dim=3)
    beta = settings_of(METRICS["beta_vae"], {"num_train": 100, "num_eval": 50, "batch_size": 4})
    assert WORK["beta_vae"](beta, data, costs).images == 2 * 4 * 150
    dci = settings_of(METRICS["dci"], {"num_train": 200, "num_test": 100, "n_estimators": 7})
    work = WORK["dci"](dci, data, costs)
    assert (work.images, work.trees, work.tree_rows) == (300, (4 + 5 + 6) * 7, 200)
    assert work.seconds(costs) == pytest.approx(300 + 105 * (0.5 + 200 * 0.01))
    sap = settings_of(METRICS["sap"], {"num_train": 200, "num_test": 100})
    assert WORK["sap"](sap, data, costs).svc_classes == 3 * (4 + 5 + 6)
    threshold = settings_of(METRICS["sap"], {"num_train": 200, "num_test": 100, "classifier": "threshold"})
    assert WORK["sap"](threshold, data, costs).svc_classes == 0
    factor = settings_of(METRICS["factor_vae"], {"num_train": 10, "num_eval": 5, "num_variance_estimate": 40})
    assert WORK["factor_vae"](factor, data, costs).images == 40 + 64 * 15
    dead = MachineCosts(image_s=1.0, code_std=(0.0, 0.01))  # no dimension would pass the prune threshold
    assert WORK["factor_vae"](factor, data, dead).images == 40  # the votes are skipped


def test_the_estimate_is_a_positive_time_per_metric_that_grows_with_the_counts():
    data = grid()
    small = estimate(data, code, ["mig", "beta_vae"], num_train=100, num_eval=50, batch_size=8)
    assert set(small.seconds) == {"mig", "beta_vae"} and all(s > 0 for s in small.seconds.values())
    assert small.costs.latent_dim == 3 and small.costs.probe_s > 0
    assert "β-VAE metric" in small.breakdown() and "MIG" in small.breakdown()
    costs = small.costs
    big = {n: WORK[n](settings_of(METRICS[n], {"num_train": 1000, "num_eval": 500}), data, costs) for n in ("mig",)}
    assert big["mig"].seconds(costs) == pytest.approx(10 * small.seconds["mig"])
    no_factors = ArrayImageSet(np.zeros((10, 1, 1, 3), dtype=np.uint8), name="flat")
    assert estimate(no_factors, code, ["mig"]).seconds == {}  # skipped metrics take no time
