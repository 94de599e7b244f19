"""The codec view on a tiny model trained for a few steps on procedural dSprites."""

import numpy as np
import pytest

from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.trainer import Trainer
from bvae_desktop.gui.codec_view import CodecView


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    run = tmp_path_factory.mktemp("codec-run")
    list(Trainer(TrainConfig(steps=3, batch_size=8, latent_dim=4, device="cpu"), run_dir=run).steps())
    return ModelSource.from_checkpoint(run / "checkpoint.pt")


@pytest.fixture
def view(qtbot, source):
    widget = CodecView()
    qtbot.addWidget(widget)
    widget.set_source(source)
    return widget


def test_shows_original_reconstruction_and_difference_with_numbers(view):
    shown = view.shown_image()
    assert shown is not None and shown.shape[1] > 3 * 64  # three 64x64 tiles side by side
    numbers = view.numbers()
    assert numbers["bytes"] == len(view.compressed())
    assert numbers["bpp"] == pytest.approx(numbers["bytes"] * 8 / (64 * 64))
    assert numbers["ratio_raw"] == pytest.approx(64 * 64 / numbers["bytes"])
    assert numbers["ratio_jpeg"] == pytest.approx(numbers["jpeg_bytes"] / numbers["bytes"])
    for key in ("psnr", "ssim", "jpeg_bytes", "webp_bytes", "png_bytes", "jpeg_psnr", "webp_psnr", "ratio_webp"):
        assert key in numbers
    assert "bits per pixel" in view.numbersLabel.text()


def test_quality_slider_re_encodes(view):
    view.qualitySlider.setValue(5)
    low = view.numbers()["payload_bytes"]
    view.qualitySlider.setValue(100)
    high = view.numbers()["payload_bytes"]
    assert high >= low
    assert view.qualityLabel.text() == "quality 100"


def test_next_image_changes_the_image(view):
    before = view.shown_image().copy()
    view.nextButton.click()
    assert not np.array_equal(before, view.shown_image())


def test_save_and_open_compressed_round_trip(view, tmp_path):
    path = tmp_path / "one.bvz"
    view.save_compressed(path)
    assert path.read_bytes() == view.compressed()
    images = view.open_compressed(path)
    assert images is not None and images.shape == (1, 1, 64, 64)
    assert "one.bvz" in view.numbersLabel.text()


def test_open_compressed_from_another_model_shows_both_fingerprints(view, tmp_path, source):
    path = tmp_path / "one.bvz"
    view.save_compressed(path)
    other = ModelSource.from_state(
        {k: v + 0.01 for k, v in source.model.state_dict().items()}, source.config, source.image_shape, step=0, beta=4.0
    )
    view.set_source(other)
    assert view.open_compressed(path) is None
    message = view.statusLabel.text()
    assert source.fingerprint()[:12] in message and other.fingerprint()[:12] in message


def test_rate_distortion_chart_has_three_series(view):
    series = view.compute_rd()
    assert set(series) == {"β-VAE codec", "JPEG", "WebP"}
    assert all(len(points) >= 5 for points in series.values())
    ours = [bpp for bpp, _ in series["β-VAE codec"]]
    assert ours == sorted(ours)  # higher quality, more bits


def _zero_bit_file(source, count):
    from bvae_desktop.core import codec

    d = source.latent_dim
    alloc = codec.BitAllocation([0] * d, [0] * d, [0] * d)
    return codec.build_file(source.fingerprint(), source.image_shape, count, 50, alloc, b"")


def test_open_compressed_asks_before_decoding_a_large_file(view, source, tmp_path, monkeypatch):
    from bvae_desktop.core import codec

    monkeypatch.setattr(codec, "LARGE_IMAGE_COUNT", 4)  # a "large" file that is still cheap to decode
    path = tmp_path / "many.bvz"
    path.write_bytes(_zero_bit_file(source, 6))
    asked = []
    view.confirm_large = lambda text: asked.append(text) or False
    assert view.open_compressed(path) is None
    assert len(asked) == 1 and "many.bvz: it declares 6 images" in asked[0]
    assert view.statusLabel.text().startswith(f"not decoded: {path}: it declares 6 images")
    view.confirm_large = lambda text: True
    images = view.open_compressed(path)
    assert images is not None and images.shape == (6, 1, 64, 64)


def test_open_compressed_refuses_a_file_of_zero_images(view, source, tmp_path):
    path = tmp_path / "empty.bvz"
    path.write_bytes(_zero_bit_file(source, 0))
    view.confirm_large = lambda text: pytest.fail("nothing to ask about")
    assert view.open_compressed(path) is None
    assert "empty.bvz: malformed .bvz file: it declares 0 images" in view.statusLabel.text()
