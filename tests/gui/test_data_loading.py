"""Opening data from the window: the source is inferred from the file, loading shows a bar, and a bad
source leaves the previous run's plots as they were."""

from __future__ import annotations

import threading

from data_fixtures import dsprites_npz

from bvae_desktop.core.data import load_dataset
from bvae_desktop.gui import worker as worker_module

WAIT_MS = 120_000


def test_train_with_a_bad_source_keeps_the_previous_runs_plots(qtbot, window, tmp_path):
    window.panel.trainButton.click()
    qtbot.waitUntil(lambda: not window.training, timeout=WAIT_MS)
    assert window.lossPlot.train_point_count() == 12
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    panel = window.panel
    panel.datasetCombo.setCurrentIndex(panel.datasetCombo.findData("dsprites"))
    panel.dataPathEdit.setText(str(bad))
    panel.trainButton.click()
    qtbot.waitUntil(lambda: window.last_error is not None and not window.training, timeout=WAIT_MS)
    assert "broken.npz" in window.last_error
    assert window.lossPlot.train_point_count() == 12  # not wiped by the run that never started
    assert window.sampleStrip.tiled() is not None
    assert panel.progressBar.maximum() == 12 and panel.progressBar.value() == 12  # the bar as it was


def _blocking_loader(monkeypatch, release: threading.Event, report: tuple[int, int] | None = None):
    """load_dataset that reports progress (when asked) and then waits for the test to let it finish."""

    def load(name, path=None, **options):
        if report is not None and "progress" in options:
            options["progress"](*report)
        release.wait(30)
        return load_dataset(name, path)

    monkeypatch.setattr(worker_module, "load_dataset", load)


def test_a_busy_bar_says_what_opens_until_the_run_starts(qtbot, window, monkeypatch):
    release = threading.Event()
    _blocking_loader(monkeypatch, release)
    panel = window.panel
    panel.trainButton.click()
    qtbot.waitUntil(lambda: "opening" in panel.progressLabel.text(), timeout=WAIT_MS)
    assert panel.progressBar.minimum() == 0 and panel.progressBar.maximum() == 0  # Qt's busy indicator
    assert panel.stopButton.isEnabled()
    release.set()
    qtbot.waitUntil(lambda: not window.training, timeout=WAIT_MS)
    assert panel.progressBar.maximum() == 12 and panel.progressBar.value() == 12
    assert "step 12 of 12" in panel.progressLabel.text()


def test_a_source_that_counts_shows_the_count_and_stop_ends_the_wait(qtbot, window, monkeypatch, tmp_path):
    path = dsprites_npz(tmp_path / "sprites.npz", count=40)
    release = threading.Event()
    _blocking_loader(monkeypatch, release, report=(10, 40))
    panel = window.panel
    assert window.use_data_path(path) is not None
    panel.trainButton.click()
    qtbot.waitUntil(lambda: "10 of 40 images" in panel.progressLabel.text(), timeout=WAIT_MS)
    assert panel.progressBar.maximum() == 40 and panel.progressBar.value() == 10
    run_dir = window.run_dir
    panel.stopButton.click()
    release.set()
    qtbot.waitUntil(lambda: not window.training, timeout=WAIT_MS)
    assert window.last_error is None
    assert not (run_dir / "checkpoint.pt").exists()
    assert panel.trainButton.isEnabled() and not panel.loading


def test_open_dataset_infers_the_source_and_says_what_it_found(window, tmp_path):
    path = dsprites_npz(tmp_path / "my-sprites.data")
    panel = window.panel
    assert panel.datasetCombo.currentData() == "dsprites-procedural"
    found = window.use_data_path(path)
    assert found is not None and found.spec.name == "dsprites"
    assert panel.datasetCombo.currentData() == "dsprites"
    assert panel.dataPathEdit.text() == str(path)
    info = panel.datasetInfoLabel.text()
    assert "my-sprites.data" in info and "imgs (6, 64, 64)" in info and "source switched" in info
    assert window.settings.dataset == "dsprites"


def test_open_dataset_on_an_unknown_file_says_what_it_holds_and_changes_nothing(window, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    panel = window.panel
    assert window.use_data_path(path) is None
    assert "notes.txt" in window.last_error and "a file of 5 bytes" in window.last_error
    assert panel.datasetCombo.currentData() == "dsprites-procedural"


def test_a_typed_path_of_another_layout_is_named_beside_the_chosen_source(window, tmp_path):
    path = dsprites_npz(tmp_path / "sprites.npz")
    panel = window.panel
    panel.datasetCombo.setCurrentIndex(panel.datasetCombo.findData("mnist"))
    panel.dataPathEdit.setText(str(path))
    panel.dataPathEdit.editingFinished.emit()
    assert "looks like dSprites" in panel.datasetInfoLabel.text()
