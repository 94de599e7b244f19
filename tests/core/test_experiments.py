"""Experiments: a tiny sweep end to end, resume after stop, comparisons, failures, and the results files."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest

from bvae_desktop.core import experiments as experiments_module
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import ConfigError
from bvae_desktop.core.experiment_results import COLUMN_KEYS, read_curves, summarise
from bvae_desktop.core.experiment_run import MetricPlan, RunCosts, read_result
from bvae_desktop.core.experiments import (
    DEFAULT_BETAS,
    Experiment,
    ExperimentError,
    ExperimentEstimate,
    ExperimentEvent,
    ExperimentProgress,
    ExperimentSpec,
    estimate_experiment,
    load_spec,
)
from bvae_desktop.core.progress import ProgressRecord


def tiny_base(**changes) -> TrainConfig:
    values = dict(steps=8, batch_size=8, val_every=4, val_batches=1, checkpoint_every=4, device="cpu")
    values.update(changes)
    return TrainConfig(**values)


def tiny_plan() -> MetricPlan:
    return MetricPlan(
        names=["mig", "unsupervised"],
        overrides={"mig": {"num_train": 100}, "unsupervised": {"num_points": 100}},
    )


def collect(experiment: Experiment) -> tuple[bool, list]:
    events = []
    ok = experiment.run(events.append)
    return ok, events


def test_tiny_sweep_writes_results_h5_json_and_a_self_contained_report(tmp_path):
    spec = ExperimentSpec.sweep(tiny_base(), [1.0, 4.0], seeds=[0], metrics=tiny_plan())
    experiment = Experiment(tmp_path / "sweep", spec)
    ok, events = collect(experiment)
    assert ok
    kinds = [(e.kind, e.run) for e in events if e.kind != "step"]
    assert ("finished", "beta-1_seed-0") in kinds and ("finished", "beta-4_seed-0") in kinds
    assert [e.kind for e in events][-1] == "done"
    assert any(e.kind == "step" for e in events) and any(e.kind == "metric" and e.info["name"] == "mig" for e in events)
    mig = [e.info for e in events if e.kind == "metric" and e.run == "beta-1_seed-0" and "done" in e.info]
    assert mig and mig[-1]["name"] == "unsupervised" and mig[-1]["done"] == mig[-1]["total"]  # metric progress too
    assert any(i["name"] == "mig" and i["label"] == "MIG" and (i["done"], i["unit"]) == (100, "images") for i in mig)

    folder = tmp_path / "sweep"
    document = json.loads((folder / "results.json").read_text())
    assert document["runs_finished"] == 2 and document["runs_total"] == 2
    assert [r["name"] for r in document["rows"]] == ["beta-1_seed-0", "beta-4_seed-0"]
    betas = [r["beta"] for r in document["results"]]
    assert betas == [1.0, 4.0]
    for row in document["rows"]:
        assert np.isfinite(row["recon"]) and np.isfinite(row["kl"]) and 0.0 <= row["mig"] <= 1.0
        assert np.isnan(row["beta_vae"])  # not in the plan: no number, not a made-up one

    with h5py.File(folder / "results.h5", "r") as fh:
        assert list(fh["runs/beta"][:]) == [1.0, 4.0]
        assert set(COLUMN_KEYS) <= set(fh["runs"].keys())
        assert fh["runs/kl_per_dim"].shape == (2, 10)
        recon = fh["curves/beta-4_seed-0/train/recon"][:]
        assert len(recon) == 8 and recon[-1] < recon[0]  # the loss fell
        assert len(fh["curves/beta-4_seed-0/validation/step"][:]) == 2

    page = (folder / "report.html").read_text()
    assert "<table>" in page and "beta-4_seed-0" in page and "2 of 2 runs finished" in page
    assert page.count("data:image/png;base64,") >= 5  # figures are inside the page
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from elsewhere
    for name in ("tradeoff", "disentanglement_vs_beta", "mean_latent_vs_beta", "curves", "kl_per_dimension"):
        assert (folder / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stopped_sweep_keeps_finished_runs_and_resume_skips_them(tmp_path):
    spec = ExperimentSpec.sweep(tiny_base(steps=12), [1.0, 4.0], seeds=[0], metrics=tiny_plan())
    first = Experiment(tmp_path / "sweep", spec)

    def stop_midway(event):
        if event.kind == "step" and event.run == "beta-4_seed-0":  # its first report: step 1, never throttled
            first.stop()

    events = []
    first.run(lambda e: (events.append(e), stop_midway(e)))
    assert [e.kind for e in events if e.run == "beta-4_seed-0"][-1] == "stopped"
    assert read_result(tmp_path / "sweep/runs/beta-1_seed-0") is not None
    assert read_result(tmp_path / "sweep/runs/beta-4_seed-0") is None
    done = events[-1]
    assert done.kind == "done" and done.info["finished"] == 1 and done.info["stopped"]
    finished_before = (tmp_path / "sweep/runs/beta-1_seed-0/result.json").read_bytes()

    second = Experiment(tmp_path / "sweep")  # the saved spec is enough
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "sweep").rglob("*")}
    estimate = second.estimate()  # the run still to do, probed in no folder
    assert estimate.runs == 1 and estimate.total_s > 0 and set(estimate.metrics_s) == {"mig", "unsupervised"}
    assert "1 run with a checkpoint counted from the start." in estimate.describe()
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "sweep").rglob("*")} == before  # nothing written
    ok, events = collect(second)
    assert ok
    by_run = {(e.kind, e.run) for e in events}
    assert ("skipped", "beta-1_seed-0") in by_run and ("started", "beta-1_seed-0") not in by_run
    steps = [e.info["step"] for e in events if e.kind == "step" and e.run == "beta-4_seed-0"]
    assert steps[0] > 1  # continued from its checkpoint, not from scratch
    result = read_result(tmp_path / "sweep/runs/beta-4_seed-0")
    assert result["steps"] == 12 and result["seconds"]["trained_steps_this_session"] == 12 - (steps[0] - 1)
    assert (tmp_path / "sweep/runs/beta-1_seed-0/result.json").read_bytes() == finished_before


def test_compare_trains_a_vae_and_a_beta_vae_alike(tmp_path):
    spec = ExperimentSpec.compare(tiny_base(objective="vae"), beta=8.0, seeds=[0, 1], metrics=MetricPlan(names=[]))
    runs = spec.runs()
    assert [r.name for r in runs] == ["vae_seed-0", "vae_seed-1", "beta-8_seed-0", "beta-8_seed-1"]
    assert [r.config.objective for r in runs] == ["vae", "vae", "beta-h", "beta-h"]
    assert runs[0].config.effective_beta == 1.0 and runs[2].config.beta == 8.0
    same = {k: v for k, v in runs[0].config.to_dict().items() if k not in ("objective", "beta", "seed")}
    assert same == {k: v for k, v in runs[2].config.to_dict().items() if k not in ("objective", "beta", "seed")}
    experiment = Experiment(
        tmp_path / "cmp", ExperimentSpec.compare(tiny_base(), beta=8.0, metrics=MetricPlan(names=[]))
    )
    assert experiment.run()
    summary = summarise([read_result(experiment.run_dir(r)) for r in experiment.runs])
    assert [s.group for s in summary] == ["VAE", "β-VAE (β=8)"]
    curves = read_curves(experiment, "vae_seed-0")
    assert len(curves["train"]["recon"]) == 8 and len(curves["validation"]["recon"]) == 2


def test_a_different_spec_in_the_same_folder_is_refused_by_name(tmp_path):
    folder = tmp_path / "sweep"
    Experiment(folder, ExperimentSpec.sweep(tiny_base(), [1.0], metrics=MetricPlan(names=[]))).run()
    with pytest.raises(ExperimentError, match=str(folder)) as info:
        Experiment(folder, ExperimentSpec.sweep(tiny_base(steps=9), [1.0], metrics=MetricPlan(names=[])))
    assert "bvae resume" in str(info.value)
    with pytest.raises(ExperimentError, match="no experiment here"):
        Experiment(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "experiment.json").write_text("{not json")
    with pytest.raises(ExperimentError, match="experiment.json"):
        load_spec(tmp_path / "bad")


def test_a_failing_run_is_reported_with_its_reason_and_the_others_go_on(tmp_path):
    spec = ExperimentSpec.sweep(
        tiny_base(dataset="mnist", data_path=str(tmp_path / "missing.gz")), [1.0, 2.0], metrics=MetricPlan(names=[])
    )
    experiment = Experiment(tmp_path / "sweep", spec)
    ok, events = collect(experiment)
    assert not ok
    failures = [e for e in events if e.kind == "failed"]
    assert [e.run for e in failures] == ["beta-1_seed-0", "beta-2_seed-0"]
    assert "missing.gz" in failures[0].info["message"]
    assert events[-1].info["failed"] == ["beta-1_seed-0", "beta-2_seed-0"]
    assert "0 of 2 runs finished" in (tmp_path / "sweep/report.html").read_text()


def test_spec_validation_names_the_bad_setting():
    with pytest.raises(ConfigError, match="β values repeat"):
        ExperimentSpec.sweep(tiny_base(), [1.0, 1.0])
    with pytest.raises(ConfigError, match="finite number"):
        ExperimentSpec.sweep(tiny_base(), [float("nan")])
    with pytest.raises(ConfigError, match="workers"):
        ExperimentSpec.sweep(tiny_base(), [1.0], workers=0)
    capacity = ExperimentSpec.sweep(tiny_base(objective="beta-b"), [10.0, 100.0])  # a sweep varies γ there
    assert [(r.name, r.config.gamma) for r in capacity.runs()] == [
        ("beta-b-10_seed-0", 10.0),
        ("beta-b-100_seed-0", 100.0),
    ]
    spec = ExperimentSpec.sweep(tiny_base())
    assert spec.betas == list(DEFAULT_BETAS) and len(spec.runs()) == 8
    assert ExperimentSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).same_runs_as(spec)


@pytest.mark.slow
def test_parallel_workers_finish_every_run(tmp_path):
    spec = ExperimentSpec.sweep(tiny_base(steps=4, val_every=2), [1.0, 4.0], metrics=tiny_plan(), workers=2)
    experiment = Experiment(tmp_path / "sweep", spec)
    ok, events = collect(experiment)
    assert ok, [e.info for e in events if e.kind == "failed"]
    started = [e.run for e in events if e.kind == "started"]
    assert sorted(started) == ["beta-1_seed-0", "beta-4_seed-0"]
    assert all(read_result(experiment.run_dir(r))["steps"] == 4 for r in experiment.runs)


def test_charts_leave_out_what_a_log_axis_cannot_show_and_say_when_there_is_nothing():
    from bvae_desktop.core.charts import LineChart, heatmap, text_for_font

    chart = LineChart("MIG against β", "β (log)", "score", logx=True, ylim=(0, 1))
    chart.add(
        "MIG", [0.0, 0.1, 1.0, float("nan")], [0.5, 0.2, 0.4, 0.9], low=[0.4, 0.1, 0.3, 0.8], high=[0.6, 0.3, 0.5, 1.0]
    )
    image = chart.render(400, 300)
    assert image.size == (400, 300)
    pixels = np.asarray(image)
    assert (pixels != 255).any(axis=2).sum() > 2000  # axes, ticks, a line and markers were drawn
    wide = LineChart("a point and its label", "x", "y", xlim=(0.0, 10.0))
    wide.add("p", [2.0], [1.0], point_labels=["p"])
    assert wide._extents()[0] == (0.0, 10.0)  # the given range, not the one point's
    marked = np.flatnonzero((np.asarray(wide.render(400, 300)) != 255).any(axis=2).any(axis=0))
    assert marked.size and marked.max() >= 380  # the frame reaches the right side: the range was drawn
    empty = np.asarray(LineChart("nothing", "x", "y").render(200, 150))
    assert empty.shape == (150, 200, 3)
    assert heatmap("KL", np.array([[3.0, 1.0], [0.5, 0.0]]), ["β=1", "β=4"], "dimension").size[0] == 640
    assert "β" in text_for_font("β", 12) or "beta" in text_for_font("β", 12)


def test_a_worker_whose_parent_is_gone_stops(monkeypatch):
    """Killing a sweep's parent must not leave workers writing into its folder."""
    import multiprocessing
    import os

    from bvae_desktop.core import experiments

    stop = multiprocessing.get_context("spawn").Event()
    monkeypatch.setattr(experiments, "_worker_stop", stop)  # what _init_worker sets in a worker process
    monkeypatch.setattr(experiments, "_worker_parent", os.getppid())
    assert not experiments._worker_should_stop()
    monkeypatch.setattr(os, "getppid", lambda: 1)  # re-parented to init: the parent died
    assert experiments._worker_should_stop()
    monkeypatch.setattr(os, "getppid", lambda: experiments._worker_parent)
    stop.set()
    assert experiments._worker_should_stop()


