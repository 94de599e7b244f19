"""The latent explorer: the traversal view (grid, labels, sliders, exports) and the scatter view (threaded encode)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QCheckBox, QLabel, QPushButton, QSlider, QSpinBox
from torch import nn

from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data import ArrayImageSet, Factors
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.nets import BetaVAE
from bvae_desktop.core.tiling import GAP_VALUE as CORE_GAP
from bvae_desktop.core.tiling import tile_rows as core_tile_rows
from bvae_desktop.gui.scatter_view import CATEGORICAL, ScatterView, pca_2d
from bvae_desktop.gui.traversal_view import TraversalView

SIZE = 32


class CentroidEncoder(nn.Module):
    """mean = (centroid x, centroid y, 0, ...): a known encoder for the factor labels."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = x.sum(dim=1)
        n, h, w = img.shape
        mass = img.sum(dim=(1, 2)).clamp_min(1e-6)
        mean = torch.zeros(n, self.latent_dim)
        mean[:, 0] = (img * torch.arange(w, dtype=img.dtype)[None, None, :]).sum(dim=(1, 2)) / mass
        mean[:, 1] = (img * torch.arange(h, dtype=img.dtype)[None, :, None]).sum(dim=(1, 2)) / mass
        return mean, torch.zeros_like(mean)


