"""Progress of long work and when it will end: a plain record the engine emits, and an ETA from the work so far.

Core code reports `ProgressRecord`s through the callbacks it already takes (no Qt). An ETA comes
from the measured rate of work (`EtaEstimator`): smoothed, none until there is enough signal, and
paused time never counts. `ProgressTracker` turns a loop's (done, total, unit) calls into throttled
records with an ETA; `WeightedProgress` puts jobs of different estimated cost on one scale, so
several runs and their scoring share one ETA. The CLI draws records on a stderr line
(cli_progress.py), the window in a label.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], float]


@dataclass(frozen=True)
class ProgressRecord:
    """Where one piece of work stands: `done` of `total` `unit`s, in part `part` of `parts`, and the seconds left
    in this part (None until there is enough signal)."""

    label: str
    done: int
    total: int
    unit: str
    eta_s: float | None = None
    part: int = 1
    parts: int = 1

    @property
    def fraction(self) -> float:
        """The whole job's share done: parts count equally (a part's own cost is not known here)."""
        within = min(1.0, self.done / self.total) if self.total > 0 else 1.0
        return min(1.0, (self.part - 1 + within) / max(self.parts, 1))

    def text(self) -> str:
        """'β-VAE metric 1,200/15,000 points · 2m 10s left' (with '(part 2 of 2)' for multi-part work)."""
        part = f" (part {self.part} of {self.parts})" if self.parts > 1 else ""
        left = f" · {format_duration(self.eta_s)} left" if self.eta_s is not None and self.done < self.total else ""
        return f"{self.label} {self.done:,}/{self.total:,} {self.unit}{part}{left}"

    def to_info(self) -> dict[str, Any]:
        """Plain data for an event's info (crosses processes and Ray tasks)."""
        return {
            "label": self.label,
            "done": self.done,
            "total": self.total,
            "unit": self.unit,
            "eta_s": self.eta_s,
            "part": self.part,
            "parts": self.parts,
        }

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> ProgressRecord | None:
        """The record in an event's info, or None when it carries none (a metric's start event)."""
        if "done" not in info or "total" not in info:
            return None
        eta = info.get("eta_s")
        return cls(
            label=str(info.get("label", info.get("name", ""))),
            done=int(info["done"]),
            total=int(info["total"]),
            unit=str(info.get("unit", "")),
            eta_s=None if eta is None else float(eta),
            part=int(info.get("part", 1)),
            parts=int(info.get("parts", 1)),
        )


ProgressSink = Callable[[ProgressRecord], None]
ProgressReport = Callable[..., None]
"""report(done, total, unit, part=1, parts=1): what a loop calls after each chunk of work."""


