"""The Models menu, the bundled model the window shows at first launch, and the model cards dialog."""

from __future__ import annotations

import shutil

import pytest
import torch
from zoo_fixtures import bundled_pair, copy_models

from bvae_desktop.core import model_zoo
from bvae_desktop.gui import MainWindow
from bvae_desktop.gui.settings import AppSettings

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
def make_window(qtbot, tmp_path):
    windows = []

    def make() -> MainWindow:
        settings = AppSettings(tmp_path / f"settings{len(windows)}.ini")
        settings.runs_dir = tmp_path / "runs"
        window = MainWindow(settings=settings)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()  # stops the views' encoders and the comparison's worker


def _bundled_shown(window, name="beta4-dsprites") -> bool:
    source = window.model_source
    return source is not None and source.label == f"bundled model {name}"


def test_first_launch_shows_the_bundled_beta_vae_in_the_explorer_scatter_and_compress(qtbot, models, make_window):
    window = make_window()
    assert window.model_source is None  # loaded after the window is up, not while it is built
    qtbot.waitUntil(lambda: _bundled_shown(window), timeout=WAIT_MS)
    source = window.model_source
    assert source.beta == 4.0 and source.dataset is not None
    label = window.findChild(type(window.models.label), "shownModelLabel")
    assert label.text() == "Showing bundled model beta4-dsprites (β = 4, 4 steps)"
    for view in (window.traversalView, window.scatterView, window.codecView):
        window.tabs.setCurrentWidget(view)
        assert view._source is source
    qtbot.waitUntil(lambda: not window.traversalView.is_labelling(), timeout=WAIT_MS)
    assert window.traversalView.grid() is not None
    assert window.checkpoint_path is None and not window.panel.continueCheck.isVisible()  # the panel is untouched


def test_no_bundled_model_shows_nothing_and_says_so_in_the_menu(qtbot, tmp_path, monkeypatch, make_window):
    monkeypatch.setenv(model_zoo.MODELS_ENV, str(tmp_path / "no-models"))
    window = make_window()
    qtbot.waitUntil(lambda: window.models.first_launch_checked)
    assert window.model_source is None and window.models.label.text() == ""
    names = [a.objectName() for a in window.models.menu.actions()]
    assert "noBundledModelsAction" in names and "compareModelsAction" in names
    assert not window.models.menu.actions()[0].isEnabled()


def test_models_menu_lists_the_models_with_their_cards_and_opens_one_like_open_checkpoint(qtbot, models, make_window):
    window = make_window()
    menu_titles = [a.text() for a in window.menuBar().actions()]
    assert menu_titles.index("&Models") == menu_titles.index("&Help") - 1
    action = window.findChild(type(window.models.cardsAction), "openModel-vae-dsprites")
    assert action is not None and "VAE (β = 1)" in action.text()
    assert "vae-dsprites" in action.toolTip() and "steps" in action.toolTip()
    action.trigger()
    assert window.checkpoint_path == models / "vae-dsprites.pt"
    assert _bundled_shown(window, "vae-dsprites")
    assert window.panel.config().objective == "vae"  # settings restored, as File ▸ Open checkpoint does
    assert not window.panel.continueCheck.isVisible()  # weights only: nothing to continue
    assert "Showing bundled model vae-dsprites" in window.models.label.text()
    qtbot.waitUntil(lambda: window.models.first_launch_checked)  # and did not replace what was opened
    assert _bundled_shown(window, "vae-dsprites")


def test_a_checkpoint_opened_before_the_first_launch_timer_wins(qtbot, models, make_window, tmp_path):
    mine = tmp_path / "my-run" / "checkpoint.pt"
    mine.parent.mkdir()
    shutil.copyfile(models / "vae-dsprites.pt", mine)
    window = make_window()
    window.open_checkpoint(mine)
    qtbot.waitUntil(lambda: window.models.first_launch_checked)  # and left it alone
    assert window.model_source.label == str(mine)
    assert window.models.label.text() == f"Showing {mine} (β = 1, step 4)"


def test_model_cards_dialog_shows_the_card_and_opens_the_model(qtbot, models, make_window):
    window = make_window()
    dialog = window.models.show_cards("beta4-dsprites")
    assert dialog.objectName() == "modelCardsDialog" and dialog.list.count() == 2
    assert dialog.current_name() == "beta4-dsprites"
    text = dialog.text.toPlainText()
    assert "β-VAE (β = 4)" in text and '"sha256"' in text and "bvae train --objective beta-h" in text
    dialog.openButton.click()
    assert window.checkpoint_path == models / "beta4-dsprites.pt" and not dialog.isVisible()


def test_damaged_weights_are_refused_with_the_file_named(qtbot, models, make_window, tmp_path, monkeypatch):
    damaged = copy_models(models, tmp_path / "damaged")
    with open(damaged / "beta4-dsprites.pt", "ab") as fh:
        fh.write(b"tampered")
    monkeypatch.setenv(model_zoo.MODELS_ENV, str(damaged))
    window = make_window()
    qtbot.waitUntil(lambda: "not shown" in window.statusBar().currentMessage(), timeout=WAIT_MS)
    assert window.model_source is None  # at first launch: a status line, no dialog, nothing shown
    assert window.models.open_model("beta4-dsprites") is False
    assert str(damaged / "beta4-dsprites.pt") in window.last_error and "does not match the card" in window.last_error


def test_training_snapshot_and_a_users_checkpoint_are_described_too(qtbot, models, make_window):
    window = make_window()
    qtbot.waitUntil(lambda: _bundled_shown(window), timeout=WAIT_MS)
    source = window.model_source
    window.set_model_source(source, live=True)
    assert window.models.label.text() == "Showing the model being trained (step 4)"
    window.set_model_source(None)
    assert window.models.label.text() == ""
