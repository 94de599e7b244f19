"""Experiments: a tiny sweep end to end, resume after stop, comparisons, failures, and the results files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import ConfigError
from bvae_desktop.core.experiment_results import COLUMN_KEYS, read_curves, summarise
from bvae_desktop.core.experiment_run import MetricPlan, read_result
from bvae_desktop.core.experiments import (
    DEFAULT_BETAS,
    Experiment,
    ExperimentError,
    ExperimentSpec,
    load_spec,
)


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
    assert [(r.name, r.config.gamma) for r in capacity.runs()] == [("beta-b-10_seed-0", 10.0), ("beta-b-100_seed-0", 100.0)]
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