def format_duration(seconds: float | None) -> str:
    """'45s', '2m 10s', '42m', '1h 05m', for ETAs and estimates ('?' when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 3600:
        return f"{round(s / 60)}m"
    minutes = round(s / 60)
    return f"{minutes // 60}h {minutes % 60:02d}m"


class EtaEstimator:
    """Seconds left, from the rate at which `done` grew so far.

    The rate is an exponential average over intervals of at least `min_interval_s` (half-weight
    after `half_life_s` of work), so a slow or fast moment moves it, not throws it. No ETA until
    `min_seconds` of work and `min_intervals` intervals are measured. `pause()` stops the clock:
    paused time never counts, and the rate from before carries on after `resume()`. Work that goes
    backwards (a restart) starts the measurement over.
    """

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        min_seconds: float = 2.0,
        min_intervals: int = 2,
        min_interval_s: float = 0.25,
        half_life_s: float = 10.0,
    ) -> None:
        self.clock = clock
        self.min_seconds = min_seconds
        self.min_intervals = min_intervals
        self.min_interval_s = min_interval_s
        self.half_life_s = half_life_s
        self.reset()

    def reset(self) -> None:
        self.rate: float | None = None  # units per second
        self.measured_s = 0.0
        self.intervals = 0
        self.paused = False
        self._anchor: tuple[float, float] | None = None  # (time, done) the next interval starts from
        self._done = 0.0
        self._total = 0.0

    def pause(self) -> None:
        self.paused = True
        self._anchor = None

    def resume(self) -> None:
        self.paused = False
        self._anchor = None  # the next update starts a fresh interval: the pause is not measured

    @property
    def ready(self) -> bool:
        return (
            not self.paused
            and self.rate is not None
            and self.rate > 0
            and self.measured_s >= self.min_seconds
            and self.intervals >= self.min_intervals
        )

    def update(self, done: float, total: float) -> float | None:
        """Fold in the work done so far; the seconds left, or None while there is not enough signal."""
        now = self.clock()
        if self._anchor is not None and done < self._anchor[1]:
            self.reset()
        self._done, self._total = done, total
        if self.paused:
            return None
        if self._anchor is None:
            self._anchor = (now, done)
            return self.eta()
        start, done_then = self._anchor
        elapsed = now - start
        if elapsed < self.min_interval_s:
            return self.eta()
        rate = (done - done_then) / elapsed
        if self.rate is None:
            self.rate = rate
        else:
            weight = 1.0 - 0.5 ** (elapsed / self.half_life_s)
            self.rate += weight * (rate - self.rate)
        self.measured_s += elapsed
        self.intervals += 1
        self._anchor = (now, done)
        return self.eta()

    def eta(self) -> float | None:
        """Seconds left at the current rate (0 when done), or None while not `ready`."""
        if self._total > 0 and self._done >= self._total:
            return 0.0
        if not self.ready:
            return None
        assert self.rate is not None
        return max(0.0, (self._total - self._done) / self.rate)


class ProgressTracker:
    """A loop's report(done, total, unit, part, parts) calls → ProgressRecords with an ETA, sent to `sink`.

    At most one record per `every_s`, but always the first and the last of each part; a new part
    (or unit, or total) starts the ETA over, as its pace differs.
    """

    def __init__(
        self,
        label: str,
        sink: ProgressSink,
        *,
        every_s: float = 0.5,
        clock: Clock = time.monotonic,
        min_seconds: float = 2.0,
    ) -> None:
        self.label = label
        self.sink = sink
        self.every_s = every_s
        self.clock = clock
        self.estimator = EtaEstimator(clock=clock, min_seconds=min_seconds)
        self._stage: tuple[str, int, int, int] | None = None
        self._last_sent = -math.inf
        self.last: ProgressRecord | None = None

    def __call__(self, done: int, total: int, unit: str, part: int = 1, parts: int = 1) -> None:
        stage = (unit, int(total), int(part), int(parts))
        first = stage != self._stage
        if first:
            self._stage = stage
            self.estimator.reset()
        eta = self.estimator.update(done, total)
        now = self.clock()
        if not (first or done >= total or now - self._last_sent >= self.every_s):
            return
        self._last_sent = now
        self.last = ProgressRecord(self.label, int(done), int(total), unit, eta, int(part), int(parts))
        self.sink(self.last)


class WeightedProgress:
    """Jobs of different estimated cost (e.g. seconds each) on one scale, with one ETA over all of them.

    `set(job, fraction)` says how far a job is (0..1). Where a job is first seen already partway
    (a resumed run), that part is not counted as work done now, so it does not inflate the rate.
    `settle(job)` takes a job's remaining work out of the plan (it failed or stopped).
    """

    def __init__(
        self, weights: Mapping[str, float], *, clock: Clock = time.monotonic, min_seconds: float = 2.0
    ) -> None:
        self.weights = {name: max(0.0, float(w)) for name, w in weights.items()}
        self.fractions: dict[str, float] = {}
        self._baseline = 0.0  # work that was done before it was seen
        self.estimator = EtaEstimator(clock=clock, min_seconds=min_seconds)

    @property
    def total(self) -> float:
        return sum(self.weights.values())

    @property
    def done(self) -> float:
        return sum(self.weights[name] * f for name, f in self.fractions.items())

    @property
    def fraction(self) -> float:
        total = self.total
        return min(1.0, self.done / total) if total > 0 else 1.0

    def set(self, job: str, fraction: float) -> None:
        if job not in self.weights:
            return
        fraction = min(1.0, max(0.0, float(fraction)))
        if job not in self.fractions:
            self._baseline += self.weights[job] * fraction
        elif fraction < self.fractions[job]:
            return  # progress never goes back
        self.fractions[job] = fraction
        self.estimator.update(self.done - self._baseline, self.total - self._baseline)

    def settle(self, job: str) -> None:
        if job not in self.weights:
            return
        fraction = self.fractions.get(job, 0.0)
        self.weights[job] *= fraction  # its done part stays done, the rest leaves the plan
        if job in self.fractions:
            self.fractions[job] = 1.0
        self.estimator.update(self.done - self._baseline, self.total - self._baseline)

    def eta_s(self) -> float | None:
        """Seconds left for every job, or None while the rate is not known yet."""
        return self.estimator.eta()

    def pause(self) -> None:
        self.estimator.pause()

    def resume(self) -> None:
        self.estimator.resume()
