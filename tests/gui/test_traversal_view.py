"""The traversal view: says when no latent is active, pads an MNIST reference file, and fits a 1024x640 window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from layout_fixtures import geometry_in, tab_area
from PIL import Image
from PySide6.QtCore import QRect
from PySide6.QtWidgets import QAbstractButton, QApplication, QCheckBox, QLabel, QWidget

from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data import ArrayImageSet
from bvae_desktop.core.data.mnist import pad_digits
from bvae_desktop.core.latent_activity import NO_ACTIVE_LATENT
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.nets import BetaVAE
from bvae_desktop.gui.traversal_view import TraversalView

SIZE = 32


def make_source(*, collapsed: bool, dataset: str = "dsprites-procedural", data: bool = True) -> ModelSource:
    """A 32x32 model with 4 latents on 40 random blob images: its encoder's last layer zeroed (every KL exactly
    0, the state of a model a few hundred steps in) or sharpened (every latent carries information)."""
    torch.manual_seed(0)
    model = BetaVAE((1, SIZE, SIZE), 4)
    with torch.no_grad():
        last = model.encoder.fc[-1]
        if collapsed:
            last.weight.zero_()
            last.bias.zero_()
        else:
            last.weight[:4] *= 30
            last.bias[4:] = -12
    images = (np.random.default_rng(0).random((40, 1, SIZE, SIZE)) > 0.7).astype(np.uint8) * 255
    config = TrainConfig(latent_dim=4, dataset=dataset, data_path="gone.npz" if dataset == "mnist" else None)
    return ModelSource.from_state(
        model.state_dict(),
        config,
        (1, SIZE, SIZE),
        step=300,
        beta=4.0,
        dataset=ArrayImageSet(images, name="blobs") if data else None,
        val_indices=np.arange(40) if data else None,
    )


@pytest.fixture
def view(qtbot):
    widget = TraversalView()
    qtbot.addWidget(widget)
    widget.label_points = 40
    yield widget
    widget.shutdown()


def caption(view: TraversalView) -> str:
    return view.findChild(QLabel, "traversalCaption").text()


def test_a_model_with_no_active_latent_says_so_in_the_caption(qtbot, view):
    view.set_source(make_source(collapsed=True))  # KL unknown: measured on the validation images first
    qtbot.waitUntil(lambda: not view.is_labelling(), timeout=30_000)
    text = caption(view)
    assert text.startswith(f"{NO_ACTIVE_LATENT} (largest KL per latent 0 nats, 0.1 needed). 4 dimensions sorted by KL")
    view.findChild(QCheckBox, "hideInactiveCheck").setChecked(True)
    assert caption(view).startswith(f"{NO_ACTIVE_LATENT} (largest KL") and "untick 'hide inactive'" in caption(view)


def test_an_active_model_gets_no_warning(qtbot, view):
    view.set_source(make_source(collapsed=False))
    qtbot.waitUntil(lambda: not view.is_labelling(), timeout=30_000)
    assert caption(view).startswith("4 dimensions sorted by KL") and NO_ACTIVE_LATENT not in caption(view)


def test_an_mnist_reference_file_is_padded_as_in_training(view, tmp_path):
    view.set_source(make_source(collapsed=False, dataset="mnist", data=False))
    digit = np.zeros((28, 28), np.uint8)
    digit[3:25, 12:17] = 255
    Image.fromarray(digit).save(tmp_path / "seven.png")
    view.load_reference_file(str(tmp_path / "seven.png"))
    assert view.referenceLabel.text() == "seven.png"
    assert (
        view.findChild(QLabel, "traversalStatus").text()
        == "reference seven.png: padded from 28x28 as in MNIST training"
    )
    # the sliders start at the reference's code: the padded digit's, not a stretched digit's
    source = view.source()
    padded = source.encode(pad_digits(digit)[None, None])[0][0]
    stretched = source.encode(np.array(Image.fromarray(digit).resize((SIZE, SIZE)))[None, None])[0][0]
    np.testing.assert_allclose(view.slider_code(), np.clip(padded, -3, 3), atol=0.006)
    assert np.abs(np.clip(stretched, -3, 3) - view.slider_code()).max() > 0.02  # two slider steps off


# ---------------------------------------------------------------- layout at 1024x640


def test_every_control_fits_at_1024x640_and_a_long_name_moves_nothing(qtbot, view, tmp_path):
    area = tab_area(qtbot, tmp_path, "traversalView")
    assert 600 <= area.width() <= 720 and 500 <= area.height() <= 600
    view.set_source(make_source(collapsed=True))
    view.show()
    view.resize(area)
    qtbot.waitExposed(view)
    qtbot.waitUntil(lambda: not view.is_labelling() and view.size() == area, timeout=30_000)
    QApplication.processEvents()  # the layout request the new caption posted
    assert view.minimumSizeHint().width() <= area.width() and view.minimumSizeHint().height() <= area.height()
    buttons = [b for b in view.findChildren(QAbstractButton) if b.isVisible()]
    controls = buttons + [
        view.findChild(QWidget, name)
        for name in ("rangeSpin", "traversalStepsSpin", "referenceImage", "referenceLabel")
    ]
    controls += [view.findChild(QWidget, "traversalGrid"), view.findChild(QWidget, "decodedImage")]
    rects: dict[str, QRect] = {}
    for widget in controls:
        rect = geometry_in(view, widget)
        name = widget.objectName()
        assert widget.isVisible() and view.rect().contains(rect), (name, rect)
        if isinstance(widget, QAbstractButton):  # its text not cut off
            assert widget.fontMetrics().horizontalAdvance(widget.text()) + 8 <= rect.width(), name
        for other, other_rect in rects.items():
            assert not rect.intersects(other_rect), (name, rect, other, other_rect)
        rects[name] = rect
    for label in (view.findChild(QLabel, "traversalCaption"), view.findChild(QLabel, "traversalStatus")):
        assert label.height() >= label.heightForWidth(label.width())  # wrapped, every line shown
    assert NO_ACTIVE_LATENT in caption(view)

    before = {b.objectName(): geometry_in(view, b) for b in buttons}
    long_name = "a reference image with a very long file name from a camera, copy 17 of the final edit.png"
    view.set_reference_image(view.grid()[0, 0].copy(), name=long_name)
    QApplication.processEvents()
    assert {b.objectName(): geometry_in(view, b) for b in buttons} == before  # nothing moved
    assert view.size() == area and view.minimumSizeHint().width() <= area.width()
    label = view.referenceLabel
    assert label.text() == long_name and label.toolTip() == long_name
    shown = label.shown_text()
    assert "…" in shown and label.fontMetrics().horizontalAdvance(shown) <= label.contentsRect().width()
    view.set_reference_image(None)
    QApplication.processEvents()
    assert view.referenceLabel.shown_text() == "prior mean"