def fixed_probe(monkeypatch, **changes) -> list[int]:
    """probe_runs answering fixed costs: 10 ms a step, 0.5 s a validation, 2 s + 1 s of metrics per run."""
    costs = dict(step_s=0.01, validate_s=0.5, metrics_s={"mig": 2.0, "unsupervised": 1.0}, stack=1, device="CPU")
    costs.update(probe_s=0.3, compiled=False, **changes)
    stacks: list[int] = []

    def probe(configs, plan, *, dataset=None):
        stacks.append(len(configs))
        return RunCosts(**costs)

    monkeypatch.setattr(experiments_module, "probe_runs", probe)
    return stacks


def test_the_estimate_scales_with_steps_runs_and_runs_at_once(monkeypatch):
    stacks = fixed_probe(monkeypatch)
    spec = ExperimentSpec.sweep(tiny_base(steps=100, val_every=50), [1.0, 4.0], seeds=[0, 1], metrics=tiny_plan())
    four = estimate_experiment(spec)
    assert (four.runs, four.parallel, four.stack) == (4, 1, 1) and stacks == [1]  # one run probed
    assert four.train_s == pytest.approx(100 * 0.01 + 2 * 0.5) and four.scoring_s == pytest.approx(3.0)
    assert four.total_s == pytest.approx(4 * 5.0)
    assert four.describe().startswith("Estimate: about 20s for 4 runs (each: training 2s + metrics 3s); assumes one")
    assert "on CPU with" in four.describe() and "from a 0.3 s probe" in four.describe()
    longer = estimate_experiment(dataclasses.replace(spec, base=tiny_base(steps=400, val_every=50)).validate())
    assert longer.total_s == pytest.approx(4 * (400 * 0.01 + 8 * 0.5 + 3.0))
    two = estimate_experiment(spec, spec.runs()[:2])  # the runs still to do
    assert two.runs == 2 and two.total_s == pytest.approx(10.0)
    parallel = ExperimentSpec.sweep(
        tiny_base(steps=100, val_every=50), [1.0, 4.0], seeds=[0, 1], metrics=tiny_plan(), workers=2
    )
    at_once = estimate_experiment(parallel)
    assert at_once.parallel == 2 and at_once.total_s == pytest.approx(10.0) and "2 runs at a time" in at_once.describe()
    assert estimate_experiment(spec, []).describe() == "Estimate: nothing to do, every run has finished."


