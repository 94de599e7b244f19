"""`bvae evaluate` on a 2-step model trained on procedural dSprites, with tiny sample counts."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from bvae_desktop.cli_evaluate import METRIC_NAMES, add_evaluate_parser
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
    run_dir = tmp_path_factory.mktemp("run")
    trainer = Trainer(TrainConfig(steps=2, batch_size=8, latent_dim=4, device="cpu"), run_dir=run_dir)
    list(trainer.steps())
    return run_dir / "checkpoint.pt"


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


def test_quick_divides_the_counts_and_set_wins(checkpoint, tmp_path, capsys):
    out = tmp_path / "quick.json"
    argv = ["evaluate", str(checkpoint), "--metrics", "mig", "--quick", "--set", "mig.num_bins=10", "--json", str(out)]
    assert run(argv) == 0
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


def test_missing_training_data_is_an_error(tmp_path):
    missing = tmp_path / "gone"
    config = TrainConfig(dataset="folder", data_path=str(missing), steps=1, batch_size=4, latent_dim=3, device="cpu")
    images = ArrayImageSet(np.zeros((16, 1, 64, 64), dtype=np.uint8), name="blank")
    run_dir = tmp_path / "run"
    list(Trainer(config, dataset=images, run_dir=run_dir).steps())
    with pytest.raises(BvaeError, match="cannot open the training data"):
        run(["evaluate", str(run_dir / "checkpoint.pt"), "--metrics", "unsupervised"])
