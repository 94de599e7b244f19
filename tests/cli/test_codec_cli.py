import argparse

import numpy as np
import pytest
from PIL import Image

from bvae_desktop.cli_codec import RDPoint, add_codec_parsers, bpp_for_psnr, draw_chart
from bvae_desktop.core import codec
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import BvaeError, CodecError
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.trainer import Trainer


def run(argv):
    parser = argparse.ArgumentParser(prog="bvae")
    add_codec_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.handler(args)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli_codec_model")
    trainer = Trainer(TrainConfig(steps=2, batch_size=8, latent_dim=4, device="cpu"), run_dir=run_dir)
    for _ in trainer.steps():
        pass
    return run_dir / "checkpoint.pt"


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


def test_compress_then_decompress(checkpoint, pngs, tmp_path, capsys):
    out = tmp_path / "x.bvz"
    assert run(["compress", checkpoint, *pngs, "-o", out, "--quality", "70"]) == 0
    printed = capsys.readouterr().out
    for word in ("bytes", "bits per pixel", "PNG bytes", "PSNR", "SSIM"):
        assert word in printed
    assert f"bytes           {out.stat().st_size}" in printed
    assert codec.parse_header(out.read_bytes()).count == 3

    folder = tmp_path / "decoded"
    assert run(["decompress", checkpoint, out, "-o", folder]) == 0
    printed = capsys.readouterr().out
    assert "images          3" in printed and "bits per pixel" in printed
    assert sorted(p.name for p in folder.iterdir()) == ["img_0000.png", "img_0001.png", "img_0002.png"]
    assert np.asarray(Image.open(folder / "img_0001.png")).shape == (64, 64)


def test_wrong_size_needs_resize(checkpoint, tmp_path, capsys):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((100, 80, 3), np.uint8)).save(path)
    out = tmp_path / "big.bvz"
    with pytest.raises(CodecError, match="big.png"):
        run(["compress", checkpoint, path, "-o", out])
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["big.png"]
    assert run(["compress", checkpoint, path, "-o", out, "--resize"]) == 0
    assert codec.parse_header(out.read_bytes()).resized


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
