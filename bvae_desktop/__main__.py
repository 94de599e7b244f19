"""`python -m bvae_desktop`, the `bvae-desktop` GUI script and the frozen app: open the main window.

`--self-test` checks an installation instead (see bvae_desktop.selftest); `--version` prints the version.
"""

from __future__ import annotations

import multiprocessing
import os
import sys


def _guard_std_streams() -> None:
    """A windowed build (PyInstaller --windowed, pythonw) has no stdout/stderr: sys.stdout is None and
    the first print or warning would raise. Point them at the null device instead."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 -- lives as long as the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()  # first, for the frozen app's worker processes
    _guard_std_streams()
    args = sys.argv if argv is None else argv
    if "--version" in args[1:]:  # needs neither torch nor Qt
        from bvae_desktop import APP_NAME, __version__

        print(f"{APP_NAME} {__version__}")
        return 0
    import torch  # noqa: F401  -- before PySide6: Windows loads torch's DLLs first or fails

    if "--self-test" in args[1:]:
        from bvae_desktop.selftest import run_self_test

        return run_self_test()

    from bvae_desktop.gui.app import run_app

    return run_app(args)


if __name__ == "__main__":
    sys.exit(main())
