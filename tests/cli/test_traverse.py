"""`bvae traverse`: the grid PNG and GIF from a checkpoint, headless."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from bvae_desktop.cli_traverse import add_traverse_parser
from bvae_desktop.core.checkpoint import Checkpoint, save_checkpoint
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data.mnist import pad_digits
from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.latent_activity import NO_ACTIVE_LATENT
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.nets import BetaVAE
from bvae_desktop.core.traversal import tile_grid, traverse


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained procedural-dSprites model written as a real checkpoint (training adds only seconds)."""
    torch.manual_seed(0)
    config = TrainConfig(steps=2, batch_size=8, latent_dim=4, device="cpu")
    model = BetaVAE((1, 64, 64), 4)
    path = tmp_path_factory.mktemp("run") / "checkpoint.pt"
    save_checkpoint(
        path, Checkpoint(config=config, image_shape=(1, 64, 64), step=0, beta=4.0, model_state=model.state_dict())
    )
    return path


def run_traverse(argv: list[str]) -> int:
    """Through a parser of our own, so the test does not depend on cli.py's hook."""
    parser = argparse.ArgumentParser(prog="bvae")
    add_traverse_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_traverse_writes_the_grid_and_the_gif(checkpoint, tmp_path, capsys):
    png, gif = tmp_path / "grid.png", tmp_path / "out" / "traversal.gif"
    code = run_traverse(
        ["traverse", str(checkpoint), "--out", str(png), "--gif", str(gif), "--steps", "5", "--points", "64"]
    )
    assert code == 0
    with Image.open(png) as img:
        assert img.size[1] == 4 * 64 + 3 * 2 and img.size[0] > 5 * 64 + 4 * 2  # 4 rows, label column
    with Image.open(gif) as img:
        assert img.n_frames == 5 and img.info.get("loop") == 0
    assert "4 dimensions (KL order) x 5 steps" in capsys.readouterr().err


def test_traverse_around_an_image_file_without_labels(checkpoint, tmp_path):
    ref = tmp_path / "ref.png"
    Image.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(ref)
    png = tmp_path / "grid.png"
    args = ["traverse", str(checkpoint), "--out", str(png), "--image", str(ref), "--steps", "3", "--range", "2"]
    assert run_traverse([*args, "--no-labels", "--points", "32"]) == 0
    with Image.open(png) as img:
        assert img.size == (3 * 64 + 2 * 2, 4 * 64 + 3 * 2)


def test_bad_settings_raise_an_error_the_cli_prints(checkpoint, tmp_path):
    with pytest.raises(BvaeError, match="steps"):
        run_traverse(["traverse", str(checkpoint), "--out", str(tmp_path / "g.png"), "--steps", "40"])
    with pytest.raises(BvaeError, match="checkpoint.pt: cannot read the image"):
        run_traverse(["traverse", str(checkpoint), "--out", str(tmp_path / "g.png"), "--image", str(checkpoint)])


def test_bvae_main_has_traverse_once_wired(checkpoint, tmp_path):
    from bvae_desktop import cli

    commands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if "traverse" not in commands.choices:
        pytest.skip("cli.build_parser does not call add_traverse_parser yet")
    png = tmp_path / "grid.png"
    assert cli.main(["traverse", str(checkpoint), "--out", str(png), "--steps", "3", "--points", "32"]) == 0
    assert png.exists()
    assert cli.main(["traverse", str(checkpoint), "--out", str(png), "--steps", "1"]) == 2


def _encoder_checkpoint(path, *, collapsed: bool, shape=(1, 64, 64), **config):
    """No latent active (the encoder's last layer zeroed: mean 0, log-variance 0, KL 0) or all four active."""
    torch.manual_seed(0)
    model = BetaVAE(shape, 4)
    with torch.no_grad():
        last = model.encoder.fc[-1]
        if collapsed:
            last.weight.zero_()
            last.bias.zero_()
        else:
            last.weight[:4] *= 30
            last.bias[4:] = -12
    config = TrainConfig(latent_dim=4, device="cpu", **config)
    save_checkpoint(
        path, Checkpoint(config=config, image_shape=shape, step=0, beta=4.0, model_state=model.state_dict())
    )
    return path


def test_a_model_with_no_active_latent_says_so(tmp_path, capsys):
    collapsed = _encoder_checkpoint(tmp_path / "collapsed.pt", collapsed=True)
    assert (
        run_traverse(["traverse", str(collapsed), "--out", str(tmp_path / "c.png"), "--steps", "3", "--points", "32"])
        == 0
    )
    err = capsys.readouterr().err
    assert f"warning: {NO_ACTIVE_LATENT} (largest KL per latent 0 nats, 0.1 needed)" in err
    active = _encoder_checkpoint(tmp_path / "active.pt", collapsed=False)
    assert (
        run_traverse(["traverse", str(active), "--out", str(tmp_path / "a.png"), "--steps", "3", "--points", "32"]) == 0
    )
    err = capsys.readouterr().err
    assert "warning" not in err and "4 dimensions (KL order)" in err


def test_an_mnist_reference_digit_is_padded_as_in_training(tmp_path, capsys):
    model = _encoder_checkpoint(
        tmp_path / "mnist.pt", collapsed=False, shape=(1, 32, 32), dataset="mnist", data_path=str(tmp_path / "gone")
    )
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 10:18] = 255
    Image.fromarray(digit).save(tmp_path / "seven.png")
    png = tmp_path / "grid.png"
    args = ["traverse", str(model), "--out", str(png), "--image", str(tmp_path / "seven.png"), "--steps", "3"]
    assert run_traverse([*args, "--no-labels"]) == 0
    assert (
        f"reference image {tmp_path / 'seven.png'}: padded from 28x28 as in MNIST training" in capsys.readouterr().err
    )
    source = ModelSource.from_checkpoint(model)
    expected = tile_grid(traverse(source, pad_digits(digit)[None], steps=3, label_factors=False).grid)
    with Image.open(png) as img:
        np.testing.assert_array_equal(
            np.asarray(img), expected
        )  # the grid around the padded digit, not a stretched one
