"""The staged start: a small start-up window at once, torch and the main window's modules loaded behind it.

Importing torch and the views takes seconds (issue 14: 12-14 s on a cold first start, nothing on screen).
The start-up window needs only PySide6, so it is up within about the cost of importing PySide6. A Python
thread imports the heavy modules while the GUI thread keeps its event loop (the window repaints, can be
moved and closed); then the main window is built on the GUI thread, shown, and the start-up window closes.
A failure while loading is shown in the start-up window with its message (and the traceback on stderr).
Closing the start-up window while loading ends the app: the loader stops after the module it is importing
(an import cannot be interrupted) and `wait()` joins it, so no thread is left behind.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QIcon
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from bvae_desktop import APP_NAME, __version__
from bvae_desktop.gui import startup_trace as stages
from bvae_desktop.gui.startup_preload import preload_torch_cpu
from bvae_desktop.gui.startup_trace import StartupTrace

BUILDING_LABEL = "Building the window…"
FAILED_LABEL = f"{APP_NAME} could not start."
PAINT_WAIT_MS = 300  # start loading after this even if the start-up window was never painted
GAP_PROBE_MS = 20  # the timer that measures event-loop stalls while loading (only when tracing)
EXIT_FAILED = 1


@dataclass(frozen=True)
class LoadStep:
    """One thing the loader thread does, the line the start-up window shows meanwhile, and its trace stage."""

    label: str
    run: Callable[[], object]
    stage: str | None = None


def _load_torch() -> None:
    preload_torch_cpu()  # its C++ core first, without holding the GIL: the start-up window keeps repainting
    import torch  # noqa: F401


def _load_window_modules() -> None:
    import bvae_desktop.gui.main_window  # noqa: F401  -- pyqtgraph, the engine, the views


# What the main window needs, heaviest first; plain import statements, so PyInstaller's analysis sees them.
DEFAULT_STEPS: tuple[LoadStep, ...] = (
    LoadStep("Loading PyTorch…", _load_torch, stages.TORCH_LOADED),
    LoadStep("Loading the window’s modules…", _load_window_modules, stages.MODULES_LOADED),
)


class StartupWindow(QWidget):
    """The app's icon, name and version, a line saying what is loading, the steps done; on failure, the error."""

    closed = Signal()

    def __init__(self, icon: QIcon | None = None) -> None:
        super().__init__()
        self.setObjectName("startupWindow")
        self.setWindowTitle(APP_NAME)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)  # the controller owns it
        icon_label = QLabel(objectName="startupIcon")
        if icon is not None and not icon.isNull():
            icon_label.setPixmap(icon.pixmap(64, 64))
        name = QLabel(f"<b>{APP_NAME}</b> {__version__}", objectName="startupName")
        self.statusLabel = QLabel("Starting…", objectName="startupStatus")
        self.statusLabel.setTextFormat(Qt.TextFormat.PlainText)
        self.progressBar = QProgressBar(objectName="startupProgress")
        # steps done, not a busy animation: that repainted all the time and cost ~0.3 s of CPU over a start
        self.progressBar.setRange(0, 1)
        self.progressBar.setValue(0)
        self.progressBar.setTextVisible(False)
        self.errorLabel = QLabel(objectName="startupError")
        self.errorLabel.setTextFormat(Qt.TextFormat.PlainText)  # a message may hold "<module>" and the like
        self.errorLabel.setWordWrap(True)
        self.errorLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.errorLabel.hide()
        self.closeButton = QPushButton("Close", objectName="startupCloseButton")
        self.closeButton.clicked.connect(self.close)
        self.closeButton.hide()

        text = QVBoxLayout()
        text.addWidget(name)
        text.addWidget(self.statusLabel)
        text.addWidget(self.progressBar)
        text.addWidget(self.errorLabel)
        text.addWidget(self.closeButton, alignment=Qt.AlignmentFlag.AlignRight)
        row = QHBoxLayout(self)
        row.addWidget(icon_label, alignment=Qt.AlignmentFlag.AlignTop)
        row.addLayout(text, 1)
        self.setMinimumWidth(420)
        self.setMaximumWidth(720)  # a long error wraps instead of widening the window off the screen

    def set_step(self, done: int, total: int, text: str) -> None:
        """`done` of `total` steps finished; `text` says what runs now."""
        self.progressBar.setRange(0, total)
        self.progressBar.setValue(done)
        self.statusLabel.setText(text)

    def show_error(self, message: str) -> None:
        self.statusLabel.setText(FAILED_LABEL)
        self.progressBar.hide()
        self.errorLabel.setText(message)
        self.errorLabel.show()
        self.closeButton.show()
        self.closeButton.setFocus()
        self.adjustSize()  # grow to the wrapped message: the window was sized for one status line

    def closeEvent(self, event: QCloseEvent) -> None:
        self.closed.emit()
        super().closeEvent(event)


