"""Progress on the command line: one status line on stderr, kept hand-written on purpose.

On a terminal the status line is rewritten in place (carriage return, padded over the previous
text, at most `tty_every_s` apart); elsewhere (a log file, a pipe, CI) each status becomes a line of
its own, at most one per `every_s` per key, so logs stay readable. `quiet` drops every status and
note. Lines of their own (`line`, `note`) first clear the status line so the two never mix. No dependency: tqdm or
rich would add a package to the frozen bundle for what this does in a page, and neither draws our
ETAs (core/progress.py) any better.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

LOG_EVERY_S = 10.0  # not a terminal: one status line per key at most this often
TTY_EVERY_S = 0.1  # a terminal: redraw at most this often


class StatusLine:
    """Transient progress (`status`) and permanent lines (`line`) on one stream (stderr unless given)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        quiet: bool = False,
        tty: bool | None = None,
        every_s: float = LOG_EVERY_S,
        tty_every_s: float = TTY_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self.quiet = quiet
        self._tty = tty
        self.every_s = every_s
        self.tty_every_s = tty_every_s
        self.clock = clock
        self._shown = 0  # characters of the status now on the terminal line
        self._last: dict[str, float] = {}

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr  # resolved late: tests swap stderr

    @property
    def tty(self) -> bool:
        if self._tty is not None:
            return self._tty
        isatty = getattr(self.stream, "isatty", None)
        try:
            return bool(isatty and isatty())
        except (OSError, ValueError):
            return False

    def status(self, text: str, *, key: str = "", force: bool = False) -> None:
        """Show `text` as where things stand (rate-limited unless `force`); nothing when quiet."""
        if self.quiet:
            return
        now = self.clock()
        tty = self.tty
        slot = "" if tty else key
        if not force and now - self._last.get(slot, -math.inf) < (self.tty_every_s if tty else self.every_s):
            return
        self._last[slot] = now
        if not tty:
            self._write(text + "\n")
            return
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        text = text if len(text) <= width else text[: width - 1] + "…"
        self._write("\r" + text.ljust(self._shown))
        self._shown = len(text)

    def line(self, text: str) -> None:
        """A line of its own, even when quiet (a run finished, a failure), below the status line on a terminal."""
        self.clear()
        self._write(text + "\n")

    def note(self, text: str) -> None:
        """A line of its own that only says how things go (a metric started), so not when quiet."""
        if not self.quiet:
            self.line(text)

    def clear(self) -> None:
        """Take the status line off the terminal (before a permanent line, at the end)."""
        if self._shown:
            self._write("\r" + " " * self._shown + "\r")
            self._shown = 0

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
