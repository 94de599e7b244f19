"""The staged start: the start-up window first, loading behind it, then the main window; failures shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QSize, QTimer
from PySide6.QtWidgets import QLabel, QWidget

from bvae_desktop import APP_NAME
from bvae_desktop.gui import startup_trace as stages
from bvae_desktop.gui.startup import (
    BUILDING_LABEL,
    FAILED_LABEL,
    LoadStep,
    StagedStart,
    StartupWindow,
    run_staged,
)
from bvae_desktop.gui.startup_preload import TORCH_CPU_LIBRARY, preload_torch_cpu
from bvae_desktop.gui.startup_trace import StartupTrace

ROOT = Path(__file__).resolve().parents[2]
WAIT_MS = 10_000


def _window() -> QWidget:
    return QLabel("the main window")


class Gate:
    """A load step that blocks until the test opens it: the test sees the start-up window mid-load."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()

    def __call__(self) -> None:
        self.entered.set()
        assert self.open.wait(WAIT_MS / 1000)


@pytest.fixture
def cleanup():
    """Close and join whatever a test started, even when it fails half-way."""
    started: list[tuple[StagedStart, Gate | None]] = []
    yield started.append
    for staged, gate in started:
        if gate is not None:
            gate.open.set()
        assert staged.wait(WAIT_MS / 1000), "the loader thread is still running"
        for widget in (staged.window, staged.startup_window):
            if widget is not None:
                widget.close()
                widget.deleteLater()


def test_start_up_window_shows_while_loading_then_hands_over_to_the_main_window(qtbot, cleanup):
    gate = Gate()
    ran: list[str] = []
    steps = [
        LoadStep("Loading PyTorch…", gate, stages.TORCH_LOADED),
        LoadStep("Loading the rest…", lambda: ran.append("rest"), stages.MODULES_LOADED),
    ]
    trace = StartupTrace()
    staged = StagedStart(_window, steps, trace=trace)
    cleanup((staged, gate))
    staged.start()
    startup = staged.startup_window
    assert startup.isVisible() and startup.windowTitle() == APP_NAME
    qtbot.waitUntil(lambda: stages.STARTUP_PAINTED in trace.events, timeout=WAIT_MS)  # painted while loading
    qtbot.waitUntil(lambda: startup.statusLabel.text() == "Loading PyTorch…", timeout=WAIT_MS)
    assert gate.entered.is_set() and staged.loading and staged.window is None
    assert startup.progressBar.isVisible() and not startup.errorLabel.isVisible()
    assert (startup.progressBar.value(), startup.progressBar.maximum()) == (0, 3)  # 2 steps + building

    with qtbot.waitSignal(staged.usable, timeout=WAIT_MS):
        gate.open.set()
    assert ran == ["rest"]
    assert isinstance(staged.window, QLabel) and staged.window.isVisible()
    assert not startup.isVisible()
    assert staged.wait(WAIT_MS / 1000) and not staged.loading
    order = [stage for stage in stages.STAGES if stage in trace.events]
    assert order == [
        stages.STARTUP_PAINTED,
        stages.TORCH_LOADED,
        stages.MODULES_LOADED,
        stages.WINDOW_SHOWN,
        stages.WINDOW_PAINTED,
        stages.USABLE,
    ]
    times = [trace.events[stage] for stage in order]
    assert times == sorted(times)


def test_building_the_window_says_so_before_it_blocks(qtbot, cleanup):
    seen: list[tuple[str, int, int]] = []

    def build() -> QWidget:
        bar = staged.startup_window.progressBar
        seen.append((staged.startup_window.statusLabel.text(), bar.value(), bar.maximum()))
        return _window()

    staged = StagedStart(build, [LoadStep("Loading PyTorch…", lambda: None)])
    cleanup((staged, None))
    with qtbot.waitSignal(staged.shown, timeout=WAIT_MS):
        staged.start()
    assert seen == [(BUILDING_LABEL, 1, 2)]


