"""`bvae sweep`, `bvae compare`, `bvae resume` and `bvae report` end to end (tiny runs, CPU)."""

from __future__ import annotations

import json

from bvae_desktop.cli import main

TINY = ["--steps", "6", "--batch-size", "8", "--val-every", "3", "--device", "cpu", "--metrics", "mig,unsupervised"]
COUNTS = ["--set", "num_train=100", "--set", "num_points=100"]


def test_sweep_then_resume_then_report(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--out", str(out), "--betas", "0.5,4", "--seeds", "1", *TINY, *COUNTS]) == 0
    err = capsys.readouterr().err
    assert "beta-0.5_seed-1: finished" in err and "2 of 2 runs finished" in err and "report.html" in err
    lines = err.splitlines()
    estimate = next(i for i, line in enumerate(lines) if line.startswith("Estimate: about "))
    assert "for 2 runs (each: training " in lines[estimate] and "one run at a time on CPU" in lines[estimate]
    assert estimate < lines.index("beta-0.5_seed-1: started")
    # progress, not a terminal: each run's last step and each metric's end always get a line, with the whole's state
    assert any(line.startswith("  beta-0.5_seed-1: step 6/6  recon ") and " runs finished; " in line for line in lines)
    assert "  beta-0.5_seed-1: scoring mig" in lines
    assert any(line.startswith("  beta-4_seed-1: MIG 100/100 images · 1 of 2 runs finished; ") for line in lines)
    spec = json.loads((out / "experiment.json").read_text())
    assert spec["betas"] == [0.5, 4.0] and spec["seeds"] == [1]
    assert spec["metrics"]["overrides"] == {"mig": {"num_train": 100}, "unsupervised": {"num_points": 100}}

    assert main(["resume", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("already finished") == 2 and "started" not in err and "Estimate" not in err  # nothing to do

    (out / "report.html").unlink()
    assert main(["report", str(out), "--markdown"]) == 0
    captured = capsys.readouterr()
    assert "2 of 2 runs finished" in captured.err and (out / "report.html").exists()
    table = captured.out.strip().splitlines()
    assert table[0].startswith("| run | seeds | reconstruction (val) |") and "mean \\|μ\\|" in table[0]
    assert [line.split(" | ")[0] for line in table[2:]] == ["| β=0.5", "| β=4"]
    assert all(line.count(" | ") == table[0].count(" | ") for line in table[2:])

    # other settings on the same folder: refused, naming the folder and the way to continue
    assert main(["sweep", "--out", str(out), "--betas", "0.5,8", "--seeds", "1", *TINY, *COUNTS]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "bvae resume" in err


def test_compare_writes_a_table_of_both_models(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--out", str(out), "--beta", "6", "--seeds", "2x", *TINY, *COUNTS, "--quiet"]) == 0
    document = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in document["rows"]] == ["vae_seed-0", "vae_seed-1", "beta-6_seed-0", "beta-6_seed-1"]
    assert [s["group"] for s in document["summary"]] == ["VAE", "β-VAE (β=6)"]
    assert all(len(s["seeds"]) == 2 for s in document["summary"])
    assert "scoring" not in capsys.readouterr().err  # --quiet


def test_estimate_prints_the_plan_and_the_time_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "planned"
    assert main(["compare", "--out", str(out), "--beta", "6", *TINY, *COUNTS, "--estimate"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"compare: 2 runs in {out} (one at a time in this process, up to 1 in one pass)"
    assert err[1:3] == ["  to do: vae_seed-0 (6 steps)", "  to do: beta-6_seed-0 (6 steps)"]
    assert err[-1].startswith("Estimate: about ") and "for 2 runs (each: training " in err[-1] and "probe" in err[-1]
    assert not out.exists()  # neither trained nor written


def test_bad_flags_name_what_is_wrong(tmp_path, capsys):
    assert main(["sweep", "--out", str(tmp_path / "x"), "--betas", "1,abc"]) == 2
    assert "--betas must be comma-separated numbers" in capsys.readouterr().err
    assert main(["sweep", "--out", str(tmp_path / "x"), "--metrics", "nope"]) == 2
    assert "unknown metric nope" in capsys.readouterr().err
    assert main(["resume", str(tmp_path / "nowhere")]) == 2
    assert "no experiment here" in capsys.readouterr().err
