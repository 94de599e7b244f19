"""HDF5 run log: one file per training run, with per-step metrics and the config as attributes.

Layout (``format`` attribute ``"bvae_desktop.runlog"``, ``format_version`` 1)::

    /                 attrs: format, format_version, latent_dim, created, resumed, config_json,
                             config_keys, one attr per scalar config entry (nested keys joined by "."),
                             torch_version, h5py_version, numpy_version, hdf5_version, python_version
    /train/step       int64   (n,)
    /train/<metric>   float64 (n,)     one per metric key ever logged; NaN where a row lacks the key
    /train/kl_per_dim float32 (n, latent_dim)
    /validation/step, /validation/<metric>
    /events/step, /events/beta, /events/beta_norm     (β changes made during training)

Every dataset is chunked and resizable along its first axis. No compression: a flush rewrites the
last, partial chunk, and a compressed chunk rewritten that way leaves its old space behind, so
compressed logs came out larger (and slower to write) than plain ones.

Reading while training runs (the design choice)
-----------------------------------------------
No SWMR. The writer does not keep the file open: rows are buffered in Python lists, and a flush
opens the file, appends every buffered row with one vectorised write per dataset, and closes it.
Between flushes the run log is a closed, complete HDF5 file. Consequences:

* Readers: any process may open the file at any time. HDF5's own file lock (``flock`` on Linux,
  ``h5py.File(..., locking="best-effort")``) keeps readers out during a flush and a flush out while
  a reader has the file open, so no reader ever sees a half-written flush.
* Writer preference: a hidden sidecar lock file ``.<name>.lock`` (present while a writer lives)
  is a turnstile. A flush that finds readers in the file keeps the turnstile shut, so no new
  reader enters, and retries on a later step once the current readers are done; readers pass the
  turnstile only while it is open. So readers polling in a tight loop cannot starve the writer.
  A training step never waits for a reader: a busy flush just keeps its rows buffered.
* A program that holds the file open for long (HDFView, an interactive h5py session) would block
  flushes forever. Once the turnstile has been shut for `FOREIGN_READER_SECONDS` (longer than
  any `read_runlog` takes), the writer writes past that lock, with a warning; that program then
  needs to reopen the file to see consistent data.
* New metric keys at any time: a flush creates the dataset (NaN for the earlier rows). SWMR forbids
  creating datasets once SWMR writing has started.
* Crashes: a crash between flushes loses only the buffered rows; everything flushed lies in a
  closed file. Only a crash inside the milliseconds of a flush can damage the file. Resuming after
  a crash works, because no "open for writing" flag is left behind (SWMR and the ``latest`` file
  format leave one, which h5py cannot clear without the ``h5clear`` tool).

Inside one process (trainer thread writing, GUI thread reading) a module-level lock also serialises
flushes and reads, because HDF5 shares one file handle per file inside a process. If file locks are
unavailable (``HDF5_USE_FILE_LOCKING=FALSE``, a file system without locks, Windows without
``fcntl``), reading still works but may rarely catch a flush half done: `read_runlog` trims each group
to its shortest dataset and retries a read that fails. Do not keep an ``h5py.File`` on a live run log
open inside the writing process: HDF5 refuses the writer's handle while it is open.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import logging
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5s

from bvae_desktop.core.atomic import atomic_path
from bvae_desktop.core.errors import BvaeError

try:
    import fcntl
except ImportError:  # Windows: no turnstile; HDF5's own locking still applies where it works
    fcntl = None  # type: ignore[assignment]

_log = logging.getLogger(__name__)

__all__ = ["RunHistory", "RunLog", "RunLogError", "export_csv", "read_runlog"]

FORMAT = "bvae_desktop.runlog"
FORMAT_VERSION = 1

TRAIN = "train"
VALIDATION = "validation"
EVENTS = "events"
GROUPS = (TRAIN, VALIDATION, EVENTS)

_STEP = "step"
_KL = "kl_per_dim"
_EVENT_KEYS = ("beta", "beta_norm")
_RESERVED_ATTRS = frozenset(
    {
        "format",
        "format_version",
        "latent_dim",
        "created",
        "resumed",
        "config_json",
        "config_keys",
        "torch_version",
        "h5py_version",
        "numpy_version",
        "hdf5_version",
        "python_version",
    }
)

_CHUNK_ROWS = 4096
_RETRY_SLEEP_S = 0.01
_RETRY_WHILE_DRAINING_S = 0.02  # a shut turnstile: retry the flush soon, readers are finishing
_DEFER_AFTER_BUSY_S = 0.25  # the turnstile itself was busy: retry later
_LOCKING = "best-effort"
_PENDING_WARNING_ROWS = 200_000
_TURNSTILE_WAIT_S = 0.25  # a reader waits at most this long at a shut turnstile (the writer may be idle)

#: Seconds the writer's turnstile may stay shut before a remaining file lock is taken to belong to a
#: long-lived foreign reader (HDFView, an open h5py session) and written past.
FOREIGN_READER_SECONDS = 30.0

# HDF5 shares one file handle per file inside a process, so file locks do not separate threads.
_PROCESS_LOCK = threading.RLock()


class RunLogError(BvaeError):
    """A run log cannot be read or written: missing, not HDF5, not a run log, busy, or mismatched."""


@dataclass
class RunHistory:
    config: dict
    latent_dim: int
    train: dict[str, np.ndarray] = field(default_factory=dict)  # includes "step" and "kl_per_dim"
    validation: dict[str, np.ndarray] = field(default_factory=dict)  # includes "step"
    beta_changes: dict[str, np.ndarray] = field(default_factory=dict)  # step, beta, beta_norm


class _Busy(Exception):
    """The file is held by someone else right now (a lock, or another open handle)."""


class _TornRead(Exception):
    """Reading failed after the file opened; worth one more try."""


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _is_busy(exc: OSError) -> bool:
    if isinstance(exc, BlockingIOError):
        return True
    text = str(exc).lower()
    return "lock" in text or "already open" in text


def _gate_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


class _Turnstile:
    """The writer's side of the sidecar lock: shut (exclusive flock) while a flush waits or runs."""

    def __init__(self, path: Path) -> None:
        self.path = _gate_path(path)
        self.fd: int | None = None
        self.shut_since: float | None = None
        if fcntl is not None:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                self.fd = None

    def shut(self) -> bool:
        """Shut the turnstile (no new readers); False if someone is passing it right now."""
        if self.fd is None or self.shut_since is not None:
            return True
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        self.shut_since = time.monotonic()
        return True

    def shut_waiting(self, deadline: float) -> bool:
        while not self.shut():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)
        return True

    def open(self) -> None:
        if self.fd is not None and self.shut_since is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.shut_since = None

    def stuck(self) -> bool:
        """Shut for so long that a remaining file lock cannot be one of our short reads."""
        return self.shut_since is not None and time.monotonic() - self.shut_since >= FOREIGN_READER_SECONDS

    def dispose(self) -> None:
        self.open()
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.fd = None


