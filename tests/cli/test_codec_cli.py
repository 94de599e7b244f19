"""`bvae compress`, `decompress` and `rd` on models built to code every latent, or none (a collapsed encoder)."""

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from bvae_desktop.cli_codec import RDPoint, add_codec_parsers, bpp_for_psnr, draw_chart
from bvae_desktop.core import codec
from bvae_desktop.core.checkpoint import Checkpoint, save_checkpoint
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data.mnist import pad_digits
from bvae_desktop.core.errors import BvaeError, CodecError
from bvae_desktop.core.latent_activity import NO_ACTIVE_LATENT
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.nets import BetaVAE


def run(argv):
    parser = argparse.ArgumentParser(prog="bvae")
    add_codec_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.handler(args)


def write_model(path, encoder, *, shape=(1, 64, 64), dataset="dsprites-procedural", data_path=None):
    """An untrained model whose encoder's last layer is set so every latent is coded ("coding": sharp posteriors,
    σ ≈ 0.0025, on means that move) or none is ("collapsed": mean 0, log-variance 0, every KL exactly 0)."""
    torch.manual_seed(0)
    model = BetaVAE(shape, 4)
    with torch.no_grad():
        last = model.encoder.fc[-1]
        if encoder == "collapsed":
            last.weight.zero_()
            last.bias.zero_()
        else:
            last.weight[:4] *= 30
            last.weight[4:] = 0
            last.bias[4:] = -12
    config = TrainConfig(latent_dim=4, dataset=dataset, data_path=data_path)
    save_checkpoint(
        path, Checkpoint(config=config, image_shape=shape, step=0, beta=4.0, model_state=model.state_dict())
    )
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("cli_codec_model") / "checkpoint.pt", "coding")


@pytest.fixture(scope="module")
def collapsed(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("cli_codec_collapsed") / "checkpoint.pt", "collapsed")


