"""The window drives real training runs (procedural dSprites, tiny settings, CPU)."""

import numpy as np
import pytest

from bvae_desktop import APP_NAME
from bvae_desktop.core.checkpoint import load_checkpoint
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.trainer import Trainer
from bvae_desktop.gui import MainWindow
from bvae_desktop.gui.settings import AppSettings

WAIT_MS = 120_000


def test_window_opens_with_the_app_name(window):
    assert window.windowTitle() == APP_NAME
    assert window.panel.datasetCombo.currentData() == "dsprites-procedural"
    assert "737,280 images" in window.panel.datasetInfoLabel.text()


def test_short_run_fills_the_plots_and_leaves_a_checkpoint(qtbot, window):
    window.panel.trainButton.click()
    assert window.training
    qtbot.waitUntil(lambda: not window.training, timeout=WAIT_MS)
    assert window.lossPlot.train_point_count() == 12
    assert window.lossPlot.validation_point_count() >= 1
    assert len(window.klBarPlot.order()) == 4
    assert window.sampleStrip.tiled() is not None
    assert window.panel.progressBar.value() == 12
    checkpoint = load_checkpoint(window.checkpoint_path)
    assert checkpoint.step == 12 and checkpoint.config.latent_dim == 4
    assert window.panel.trainButton.isEnabled() and not window.panel.stopButton.isEnabled()


def test_settings_lock_while_training_except_beta(qtbot, window):
    window.panel.stepsSpin.setValue(100_000)
    window.panel.trainButton.click()
    assert not window.panel.latentDimSpin.isEnabled() and not window.panel.datasetCombo.isEnabled()
    assert window.panel.betaSpin.isEnabled() and window.panel.pauseButton.isEnabled()
    window.stop_training()
    assert window.panel.latentDimSpin.isEnabled()


def test_pause_holds_the_step_count_and_resume_restarts_it(qtbot, window):
    window.panel.stepsSpin.setValue(100_000)
    window.panel.trainButton.click()
    qtbot.waitUntil(lambda: window.worker.trainer is not None and window.worker.trainer.step >= 2, timeout=WAIT_MS)
    window.panel.pauseButton.click()
    trainer = window.worker.trainer
    qtbot.waitUntil(lambda: trainer.held, timeout=WAIT_MS)
    held_at = trainer.step
    qtbot.wait(300)  # the loop is parked: no step may happen however long we look
    assert trainer.step == held_at and trainer.held
    assert window.panel.pauseButton.text() == "Resume"
    assert "paused" in window.panel.progressLabel.text() and "ETA" not in window.panel.progressLabel.text()
    window.panel.pauseButton.click()
    qtbot.waitUntil(lambda: trainer.step > held_at + 1, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "images/s" in window.panel.progressLabel.text(), timeout=WAIT_MS)
    window.stop_training()
    assert "ETA" not in window.panel.progressLabel.text()


def test_stop_leaves_a_loadable_checkpoint(qtbot, window):
    window.panel.stepsSpin.setValue(100_000)
    window.panel.trainButton.click()
    qtbot.waitUntil(lambda: window.worker.trainer is not None and window.worker.trainer.step >= 3, timeout=WAIT_MS)
    window.panel.stopButton.click()
    qtbot.waitUntil(lambda: not window.training, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.worker is None, timeout=WAIT_MS)
    checkpoint = load_checkpoint(window.checkpoint_path)
    assert 3 <= checkpoint.step < 100_000
    assert window.panel.continueCheck.isVisible() and window.panel.continue_requested


def test_beta_change_mid_run_reaches_the_trainer_and_the_plot(qtbot, window):
    window.panel.stepsSpin.setValue(100_000)
    window.panel.betaSpin.setValue(4.0)
    window.panel.trainButton.click()
    qtbot.waitUntil(lambda: getattr(window, "last_batch", None) is not None, timeout=WAIT_MS)
    window.panel.betaSpin.setValue(0.5)
    qtbot.waitUntil(lambda: window.last_batch.last.beta == 0.5, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: len(window.lossPlot.beta_markers()) == 1, timeout=WAIT_MS)
    assert window.lossPlot.beta_markers()[0][1] == 0.5


def test_bad_dataset_path_shows_the_error_and_starts_nothing(qtbot, window, tmp_path):
    panel = window.panel
    panel.datasetCombo.setCurrentIndex(panel.datasetCombo.findData("mnist"))
    missing = tmp_path / "no-such-mnist"
    panel.dataPathEdit.setText(str(missing))
    panel.trainButton.click()
    assert window.thread is None and not window.training
    assert str(missing) in window.last_error
    assert not (tmp_path / "runs").exists()