def squares(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """32x32 images of a 6 px square at one of 8 x 8 grid positions; classes (posX, posY)."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 8, (count, 2))
    images = np.zeros((count, 1, SIZE, SIZE), dtype=np.uint8)
    for i, (cx, cy) in enumerate(classes):
        x, y = 1 + 3 * cx, 1 + 3 * cy
        images[i, 0, y : y + 6, x : x + 6] = 255
    return images, classes


def make_source(count: int = 300, latent_dim: int = 4, factors: bool = False, seed: int = 0) -> ModelSource:
    torch.manual_seed(seed)
    images, classes = squares(count, seed)
    labels = (classes[:, 0] + classes[:, 1]) % 10
    factor_grid = None
    if factors:
        factor_grid = Factors(
            names=("posX", "posY"), sizes=(8, 8), values=(np.linspace(0, 1, 8), np.linspace(0, 1, 8)), classes=classes
        )
    dataset = ArrayImageSet(images, name="squares", labels=labels, factors=factor_grid)
    model = BetaVAE((1, SIZE, SIZE), latent_dim)
    with torch.no_grad():  # a stronger decoder input layer: each latent visibly moves the output
        for module in model.decoder.modules():
            if isinstance(module, nn.Linear):
                module.weight.mul_(4.0)
                break
    return ModelSource.from_state(
        model.state_dict(),
        TrainConfig(latent_dim=latent_dim),
        (1, SIZE, SIZE),
        step=0,
        beta=1.0,
        kl_per_dim=np.array([0.05, 2.0, 1.0, 0.5])[:latent_dim] if not factors else None,
        dataset=dataset,
        val_indices=np.arange(count),
    )


@pytest.fixture
def traversal(qtbot):
    view = TraversalView()
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.label_points = 300
    yield view
    view.shutdown()


@pytest.fixture
def scatter(qtbot):
    view = ScatterView()
    qtbot.addWidget(view)
    view.resize(900, 600)
    yield view
    view.shutdown()


# --- tiling ----------------------------------------------------------------------------------


def test_gui_tiling_reexports_the_core_tiling():
    from bvae_desktop.gui import tiling

    assert tiling.tile_rows is core_tile_rows and tiling.GAP_VALUE == CORE_GAP


# --- TraversalView ---------------------------------------------------------------------------


def test_traversal_controls_have_object_names(traversal):
    assert traversal.objectName() == "traversalView"
    assert traversal.findChild(QSpinBox, "traversalStepsSpin").value() == 9
    assert traversal.findChild(QCheckBox, "hideInactiveCheck") is not None
    for name in (
        "prevImageButton",
        "nextImageButton",
        "randomImageButton",
        "fileImageButton",
        "priorMeanButton",
        "exportPngButton",
        "exportGifButton",
    ):
        assert traversal.findChild(QPushButton, name) is not None, name
    assert traversal.grid_image() is None and traversal.row_dims() == []


def test_grid_has_one_row_per_dimension_in_kl_order(traversal):
    traversal.set_source(make_source())
    assert traversal.row_dims() == [1, 2, 3, 0]
    assert traversal.grid_image().shape == (4 * SIZE + 3 * 2, 9 * SIZE + 8 * 2)
    labels = traversal.row_labels()
    assert labels[0] == "z1 · KL 2.00" and labels[-1] == "z0 · KL 0.05"
    traversal.findChild(QSpinBox, "traversalStepsSpin").setValue(5)
    assert traversal.grid_image().shape == (4 * SIZE + 3 * 2, 5 * SIZE + 4 * 2)
    traversal.hideInactiveCheck.setChecked(True)
    assert traversal.row_dims() == [1, 2, 3]
    assert traversal.grid().shape == (3, 5, 1, SIZE, SIZE)


def test_reference_buttons_change_the_grid(traversal):
    traversal.set_source(make_source())
    first = traversal.grid_image().copy()
    traversal.nextImageButton.click()
    assert not np.array_equal(traversal.grid_image(), first)
    traversal.priorMeanButton.click()
    prior = traversal.grid_image().copy()
    assert traversal.slider_code().tolist() == [0.0] * 4
    traversal.randomImageButton.click()
    traversal.priorMeanButton.click()
    np.testing.assert_array_equal(traversal.grid_image(), prior)


def test_a_slider_move_changes_the_decoded_image(traversal, capsys):
    traversal.set_source(make_source())
    traversal.priorMeanButton.click()
    slider = traversal.slider(1)
    assert isinstance(slider, QSlider) and slider.objectName() == "latentSlider1"
    assert traversal.findChild(QSlider, "latentSlider3") is not None
    before = traversal.decoded_image().copy()
    assert before.shape == (SIZE, SIZE)
    started = time.perf_counter()
    slider.setValue(slider.maximum())
    elapsed = time.perf_counter() - started
    assert not np.array_equal(traversal.decoded_image(), before)
    assert traversal.slider_code()[1] == pytest.approx(3.0)
    with capsys.disabled():
        print(f"\n[measure] slider move -> decode + draw one {SIZE}x{SIZE} image: {elapsed * 1000:.1f} ms")


def test_factor_labels_name_the_factor_a_constructed_encoder_follows(qtbot, traversal):
    source = make_source(factors=True)
    source.model.encoder = CentroidEncoder(4)
    traversal.set_source(source)
    assert traversal.is_labelling() and "measuring KL" in traversal._caption.text()
    assert traversal.row_dims() == [0, 1, 2, 3]  # index order until the KL is known
    qtbot.waitUntil(lambda: not traversal.is_labelling() and "posX" in " ".join(traversal.row_labels()), timeout=20000)
    labels = dict(zip(traversal.row_dims(), traversal.row_labels(), strict=True))
    assert "posX (" in labels[0] and "posY (" in labels[1]
    assert traversal.row_dims()[:2] in ([0, 1], [1, 0])  # the only dims with any KL
    assert labels[2].startswith("z2 · KL") and "pos" not in labels[2]


def test_exports_open_with_the_right_size_and_frames(traversal, tmp_path):
    traversal.set_source(make_source())
    traversal.findChild(QSpinBox, "traversalStepsSpin").setValue(7)
    traversal.export_png(str(tmp_path / "grid.png"))
    traversal.export_gif(str(tmp_path / "grid.gif"))
    with Image.open(tmp_path / "grid.png") as img:
        assert img.size[1] == 4 * SIZE + 3 * 2 and img.size[0] > 7 * SIZE + 6 * 2  # a label column on the left
    with Image.open(tmp_path / "grid.gif") as img:
        assert img.n_frames == 7 and img.info.get("loop") == 0


def test_a_reference_file_is_converted_to_the_model_size(traversal, tmp_path):
    traversal.set_source(make_source())
    Image.new("RGB", (80, 60), (250, 250, 250)).save(tmp_path / "ref.png")
    traversal.load_reference_file(str(tmp_path / "ref.png"))
    assert traversal.referenceLabel.text() == "ref.png"
    traversal.set_source(None)
    assert traversal.grid_image() is None and not traversal.rangeSpin.isEnabled()


def test_a_new_source_stops_the_labelling_thread(qtbot, traversal):
    source = make_source(factors=True)
    traversal.label_points = 300
    traversal.set_source(source)
    thread = traversal._thread
    assert thread is not None
    traversal.set_source(make_source())
    assert not thread.isRunning() and not traversal.is_labelling()
    qtbot.wait(50)  # a stale result must not relabel the new source's rows
    assert traversal.row_labels()[0] == "z1 · KL 2.00"


# --- ScatterView -----------------------------------------------------------------------------


def _wait_for_points(qtbot, view, count):
    qtbot.waitUntil(lambda: view.point_count() == count and not view.is_encoding(), timeout=20000)


def test_scatter_holds_the_requested_points_with_label_colours(qtbot, scatter):
    source = make_source()
    scatter.set_source(source)
    assert scatter.objectName() == "scatterView"
    assert scatter.colourByCombo.currentText() == "label"
    assert scatter.encode(200)
    _wait_for_points(qtbot, scatter, 200)
    indices = scatter.point_indices()
    expected_labels = source.dataset.labels[indices]
    np.testing.assert_array_equal(scatter.labels(), expected_labels)
    colours = scatter.point_colours()
    assert len(colours) == 200
    assert all(c[:3] == CATEGORICAL[label] for c, label in zip(colours, expected_labels, strict=True))
    assert len(scatter.scatter.data) == 200
    assert scatter.points().shape == (200, 2)
    scatter.projectionCombo.setCurrentIndex(1)
    np.testing.assert_allclose(scatter.points(), pca_2d(scatter.means()))


def test_scatter_colours_by_a_factor_and_picks_a_point(qtbot, scatter):
    source = make_source(factors=True)
    scatter.set_source(source)
    scatter.encode(120)
    _wait_for_points(qtbot, scatter, 120)
    scatter.colourByCombo.setCurrentText("posY")
    np.testing.assert_array_equal(scatter.labels(), source.dataset.factors.classes[scatter.point_indices(), 1])
    assert len({c for c in scatter.point_colours()}) == len(np.unique(scatter.labels()))
    spots = scatter.scatter.points()
    scatter.scatter.sigClicked.emit(scatter.scatter, [spots[7]], None)
    image, recon = scatter.picked_images()
    assert image.shape == recon.shape == (SIZE, SIZE)
    np.testing.assert_array_equal(image, source.dataset.batch([scatter.point_indices()[7]]).numpy()[0, 0])


def test_cancel_stops_the_encode_and_leaves_no_thread(qtbot, scatter):
    scatter.batch_size = 2
    scatter.set_source(make_source())
    scatter.encode(300)
    assert scatter.is_encoding()
    qtbot.waitUntil(lambda: scatter.encodeProgress.value() > 0, timeout=10000)
    thread = scatter._thread
    scatter.cancelEncodeButton.click()
    assert not scatter.is_encoding() and scatter.point_count() == 0
    assert thread is not None and not thread.isRunning()
    qtbot.wait(50)  # late queued signals from the cancelled job must be ignored
    assert scatter.point_count() == 0


def test_a_new_source_or_close_joins_the_encode_thread(qtbot, scatter):
    scatter.batch_size = 2
    scatter.set_source(make_source())
    scatter.encode(300)
    started: QThread = scatter._thread
    scatter.set_source(make_source(seed=1))
    assert not started.isRunning() and not scatter.is_encoding()
    scatter.encode(300)
    running = scatter._thread
    scatter.close()
    assert not running.isRunning()


def test_scatter_says_what_it_encoded_when_the_split_is_too_small(qtbot, scatter):
    """Asking for more points than the validation split holds encodes from the whole set: say so."""
    source = make_source()
    source.val_indices = np.arange(50)  # a 50-image split
    scatter.set_source(source)
    assert scatter.encode(200)
    _wait_for_points(qtbot, scatter, 200)
    status = scatter.findChild(QLabel, "scatterStatus").text()
    assert "200 images of the whole data set (300)" in status and "split has only 50" in status
    assert "validation images encoded" not in status
    assert scatter.encode(40)
    _wait_for_points(qtbot, scatter, 40)
    assert scatter.findChild(QLabel, "scatterStatus").text().startswith("40 validation images encoded")
