"""`python -m bvae_desktop`, the `bvae-desktop` GUI script and the frozen app: open the main window.

`--self-test` checks an installation instead (see bvae_desktop.selftest); `--version` prints the version.
The window opens by a staged start (bvae_desktop.gui.startup): a start-up window first, torch imported
behind it, except on Windows (see `_TORCH_FIRST`).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time

# Windows: import torch before PySide6. Qt's Windows wheels ship an older MSVC runtime (msvcp140.dll);
# once Qt has loaded it, torch >= 2.9 (built with a newer MSVC) fails in c10.dll with "[WinError 1114] A
# dynamic link library (DLL) initialization routine failed" (pytorch/pytorch#166628; Spyder, PyQt apps
# and others report the same, and import torch first). The other known fix, preloading the system's
# MSVC runtime before Qt (pymmcore-plus/pymmcore-gui#94), depends on the Visual C++ redistributable
# installed and on how PyInstaller lays out the bundle, and was not testable here. So Windows keeps
# torch first: its start-up window appears only after torch (as the whole window did before), and the
# window's other modules still load behind it. Linux and macOS have no such conflict: Qt goes first.
_TORCH_FIRST = sys.platform == "win32"


def _guard_std_streams() -> None:
    """A windowed build (PyInstaller --windowed, pythonw) has no stdout/stderr: sys.stdout is None and
    the first print or warning would raise. Point them at the null device instead."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 -- lives as long as the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()  # first, for the frozen app's worker processes
    started_at = time.time()
    _guard_std_streams()
    args = sys.argv if argv is None else argv
    if "--version" in args[1:]:  # needs neither torch nor Qt
        from bvae_desktop import APP_NAME, __version__

        print(f"{APP_NAME} {__version__}")
        return 0
    if "--self-test" in args[1:]:
        import torch  # noqa: F401  -- before PySide6, as on Windows (above); the self-test waits for it anyway

        from bvae_desktop.selftest import run_self_test

        return run_self_test()
    if _TORCH_FIRST:
        import torch  # noqa: F401

    from bvae_desktop.gui.app import run_app

    return run_app(args, started_at=started_at)


if __name__ == "__main__":
    sys.exit(main())