def test_corrupt_dataset_file_reports_the_engine_message(qtbot, window, tmp_path):
    bad = tmp_path / "mnist.npz"
    bad.write_bytes(b"not a zip file at all")
    panel = window.panel
    panel.datasetCombo.setCurrentIndex(panel.datasetCombo.findData("mnist"))
    panel.dataPathEdit.setText(str(bad))
    panel.trainButton.click()
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not window.training, timeout=WAIT_MS)
    assert "mnist.npz" in window.last_error
    assert window.lossPlot.train_point_count() == 0


def test_closing_during_a_run_stops_it_and_keeps_the_checkpoint(qtbot, window):
    window.panel.stepsSpin.setValue(100_000)
    window.panel.trainButton.click()
    qtbot.waitUntil(lambda: window.worker.trainer is not None and window.worker.trainer.step >= 2, timeout=WAIT_MS)
    thread = window.thread
    window.close()
    assert not thread.isRunning()
    assert window.thread is None
    assert load_checkpoint(window.checkpoint_path).step >= 2


def test_opening_a_checkpoint_restores_settings_and_curves(qtbot, window, tmp_path):
    config = TrainConfig(latent_dim=5, beta=2.5, batch_size=8, steps=9, val_every=3, seed=7, device="cpu", lr=1e-3)
    trainer = Trainer(config, run_dir=tmp_path / "old-run")
    for event in trainer.steps():
        if event.step == 4:
            trainer.set_beta(1.5)
    window.open_checkpoint(tmp_path / "old-run" / "checkpoint.pt")
    panel = window.panel
    assert panel.latentDimSpin.value() == 5 and panel.seedSpin.value() == 7 and panel.stepsSpin.value() == 9
    assert panel.betaSpin.value() == pytest.approx(1.5)  # the β the run ended with
    assert panel.lrSpin.value() == pytest.approx(1e-3)
    assert window.lossPlot.train_point_count() == 9
    assert window.lossPlot.validation_point_count() == 3
    assert [m[0] for m in window.lossPlot.beta_markers()] == [4]
    assert panel.continueCheck.isVisible()


def test_bad_checkpoint_shows_the_reason(window, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(np.arange(64, dtype=np.uint8).tobytes())
    assert window.open_checkpoint(bad) is None
    assert "bad.pt" in window.last_error


def test_settings_persist_dataset_and_geometry(qtbot, tmp_path):
    settings = AppSettings(tmp_path / "s.ini")
    first = MainWindow(settings=settings)
    qtbot.addWidget(first)
    first.panel.datasetCombo.setCurrentIndex(first.panel.datasetCombo.findData("mnist"))
    first.panel.dataPathEdit.setText("/data/mnist")
    first.panel.dataPathEdit.editingFinished.emit()
    first.resize(700, 500)
    first.close()
    second = MainWindow(settings=AppSettings(tmp_path / "s.ini"))
    qtbot.addWidget(second)
    assert second.panel.datasetCombo.currentData() == "mnist"
    assert second.panel.dataPathEdit.text() == "/data/mnist"
    assert (second.size().width(), second.size().height()) == (700, 500)


def test_about_names_versions_and_device(window):
    text = window.about_text()
    assert "torch" in text and "Qt" in text and "device: CPU" in text


def test_non_finite_loss_pauses_and_says_the_step_then_resume_goes_on(qtbot, window, monkeypatch):
    import bvae_desktop.core.trainer as trainer_module

    real = trainer_module.make_objective

    def poisoned_objective(config, channels):
        objective = real(config, channels)
        loss = objective.loss
        calls = {"n": 0}

        def poisoned_loss(batch):  # the loss of the 4th training step is NaN
            terms = loss(batch)
            calls["n"] += 1
            if calls["n"] == 4:
                terms.total = terms.total * float("nan")
            return terms

        objective.loss = poisoned_loss
        return objective

    monkeypatch.setattr(trainer_module, "make_objective", poisoned_objective)
    window.panel.stepsSpin.setValue(8)
    window.panel.trainButton.click()
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=WAIT_MS)
    assert "non-finite loss" in window.last_error and "at step 4" in window.last_error
    assert window.training and window.panel.pauseButton.isChecked()
    assert window.panel.pauseButton.text() == "Resume"
    window.panel.pauseButton.click()
    qtbot.waitUntil(lambda: not window.training, timeout=WAIT_MS)
    assert load_checkpoint(window.checkpoint_path).step == 8


