"""`bvae evaluate` on a 2-step model trained on procedural dSprites, with tiny sample counts."""

from __future__ import annotations

import argparse
import io
import json
import re

import numpy as np
import pytest
import torch

from bvae_desktop.cli_evaluate import METRIC_NAMES, add_evaluate_parser
from bvae_desktop.cli_progress import StatusLine
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data.imageset import ArrayImageSet
from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.metrics import METRICS
from bvae_desktop.core.trainer import Trainer

TINY = [
    "--set", "num_train=40",
    "--set", "num_eval=20",
    "--set", "num_test=20",
    "--set", "num_variance_estimate=40",
    "--set", "num_points=40",
    "--set", "batch_size=4",
    "--set", "dci.n_estimators=5",
]  # fmt: skip


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bvae")
    add_evaluate_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def run(argv: list[str]) -> int:
    args = parse(argv)
    return args.handler(args)


pytestmark = pytest.mark.filterwarnings("ignore:The number of unique classes:UserWarning")  # 40 points, 40 classes


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared, busy CPU the thread pool makes tiny batches ten times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, one_thread):
    """Two steps: every latent still collapsed (KL per latent ~0.001 nats)."""
    run_dir = tmp_path_factory.mktemp("run")
    trainer = Trainer(TrainConfig(steps=2, batch_size=8, latent_dim=4, device="cpu"), run_dir=run_dir)
    list(trainer.steps())
    return run_dir / "checkpoint.pt"


