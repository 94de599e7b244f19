"""The frozen app's entry script. All start-up order lives in bvae_desktop.__main__.main: it calls
multiprocessing.freeze_support() first, replaces a missing stdout/stderr (windowed build), then opens the
window (a start-up window first, torch loading behind it; on Windows torch is imported before PySide6, for the
DLL order) or runs --self-test (torch first) / --version."""

import sys

from bvae_desktop.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
