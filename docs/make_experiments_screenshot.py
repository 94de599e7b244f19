"""Screenshot of the Experiments tab showing a finished experiment, for the README.

    python docs/make_experiments_screenshot.py EXPERIMENT_FOLDER [--plot disentanglement] [--name compare]

Writes docs/screenshot-experiments-NAME.png. The folder is one `bvae compare`/`bvae sweep` wrote.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch  # noqa: E402,F401  (before PySide6, as the app does)
from PySide6.QtWidgets import QApplication  # noqa: E402

from bvae_desktop.gui import MainWindow  # noqa: E402
from bvae_desktop.gui.settings import AppSettings  # noqa: E402

DOCS = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--plot", default="disentanglement")
    parser.add_argument("--name", default="compare")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(settings=AppSettings(Path(tmp) / "settings.ini"))
        window.resize(1280, 800)
        window.show()
        view = window.experimentsView
        window.tabs.setCurrentWidget(view)
        if not view.open_experiment(args.folder):
            raise SystemExit(f"cannot open {args.folder}: {window.last_error}")
        view.plotChoice.setCurrentIndex(view.plotChoice.findData(args.plot))
        view.table.selectRow(view.table.rowCount() - 1)
        for _ in range(20):
            app.processEvents()
        out = DOCS / f"screenshot-experiments-{args.name}.png"
        window.grab().save(str(out))
        print(f"wrote {out}")
        window.close()


if __name__ == "__main__":
    main()
