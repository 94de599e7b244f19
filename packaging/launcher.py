"""The frozen app's entry script. All start-up order lives in bvae_desktop.__main__.main: it calls
multiprocessing.freeze_support() first, replaces a missing stdout/stderr (windowed build), imports torch
before PySide6 (Windows DLL order), then opens the window or runs --self-test / --version."""

import sys

from bvae_desktop.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
