"""The Experiments tab: set up, run, stop and continue, the table and plots filling, opening runs and the report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QRect, QSize
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QApplication, QLabel, QPushButton, QStyle

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


def test_estimate_time_measures_off_the_gui_thread_and_goes_stale_when_settings_change(qtbot, view, tmp_path):
    assert view.timeLabel.text() == "" and view.estimateButton.isEnabled()
    view.estimateButton.click()
    assert view.estimating  # the click returned while the probe runs in its own thread
    assert not view.startButton.isEnabled() and not view.estimateButton.isEnabled()
    assert view.timeLabel.text().startswith("Estimating")
    qtbot.waitUntil(lambda: not view.estimating, timeout=WAIT_MS)
    text = view.timeLabel.text()
    assert text.startswith("Estimate: about ") and "for 2 runs (each: training " in text and "on CPU with" in text
    assert view.estimate.runs == 2 and set(view.estimate.metrics_s) == {"mig", "unsupervised"}
    assert view.estimate.total_s > 0 and view.startButton.isEnabled()
    assert not (tmp_path / "runs").exists()  # the probe wrote nothing
    view.stepsSpin.setValue(12)
    assert view.estimate is None and view.timeLabel.text().startswith("Settings changed since the estimate")


def test_while_running_the_time_label_shows_the_run_its_metric_and_the_time_left(qtbot, tmp_path):
    ticks = iter(range(10**6))
    view = ExperimentsView(
        base_config=tiny_config,
        runs_dir=lambda: tmp_path / "runs",
        open_url=lambda url: True,
        clock=lambda: 0.5 * next(ticks),  # every look at the clock: half a second later
    )
    qtbot.addWidget(view)
    view.betasEdit.setText("1, 4")
    view.stepsSpin.setValue(6)
    view.metricsEdit.setText("mig,unsupervised")
    view.metricScaleCombo.setCurrentIndex(view.metricScaleCombo.findData(100))
    assert view.estimate_time()
    qtbot.waitUntil(lambda: not view.estimating, timeout=WAIT_MS)
    # every text the label is given, in order, on the GUI thread (a slot on the worker's signals could run
    # in the worker's thread, before the view's own queued slot has set the text it means to read)
    shown = []
    set_text = view.timeLabel.setText
    view.timeLabel.setText = lambda text: (shown.append(text), set_text(text))
    assert view.start()
    with qtbot.waitSignal(view.worker.finished, timeout=WAIT_MS):
        pass
    qtbot.waitUntil(lambda: not view.running, timeout=5000)
    steps = [t for t in shown if t.startswith("beta-1_seed-0: step ")]
    assert steps and all(t.splitlines()[1].startswith(("0 of 2 runs finished; ", "1 of 2")) for t in steps)
    assert any(t.startswith("beta-4_seed-0: MIG 100/100 images") for t in shown)  # a metric's progress
    assert any(re.search(r"runs finished; about [0-9hms ]+ left$", t) for t in shown)  # all runs, scoring too
    assert re.fullmatch(r"Took [0-9hms ]+ \(estimated [0-9hms ]+\)\.", view.timeLabel.text())
    view.shutdown()


def test_at_1024x640_every_label_and_the_beta_field_show_whole(qtbot, tmp_path):
    settings = AppSettings(tmp_path / "settings.ini")
    settings.runs_dir = tmp_path / "runs"
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.resize(1024, 640)
    window.show()
    window.tabs.setCurrentWidget(window.experimentsView)
    qtbot.waitUntil(lambda: window.experimentsView.isVisible() and window.size() == QSize(1024, 640), timeout=5000)
    view = window.experimentsView
    view.timeLabel.setText(  # what an estimate looks like there
        "Estimate: about 1h 20m for 8 runs (each: training 9m 30s + metrics 2m 10s); assumes one run at a "
        "time on CPU with 2 torch threads, from a 2.1 s probe."
    )
    QApplication.processEvents()
    labels = [label for label in view.findChildren(QLabel) if label.isVisible()]
    assert len(labels) >= 12
    viewport = view.setupScroll.viewport()
    for label in labels:
        need = label.minimumSizeHint() if label.wordWrap() else label.sizeHint()
        assert label.width() >= need.width(), label.text()
        if label.wordWrap():
            assert label.height() >= label.heightForWidth(label.width()), label.text()
        else:
            assert label.height() >= need.height(), label.text()
        if viewport.isAncestorOf(label):  # inside the scrolled column: on screen, not scrolled away
            top_left = label.mapTo(viewport, QPoint(0, 0))
            assert viewport.rect().contains(QRect(top_left, label.size())), label.text()
    buttons = [b for b in view.setupScroll.widget().findChildren(QPushButton) if b.isVisible()]
    assert {"Start", "Stop", "Estimate time", "Open run in explorer"} <= {b.text() for b in buttons}
    for button in buttons:  # no caption cut off either
        assert button.fontMetrics().horizontalAdvance(button.text()) + 8 <= button.width(), button.text()
    field = view.betasEdit
    assert field.isVisible() and field.text() == "0.001, 0.01, 0.1, 1, 2, 4, 8, 16"
    frame = field.style().pixelMetric(QStyle.PixelMetric.PM_DefaultFrameWidth, None, field)
    margins = field.textMargins()
    room = field.contentsRect().width() - 2 * (frame + 2) - margins.left() - margins.right()
    assert QFontMetrics(field.font()).horizontalAdvance(field.text()) <= room
    window.close()
