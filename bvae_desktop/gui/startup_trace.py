"""Start-up timestamps, for benchmarks/cold_start.py: when each stage of the staged start was reached.

`BVAE_DESKTOP_STARTUP_TRACE=FILE` makes the app write them to FILE (JSON) when it exits; the times are
`time.time()`, so the benchmark compares them with the moment it spawned the process.
`BVAE_DESKTOP_STARTUP_QUIT=1` closes the main window as soon as it is usable, so a benchmark round ends
by itself. Neither changes anything else; without them nothing is recorded or written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

from bvae_desktop.core.atomic import atomic_write_text

TRACE_ENV = "BVAE_DESKTOP_STARTUP_TRACE"
QUIT_ENV = "BVAE_DESKTOP_STARTUP_QUIT"

# the stages, in the order they happen
MAIN = "main"  # bvae_desktop.__main__.main entered (the interpreter is up)
APP_CREATED = "app_created"  # the QApplication exists
STARTUP_PAINTED = "startup_window_painted"  # the start-up window's first paint: something is on screen
TORCH_LOADED = "torch_loaded"
MODULES_LOADED = "modules_loaded"  # the main window's modules (pyqtgraph, the engine, the views)
WINDOW_SHOWN = "main_window_shown"  # MainWindow built and show() returned
WINDOW_PAINTED = "main_window_painted"
USABLE = "usable"  # after the first paint, the event loop came round again: clicks are handled
FAILED = "failed"
STAGES = (MAIN, APP_CREATED, STARTUP_PAINTED, TORCH_LOADED, MODULES_LOADED, WINDOW_SHOWN, WINDOW_PAINTED, USABLE)

LOOP_MAX_GAP = "loading_loop_max_gap_s"  # longest the event loop went without serving a 20 ms timer while loading


class StartupTrace:
    """Stage -> time.time(), plus a few numbers; written as JSON only when a path was given."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, quit_when_usable: bool = False) -> None:
        self.path = Path(path) if path else None
        self.quit_when_usable = quit_when_usable
        self.events: dict[str, float] = {}
        self.values: dict[str, float] = {}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> StartupTrace:
        env = os.environ if environ is None else environ
        return cls(env.get(TRACE_ENV) or None, quit_when_usable=env.get(QUIT_ENV, "") == "1")

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def mark(self, stage: str, at: float | None = None) -> None:
        """Record when `stage` was first reached (later marks of the same stage are ignored)."""
        self.events.setdefault(stage, time.time() if at is None else at)

    def note(self, name: str, value: float) -> None:
        self.values[name] = value

    def write(self) -> None:
        if self.path is not None:
            atomic_write_text(self.path, json.dumps({"events": self.events, "values": self.values}, indent=1))
