"""GUI tests run offscreen, collect garbage on the GUI thread as the app does, and fail if they leave a
QThread running (napari's discipline)."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from PySide6.QtCore import QThread  # noqa: E402

_started_threads: list[QThread] = []
_original_start = QThread.start


def _tracking_start(self, *args, **kwargs):
    _started_threads.append(self)
    return _original_start(self, *args, **kwargs)


@pytest.fixture(autouse=True)
def _garbage_collected_on_the_gui_thread(qapp):
    """As in the app (gui/gui_thread_gc.py): no cycle, and so no widget of an earlier test, is freed in a
    worker's thread; what a test leaves is collected here, on the GUI thread, after its widgets closed."""
    from bvae_desktop.gui.gui_thread_gc import GuiThreadCollector

    collector = GuiThreadCollector()
    yield
    collector.uninstall()
    collector.deleteLater()


@pytest.fixture(autouse=True)
def _no_thread_left_running(qapp):
    QThread.start = _tracking_start
    _started_threads.clear()
    yield
    QThread.start = _original_start
    running = []
    for thread in _started_threads:
        try:
            if thread.isRunning():
                running.append(thread)
        except RuntimeError:  # the C++ object is gone: it cannot be running
            continue
    _started_threads.clear()
    if running:
        for thread in running:
            thread.quit()
            thread.wait(5000)
        pytest.fail(f"test left {len(running)} QThread(s) running")


@pytest.fixture(autouse=True)
def _no_bundled_models_unless_asked(monkeypatch, tmp_path_factory):
    """Every window would otherwise open the bundled β-VAE at first launch; tests about that point the
    registry at their own models (tests/zoo_fixtures.py), which overrides this."""
    monkeypatch.setenv("BVAE_DESKTOP_MODELS", str(tmp_path_factory.mktemp("no-bundled-models")))


@pytest.fixture
def window(qtbot, tmp_path):
    """A main window with its own settings and runs folder, set for tiny CPU runs (4 latents, batch 8,
    12 steps); stopped at the end. Test files may define their own `window` instead."""
    from bvae_desktop.gui import MainWindow
    from bvae_desktop.gui.settings import AppSettings

    settings = AppSettings(tmp_path / "settings.ini")
    settings.runs_dir = tmp_path / "runs"
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.show()
    panel = win.panel
    panel.latentDimSpin.setValue(4)
    panel.batchSizeSpin.setValue(8)
    panel.stepsSpin.setValue(12)
    panel.deviceCombo.setCurrentIndex(panel.deviceCombo.findData("cpu"))
    yield win
    win.stop_training()