def _pass_turnstile(path: Path, deadline: float) -> None:
    """Reader side: wait while a writer has the turnstile shut (until `deadline`, then go on anyway)."""
    if fcntl is None:
        return
    try:
        fd = os.open(_gate_path(path), os.O_RDONLY)
    except OSError:
        return  # no live writer
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                if time.monotonic() >= deadline:
                    return
                time.sleep(0.002)
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                return
    finally:
        os.close(fd)


@contextlib.contextmanager
def _open_h5(path: Path, mode: str, *, timeout: float, force: Callable[[], bool] | None = None) -> Iterator[h5py.File]:
    """Open `path` under the process lock and the HDF5 file lock, retrying while it is busy.

    `force()` returning True lets a writer open past another process's file lock (see the module doc).
    """
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        remaining = deadline - time.monotonic()
        if not _PROCESS_LOCK.acquire(timeout=max(0.0, remaining)):
            raise _Busy
        try:
            try:
                fh = h5py.File(path, mode, locking=_LOCKING)
            except OSError as exc:
                if not _is_busy(exc):
                    raise
                fh = None
                if isinstance(exc, BlockingIOError) and force is not None and force():
                    _log.warning(
                        "Run log %s has been held open by another program for over %g s; writing anyway. "
                        "That program must reopen the file to see the new rows.",
                        path,
                        FOREIGN_READER_SECONDS,
                    )
                    fh = h5py.File(path, mode, locking=False)
            if fh is not None:
                try:
                    yield fh
                finally:
                    fh.close()
                return
        finally:
            _PROCESS_LOCK.release()
        if time.monotonic() >= deadline:
            raise _Busy
        time.sleep(_RETRY_SLEEP_S)