@pytest.fixture(scope="module")
def active_checkpoint(tmp_path_factory, one_thread):
    """The same, with the encoder's means pushed to 3: every latent carries KL 4.5 nats."""
    run_dir = tmp_path_factory.mktemp("active")
    trainer = Trainer(TrainConfig(steps=2, batch_size=8, latent_dim=4, device="cpu"), run_dir=run_dir)
    list(trainer.steps())
    last = [m for m in trainer.model.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias[:4] = 3.0
    return trainer.save_checkpoint()


def test_parser_names_match_the_registry():
    assert tuple(METRICS) == METRIC_NAMES


def test_evaluate_all_metrics_prints_a_table_and_writes_json(checkpoint, tmp_path, capsys):
    out = tmp_path / "scores" / "metrics.json"
    assert run(["evaluate", str(checkpoint), "--json", str(out), "--seed", "3", *TINY]) == 0
    captured = capsys.readouterr()
    for name in METRIC_NAMES:
        assert name in captured.out
    assert "eval_accuracy" in captured.out and "disentanglement" in captured.out and "num_train 40" in captured.out
    assert "dSprites" in captured.err
    # an estimate before any metric runs, then each metric's progress (not a terminal: a line per part's end)
    err = captured.err.splitlines()
    estimate = next(i for i, line in enumerate(err) if line.startswith("estimate: about "))
    assert "an estimate, from a" in err[estimate] and "probe on the CPU with 1 torch thread" in err[estimate]
    for number, label in enumerate(("β-VAE metric", "FactorVAE metric", "MIG", "DCI", "SAP", "unsupervised scores")):
        assert re.search(rf"[(,] ?{label} \d+s", err[estimate]), label  # its share of the estimate
        started = next(i for i, line in enumerate(err) if line.startswith(f"[{number + 1}/6] {label} (estimate "))
        assert estimate < started < err.index(next(line for line in err if line.startswith(f"  {label}: done in ")))
    assert "  β-VAE metric 60/60 points" in err and "  MIG 40/40 images" in err
    assert "  DCI 60/60 images (part 1 of 2)" in err and "  DCI 25/25 boosting stages (part 2 of 2)" in err
    assert "  SAP 20/20 classifiers (part 2 of 2)" in err  # 4 latents x 5 factors
    report = json.loads(out.read_text())
    assert report["seed"] == 3 and report["step"] == 2 and report["quick"] is False
    metrics = report["metrics"]
    assert set(metrics) == set(METRIC_NAMES)
    assert metrics["beta_vae"]["batch_size"] == 4 and metrics["beta_vae"]["num_train"] == 40
    assert 0.0 <= metrics["mig"]["mig"] <= 1.0 and metrics["dci"]["num_test"] == 20
    assert "n_estimators=5" in metrics["dci"]["classifier"]
    unsup = metrics["unsupervised"]
    assert len(unsup["mean_sigma"]) == 4 and unsup["recon_bce"] > 0 and unsup["latent_dim"] == 4
    assert "given images" in unsup["observations"]  # drawn from the validation split
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left no temporary file


def test_a_collapsed_model_is_scored_under_a_warning(checkpoint, active_checkpoint, tmp_path, capsys):
    out = tmp_path / "collapsed.json"
    assert (
        run(["evaluate", str(checkpoint), "--metrics", "mig", "--set", "num_train=40", "--json", str(out), "--quiet"])
        == 0
    )
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("warning: no latent carries information yet: train longer or lower β")
    assert lines[1].startswith("metric") and any(line.startswith("mig ") for line in lines)  # the scores stay
    assert "bvae evaluate: warning: no latent carries information yet" in captured.err  # said before scoring too
    assert "estimate" not in captured.err and "MIG 40/40" not in captured.err  # --quiet: no estimate, no progress
    warning = json.loads(out.read_text())["warning"]
    assert warning.startswith("no latent carries information yet") and "0.1 needed" in warning

    out = tmp_path / "active.json"
    assert (
        run(
            [
                "evaluate",
                str(active_checkpoint),
                "--metrics",
                "mig",
                "--set",
                "num_train=40",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "warning" not in captured.out and "warning" not in captured.err
    assert json.loads(out.read_text())["warning"] is None


def test_quick_divides_the_counts_and_set_wins(checkpoint, tmp_path, capsys):
    out = tmp_path / "quick.json"
    argv = ["evaluate", str(checkpoint), "--metrics", "mig", "--quick", "--set", "mig.num_bins=10", "--json", str(out)]
    assert run(argv + ["--quiet"]) == 0
    mig = json.loads(out.read_text())["metrics"]["mig"]
    assert mig["num_train"] == 1000 and mig["num_bins"] == 10
    assert json.loads(out.read_text())["quick"] is True


def test_bad_requests_fail_with_a_message(checkpoint, tmp_path):
    with pytest.raises(BvaeError, match="unknown metric"):
        run(["evaluate", str(checkpoint), "--metrics", "mig,nonsense"])
    with pytest.raises(BvaeError, match="no selected metric takes"):
        run(["evaluate", str(checkpoint), "--metrics", "mig", "--set", "num_eval=3"])
    with pytest.raises(BvaeError, match="NAME=VALUE"):
        run(["evaluate", str(checkpoint), "--set", "num_train"])
    with pytest.raises(BvaeError, match="no selected metric takes a setting 'progress'"):
        run(["evaluate", str(checkpoint), "--metrics", "mig", "--set", "progress=1"])


def test_missing_training_data_is_an_error(tmp_path):
    missing = tmp_path / "gone"
    config = TrainConfig(dataset="folder", data_path=str(missing), steps=1, batch_size=4, latent_dim=3, device="cpu")
    images = ArrayImageSet(np.zeros((16, 1, 64, 64), dtype=np.uint8), name="blank")
    run_dir = tmp_path / "run"
    list(Trainer(config, dataset=images, run_dir=run_dir).steps())
    with pytest.raises(BvaeError, match="cannot open the training data"):
        run(["evaluate", str(run_dir / "checkpoint.pt"), "--metrics", "unsupervised"])


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_status_line_is_rewritten_in_place_and_lines_go_above_it():
    clock, screen = FakeClock(), Terminal()
    status = StatusLine(screen, clock=clock, tty_every_s=0.1)
    status.status("MIG 10/40 images")
    clock.now = 0.05
    status.status("MIG 20/40 images")  # too soon after the last redraw: skipped
    clock.now = 0.2
    status.status("MIG 30/40")  # shorter: padded over what was there
    status.line("  MIG: done in 1s")
    assert screen.getvalue() == (
        "\rMIG 10/40 images" + "\rMIG 30/40       " + "\r" + " " * 9 + "\r" + "  MIG: done in 1s\n"
    )


def test_in_a_log_each_status_is_a_line_of_its_own_at_most_every_ten_seconds_per_key(capsys):
    clock = FakeClock()
    status = StatusLine(clock=clock)  # stderr, which pytest captures: not a terminal
    status.status("run a: step 1/9", key="a")
    status.status("run b: step 1/9", key="b")  # another run: its own clock
    clock.now = 5.0
    status.status("run a: step 5/9", key="a")  # skipped
    status.status("run a: step 9/9", key="a", force=True)  # the end of a part always shows
    clock.now = 11.0
    status.status("run b: step 7/9", key="b")
    status.note("[2/6] MIG")
    assert capsys.readouterr().err.splitlines() == [
        "run a: step 1/9",
        "run b: step 1/9",
        "run a: step 9/9",
        "run b: step 7/9",
        "[2/6] MIG",
    ]


def test_quiet_shows_no_progress_but_keeps_lines_that_matter(capsys):
    status = StatusLine(quiet=True, tty=True)
    status.status("MIG 10/40 images", force=True)
    status.note("[1/6] MIG")
    status.line("beta-4_seed-0: failed: out of memory")
    assert capsys.readouterr().err == "beta-4_seed-0: failed: out of memory\n"
