"""Screenshots of the latent traversal and scatter views from the real window, for the README.

    QT_QPA_PLATFORM=offscreen python docs/make_explorer_screenshots.py DSPRITES_CKPT MNIST_CKPT

Writes docs/screenshot-traversal-dsprites.png, docs/screenshot-scatter-dsprites.png and the
same two for MNIST. Train the checkpoints first, e.g.
    bvae train --dataset dsprites-procedural --beta 4 --steps 3000 --out runs/dsprites-b4
    bvae train --dataset mnist --data PATH/TO/MNIST --beta 1 --steps 3000 --out runs/mnist-b1
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

DOCS = Path(__file__).resolve().parent


def settle(app: QApplication, condition, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("view did not finish in time")
        app.processEvents()
        time.sleep(0.01)
    for _ in range(10):
        app.processEvents()


def shoot(app: QApplication, window: MainWindow, checkpoint: Path, name: str, colour_by: str, points: int) -> None:
    window.open_checkpoint(checkpoint)
    window.tabs.setCurrentWidget(window.traversalView)
    settle(app, lambda: not window.traversalView.is_labelling())
    window.grab().save(str(DOCS / f"screenshot-traversal-{name}.png"))
    window.tabs.setCurrentWidget(window.scatterView)
    scatter = window.scatterView
    index = scatter.colourByCombo.findText(colour_by)
    if index >= 0:
        scatter.colourByCombo.setCurrentIndex(index)
    scatter.encode(points)
    settle(app, lambda: not scatter.is_encoding())
    if scatter.point_count():
        scatter.pick(0)
    settle(app, lambda: True)
    window.grab().save(str(DOCS / f"screenshot-scatter-{name}.png"))
    print(f"wrote screenshots for {name}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsprites", type=Path)
    parser.add_argument("mnist", type=Path)
    parser.add_argument("--points", type=int, default=3000)
    args = parser.parse_args()
    app = QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(settings=AppSettings(Path(tmp) / "settings.ini"))
        window.resize(1280, 800)
        window.show()
        shoot(app, window, args.dsprites, "dsprites", "posX", args.points)
        shoot(app, window, args.mnist, "mnist", "label", args.points)
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
