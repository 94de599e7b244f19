"""Cold start: how soon a window is on screen and the app usable, against `python -c "import PySide6"`, in one run.

Each round spawns fresh processes (offscreen, a fresh HOME and XDG folders each, as at a first launch):
- baseline: `python -c "import PySide6"` (spawn to exit);
- baseline: a QApplication showing an empty QWidget (spawn to its first paint);
- before: the old start (torch imported first, then the QApplication, then MainWindow): spawn to its
  first paint, and to the event loop coming round after it ("usable");
- app: `python -m bvae_desktop`, the staged start, timed by the app itself (BVAE_DESKTOP_STARTUP_TRACE):
  (a) the start-up window's first paint, (b) the main window painted and the loop come round ("usable"),
  and the stages between; it quits by itself once usable (BVAE_DESKTOP_STARTUP_QUIT=1).
Times are time.time() in the child minus time.time() in this process just before spawning it, so they
include the interpreter's start. Rounds interleave the four; medians are reported, with ratios to the
baselines. Also measured once: what the xcb platform check costs when the plugin loads (Linux).

The page cache is warm (a first round is run and dropped); `--cold` instead evicts the files of torch,
PySide6, numpy, pyqtgraph, h5py and this package from the page cache before every process (posix_fadvise
DONTNEED, no root needed). Pages another running process has mapped stay cached, so on a shared machine
"cold" is only partly cold.

    python benchmarks/cold_start.py [--rounds 5] [--cold] [--json cold_start.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from bvae_desktop.core.atomic import atomic_write_text  # noqa: E402
from bvae_desktop.gui import startup_trace as stages  # noqa: E402

TIMEOUT_S = 300
STALL = "app: longest event-loop stall while loading"
CPU_BEFORE = "before: CPU time of the whole process"
CPU_APP = "app: CPU time of the whole process"
NOT_TIMES = (STALL, CPU_BEFORE, CPU_APP)  # reported apart, not as times from spawn
EVICTED_PACKAGES = ("torch", "PySide6", "shiboken6", "numpy", "pyqtgraph", "h5py", "bvae_desktop")

# prints time.time() at the first paint of an empty QWidget, then quits
EMPTY_WIDGET = """
import time
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QWidget
class First(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint and not seen:
            seen.append(time.time())
            QTimer.singleShot(0, app.quit)
        return False
seen = []
app = QApplication([])
widget = QWidget()
first = First()
widget.installEventFilter(first)
widget.show()
app.exec()
print(seen[0])
"""

# the start before the staged one: torch first, then Qt, then MainWindow built and shown on the GUI thread
TORCH_FIRST = """
import time
import torch
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QTimer
from bvae_desktop.gui.app import make_app
app = make_app(["bvae-desktop"])
from bvae_desktop.gui.main_window import MainWindow
times = {}
def usable():
    times["usable"] = time.time()
    window.close()
class First(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint and "painted" not in times:
            times["painted"] = time.time()
            QTimer.singleShot(0, usable)
        return False
window = MainWindow()
first = First()
window.installEventFilter(first)
window.show()
app.exec()
window.deleteLater()
QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
print(times["painted"], times["usable"])
"""

# the first call of the xcb check when the plugin loads (DISPLAY given: no display needed to load it)
XCB_CHECK = """
import time
from bvae_desktop.gui.qt_platform import check_platform, find_xcb_plugin
plugin = find_xcb_plugin({})
start = time.perf_counter()
verdict = check_platform(["bvae-desktop"], {"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"})
print(time.perf_counter() - start, plugin is not None and verdict is None)
"""


def child_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "BVAE_DESKTOP_STARTUP"))}
    env.update(
        QT_QPA_PLATFORM="offscreen",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        **extra,
    )
    return env


class Run(NamedTuple):
    spawned: float  # time.time() just before the spawn
    ended: float  # time.time() once it exited
    stdout: str
    cpu_s: float  # user + system CPU time of the process (NaN where resource is missing)


def _children_cpu_s() -> float:
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def spawn(args: list[str], env: dict[str, str]) -> Run:
    cpu = _children_cpu_s()
    spawned = time.time()
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    ended = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return Run(spawned, ended, proc.stdout, _children_cpu_s() - cpu)


def package_files() -> list[Path]:
    import importlib.util

    files: list[Path] = []
    for name in EVICTED_PACKAGES:
        spec = importlib.util.find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            files += [p for p in Path(folder).rglob("*") if p.is_file()]
    return files


def evict(files: list[Path]) -> None:
    """Drop these files' pages from the page cache (those no process has mapped)."""
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def measure_round(scratch: Path, before_each: Callable[[], None], app_first: bool = False) -> dict[str, float]:
    """One round: every process once; seconds from its spawn to each event."""
    times: dict[str, float] = {}
    python = sys.executable

    before_each()
    run = spawn([python, "-c", "import PySide6"], child_env(scratch / "h0"))
    times["import PySide6"] = run.ended - run.spawned

    before_each()
    run = spawn([python, "-c", EMPTY_WIDGET], child_env(scratch / "h1"))
    times["QApplication + empty QWidget painted"] = float(run.stdout.split()[-1]) - run.spawned

    def before() -> None:
        before_each()
        run = spawn([python, "-c", TORCH_FIRST], child_env(scratch / "h2"))
        painted, usable = (float(x) for x in run.stdout.split()[-2:])
        times["before: main window painted"] = painted - run.spawned
        times["before: usable"] = usable - run.spawned
        times[CPU_BEFORE] = run.cpu_s

    def app() -> None:
        before_each()
        trace_file = scratch / "trace.json"
        env = child_env(scratch / "h3", **{stages.TRACE_ENV: str(trace_file), stages.QUIT_ENV: "1"})
        run = spawn([python, "-m", "bvae_desktop"], env)
        spawned = run.spawned
        times[CPU_APP] = run.cpu_s
        trace = json.loads(trace_file.read_text(encoding="utf-8"))
        trace_file.unlink()
        events = trace["events"]
        for stage in stages.STAGES:
            if stage in events:
                times[f"app: {stage}"] = events[stage] - spawned
        first = events.get(stages.STARTUP_PAINTED, events[stages.WINDOW_PAINTED])
        times["app: first window painted"] = first - spawned
        times[STALL] = trace["values"].get(stages.LOOP_MAX_GAP, float("nan"))

    for run in (app, before) if app_first else (before, app):  # alternated: neither always runs second
        run()
    return times


def xcb_check_cost() -> tuple[float, bool] | None:
    if not sys.platform.startswith("linux"):
        return None
    with tempfile.TemporaryDirectory(prefix="bvae-cold-start-") as tmp:
        out = spawn([sys.executable, "-c", XCB_CHECK], child_env(Path(tmp))).stdout
    seconds, ok = out.split()[-2:]
    return float(seconds), ok == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (median reported)")
    parser.add_argument("--cold", action="store_true", help="evict the packages' files from the page cache first")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()

    files = package_files() if args.cold else []
    before_each: Callable[[], None] = (lambda: evict(files)) if args.cold else (lambda: None)
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bvae-cold-start-") as tmp:
        scratch = Path(tmp)
        if not args.cold:
            measure_round(scratch, before_each)  # warms the page cache; not counted
        for i in range(args.rounds):
            rounds.append(measure_round(scratch, before_each, app_first=i % 2 == 1))
            print(f"round {i + 1}/{args.rounds} done", file=sys.stderr)
    medians = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    base_import = medians["import PySide6"]
    base_widget = medians["QApplication + empty QWidget painted"]

    cache = f"cold (posix_fadvise DONTNEED on {len(files)} files)" if args.cold else "warm"
    print(f"cold start, offscreen, {cache} page cache, median of {args.rounds} rounds; seconds from spawn")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print()
    print("| measure | s | × import PySide6 | × empty QWidget |")
    print("|---|---:|---:|---:|")
    for name, value in medians.items():
        if name in NOT_TIMES:
            continue
        print(f"| {name} | {value:.2f} | {value / base_import:.2f} | {value / base_widget:.2f} |")
    print(f"\nlongest event-loop stall while loading (the start-up window's; median): {medians[STALL] * 1000:.0f} ms")
    print(f"CPU time (user + system, median): before {medians[CPU_BEFORE]:.2f} s, app {medians[CPU_APP]:.2f} s")
    xcb = xcb_check_cost()
    if xcb is not None:
        seconds, loaded = xcb
        state = "the plugin loaded" if loaded else "the plugin did not load or was not found"
        print(f"xcb platform check, first call ({state}): {seconds * 1000:.1f} ms, libraries Qt loads next anyway")
    if args.json is not None:
        atomic_write_text(
            args.json,
            json.dumps(
                {
                    "rounds": rounds,
                    "medians": medians,
                    "cache": cache,
                    "xcb_check_s": None if xcb is None else xcb[0],
                    "load_average": os.getloadavg()[0],
                },
                indent=2,
            )
            + "\n",
        )


if __name__ == "__main__":
    main()
