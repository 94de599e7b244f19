"""Python's cyclic garbage collector runs on the GUI thread only, never in a worker's QThread.

A closed window leaves its widgets in reference cycles (slots that hold `self`, pyqtgraph's items
and menus), and the collector frees a cycle in whichever thread happens to allocate when a
generation's threshold is crossed. In a training or experiment thread that destroys QWidgets off
the GUI thread, which Qt does not allow: the window's training tests hung in 2 of 5 full runs with
the worker inside an allocation and the GUI thread's event loop stopped. So automatic collection is
turned off while the app runs, and a GUI-thread timer collects instead, by the same generation
thresholds (the remedy PyQt's documentation and qutebrowser use). Objects that are not in cycles
are freed by reference counting as always.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

CHECK_INTERVAL_MS = 500


class GuiThreadCollector(QObject):
    """Owns the cyclic collector while it lives: `check` runs on the timer, in the thread this object lives in."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = CHECK_INTERVAL_MS) -> None:
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.check)
        self.timer.start()

    def check(self) -> int:
        """Collect the oldest generation whose count passed its threshold, as the automatic collector would;
        the number of unreachable objects found."""
        counts = gc.get_count()
        generation = -1
        for index, (count, threshold) in enumerate(zip(counts, self.thresholds, strict=False)):
            if threshold <= 0 or count <= threshold:
                break
            generation = index
        return gc.collect(generation) if generation >= 0 else 0

    def uninstall(self) -> None:
        """Hand collection back to Python (as it was before), after one last collection here."""
        self.timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()


def install(app: QObject) -> GuiThreadCollector:
    """Collect on `app`'s (the GUI) thread from now until the app quits."""
    collector = GuiThreadCollector(app)
    app.aboutToQuit.connect(collector.uninstall)  # type: ignore[attr-defined]
    return collector
