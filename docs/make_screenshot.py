"""Make docs/screenshot-training.png from the real window during a CPU run on procedural dSprites.

QT_QPA_PLATFORM=offscreen python docs/make_screenshot.py [--steps 400] [--out docs/screenshot-training.png]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch  # noqa: E402,F401  (before PySide6, as the app does)
from PySide6.QtWidgets import QApplication  # noqa: E402

from bvae_desktop.gui import MainWindow  # noqa: E402
from bvae_desktop.gui.settings import AppSettings  # noqa: E402


def wait_until(app: QApplication, condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the run did not get there in time")
        app.processEvents()
        time.sleep(0.01)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--beta", type=float, default=1.0, help="β at the start")
    parser.add_argument(
        "--beta-after", type=float, default=4.0, help="β set mid-run, to show the marker and its effect"
    )
    parser.add_argument("--beta-change-at", type=int, default=1150)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("screenshot-training.png"))
    args = parser.parse_args()
    app = QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        settings = AppSettings(Path(tmp) / "settings.ini")
        settings.runs_dir = Path(tmp) / "runs"
        window = MainWindow(settings=settings)
        window.resize(1280, 800)
        window.show()
        panel = window.panel
        panel.stepsSpin.setValue(args.steps * 4)
        panel.batchSizeSpin.setValue(64)
        panel.betaSpin.setValue(args.beta)
        panel.lrSpin.setValue(args.lr)
        panel.trainButton.click()
        wait_until(
            app,
            lambda: window.worker and window.worker.trainer and window.worker.trainer.step >= args.beta_change_at,
            900,
        )
        panel.betaSpin.setValue(args.beta_after)
        wait_until(app, lambda: window.worker.trainer.step >= args.steps, 900)
        window.worker.sample_interval_s = 0.0  # one fresh sample strip for the picture
        wait_until(
            app, lambda: window.sampleStrip.tiled() is not None and window.worker.trainer.step >= args.steps + 5, 60
        )
        for _ in range(20):
            app.processEvents()
            time.sleep(0.02)
        window.grab().save(str(args.out))
        window.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
