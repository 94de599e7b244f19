"""The window while it trains: event-loop delay, and training speed against `bvae train`.

Runs `bvae train` (a subprocess) and the real MainWindow (offscreen) with the same settings on
procedural dSprites, one after the other, and reads both speeds the same way: the median
images/s from each run log after a warm-up. During the window's run a 10 ms QTimer records how
late the event loop serves it (the delay a user would feel).

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_responsiveness.py [--steps 400] [--batch 64]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import torch  # noqa: E402,F401  (before PySide6, as the app does)
from PySide6.QtCore import QElapsedTimer, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

import bvae_desktop.gui.worker as worker_module  # noqa: E402
from bvae_desktop.core.runlog import read_runlog  # noqa: E402
from bvae_desktop.gui import MainWindow  # noqa: E402
from bvae_desktop.gui.settings import AppSettings  # noqa: E402

WARMUP = 20
TICK_MS = 10


def worker_threads() -> int:
    return worker_module.gui_thread_count()


def steady_rate(run_dir: Path) -> float:
    """Median images/s over the steps after warm-up, from the run log."""
    rates = read_runlog(run_dir / "runlog.h5").train["images_per_s"]
    return float(np.median(rates[WARMUP:]))


def cli_rate(args: argparse.Namespace, out: Path, threads: int | None) -> float:
    command = [
        sys.executable,
        "-m",
        "bvae_desktop.cli",
        "train",
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch),
        "--device",
        "cpu",
        "--out",
        str(out),
        "--quiet",
        "--val-every",
        "100",
    ]
    if threads is not None:
        command += ["--threads", str(threads)]
    subprocess.run(command, check=True)
    return steady_rate(out)


def window_rate(app: QApplication, args: argparse.Namespace, root: Path) -> tuple[float, list[float]]:
    settings = AppSettings(root / "settings.ini")
    settings.runs_dir = root / "runs"
    window = MainWindow(settings=settings)
    window.resize(1280, 800)
    window.show()
    panel = window.panel
    panel.stepsSpin.setValue(args.steps)
    panel.batchSizeSpin.setValue(args.batch)
    panel.deviceCombo.setCurrentIndex(panel.deviceCombo.findData("cpu"))
    lateness: list[float] = []
    clock = QElapsedTimer()
    timer = QTimer()
    timer.setInterval(TICK_MS)

    def tick() -> None:
        if clock.isValid() and window.worker and window.worker.trainer and window.worker.trainer.step > WARMUP:
            lateness.append(max(0.0, clock.elapsed() - TICK_MS))
        clock.restart()

    timer.timeout.connect(tick)
    timer.start()
    panel.trainButton.click()
    while window.training:
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    run_dir = window.run_dir
    window.close()
    return steady_rate(run_dir), lateness


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--window-threads", type=int, help="override the window's torch thread count")
    args = parser.parse_args()
    if args.window_threads:
        worker_module.gui_thread_count = lambda: args.window_threads
    app = QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        window, lateness = window_rate(app, args, root)
        cli_default = cli_rate(args, root / "cli-default", None)
        threads = worker_threads()
        cli_same = cli_rate(args, root / "cli-same-threads", threads)
    late = np.array(lateness) if lateness else np.zeros(1)
    print(
        f"CPU, {os.cpu_count()} cores; procedural dSprites, batch {args.batch}, {args.steps} steps "
        f"(median images/s after {WARMUP} warm-up steps); window trains with {threads} torch thread(s)"
    )
    print()
    print("| run | images/s | window / this |")
    print("|---|---:|---:|")
    print(f"| window | {window:,.0f} | 1.00 |")
    print(f"| `bvae train` (default threads, {os.cpu_count()}) | {cli_default:,.0f} | {window / cli_default:.2f} |")
    print(f"| `bvae train --threads {threads}` | {cli_same:,.0f} | {window / cli_same:.2f} |")
    print()
    print(
        f"event-loop delay of a {TICK_MS} ms QTimer during training: median {np.median(late):.1f} ms, "
        f"p99 {np.percentile(late, 99):.1f} ms, worst {late.max():.1f} ms ({len(lateness)} ticks)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
