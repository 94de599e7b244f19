"""The codec view on small untrained models whose encoders code every latent, or none (collapsed)."""

import math

import numpy as np
import pytest
import torch
from layout_fixtures import geometry_in, tab_area
from PIL import Image
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel, QSlider, QWidget

from bvae_desktop.core import codec
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data import load_dataset, split_indices
from bvae_desktop.core.data.mnist import pad_digits
from bvae_desktop.core.latent_activity import NO_ACTIVE_LATENT
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.nets import BetaVAE
from bvae_desktop.gui.codec_view import CodecView


def make_source(encoder: str, *, shape=(1, 64, 64), dataset="dsprites-procedural", data=True) -> ModelSource:
    """Untrained weights with the encoder's last layer set: "coding" (sharp posteriors, σ ≈ 0.0025, on means
    that move: every latent coded) or "collapsed" (mean 0, log-variance 0: KL 0, nothing coded)."""
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
    config = TrainConfig(latent_dim=4, dataset=dataset, data_path=None if dataset != "mnist" else "gone.npz")
    images = load_dataset(dataset) if data else None
    val = split_indices(len(images), config.val_fraction, config.seed)[1] if data else None
    return ModelSource.from_state(
        model.state_dict(), config, shape, step=0, beta=4.0, dataset=images, val_indices=val, label=encoder
    )


@pytest.fixture(scope="module")
def source():
    return make_source("coding")


@pytest.fixture(scope="module")
def collapsed():
    return make_source("collapsed")


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
    assert numbers["coded_dims"] == 4
    assert numbers["bytes"] == len(view.compressed())
    assert numbers["bpp"] == pytest.approx(numbers["bytes"] * 8 / (64 * 64))
    assert numbers["ratio_raw"] == pytest.approx(64 * 64 / numbers["bytes"])
    assert numbers["ratio_jpeg"] == pytest.approx(numbers["jpeg_bytes"] / numbers["bytes"])
    for key in ("psnr", "ssim", "jpeg_bytes", "webp_bytes", "png_bytes", "jpeg_psnr", "webp_psnr", "ratio_webp"):
        assert key in numbers
    text = view.numbersLabel.text()
    assert "bits per pixel" in text and f"{numbers['ratio_png']:.1f}× smaller" in text and view.warning() == ""


def test_quality_slider_re_encodes(view):
    view.qualitySlider.setValue(5)
    low = view.numbers()["payload_bytes"]
    view.qualitySlider.setValue(100)
    high = view.numbers()["payload_bytes"]
    assert high > low
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


def test_a_collapsed_model_says_so_instead_of_a_ratio(qtbot, collapsed):
    view = CodecView()
    qtbot.addWidget(view)
    view.set_source(collapsed)
    warning = view.warning()
    assert warning.startswith(f"{codec.NOTHING_CODED}; {NO_ACTIVE_LATENT} (largest KL per latent 0 nats")
    assert view.warningLabel.isVisibleTo(view)
    text = view.numbersLabel.text()
    assert "smaller" not in text and "× ours" not in text and "× PNG" not in text and "no ratio" in text
    numbers = view.numbers()
    assert numbers["coded_dims"] == 0 and math.isnan(numbers["ratio_png"]) and math.isnan(numbers["ratio_jpeg"])
    assert numbers["bytes"] == len(view.compressed()) and numbers["payload_bytes"] == 0  # the honest figures stay


def test_an_mnist_digit_file_is_padded_named_and_given_back_28x28(qtbot, tmp_path):
    view = CodecView()
    qtbot.addWidget(view)
    view.set_source(make_source("coding", shape=(1, 32, 32), dataset="mnist", data=False))
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 11:17] = 255
    Image.fromarray(digit).save(tmp_path / "seven.png")
    assert view.open_image(tmp_path / "seven.png")
    assert view.statusLabel.text() == "seven.png: padded from 28x28 as in MNIST training"
    np.testing.assert_array_equal(view.shown_image()[:, :32], pad_digits(digit))  # the original tile: padded
    assert "seven.png" in view.numbersLabel.text()
    view.save_compressed(tmp_path / "seven.bvz")
    header = codec.parse_header((tmp_path / "seven.bvz").read_bytes())
    assert header.origin(0) == codec.Origin(28, 28, "padded", "seven.png")
    assert view.save_decoded(tmp_path / "decoded") == ["seven.png"]
    with Image.open(tmp_path / "decoded" / "seven.png") as img:
        assert img.size == (28, 28)
    assert view.open_compressed(tmp_path / "seven.bvz") is not None
    assert "seven.png" in view.numbersLabel.text() and "restored" in view.numbersLabel.text()


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
    d = source.latent_dim
    alloc = codec.BitAllocation([0] * d, [0] * d, [0] * d)
    return codec.build_file(source.fingerprint(), source.image_shape, count, 50, alloc, b"")