@pytest.mark.parametrize("where", ["loading", "building"])
def test_a_failure_is_shown_in_the_start_up_window_and_closing_it_exits_with_1(qtbot, cleanup, capsys, where):
    def fail_import() -> None:
        raise ImportError("No module named 'torch'")

    def fail_build() -> QWidget:
        raise RuntimeError("no OpenGL context")

    steps = [LoadStep("Loading PyTorch…", fail_import)] if where == "loading" else []
    staged = StagedStart(fail_build if where == "building" else _window, steps)
    cleanup((staged, None))
    startup = staged.startup_window
    staged.start()
    qtbot.waitUntil(lambda: startup.errorLabel.isVisible(), timeout=WAIT_MS)
    expected = "ImportError: No module named 'torch'" if where == "loading" else "RuntimeError: no OpenGL context"
    assert startup.statusLabel.text() == FAILED_LABEL
    assert startup.errorLabel.text() == expected and staged.error == expected
    assert startup.closeButton.isVisible() and not startup.progressBar.isVisible()
    assert staged.window is None
    assert expected in capsys.readouterr().err  # the traceback, for a terminal or a bug report

    with qtbot.waitSignal(staged.finished, timeout=WAIT_MS) as finished:
        startup.closeButton.click()
    assert finished.args == [1]
    assert staged.wait(WAIT_MS / 1000)


def test_start_up_window_draws_the_icon_and_wraps_a_long_error_inside_itself(qtbot):
    from bvae_desktop.gui.app import app_icon

    window = StartupWindow(app_icon())
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    icon = window.findChild(QLabel, "startupIcon")
    assert icon.pixmap().size() == QSize(64, 64)
    image = window.grab().toImage()
    corner = icon.geometry().topLeft()
    colours = {image.pixel(corner.x() + x, corner.y() + y) for x in range(0, 64, 4) for y in range(0, 64, 4)}
    assert len(colours) > 4  # the icon is drawn, not a blank label

    message = "ImportError: " + "a very long message about <module> and a missing library " * 6
    window.show_error(message)
    line = window.errorLabel.fontMetrics().height()
    qtbot.waitUntil(lambda: window.errorLabel.height() > 2 * line, timeout=WAIT_MS)  # wrapped, and all of it shown
    assert window.errorLabel.text() == message  # plain text: "<module>" is not swallowed as a tag
    assert window.errorLabel.geometry().right() <= window.width() <= 720
    assert window.errorLabel.heightForWidth(window.errorLabel.width()) <= window.errorLabel.height()
    assert window.closeButton.isVisible() and window.closeButton.geometry().bottom() <= window.height()


def test_closing_the_start_up_window_while_loading_stops_after_the_current_step(qtbot, cleanup):
    gate = Gate()
    ran: list[str] = []
    built: list[QWidget] = []
    steps = [LoadStep("Loading PyTorch…", gate), LoadStep("Loading the rest…", lambda: ran.append("rest"))]
    staged = StagedStart(lambda: built.append(_window()) or built[-1], steps)
    cleanup((staged, gate))
    staged.start()
    qtbot.waitUntil(gate.entered.is_set, timeout=WAIT_MS)  # loading starts once the window has painted
    with qtbot.waitSignal(staged.finished, timeout=WAIT_MS) as finished:
        staged.startup_window.close()
    assert finished.args == [0]
    gate.open.set()
    assert staged.wait(WAIT_MS / 1000) and not staged.loading  # no thread left behind
    assert ran == [] and built == [] and staged.window is None


def _run_with_guard(qapp, staged: StagedStart) -> int:
    """run_staged, ended with 99 (a failure) if it has not returned by itself within WAIT_MS."""
    guard = QTimer()
    guard.setSingleShot(True)
    guard.timeout.connect(lambda: qapp.exit(99))
    guard.start(WAIT_MS)
    try:
        return run_staged(qapp, staged)
    finally:
        guard.stop()


