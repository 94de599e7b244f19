"""`bvae models`, `bvae export-model`, and a bundled model's name in every command that takes a checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from zoo_fixtures import bundled_pair, copy_models, train_run

from bvae_desktop.cli import main
from bvae_desktop.core import model_zoo

TINY_METRICS = ["--set", "mig.num_train=40"]  # MIG on 40 points: a fast look, not a number to compare

pytestmark = pytest.mark.filterwarnings("ignore:The number of unique classes:UserWarning")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared, busy CPU the thread pool makes tiny batches ten times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def models(tmp_path_factory, tmp_path, monkeypatch):
    folder = bundled_pair(tmp_path_factory)
    monkeypatch.setenv(model_zoo.MODELS_ENV, str(folder))
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("cli-zoo") / "run", steps=3)


def test_models_lists_the_bundled_models(models, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["name", "dataset", "objective", "β", "steps"]
    assert lines[1].startswith("beta4-dsprites") and "β=4" in lines[1] and str(models / "beta4-dsprites.pt") in lines[1]
    assert lines[2].startswith("vae-dsprites") and "β=1" in lines[2]
    assert "recon" in lines[0] and "KL" in lines[0]  # headline numbers
    assert main(["models", "--json", "--verify"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["beta4-dsprites", "vae-dsprites"]
    assert rows[0]["beta"] == 4.0 and rows[0]["steps"] == 4 and rows[0]["path"] == str(models / "beta4-dsprites.pt")
    assert main(["models", "vae-dsprites"]) == 0
    assert "VAE (β = 1)" in capsys.readouterr().out
    assert main(["models", "vae-dsprites", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "vae-dsprites"


def test_models_with_none_bundled_and_with_damage(tmp_path, monkeypatch, models, capsys):
    monkeypatch.setenv(model_zoo.MODELS_ENV, str(tmp_path / "empty"))
    assert main(["models"]) == 0
    assert "no bundled models" in capsys.readouterr().out
    damaged = copy_models(models, tmp_path / "damaged")
    with open(damaged / "vae-dsprites.pt", "ab") as fh:
        fh.write(b"extra")
    monkeypatch.setenv(model_zoo.MODELS_ENV, str(damaged))
    assert main(["models", "--verify"]) == 2
    assert "vae-dsprites.pt" in capsys.readouterr().err
    assert main(["models", "nothing-here"]) == 2
    assert "no bundled model 'nothing-here'" in capsys.readouterr().err


def test_export_model_end_to_end_with_metrics_from_evaluate(run_dir, tmp_path, capsys):
    metrics = tmp_path / "metrics.json"
    assert (
        main(["evaluate", str(run_dir / "checkpoint.pt"), "--metrics", "mig", *TINY_METRICS, "--json", str(metrics)])
        == 0
    )
    capsys.readouterr()
    argv = ["export-model", str(run_dir), "--name", "tiny", "--models-dir", str(tmp_path / "m"), "--val-images", "32"]
    argv += ["--command", "bvae train --steps 3", "--metrics-json", str(metrics), "--half"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "wrote " + str(tmp_path / "m" / "tiny.pt") in out
    assert "float32 recon" in out and "float16 recon" in out and "sha256 " in out
    card = json.loads((tmp_path / "m" / "tiny.json").read_text())
    assert card["training"]["command"] == "bvae train --steps 3"
    assert "mig" in card["metrics"]["results"] and card["metrics"]["counts"]["mig"].startswith("divided by 250")
    assert main(argv) == 2  # exists: refused without --force
    assert "already exists" in capsys.readouterr().err


def test_info_takes_a_bundled_name_and_says_weights_only(models, capsys):
    assert main(["info", "beta4-dsprites"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint   beta4-dsprites" in out and "bundled model beta4-dsprites, weights only" in out


def test_traverse_takes_a_bundled_name(models, tmp_path, capsys):
    png = tmp_path / "grid.png"
    assert main(["traverse", "beta4-dsprites", "--out", str(png), "--steps", "3", "--points", "16"]) == 0
    with Image.open(png) as img:
        assert img.size[1] == 3 * 64 + 2 * 2  # 3 latents


def test_evaluate_takes_a_bundled_name(models, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["evaluate", "vae-dsprites", "--metrics", "mig", *TINY_METRICS, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["checkpoint"] == "vae-dsprites" and report["checkpoint_path"] == str(models / "vae-dsprites.pt")


def test_compress_decompress_and_rd_take_a_bundled_name(models, tmp_path, capsys):
    image = tmp_path / "in.png"
    canvas = np.zeros((64, 64), np.uint8)
    canvas[20:36, 24:40] = 255
    Image.fromarray(canvas).save(image)
    bvz = tmp_path / "x.bvz"
    assert main(["compress", "beta4-dsprites", str(image), "-o", str(bvz)]) == 0
    assert main(["decompress", "beta4-dsprites", str(bvz), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "in.png").is_file()  # under its own name (.bvz version 2)
    assert main(["decompress", "vae-dsprites", str(bvz), "-o", str(tmp_path / "out2")]) == 2  # another model
    assert main(["rd", "beta4-dsprites", "--count", "4", "--qualities", "50", "--out", str(tmp_path / "rd")]) == 0
    assert (tmp_path / "rd" / "rd.csv").is_file()


def test_an_unknown_name_lists_the_bundled_names(models, capsys):
    for argv in (["info", "beta9"], ["traverse", "beta9", "--out", "x.png"], ["evaluate", "beta9"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "beta9: no such checkpoint file, and no bundled model of that name" in err
        assert "beta4-dsprites, vae-dsprites" in err


def test_resume_refuses_a_bundled_model_and_weights_only_files(models, capsys):
    assert main(["train", "--resume", "beta4-dsprites", "--steps", "5", "--quiet"]) == 2
    assert "is a bundled model, not a run's checkpoint" in capsys.readouterr().err
    assert main(["train", "--resume", str(models / "vae-dsprites.pt"), "--steps", "5", "--quiet"]) == 2
    assert "weights only" in capsys.readouterr().err