def test_a_stack_is_probed_whole_and_costs_its_steps_once(monkeypatch):
    stacks = fixed_probe(monkeypatch, step_s=0.03, stack=3)  # a pass of 3 runs: 30 ms a step
    spec = ExperimentSpec.sweep(tiny_base(steps=100, val_every=50), [1.0, 2.0, 4.0], metrics=tiny_plan(), stack=3)
    found = estimate_experiment(spec)
    assert stacks == [3] and found.stack == 3
    assert found.total_s == pytest.approx(100 * 0.03 + 3 * 2 * 0.5 + 3 * 3.0)
    assert "3 in one pass" in found.describe()


def test_progress_weighs_training_and_scoring_by_the_estimate_and_gives_one_eta():
    spec = ExperimentSpec.sweep(tiny_base(steps=8), [1.0, 4.0], metrics=tiny_plan())
    runs = spec.runs()
    estimate = ExperimentEstimate(2, 40.0, 10.0, {"mig": 6.0, "unsupervised": 4.0}, 1, 1, "CPU", 1, 0.2)
    now = [0.0]
    progress = ExperimentProgress(runs, estimate, clock=lambda: now[0])
    first, second = (r.name for r in runs)
    progress.add(ExperimentEvent("started", first, {"total": 8}))
    for step in range(1, 9):  # 10 estimated seconds of training in 10 s: the estimate holds
        now[0] += 1.25
        progress.add(ExperimentEvent("step", first, {"step": step, "total": 8}))
    assert progress.fraction(first) == pytest.approx(0.5)
    assert progress.run_text(first) == f"{first}: step 8/8"  # trained: no time left to show
    progress.add(ExperimentEvent("metric", first, {"name": "mig"}))
    now[0] += 3.0
    record = ProgressRecord("MIG", 50, 100, "images", 3.0)
    progress.add(ExperimentEvent("metric", first, {"name": "mig", **record.to_info()}))
    assert progress.fraction(first) == pytest.approx((10 + 3) / 20)
    assert progress.eta_s() == pytest.approx(40 - 13)  # 27 estimated seconds left at the measured 1 a second
    assert progress.run_text(first) == f"{first}: MIG 50/100 images · 3s left"
    assert progress.overall_text() == "0 of 2 runs finished; about 27s left"
    progress.add(ExperimentEvent("finished", first, {}))
    progress.add(ExperimentEvent("failed", second, {"message": "no"}))  # its work leaves the plan
    assert progress.eta_s() == 0.0 and progress.overall_text().startswith("1 of 2 runs finished")


def test_without_an_estimate_the_eta_is_the_trainings_and_says_so():
    spec = ExperimentSpec.sweep(tiny_base(steps=10), [1.0], metrics=tiny_plan())
    now = [0.0]
    progress = ExperimentProgress(spec.runs(), clock=lambda: now[0])
    name = spec.runs()[0].name
    for step in range(1, 6):
        now[0] += 1.0
        progress.add(ExperimentEvent("step", name, {"step": step, "total": 10}))
    assert progress.run_eta(name) == pytest.approx(5.0)
    assert (
        progress.overall_text()
        == "0 of 1 runs finished; about 5s of training left (scoring not included: estimate first)"
    )
    progress.stopping()  # asked to stop: no time left to promise
    assert progress.run_eta(name) is None and progress.eta_s() is None
    assert progress.overall_text() == "0 of 1 runs finished; stopping"
