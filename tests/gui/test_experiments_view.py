"""The Experiments tab: set up, run, stop and continue, the table and plots filling, opening runs and the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.experiment_run import read_result
from bvae_desktop.gui.experiments_view import ExperimentsView
from bvae_desktop.gui.main_window import MainWindow
from bvae_desktop.gui.settings import AppSettings

WAIT_MS = 180_000


def tiny_config() -> TrainConfig:
    return TrainConfig(latent_dim=4, batch_size=8, val_every=3, val_batches=1, device="cpu")


@pytest.fixture
def view(qtbot, tmp_path):
    opened = []
    widget = ExperimentsView(base_config=tiny_config, runs_dir=lambda: tmp_path / "runs", open_url=opened.append)
    widget.opened = opened
    qtbot.addWidget(widget)
    widget.betasEdit.setText("1, 4")
    widget.seedsEdit.setText("0")
    widget.stepsSpin.setValue(6)
    widget.metricsEdit.setText("mig,unsupervised")
    widget.metricScaleCombo.setCurrentIndex(widget.metricScaleCombo.findData(100))
    yield widget
    widget.shutdown()


def test_a_sweep_runs_fills_the_table_and_plots_and_writes_the_report(qtbot, view, tmp_path):
    errors = []
    view.errorOccurred.connect(lambda title, message: errors.append(message))
    assert view.start()
    assert not view.startButton.isEnabled() and view.stopButton.isEnabled() and not view.betasEdit.isEnabled()
    with qtbot.waitSignal(view.worker.finished, timeout=WAIT_MS) as blocker:
        pass
    assert blocker.args == [True] and not errors
    qtbot.waitUntil(lambda: not view.running, timeout=5000)
    assert view.startButton.isEnabled() and not view.stopButton.isEnabled()
    folder = Path(view.folderEdit.text())
    assert folder.parent == tmp_path / "runs" / "experiments" and folder.name.startswith("sweep-")
    for run in ("beta-1_seed-0", "beta-4_seed-0"):
        assert view.cell(run, "status") == "finished"
        assert view.cell(run, "step") == "6 / 6"
        assert float(view.cell(run, "recon")) > 0 and 0.0 <= float(view.cell(run, "mig")) <= 1.0
        assert view.cell(run, "beta_vae") == "–"  # not measured: shown as missing
    assert view.progressBar.value() == 2 and view.progressBar.maximum() == 2
    assert "finished: 2 of 2" in view.statusLabel.text()

    assert view.plot.listDataItems(), "the disentanglement plot shows the finished runs"
    view.plotChoice.setCurrentIndex(view.plotChoice.findData("curves"))
    assert len(view.plot.listDataItems()) == 2

    view.open_report()
    assert [url.toLocalFile() for url in view.opened] == [str(folder / "report.html")]


def test_stop_keeps_checkpoints_and_start_continues_where_it_stopped(qtbot, view):
    view.stepsSpin.setValue(40)
    view.metricsEdit.setText("none")
    assert view.start()
    with qtbot.waitSignal(view.worker.runProgress, timeout=WAIT_MS):
        pass
    with qtbot.waitSignal(view.worker.finished, timeout=WAIT_MS) as blocker:
        view.stop()
    assert blocker.args == [False]
    qtbot.waitUntil(lambda: not view.running, timeout=5000)
    assert view.cell("beta-1_seed-0", "status") == "stopped"
    assert "stopped" in view.statusLabel.text()
    folder = view.experiment.folder
    assert (folder / "runs/beta-1_seed-0/checkpoint.pt").exists()

    fresh = ExperimentsView(base_config=tiny_config, runs_dir=lambda: folder.parent)
    qtbot.addWidget(fresh)
    assert fresh.open_experiment(folder)
    assert fresh.betasEdit.text() == "1, 4" and fresh.stepsSpin.value() == 40 and fresh.metricsEdit.text() == "none"
    assert fresh.cell("beta-1_seed-0", "status") == "waiting"
    assert fresh.start()
    with qtbot.waitSignal(fresh.worker.finished, timeout=WAIT_MS) as blocker:
        pass
    assert blocker.args == [True]
    fresh.shutdown()
    result = read_result(folder / "runs/beta-1_seed-0")
    assert result["steps"] == 40 and result["seconds"]["trained_steps_this_session"] < 40


def test_bad_setup_is_refused_with_its_reason_and_no_thread(qtbot, view):
    errors = []
    view.errorOccurred.connect(lambda title, message: errors.append(message))
    view.betasEdit.setText("1, lots")
    assert not view.start()
    assert not view.running and "β values must be comma-separated numbers" in errors[-1]
    view.open_report()
    assert "report" in errors[-1] and view.opened == []


def test_main_window_has_the_tab_and_opens_a_finished_run_in_the_explorer(qtbot, tmp_path):
    settings = AppSettings(tmp_path / "settings.ini")
    settings.runs_dir = tmp_path / "runs"
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    panel = window.panel
    panel.latentDimSpin.setValue(4)
    panel.batchSizeSpin.setValue(8)
    panel.deviceCombo.setCurrentIndex(panel.deviceCombo.findData("cpu"))
    view = window.experimentsView
    assert window.tabs.indexOf(view) >= 0 and window.tabs.tabText(window.tabs.indexOf(view)) == "Experiments"
    view.kindCombo.setCurrentIndex(view.kindCombo.findData("compare"))
    view.seedsEdit.setText("0")
    view.stepsSpin.setValue(4)
    view.metricsEdit.setText("none")
    assert view.start()
    with qtbot.waitSignal(view.worker.finished, timeout=WAIT_MS):
        pass
    qtbot.waitUntil(lambda: not view.running, timeout=5000)
    assert view.experiment.spec.base.latent_dim == 4  # the Training panel's settings
    view.table.selectRow(1)
    assert view.selected_run() == "beta-4_seed-0" and view.runButton.isEnabled()
    view.runButton.click()
    assert window.tabs.currentWidget() is window.traversalView
    assert window.checkpoint_path == view.experiment.folder / "runs/beta-4_seed-0/checkpoint.pt"
    window.close()


def test_runs_in_one_pass_is_part_of_the_spec_and_shown_back(view):
    assert view.stackSpin.value() == 0 and view.stackSpin.text() == "auto"
    view.stackSpin.setValue(4)
    spec = view.spec()
    assert spec.stack == 4
    view.stackSpin.setValue(0)
    view._show_spec(spec)
    assert view.stackSpin.value() == 4


def test_open_report_without_a_browser_shows_the_path_and_copies_it(qtbot, tmp_path):
    import types

    from PySide6.QtWidgets import QApplication

    view = ExperimentsView(base_config=tiny_config, runs_dir=lambda: tmp_path / "runs", open_url=lambda url: False)
    qtbot.addWidget(view)
    (tmp_path / "report.html").write_text("<html></html>")
    view.experiment = types.SimpleNamespace(folder=tmp_path)
    errors = []
    view.errorOccurred.connect(lambda title, message: errors.append((title, message)))
    view.open_report()
    path = str(tmp_path / "report.html")
    assert QApplication.clipboard().text() == path
    assert errors and path in errors[0][1] and path in view.statusLabel.text()
    view.experiment = None
    view.shutdown()