class _FirstPaint(QObject):
    """Calls `callback` once, at the first paint of `widget`, then stops watching (no Python per event after)."""

    def __init__(self, widget: QWidget, callback: Callable[[], None]) -> None:
        super().__init__(widget)
        self._widget = widget
        self._callback = callback
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self._widget.removeEventFilter(self)
            QTimer.singleShot(0, self._callback)  # after this paint, not inside it
        return False


class _LoaderSignals(QObject):
    """Lives on the GUI thread; the loader thread emits, Qt queues the calls to the GUI thread."""

    stepStarted = Signal(int, str)  # index, label
    loaded = Signal()
    failed = Signal(str)


class StagedStart(QObject):
    """Runs the staged start. `finished(code)` says the app should exit: the start-up window was closed
    while loading (0) or after a failure (1). `failed(message)` fires when the failure is on screen,
    `shown` when the main window is shown (the start-up window closes right after), `usable` once it has
    been painted and the event loop came round again."""

    finished = Signal(int)
    failed = Signal(str)
    shown = Signal()
    usable = Signal()

    def __init__(
        self,
        build_window: Callable[[], QWidget],
        steps: Sequence[LoadStep] = DEFAULT_STEPS,
        *,
        trace: StartupTrace | None = None,
        icon: QIcon | None = None,
    ) -> None:
        super().__init__()
        self._build_window = build_window
        self._steps = tuple(steps)
        self.trace = trace or StartupTrace()
        self.startup_window = StartupWindow(icon)
        self.window: QWidget | None = None
        self.error: str | None = None
        self._cancelled = threading.Event()
        self._thread: threading.Thread | None = None
        self._signals = _LoaderSignals()
        self._signals.stepStarted.connect(self._on_step_started)
        self._signals.loaded.connect(self._on_loaded)
        self._signals.failed.connect(self._on_failed)
        self.startup_window.closed.connect(self._on_startup_closed)
        self._paint_wait = QTimer(self, singleShot=True, interval=PAINT_WAIT_MS)
        self._paint_wait.timeout.connect(self._start_loading)
        self._gap_probe: QTimer | None = None
        self._last_tick = 0.0
        self._max_gap = 0.0

    # ----- the loader thread -----------------------------------------------------------------
    def start(self) -> None:
        """Show the start-up window; loading starts once it has been painted, so the loader thread does not
        compete with its first paint (on two busy cores that delayed it by ~0.7 s), or after PAINT_WAIT_MS
        if the window system never exposes it (another virtual desktop). Returns at once."""
        _FirstPaint(self.startup_window, self._on_startup_painted)
        self.startup_window.show()
        self._paint_wait.start()

    def _on_startup_painted(self) -> None:
        self.trace.mark(stages.STARTUP_PAINTED)
        self._start_loading()

    def _start_loading(self) -> None:
        self._paint_wait.stop()
        if self._thread is not None or self._cancelled.is_set():
            return
        if self.trace.enabled:
            self._start_gap_probe()
        self._thread = threading.Thread(target=self._load, name="bvae-startup-loader")
        self._thread.start()

    def _load(self) -> None:
        try:
            for index, step in enumerate(self._steps):
                if self._cancelled.is_set():
                    return
                self._signals.stepStarted.emit(index, step.label)
                step.run()
                if step.stage:
                    self.trace.mark(step.stage)
        except BaseException as exc:  # any failure, a SystemExit raised by a module included, is shown
            traceback.print_exc(file=sys.stderr)
            self._signals.failed.emit(f"{type(exc).__name__}: {exc}")
            return
        if not self._cancelled.is_set():
            self._signals.loaded.emit()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Join the loader thread (it stops after its current step once cancelled); True once it has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def loading(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ----- the GUI thread ---------------------------------------------------------------------
    def _on_step_started(self, index: int, label: str) -> None:
        self.startup_window.set_step(index, len(self._steps) + 1, label)  # + 1: building the window

    def _on_loaded(self) -> None:
        self._stop_gap_probe()
        if self._cancelled.is_set():
            return
        self.startup_window.set_step(len(self._steps), len(self._steps) + 1, BUILDING_LABEL)
        self.startup_window.repaint()  # building blocks the loop: show the line first
        try:
            window = self._build_window()
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            self._on_failed(f"{type(exc).__name__}: {exc}")
            return
        self.window = window
        _FirstPaint(window, self._on_window_painted)
        window.show()
        self.trace.mark(stages.WINDOW_SHOWN)
        self.shown.emit()
        self.startup_window.close()

    def _on_window_painted(self) -> None:
        self.trace.mark(stages.WINDOW_PAINTED)
        QTimer.singleShot(0, self._on_usable)  # queued behind what the window posted while it was built

    def _on_usable(self) -> None:
        self.trace.mark(stages.USABLE)
        self.usable.emit()

    def _on_failed(self, message: str) -> None:
        self._stop_gap_probe()
        self.error = message
        self.trace.mark(stages.FAILED)
        self.startup_window.show_error(message)
        self.failed.emit(message)

    def _on_startup_closed(self) -> None:
        if self.window is not None:
            return  # handed over to the main window
        self._cancelled.set()
        self._paint_wait.stop()
        self._stop_gap_probe()
        self.finished.emit(EXIT_FAILED if self.error is not None else 0)

    # ----- how responsive the loop stayed (trace only) ----------------------------------------
    def _start_gap_probe(self) -> None:
        self._gap_probe = QTimer(self)
        self._gap_probe.setInterval(GAP_PROBE_MS)
        self._gap_probe.timeout.connect(self._on_gap_tick)
        self._last_tick = time.perf_counter()
        self._gap_probe.start()

    def _on_gap_tick(self) -> None:
        now = time.perf_counter()
        self._max_gap = max(self._max_gap, now - self._last_tick)
        self._last_tick = now

    def _stop_gap_probe(self) -> None:
        if self._gap_probe is not None:
            self._gap_probe.stop()
            self._gap_probe = None
            self._on_gap_tick()  # the stretch since the last tick counts too
            self.trace.note(stages.LOOP_MAX_GAP, self._max_gap)


def run_staged(app: QApplication, staged: StagedStart) -> int:
    """Run the event loop for a staged start; the exit code, once the loader thread has ended."""
    quit_on_last = app.quitOnLastWindowClosed()
    app.setQuitOnLastWindowClosed(False)  # closing the start-up window is decided by StagedStart.finished
    staged.finished.connect(app.exit)

    def quit_when_usable() -> None:
        if staged.trace.quit_when_usable and staged.window is not None:
            staged.window.close()  # as a user would: the window saves its settings, the app quits

    # from the hand-over on, closing the main window quits, as without a staged start
    staged.shown.connect(lambda: app.setQuitOnLastWindowClosed(quit_on_last))
    staged.usable.connect(quit_when_usable)
    staged.start()
    try:
        return app.exec()
    finally:
        staged.wait()
        app.setQuitOnLastWindowClosed(quit_on_last)