@pytest.fixture(scope="module")
def pngs(checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pngs")
    source = ModelSource.from_checkpoint(checkpoint)
    paths = []
    for i, image in enumerate(codec.reference_images(source, 3)):
        path = folder / f"in_{i}.png"
        Image.fromarray(image[0]).save(path)
        paths.append(path)
    return paths


def test_compress_then_decompress_keeps_the_file_names(checkpoint, pngs, tmp_path, capsys):
    out = tmp_path / "x.bvz"
    assert run(["compress", checkpoint, *pngs, "-o", out, "--quality", "70"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    for word in ("bytes", "bits per pixel", "PNG bytes", "PSNR", "SSIM"):
        assert word in printed
    assert f"bytes           {out.stat().st_size}" in printed
    assert "smaller than PNG" in printed and "4 of 4 dims coded" in printed and captured.err == ""
    header = codec.parse_header(out.read_bytes())
    assert header.count == 3 and header.names == {0: "in_0.png", 1: "in_1.png", 2: "in_2.png"}

    folder = tmp_path / "decoded"
    assert run(["decompress", checkpoint, out, "-o", folder]) == 0
    printed = capsys.readouterr().out
    assert "images          3" in printed and "bits per pixel" in printed and "restored" not in printed
    assert sorted(p.name for p in folder.iterdir()) == ["in_0.png", "in_1.png", "in_2.png"]
    assert np.asarray(Image.open(folder / "in_1.png")).shape == (64, 64)


def test_same_names_from_two_folders_do_not_overwrite_each_other(checkpoint, pngs, tmp_path):
    copies = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        copies.append(tmp_path / folder / "same.png")
        copies[-1].write_bytes(pngs[0].read_bytes())
    out = tmp_path / "two.bvz"
    assert run(["compress", checkpoint, *copies, "-o", out]) == 0
    assert codec.parse_header(out.read_bytes()).names == {0: "same.png", 1: "same.png"}  # names, not paths
    assert run(["decompress", checkpoint, out, "-o", tmp_path / "decoded"]) == 0
    assert sorted(p.name for p in (tmp_path / "decoded").iterdir()) == ["same-1.png", "same.png"]


def test_an_mnist_digit_is_padded_not_stretched_and_comes_back_28x28(tmp_path, capsys):
    rng = np.random.default_rng(0)
    digits = np.zeros((40, 28, 28), np.uint8)
    for k, digit in enumerate(digits):
        digit[4 + k % 5 : 22 + k % 5, 8 + k % 7 : 13 + k % 7] = 255  # strokes in different places
    np.savez(tmp_path / "mnist.npz", x_train=digits, y_train=rng.integers(0, 10, 40))
    model = write_model(
        tmp_path / "mnist.pt", "coding", shape=(1, 32, 32), dataset="mnist", data_path=str(tmp_path / "mnist.npz")
    )
    digit = digits[3]
    Image.fromarray(digit).save(tmp_path / "one.png")
    out = tmp_path / "one.bvz"
    assert run(["compress", model, tmp_path / "one.png", "-o", out]) == 0  # no --resize: training pads them too
    printed = capsys.readouterr().out
    assert "fitted          1 image(s) padded from 28x28 as in MNIST training to 32x32x1" in printed
    source = ModelSource.from_checkpoint(model)
    header, symbols = codec.decode_symbols(out.read_bytes())
    assert header.alloc.bits_per_image > 0
    padded = codec.compress(source, pad_digits(digit)[None, None], 50)
    stretched = codec.compress(source, np.array(Image.fromarray(digit).resize((32, 32)))[None, None], 50)
    np.testing.assert_array_equal(symbols, codec.decode_symbols(padded)[1])  # the digit as training saw it
    assert not np.array_equal(symbols, codec.decode_symbols(stretched)[1])
    assert header.origin(0) == codec.Origin(28, 28, "padded", "one.png")
    assert run(["decompress", model, out, "-o", tmp_path / "decoded"]) == 0
    assert "restored        1 image(s) to their original sizes" in capsys.readouterr().out
    assert np.asarray(Image.open(tmp_path / "decoded" / "one.png")).shape == (28, 28)


def test_wrong_size_needs_resize(checkpoint, tmp_path, capsys):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((100, 80, 3), np.uint8)).save(path)
    out = tmp_path / "big.bvz"
    with pytest.raises(CodecError, match="big.png"):
        run(["compress", checkpoint, path, "-o", out])
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["big.png"]
    assert run(["compress", checkpoint, path, "-o", out, "--resize"]) == 0
    assert "fitted          1 image(s) converted to grey, resized from 80x100 to 64x64x1" in capsys.readouterr().out
    assert codec.parse_header(out.read_bytes()).resized
    assert run(["decompress", checkpoint, out, "-o", tmp_path / "decoded"]) == 0
    assert np.asarray(Image.open(tmp_path / "decoded" / "big.png")).shape == (100, 80)  # its own size again


def test_a_collapsed_model_says_so_and_claims_no_ratio(collapsed, pngs, tmp_path, capsys):
    out = tmp_path / "c.bvz"
    assert run(["compress", collapsed, *pngs, "-o", out]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"warning: {codec.NOTHING_CODED}; {NO_ACTIVE_LATENT} (largest KL per latent 0 nats")
    assert "smaller than PNG" not in captured.out and "ratio" not in captured.out.replace("no ratio", "")
    assert f"(no ratio: {codec.NOTHING_CODED})" in captured.out and "0 of 4 dims coded" in captured.out
    assert run(["rd", collapsed, "--count", "2", "--qualities", "50", "--out", tmp_path / "rd"]) == 0
    assert f"warning: {codec.NOTHING_CODED}; {NO_ACTIVE_LATENT}" in capsys.readouterr().err


def test_decompress_refuses_damaged_file_and_writes_nothing(checkpoint, pngs, tmp_path):
    good = tmp_path / "g.bvz"
    run(["compress", checkpoint, pngs[0], "-o", good])
    bad = tmp_path / "bad.bvz"
    bad.write_bytes(good.read_bytes()[:-1])
    with pytest.raises(CodecError, match="bad.bvz"):
        run(["decompress", checkpoint, bad, "-o", tmp_path / "out"])
    assert not (tmp_path / "out").exists()
    with pytest.raises(BvaeError):
        run(["decompress", checkpoint, tmp_path / "missing.bvz", "-o", tmp_path / "out"])


def test_rd_writes_csv_chart_and_table(checkpoint, tmp_path, capsys):
    out = tmp_path / "rd"
    assert run(["rd", checkpoint, "--count", "4", "--qualities", "20", "80", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "| PSNR target (dB) |" in printed and "JPEG / ours" in printed
    rows = (out / "rd.csv").read_text().splitlines()
    assert rows[0].startswith("codec,quality,bytes,bpp,psnr,ssim")
    assert {r.split(",")[0] for r in rows[1:]} == {"bvae", "bvae-1-per-file", "jpeg", "webp"}
    assert Image.open(out / "rd.png").size == (1200, 580)


def test_bpp_for_psnr_interpolates_and_bounds():
    pts = [RDPoint("x", 0, 0, bpp, p, 0.5, {}) for bpp, p in ((0.1, 20.0), (1.0, 30.0), (10.0, 40.0))]
    assert bpp_for_psnr(pts, 25.0)[0] == pytest.approx(10**-0.5)
    assert bpp_for_psnr(pts, 15.0) == (0.1, "≤")
    assert bpp_for_psnr(pts, 41.0) == (None, "")
    assert draw_chart(pts, "t").size == (1200, 580)