def test_run_staged_returns_1_after_a_failure_and_restores_quit_on_last_window(qapp, cleanup):
    def fail() -> None:
        raise ImportError("libtorch_cpu.so: cannot open shared object file")

    staged = StagedStart(_window, [LoadStep("Loading PyTorch…", fail)])
    cleanup((staged, None))
    staged.failed.connect(lambda _message: QTimer.singleShot(0, staged.startup_window.closeButton.click))
    assert qapp.quitOnLastWindowClosed()
    assert _run_with_guard(qapp, staged) == 1
    assert qapp.quitOnLastWindowClosed()
    assert not staged.loading


def test_run_staged_quits_when_usable_if_the_trace_asks(qapp, cleanup, tmp_path):
    trace = StartupTrace(tmp_path / "trace.json", quit_when_usable=True)
    staged = StagedStart(_window, [LoadStep("Loading…", lambda: None, stages.TORCH_LOADED)], trace=trace)
    cleanup((staged, None))
    assert not [w for w in qapp.topLevelWidgets() if w.isVisible()]  # else closing ours would not quit
    assert _run_with_guard(qapp, staged) == 0
    assert staged.window is not None and not staged.window.isVisible()  # closed as a user would
    trace.write()
    written = json.loads((tmp_path / "trace.json").read_text(encoding="utf-8"))
    assert set(written["events"]) >= {stages.TORCH_LOADED, stages.WINDOW_SHOWN, stages.USABLE}
    assert written["values"][stages.LOOP_MAX_GAP] >= 0.0


def test_trace_reads_its_environment_and_keeps_the_first_time_of_a_stage(tmp_path):
    path = tmp_path / "t.json"
    trace = StartupTrace.from_environ({stages.TRACE_ENV: str(path), stages.QUIT_ENV: "1"})
    assert trace.enabled and trace.quit_when_usable and trace.path == path
    trace.mark(stages.MAIN, 10.0)
    trace.mark(stages.MAIN, 20.0)
    trace.write()
    assert json.loads(path.read_text(encoding="utf-8")) == {"events": {stages.MAIN: 10.0}, "values": {}}
    quiet = StartupTrace.from_environ({})
    assert not quiet.enabled and not quiet.quit_when_usable
    quiet.write()  # writes nothing, anywhere


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_start_up_path_imports_neither_torch_nor_pyqtgraph():
    """What runs before the start-up window shows must stay light: that is the whole point."""
    proc = _python(
        "import sys, bvae_desktop.__main__, bvae_desktop.gui.app\n"
        "print(sorted(m for m in ('torch', 'pyqtgraph', 'numpy', 'bvae_desktop.gui.main_window') if m in sys.modules))"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preload is for Linux")
def test_preload_loads_libtorch_cpu_without_importing_torch():
    """The app then imports torch over it: test_the_app_starts_staged_and_quits_when_usable."""
    proc = _python(
        "import sys\n"
        "from bvae_desktop.gui.startup_preload import preload_torch_cpu\n"
        "print(preload_torch_cpu(), 'torch' in sys.modules)\n"
        f"print(any(line.rstrip().endswith('/{TORCH_CPU_LIBRARY}') for line in open('/proc/self/maps')))"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["True False", "True"]


def test_preload_does_nothing_off_linux_or_once_torch_is_imported(monkeypatch):
    assert preload_torch_cpu(platform="darwin") is False
    assert preload_torch_cpu(platform="win32") is False
    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch", object()))
    assert preload_torch_cpu(platform="linux") is False


def test_the_app_starts_staged_and_quits_when_usable(tmp_path):
    """`python -m bvae_desktop` for real (offscreen): the start-up window paints before torch has loaded, then
    the main window takes over, and the trace says so. The one test here that pays for importing torch."""
    trace_file = tmp_path / "trace.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        QT_QPA_PLATFORM="offscreen",
        PYTHONDONTWRITEBYTECODE="1",
        **{stages.TRACE_ENV: str(trace_file), stages.QUIT_ENV: "1"},
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bvae_desktop"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    events = json.loads(trace_file.read_text(encoding="utf-8"))["events"]
    order = [stage for stage in stages.STAGES if stage in events]
    assert order == list(stages.STAGES)
    times = [events[stage] for stage in order]
    assert times == sorted(times)