def _open_error(path: Path, exc: BaseException) -> RunLogError:
    if isinstance(exc, FileNotFoundError) or not path.exists():
        return RunLogError(f"Run log {path} does not exist.")
    if path.is_dir():
        return RunLogError(f"Run log {path} is a folder, not a file.")
    if isinstance(exc, _Busy):
        return RunLogError(f"Run log {path} is busy (another program holds it open); try again.")
    return RunLogError(f"Run log {path} is not a readable HDF5 file ({exc}).")


def _check_format(fh: h5py.File, path: Path) -> int:
    if fh.attrs.get("format") != FORMAT:
        raise RunLogError(f"{path} is an HDF5 file but not a bvae_desktop run log (no format={FORMAT!r} attribute).")
    version = int(fh.attrs.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise RunLogError(f"Run log {path} has format version {version}; this program reads up to {FORMAT_VERSION}.")
    try:
        return int(fh.attrs["latent_dim"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RunLogError(f"Run log {path} has no valid latent_dim attribute.") from exc


def _flat_scalars(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat_scalars(value, name + "."))
        elif isinstance(value, (bool, int, float, str, np.bool_, np.integer, np.floating)):
            out[name] = value
        elif isinstance(value, Path):
            out[name] = str(value)
    return out


def _library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"h5py_version": h5py.__version__, "numpy_version": np.__version__}
    versions["hdf5_version"] = h5py.version.hdf5_version
    versions["python_version"] = platform.python_version()
    torch = sys.modules.get("torch")  # already imported by the trainer; no need to import it here
    if torch is not None:
        versions["torch_version"] = str(getattr(torch, "__version__", "unknown"))
    else:
        try:
            versions["torch_version"] = metadata.version("torch")
        except metadata.PackageNotFoundError:
            versions["torch_version"] = "not installed"
    return versions


def _write_config(fh: h5py.File, config: Mapping[str, Any]) -> None:
    for old in json.loads(fh.attrs.get("config_keys", "[]")):
        if old in fh.attrs and old not in _RESERVED_ATTRS:
            del fh.attrs[old]
    fh.attrs["config_json"] = json.dumps(config, sort_keys=True, default=str)
    written = []
    for name, value in _flat_scalars(config).items():
        if name in _RESERVED_ATTRS or "/" in name:
            continue
        fh.attrs[name] = value
        written.append(name)
    fh.attrs["config_keys"] = json.dumps(written)


def _new_1d(group: h5py.Group, name: str, dtype: Any, length: int, fill: float) -> h5py.Dataset:
    return group.create_dataset(
        name,
        shape=(length,),
        maxshape=(None,),
        dtype=dtype,
        chunks=(_CHUNK_ROWS,),
        fillvalue=fill,
    )


def _new_kl(group: h5py.Group, latent_dim: int) -> h5py.Dataset:
    rows = max(1, min(_CHUNK_ROWS, (1 << 14) // latent_dim))  # about 64 KiB a chunk
    return group.create_dataset(
        _KL,
        shape=(0, latent_dim),
        maxshape=(None, latent_dim),
        dtype=np.float32,
        chunks=(rows, latent_dim),
        fillvalue=np.nan,
    )


def _check_metric_name(key: str) -> str:
    if not isinstance(key, str) or not key or "/" in key or key in (".", _STEP, _KL):
        raise ValueError(f"Metric name {key!r} cannot be logged (empty, contains '/', or reserved).")
    return key


def _append(ds: h5py.Dataset, values: np.ndarray) -> None:
    """Grow `ds` along axis 0 by `values` (low-level calls: about half the cost of ``resize`` + slicing)."""
    values = np.ascontiguousarray(values, dtype=ds.dtype)
    if values.shape[0] == 0:
        return
    dsid = ds.id
    n = dsid.shape[0]
    dsid.set_extent((n + values.shape[0], *values.shape[1:]))
    file_space = dsid.get_space()
    file_space.select_hyperslab((n,) + (0,) * (values.ndim - 1), values.shape)
    dsid.write(h5s.create_simple(values.shape), file_space, values)


def _group_length(group: h5py.Group) -> int:
    return int(group[_STEP].shape[0]) if _STEP in group else 0


class _Buffer:
    """Rows waiting for a flush. Metrics are kept as (key tuple, value tuple) pairs; consecutive rows
    with the same keys share one key tuple, so a flush turns each run of them into one 2-D array."""

    __slots__ = ("keys", "kl", "last_keys", "steps", "values")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.keys: list[tuple[str, ...]] = []
        self.values: list[tuple[float, ...]] = []
        self.kl: list[np.ndarray] = []
        self.last_keys: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, metrics: Mapping[str, float]) -> None:
        keys = tuple(metrics)
        if keys != self.last_keys:
            for key in keys:
                _check_metric_name(key)
            self.last_keys = keys
        self.steps.append(int(step))
        self.keys.append(self.last_keys)
        self.values.append(tuple(map(float, metrics.values())))

    def clear(self) -> None:
        self.steps.clear()
        self.keys.clear()
        self.values.clear()
        self.kl.clear()

    def keep_through(self, step: int) -> None:
        keep = [i for i, s in enumerate(self.steps) if s <= step]
        self.steps = [self.steps[i] for i in keep]
        self.keys = [self.keys[i] for i in keep]
        self.values = [self.values[i] for i in keep]
        if self.kl:
            self.kl = [self.kl[i] for i in keep]

    def columns(self) -> dict[str, np.ndarray]:
        """One float64 column per metric key; NaN where a row lacks the key."""
        n = len(self.steps)
        out: dict[str, np.ndarray] = {}
        start = 0
        while start < n:
            keys = self.keys[start]
            end = start + 1
            while end < n and self.keys[end] is keys:
                end += 1
            block = np.array(self.values[start:end], dtype=np.float64).reshape(end - start, len(keys))
            for j, key in enumerate(keys):
                column = out.get(key)
                if column is None:
                    column = out[key] = np.full(n, np.nan)
                column[start:end] = block[:, j]
            start = end
        return out


class RunLog:
    """Per-step metrics as growing datasets; config as attributes.

    Use as a context manager or call `close`. The file is only open during `flush` (see the module
    docstring), so readers may open it at any time.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        config: dict,
        latent_dim: int,
        flush_seconds: float = 2.0,
        flush_rows: int = 500,
        lock_timeout: float = 10.0,
    ) -> None:
        self.path = Path(path)
        if int(latent_dim) < 1:
            raise ValueError(f"latent_dim must be at least 1, got {latent_dim}.")
        self.latent_dim = int(latent_dim)
        self.flush_seconds = float(flush_seconds)
        self.flush_rows = max(1, int(flush_rows))
        self.lock_timeout = float(lock_timeout)
        self._buffers = {TRAIN: _Buffer(), VALIDATION: _Buffer(), EVENTS: _Buffer()}
        self._pending = 0
        self._closed = False
        self._last_flush = time.monotonic()
        self._next_try = 0.0
        self._warned_pending = False
        self._gate = _Turnstile(self.path)
        try:
            if self.path.exists() and self.path.stat().st_size > 0:  # an empty file (e.g. mkstemp) is new
                self._reopen(config)
            else:
                self._create(config)
        except BaseException:
            self._gate.dispose()
            raise

    # -- file set-up -------------------------------------------------------------------------------

    def _create(self, config: dict) -> None:
        # Build the skeleton in a temporary file and rename it: a reader never sees half a file.
        with atomic_path(self.path) as tmp, h5py.File(tmp, "w", locking=False) as fh:
            fh.attrs["format"] = FORMAT
            fh.attrs["format_version"] = FORMAT_VERSION
            fh.attrs["latent_dim"] = self.latent_dim
            fh.attrs["created"] = _now_iso()
            fh.attrs["resumed"] = "[]"
            for name, value in _library_versions().items():
                fh.attrs[name] = value
            _write_config(fh, config)
            train = fh.create_group(TRAIN)
            _new_1d(train, _STEP, np.int64, 0, -1)
            _new_kl(train, self.latent_dim)
            _new_1d(fh.create_group(VALIDATION), _STEP, np.int64, 0, -1)
            events = fh.create_group(EVENTS)
            _new_1d(events, _STEP, np.int64, 0, -1)
            for key in _EVENT_KEYS:
                _new_1d(events, key, np.float64, 0, np.nan)

    def _reopen(self, config: dict) -> None:
        try:
            with self._writing(self.lock_timeout) as fh:
                found = _check_format(fh, self.path)
                if found != self.latent_dim:
                    raise RunLogError(
                        f"Run log {self.path} was written with latent_dim={found}, not {self.latent_dim}; "
                        "use a new log file for a different model."
                    )
                for name in GROUPS:
                    if name not in fh:
                        raise RunLogError(f"Run log {self.path} lacks the group '{name}'.")
                resumed = json.loads(fh.attrs.get("resumed", "[]"))
                resumed.append(_now_iso())
                fh.attrs["resumed"] = json.dumps(resumed)
                for name, value in _library_versions().items():
                    fh.attrs[name] = value
                _write_config(fh, config)
        except RunLogError:
            raise
        except (_Busy, OSError) as exc:
            raise _open_error(self.path, exc) from exc

    @contextlib.contextmanager
    def _writing(self, timeout: float, *, keep_shut_if_busy: bool = False) -> Iterator[h5py.File]:
        """The file open for writing, with the turnstile shut; raises _Busy when readers hold it."""
        deadline = time.monotonic() + max(0.0, timeout)
        if not self._gate.shut_waiting(deadline):
            raise _Busy
        busy = False
        try:
            remaining = max(0.0, deadline - time.monotonic())
            with _open_h5(self.path, "r+", timeout=remaining, force=self._gate.stuck) as fh:
                yield fh
        except _Busy:
            busy = True
            raise
        finally:
            if not (busy and keep_shut_if_busy):
                self._gate.open()

    # -- appending ---------------------------------------------------------------------------------

    def append_step(self, step: int, metrics: dict[str, float], kl_per_dim: Sequence[float] | np.ndarray) -> None:
        self._check_open()
        kl = np.array(kl_per_dim, dtype=np.float32).reshape(-1)
        if kl.shape[0] != self.latent_dim:
            raise ValueError(f"kl_per_dim has {kl.shape[0]} values; this run log has latent_dim={self.latent_dim}.")
        buf = self._buffers[TRAIN]
        buf.add(step, metrics)
        buf.kl.append(kl)
        self._pending += 1
        self._maybe_flush()

    def append_validation(self, step: int, metrics: dict[str, float]) -> None:
        self._check_open()
        self._buffers[VALIDATION].add(step, metrics)
        self._pending += 1
        self._maybe_flush()

    def record_beta_change(self, step: int, beta: float, beta_norm: float) -> None:
        self._check_open()
        self._buffers[EVENTS].add(step, {"beta": beta, "beta_norm": beta_norm})
        self._pending += 1
        self._maybe_flush()

    @property
    def pending_rows(self) -> int:
        """Rows buffered in memory, not yet on disk."""
        return self._pending

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if now < self._next_try:
            return
        if not (self._pending >= self.flush_rows or now - self._last_flush >= self.flush_seconds):
            return
        # Never block a training step on a reader: if the file is busy, keep the rows buffered and
        # keep the turnstile shut so that the readers inside finish and no new ones enter.
        if self._flush(timeout=0.0, keep_shut_if_busy=True):
            return
        draining = self._gate.shut_since is not None
        self._next_try = time.monotonic() + (_RETRY_WHILE_DRAINING_S if draining else _DEFER_AFTER_BUSY_S)
        if self._pending >= _PENDING_WARNING_ROWS and not self._warned_pending:
            self._warned_pending = True
            _log.warning("Run log %s could not be written for a while; %d rows are buffered.", self.path, self._pending)

    # -- flushing ----------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write every buffered row to the file (waiting up to `lock_timeout` for readers)."""
        self._check_open()
        if not self._flush(timeout=self.lock_timeout):
            raise RunLogError(
                f"Run log {self.path} stayed busy for {self.lock_timeout:g} s (another program holds it open); "
                f"{self._pending} rows are still buffered."
            )

    def _flush(self, *, timeout: float, keep_shut_if_busy: bool = False) -> bool:
        if self._pending == 0:
            self._last_flush = time.monotonic()
            return True
        try:
            with self._writing(timeout, keep_shut_if_busy=keep_shut_if_busy) as fh:
                for name, buf in self._buffers.items():
                    if len(buf):
                        self._write_group(fh[name], buf)
                fh.flush()
        except _Busy:
            return False
        except (OSError, KeyError, RuntimeError) as exc:
            raise RunLogError(f"Cannot write run log {self.path}: {exc}") from exc
        for buf in self._buffers.values():
            buf.clear()
        self._pending = 0
        self._last_flush = time.monotonic()
        self._next_try = 0.0
        self._warned_pending = False
        return True

    def _write_group(self, group: h5py.Group, buf: _Buffer) -> None:
        n_old = _group_length(group)
        n_new = len(buf)
        columns = buf.columns()
        for key in sorted(columns):
            if key not in group:
                _new_1d(group, key, np.float64, n_old, np.nan)  # earlier rows read as NaN
        for key, ds in group.items():
            if key in (_STEP, _KL) or not isinstance(ds, h5py.Dataset):
                continue
            if ds.shape[0] != n_old:  # left longer by a flush that failed before writing "step"
                ds.resize(n_old, axis=0)
            column = columns.get(key)
            _append(ds, column if column is not None else np.full(n_new, np.nan))
        if buf.kl:
            kl = group[_KL]
            if kl.shape[0] != n_old:
                kl.resize(n_old, axis=0)
            _append(kl, np.stack(buf.kl))
        # Step last: a reader without locks trims to the shortest dataset, so rows appear whole.
        _append(group[_STEP], np.asarray(buf.steps, dtype=np.int64))

    # -- editing -----------------------------------------------------------------------------------

    def truncate_after(self, step: int) -> None:
        """Drop every row (on disk and buffered) whose step is greater than `step`, in every group."""
        self._check_open()
        step = int(step)
        for buf in self._buffers.values():
            buf.keep_through(step)
        self._pending = sum(len(b) for b in self._buffers.values())
        try:
            with self._writing(self.lock_timeout) as fh:
                for name in GROUPS:
                    group = fh[name]
                    n = _group_length(group)
                    steps = group[_STEP][:n]
                    keep = steps <= step
                    if keep.all():
                        continue
                    n_keep = int(keep.sum())
                    prefix = bool(keep[:n_keep].all())
                    for ds in group.values():
                        if not isinstance(ds, h5py.Dataset):
                            continue
                        if not prefix:
                            kept = ds[:n][keep]
                            ds.resize(n_keep, axis=0)
                            ds[:] = kept
                        else:
                            ds.resize(n_keep, axis=0)
                fh.flush()
        except _Busy as exc:
            raise RunLogError(
                f"Run log {self.path} stayed busy for {self.lock_timeout:g} s; cannot truncate it."
            ) from exc
        except (OSError, KeyError, RuntimeError) as exc:
            raise RunLogError(f"Cannot truncate run log {self.path}: {exc}") from exc

    # -- closing -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush and close; calling it again does nothing."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._gate.dispose()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RunLogError(f"Run log {self.path} is closed.")

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunLog({str(self.path)!r}, latent_dim={self.latent_dim}, pending_rows={self._pending})"


# -- reading ---------------------------------------------------------------------------------------


def _read_group(group: h5py.Group) -> dict[str, np.ndarray]:
    datasets = {k: v for k, v in group.items() if isinstance(v, h5py.Dataset)}
    if not datasets:
        return {}
    n = min(int(ds.shape[0]) for ds in datasets.values())
    return {k: ds[:n] for k, ds in datasets.items()}


def read_runlog(path: str | Path, *, timeout: float = 5.0) -> RunHistory:
    """Read a whole run log; safe while a `RunLog` is writing it (waits up to `timeout` for a flush)."""
    path = Path(path)
    if not path.exists():
        raise RunLogError(f"Run log {path} does not exist.")
    deadline = time.monotonic() + max(0.0, timeout)
    attempts = 3  # a read that fails after the file opened fine may have caught an unlocked flush
    while True:
        attempts -= 1
        _pass_turnstile(path, min(deadline, time.monotonic() + _TURNSTILE_WAIT_S))
        try:
            with _open_h5(path, "r", timeout=max(0.0, deadline - time.monotonic())) as fh:
                latent_dim = _check_format(fh, path)
                try:
                    config = json.loads(fh.attrs.get("config_json", "{}"))
                except (TypeError, ValueError) as exc:
                    raise RunLogError(f"Run log {path} has an unreadable config_json attribute.") from exc
                try:
                    groups = {name: _read_group(fh[name]) if name in fh else {} for name in GROUPS}
                except (OSError, KeyError, ValueError, RuntimeError) as exc:
                    if attempts > 0 and time.monotonic() < deadline:
                        raise _TornRead from exc
                    raise RunLogError(f"Run log {path} is damaged: {exc}") from exc
        except _TornRead:
            time.sleep(0.05)
            continue
        except RunLogError:
            raise
        except (_Busy, OSError) as exc:
            raise _open_error(path, exc) from exc
        break

    train = groups[TRAIN]
    train.setdefault(_STEP, np.zeros(0, dtype=np.int64))
    train.setdefault(_KL, np.zeros((0, latent_dim), dtype=np.float32))
    validation = groups[VALIDATION]
    validation.setdefault(_STEP, np.zeros(0, dtype=np.int64))
    events = groups[EVENTS]
    events.setdefault(_STEP, np.zeros(0, dtype=np.int64))
    for key in _EVENT_KEYS:
        events.setdefault(key, np.zeros(0, dtype=np.float64))
    return RunHistory(config=config, latent_dim=latent_dim, train=train, validation=validation, beta_changes=events)


# -- CSV export ------------------------------------------------------------------------------------

_GROUP_ALIASES = {TRAIN: TRAIN, VALIDATION: VALIDATION, EVENTS: EVENTS, "beta_changes": EVENTS}


def _cell(value: float) -> str:
    return "" if math.isnan(value) else repr(value)


def export_csv(path_h5: str | Path, csv_path: str | Path, *, group: str = "train") -> None:
    """Write one group as CSV, one row per step: ``step``, the metrics (sorted), then ``kl_0..`` for train.

    NaN (a metric missing at that step) is written as an empty cell. The file is written atomically.
    """
    if group not in _GROUP_ALIASES:
        raise ValueError(f"Unknown run log group {group!r}; choose one of {sorted(_GROUP_ALIASES)}.")
    history = read_runlog(path_h5)
    data = {TRAIN: history.train, VALIDATION: history.validation, EVENTS: history.beta_changes}[_GROUP_ALIASES[group]]
    steps = data[_STEP]
    metrics = sorted(k for k in data if k not in (_STEP, _KL))
    kl = data.get(_KL) if _GROUP_ALIASES[group] == TRAIN else None
    header = [_STEP, *metrics]
    if kl is not None:
        header += [f"kl_{i}" for i in range(kl.shape[1])]
    columns = [data[k].tolist() for k in metrics]
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for i, step in enumerate(steps.tolist()):
            row = [str(step), *(_cell(col[i]) for col in columns)]
            if kl is not None:
                row += [_kl_cell(v) for v in kl[i]]
            writer.writerow(row)


def _kl_cell(value: np.float32) -> str:
    """Shortest text that reads back as the same float32 (e.g. "0.1", not "0.10000000149011612")."""
    return "" if np.isnan(value) else str(value)