def test_explorer_tabs_show_the_trained_model(qtbot, window):
    window.panel.trainButton.click()
    qtbot.waitUntil(lambda: not window.training, timeout=WAIT_MS)
    assert window.model_source is not None and window.model_source.step == 12
    window.tabs.setCurrentWidget(window.traversalView)
    assert window.traversalView.source() is window.model_source
    assert window.traversalView.grid_image() is not None
    assert len(window.traversalView.row_dims()) == 4
    qtbot.waitUntil(lambda: not window.traversalView.is_labelling(), timeout=WAIT_MS)
    window.tabs.setCurrentWidget(window.scatterView)
    assert window.scatterView.encode(40)
    qtbot.waitUntil(lambda: not window.scatterView.is_encoding(), timeout=WAIT_MS)
    assert window.scatterView.point_count() == 40


def test_opened_checkpoint_feeds_the_explorer(qtbot, window, tmp_path):
    trainer = Trainer(TrainConfig(latent_dim=3, batch_size=8, steps=4, device="cpu"), run_dir=tmp_path / "r")
    list(trainer.steps())
    window.open_checkpoint(tmp_path / "r" / "checkpoint.pt")
    window.tabs.setCurrentWidget(window.traversalView)
    assert window.traversalView.source().step == 4 and len(window.traversalView.row_dims()) == 3
    window.traversalView.shutdown()


def test_compress_tab_uses_the_opened_checkpoint(qtbot, window, tmp_path):
    trainer = Trainer(TrainConfig(latent_dim=3, batch_size=8, steps=2, device="cpu"), run_dir=tmp_path / "r")
    list(trainer.steps())
    window.open_checkpoint(tmp_path / "r" / "checkpoint.pt")
    window.tabs.setCurrentWidget(window.codecView)
    assert window.codecView.numbers()["bytes"] > 0


def test_compile_setting_goes_into_the_config_and_back(window):
    panel = window.panel
    assert panel.compileCombo.currentData() == "auto"
    panel.compileCombo.setCurrentIndex(panel.compileCombo.findData("on"))
    config = panel.config()
    assert config.compile == "on"
    panel.compileCombo.setCurrentIndex(panel.compileCombo.findData("off"))
    panel.set_config(config)
    assert panel.compileCombo.currentData() == "on"
    assert panel.compileCombo in panel._locked_while_running


def test_the_panel_keeps_the_settings_it_does_not_show(window):
    """A CLI run made with --val-fraction 0.2 and --reconstruction gaussian continues with them."""
    from bvae_desktop.core.config import TrainConfig

    opened = TrainConfig(objective="beta-b", gamma=300.0, c_max=12.0, val_fraction=0.2, reconstruction="gaussian")
    opened = TrainConfig(**{**opened.to_dict(), "val_every": 7, "checkpoint_every": 11, "seed": 3})
    window.panel.set_config(opened)
    assert window.panel.betaLabel.text() == "γ" and window.panel.betaSpin.value() == 300.0
    assert window.panel.cMaxSpin.isVisibleTo(window.panel) and not window.panel.gammaSpin.isVisibleTo(window.panel)
    assert window.panel.config() == opened
    window.panel.stepsSpin.setValue(5000)
    window.panel.betaSpin.setValue(250.0)
    edited = window.panel.config()
    assert (edited.steps, edited.gamma) == (5000, 250.0)
    assert (edited.val_fraction, edited.reconstruction, edited.val_every, edited.checkpoint_every) == (
        0.2,
        "gaussian",
        7,
        11,
    )


def test_objective_fields_come_from_the_registry(window):
    from bvae_desktop.core.objectives import objective_specs

    panel = window.panel
    assert [panel.objectiveCombo.itemData(i) for i in range(panel.objectiveCombo.count())] == [
        spec.name for spec in objective_specs()
    ]
    panel.objectiveCombo.setCurrentIndex(panel.objectiveCombo.findData("vae"))
    assert not panel.betaSpin.isVisibleTo(panel)  # β is fixed at 1: nothing to tune
    assert panel.config().objective == "vae"


def test_continue_is_withdrawn_when_the_data_changes(window):
    panel = window.panel
    panel.offer_continue(1200)
    assert panel.continue_requested
    panel.datasetCombo.setCurrentIndex(panel.datasetCombo.findData("mnist"))
    assert not panel.continue_requested and not panel.continueCheck.isVisibleTo(panel)


def test_opening_a_checkpoint_shows_its_step_on_the_progress_bar(qtbot, window, tmp_path):
    from bvae_desktop.core.config import TrainConfig
    from bvae_desktop.core.trainer import Trainer

    list(Trainer(TrainConfig(latent_dim=3, batch_size=8, steps=3, device="cpu"), run_dir=tmp_path / "r").steps())
    window.panel.show_progress(900, 1000, 450.0, 12.0)  # what a previous run left on the bar
    window.open_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert window.panel.progressBar.value() == 3 and window.panel.progressBar.maximum() == 3
    assert window.panel.progressLabel.text() == "step 3 of 3 · opened checkpoint.pt"
