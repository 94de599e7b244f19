"""The side-by-side view: two models' traversal grids around one reference image, labelled rows, Export PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from zoo_fixtures import LATENT_DIM, bundled_pair

from bvae_desktop.core import model_zoo
from bvae_desktop.gui.compare_view import CompareDialog, CompareView

WAIT_MS = 60_000


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def models(tmp_path_factory, monkeypatch):
    folder = bundled_pair(tmp_path_factory)
    monkeypatch.setenv(model_zoo.MODELS_ENV, str(folder))
    return folder


@pytest.fixture
def view(qtbot, models):
    widget = CompareView()
    widget.label_points = 64  # validation images encoded per model for the factor labels
    qtbot.addWidget(widget)
    widget.resize(1200, 700)
    widget.show()
    yield widget
    widget.shutdown()


def _settle(qtbot, view) -> None:
    qtbot.waitUntil(lambda: not view.is_busy() and view.result() is not None, timeout=WAIT_MS)


def test_defaults_to_vae_against_beta_vae_with_the_same_reference_and_labelled_rows(qtbot, view, models):
    assert view.objectName() == "modelCompareView"
    assert view.model_path(0) == str(models / "vae-dsprites.pt")
    assert view.model_path(1) == str(models / "beta4-dsprites.pt")
    _settle(qtbot, view)
    result = view.result()
    assert result.shared_reference and result.references[0] is result.references[1]
    assert result.references[0].shape == (1, 64, 64)
    assert "the same for both" in view.status.text()
    for side in (0, 1):
        grid = view.grid(side)
        assert grid.shape == (LATENT_DIM, 9, 1, 64, 64) and grid.dtype == np.uint8
        labels = view.row_labels(side)
        assert len(labels) == LATENT_DIM and all(label.startswith("z") and "KL" in label for label in labels)
    assert result.titles[0].startswith("vae-dsprites: VAE (β = 1)")
    assert result.titles[1].startswith("beta4-dsprites: β-VAE (β = 4)")
    # the two models differ, so their pixels do; the same model on both sides gives identical grids
    assert not np.array_equal(view.grid(0), view.grid(1))
    view.set_model(0, "beta4-dsprites")
    _settle(qtbot, view)
    assert np.array_equal(view.grid(0), view.grid(1))
    assert view.row_labels(0) == view.row_labels(1)


def test_previous_and_next_move_both_grids_to_another_validation_image(qtbot, view):
    _settle(qtbot, view)
    first_ref, first_grid = view.result().references[0], view.grid(1)
    view.nextButton.click()
    _settle(qtbot, view)
    assert view.reference_position() == 1
    assert not np.array_equal(view.result().references[0], first_ref)
    assert not np.array_equal(view.grid(1), first_grid)
    view.prevButton.click()
    _settle(qtbot, view)
    assert np.array_equal(view.result().references[0], first_ref)
    assert np.array_equal(view.grid(1), first_grid)


def test_export_png_is_the_whole_comparison(qtbot, view, tmp_path):
    _settle(qtbot, view)
    composed = view.composed_image()
    path = view.export_png(tmp_path / "cmp.png")
    with Image.open(path) as img:
        assert img.size == (composed.shape[1], composed.shape[0]) and img.mode == "RGB"
        exported = np.asarray(img)
    assert np.array_equal(exported, composed)
    steps, tile = 9, 64
    grid_w = steps * tile + (steps - 1) * 2
    assert composed.shape[1] > 2 * grid_w  # two grids side by side, with their label columns
    assert composed.shape[0] > LATENT_DIM * tile  # every row, plus the title and the reference above


def test_settings_and_hiding_inactive_rows(qtbot, view):
    _settle(qtbot, view)
    view.stepsSpin.setValue(5)
    _settle(qtbot, view)
    assert view.grid(0).shape[1] == 5
    kl = view.result().summaries[1][0]
    view.hideInactiveCheck.setChecked(True)
    _settle(qtbot, view)
    assert view.grid(1).shape[0] == max(1, int((kl >= 0.1).sum()))


def test_any_checkpoint_can_be_picked_and_a_bad_one_is_reported(qtbot, view, tmp_path, models):
    _settle(qtbot, view)
    assert view.set_model(1, models / "vae-dsprites.pt") is True
    _settle(qtbot, view)
    assert np.array_equal(view.grid(0), view.grid(1))
    assert view.set_model(1, tmp_path / "missing.pt") is False
    assert "no such checkpoint file" in view.status.text()


def test_the_dialog_from_the_models_menu_shuts_its_worker_down(qtbot, models, tmp_path):
    from bvae_desktop.gui import MainWindow
    from bvae_desktop.gui.settings import AppSettings

    settings = AppSettings(tmp_path / "s.ini")
    settings.runs_dir = tmp_path / "runs"
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.models.compareAction.trigger()
    dialog = window.models.compare_dialog
    assert isinstance(dialog, CompareDialog) and dialog.isVisible()
    assert dialog.findChild(CompareView, "modelCompareView") is dialog.view
    window.close()  # while it may still be working: the window's close stops it
    assert not dialog.view.is_busy()