def test_open_compressed_asks_before_decoding_a_large_file(view, source, tmp_path, monkeypatch):
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
    assert view.warning() == codec.NOTHING_CODED  # 0 bits: six copies of one picture


def test_open_compressed_refuses_a_file_of_zero_images(view, source, tmp_path):
    path = tmp_path / "empty.bvz"
    path.write_bytes(_zero_bit_file(source, 0))
    view.confirm_large = lambda text: pytest.fail("nothing to ask about")
    assert view.open_compressed(path) is None
    assert "empty.bvz: malformed .bvz file: it declares 0 images" in view.statusLabel.text()


# ---------------------------------------------------------------- layout at 1024x640


def assert_laid_out(view: QWidget, widgets: list[QWidget]) -> None:
    """Every widget visible inside the view, none overlapping another, no text cut off."""
    rects = {}
    for widget in widgets:
        name = widget.objectName() or type(widget).__name__
        rect = geometry_in(view, widget)
        assert widget.isVisible() and view.rect().contains(rect), (name, rect, view.size())
        if isinstance(widget, QLabel) and widget.wordWrap():
            assert rect.height() >= widget.heightForWidth(rect.width()), (name, rect)
        elif isinstance(widget, QLabel):
            assert rect.width() >= widget.sizeHint().width() and rect.height() >= widget.sizeHint().height(), name
        elif isinstance(widget, QAbstractButton):
            assert widget.fontMetrics().horizontalAdvance(widget.text()) + 8 <= rect.width(), name
        for other, other_rect in rects.items():
            assert not rect.intersects(other_rect), (name, rect, other, other_rect)
        rects[name] = rect


def test_every_control_fits_at_1024x640(qtbot, tmp_path, source, collapsed):
    area = tab_area(qtbot, tmp_path, "codecView")
    assert 600 <= area.width() <= 720 and 500 <= area.height() <= 600  # the tab beside the 360 px training panel
    view = CodecView()
    qtbot.addWidget(view)
    view.set_source(source)
    view.show()
    view.resize(area)
    qtbot.waitExposed(view)
    assert view.minimumSizeHint().width() <= area.width() and view.minimumSizeHint().height() <= area.height()
    qtbot.waitUntil(lambda: view.size() == area)
    for model in (source, collapsed):  # the figures, then the warning above them
        view.set_source(model)
        QApplication.processEvents()
        controls = [
            view.imageView,
            view.findChild(QLabel, "codecCaption"),
            view.numbersLabel,
            view.findChild(QSlider, "qualitySlider"),
            view.qualityLabel,
            view.prevButton,
            view.nextButton,
            view.openImageButton,
            view.saveButton,
            view.openButton,
            view.saveDecodedButton,
            view.rdButton,
            view.rdPlot,
            view.statusLabel,
        ]
        if model is collapsed:
            controls.append(view.warningLabel)
        assert_laid_out(view, controls)
        assert not view.numbersLabel.wordWrap()  # figures are never read word by word
        assert view.rdPlot.width() >= 500 and view.rdPlot.height() >= 150  # a chart one can read
        assert view.imageView.width() >= 250 and view.imageView.height() >= 150


def test_a_long_file_name_is_shortened_not_widening_the_view(qtbot, tmp_path, source):
    view = CodecView()
    qtbot.addWidget(view)
    view.set_source(source)
    before = view.minimumSizeHint().width()
    name = "a photograph with a very long name taken on holiday in the mountains, copy 3 (final).png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / name)
    assert view.open_image(tmp_path / name)
    assert "…" in view.numbersLabel.text() and view.numbersLabel.toolTip() == name
    assert view.minimumSizeHint().width() <= before + 10
