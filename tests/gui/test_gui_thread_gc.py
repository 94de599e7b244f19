"""Reference cycles are freed on the GUI thread, never in a worker's thread (gui/gui_thread_gc.py)."""

from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QObject, QThread, Signal

from bvae_desktop.gui.gui_thread_gc import GuiThreadCollector, install
from bvae_desktop.gui.worker import start_worker


class _Cycle:
    """Half of a reference cycle that says, when freed, which thread freed it."""

    def __init__(self, freed_in: list[str]) -> None:
        self.freed_in = freed_in
        self.other = self

    def __del__(self) -> None:
        self.freed_in.append(threading.current_thread().name)


class _Allocator(QObject):
    """Makes a cycle and then enough garbage that Python's own collector would run in this thread."""

    finished = Signal()

    def __init__(self, freed_in: list[str]) -> None:
        super().__init__()
        self.freed_in = freed_in

    def run(self) -> None:
        threading.current_thread().name = "allocator"
        _Cycle(self.freed_in)
        # kept: tracked allocations past generation 0's threshold, where Python itself would collect in this thread
        self.junk = [[] for _ in range(gc.get_threshold()[0] * 3)]
        self.finished.emit()


def test_a_cycle_made_in_a_worker_thread_is_freed_on_the_gui_thread(qtbot):
    collector = GuiThreadCollector(interval_ms=10)
    assert not gc.isenabled()  # Python's automatic collection is off while the collector lives
    freed_in: list[str] = []
    worker = _Allocator(freed_in)
    thread = start_worker(worker, "allocatorThread")
    qtbot.waitUntil(lambda: thread.isFinished() and freed_in != [], timeout=30_000)  # the collector's timer found it
    assert freed_in == [threading.main_thread().name]
    collector.uninstall()
    worker.junk = None
    worker.deleteLater()
    thread.deleteLater()


def test_without_it_python_frees_the_cycle_in_the_worker_thread_that_allocates(qtbot):
    """The hazard itself: what the test above would see with Python's own collector on."""
    freed_in: list[str] = []
    worker = _Allocator(freed_in)
    gc.enable()  # the autouse fixture's collector turned it off
    try:
        thread = start_worker(worker, "allocatorThread")
        qtbot.waitUntil(thread.isFinished, timeout=30_000)
    finally:
        gc.disable()
    assert freed_in == ["allocator"]
    worker.junk = None
    worker.deleteLater()
    thread.deleteLater()


def test_check_collects_the_generations_whose_threshold_was_passed():
    collector = GuiThreadCollector()
    collector.timer.stop()
    gc.collect()
    assert collector.check() == 0  # nothing allocated since: no generation is due
    freed_in: list[str] = []
    _Cycle(freed_in)
    junk = [[] for _ in range(collector.thresholds[0] + 1)]
    assert collector.check() >= 1 and freed_in  # generation 0 was due; the young cycle went with it
    del junk
    collector.uninstall()


def test_install_hands_collection_back_when_the_app_quits(qapp):
    was_enabled = gc.isenabled()
    collector = install(qapp)
    assert not gc.isenabled() and collector.timer.isActive()
    qapp.aboutToQuit.emit()
    assert not collector.timer.isActive() and gc.isenabled() == was_enabled
    collector.deleteLater()


def test_the_app_collects_on_its_gui_thread(qapp):
    from bvae_desktop.gui.app import make_app

    before = qapp.findChildren(GuiThreadCollector)
    app = make_app(["bvae-desktop"])
    collectors = app.findChildren(GuiThreadCollector)
    assert len(collectors) == 1 or len(before) == 1  # one, however often make_app is called
    assert not gc.isenabled()
    for collector in set(collectors) - set(before):
        collector.uninstall()
        collector.deleteLater()
    assert QThread.currentThread() is app.thread()
