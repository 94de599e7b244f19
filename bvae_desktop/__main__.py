"""`python -m bvae_desktop` and the `bvae-desktop` GUI script: open the main window."""

from __future__ import annotations

import multiprocessing
import sys


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()  # first, for the frozen app's worker processes
    import torch  # noqa: F401  -- before PySide6: Windows loads torch's DLLs first or fails

    from bvae_desktop.gui.app import run_app

    return run_app(sys.argv if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
