"""HDF5 run log: one per training run, with per-step metrics and the config as attributes.

Files in the run folder
-----------------------
::

    runlog.h5                  the snapshot: a complete, closed HDF5 file. Never written in place: a
                               compaction builds a new one and renames it over the old (os.replace).
    .runlog.h5.journal         the rows logged since that snapshot, append only. Each compaction
                               replaces it with an empty one the same way; a closed log keeps it empty.
    .runlog.h5.XXXXXXXX.tmp    a snapshot (``..runlog.h5.journal.XXXXXXXX.tmp``: an empty journal)
                               being written; a kill may leave one behind: never read, and removed by
                               the next writer once a minute old.

Snapshot layout (``format`` attribute ``"bvae_desktop.runlog"``, ``format_version`` 2)::

    /                 attrs: format, format_version, latent_dim, created, resumed, config_json,
                             config_keys, one attr per scalar config entry (nested keys joined by "."),
                             torch_version, h5py_version, numpy_version, hdf5_version, python_version,
                             journal_id (hex), journal_seq (the last journal record this snapshot holds)
    /train/step       int64   (n,)
    /train/<metric>   float64 (n,)     one per metric key ever logged; NaN where a row lacks the key
    /train/kl_per_dim float32 (n, latent_dim)
    /validation/step, /validation/<metric>
    /events/step, /events/beta, /events/beta_norm     (β changes made during training)

Datasets are chunked and resizable, as in format 1, so h5py users may still edit a copy.
Format 1 (written in place by earlier versions) is read, and rewritten as format 2 by the first
writer that opens it (a resume). Of a format-1 file damaged by a full disk, whatever HDF5 can still
read is kept (rows never written, read as step -1 or as zeros, are left out); one HDF5 cannot open at
all is renamed ``runlog.h5.damaged-<time>`` and a new log is started.

Journal layout: a 32-byte header: ``b"BVAERLJ1"``, the 16-byte log id (the snapshot's
``journal_id``), the base (u64: the ``journal_seq`` of the snapshot it follows). Then records:
``b"RLJr"``, payload length (u32), CRC32 of the payload (u32), payload. Payload: seq (u64), kind (u8:
train, validation, β event, truncate), step (i64), k (u16), m (u16), k float32 KL values, m float64
metric values, the m metric names as a JSON list. Records are numbered base+1, base+2, ... and the
numbers go on across journals for the life of the log id.

Why this design (issue 15)
--------------------------
Format 1 appended into the live file in place. A disk that filled mid-flush left HDF5 unable to write
its metadata; h5py then failed while freeing objects (errno 28, then SIGSEGV) and left a file with
rows past its end ("addr overflow"); the retried flush wrote rows twice, and a resume could not
truncate it. A lock-file turnstile kept readers out during those writes. Format 2 is crash-safe by
construction instead, and needs no locks (hence no fcntl, which Windows lacks):

* HDF5 never writes to disk. A snapshot is built in memory (the core driver, no backing store), and
  its bytes are written by Python into a temporary file, fsync'd and renamed over ``runlog.h5``. A
  full disk is an ``OSError`` from ``os.write`` before the rename: the old snapshot stays untouched
  and the temporary file is removed. A kill leaves either the old or the new snapshot, whole.
* Between compactions, rows go to the journal: one ``os.write`` per flush, fsync'd at `flush` (the
  trainer flushes before every checkpoint). A torn or garbage tail (kill or full disk mid-write) fails
  its length or CRC check and is ignored; the writer cuts it off. A failed append is cut off at once
  (``ftruncate``, which frees space, so it works on a full disk); if even that fails, the journal is
  set aside until the next compaction replaces it.
* The writer keeps every row in memory (about 130 bytes a row: 13 MB for 100k steps), so a failed
  write loses nothing: it logs one warning, keeps the rows, and retries at the next flush.
* Readers read the snapshot's bytes in one go (a rename cannot tear them), then the journal's, and
  take the records numbered from ``journal_seq`` + 1 on. A journal whose base is past ``journal_seq``
  (or a missing journal while the snapshot changed) means a compaction came between the two reads:
  read again. So every read is a whole prefix of the history, and never a shorter one than a read
  before it. No reader holds a file open for longer than one read, so a rename on Windows (which
  fails while the target is open) rarely meets one; it is retried briefly, else left to the next
  compaction: the journal holds the rows meanwhile (a journal that cannot be replaced is appended to).
* Not SWMR: SWMR forbids creating datasets once writing started (metric keys appear mid-run), needs
  the ``latest`` file format, leaves an "open for writing" flag behind after a kill (cleared only by
  the ``h5clear`` tool), and still writes in place, so a full disk can still damage the file.

Cost, measured on this project's shared 2-core machine (local SSD) for 100,000 train rows of 10
metrics and 10 KL values, plus 100 validation rows: a compaction (a 13 MB snapshot) takes 0.04-0.07 s,
0.02-0.025 s to build it in memory and 0.02-0.045 s to write, fsync and rename it (plus a one-off
0.3 s to turn 100k rows logged since the last one into columns); `read_runlog` of it takes 0.02-0.035
s, 0.1 s with 5,000 more rows in the journal; an append costs about 10 µs a row, journal writes
included (format 1: 20 µs). So compactions are throttled rather than made rare: an
automatic one at most every `flush_seconds`, and never taking over 5 % of the time (spaced 20 times
their own duration apart); `flush` always compacts a log of up to 20,000 rows (0.03-0.045 s here),
a longer one by the 5 % rule; in between, the fsync'd journal holds the rows up to a checkpoint.
`truncate_after` (a resume) drops rows past a step and, among rows with the same step (a crash that
repeated them), keeps the last, so each step appears once.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import errno
import io
import json
import logging
import math
import os
import platform
import re
import secrets
import struct
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from bvae_desktop.core.atomic import atomic_path
from bvae_desktop.core.errors import BvaeError

_log = logging.getLogger(__name__)

__all__ = ["RunHistory", "RunLog", "RunLogError", "export_csv", "read_runlog"]

FORMAT = "bvae_desktop.runlog"
FORMAT_VERSION = 2

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
        "journal_id",
        "journal_seq",
    }
)

_CHUNK_ROWS = 4096
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_RETRY_SLEEP_S = 0.01
_SMALL_LOG_ROWS = 20_000  # flush() always compacts a log this small (30-45 ms here, see the module doc)
_COMPACTION_DUTY = 0.05  # otherwise compactions take at most this share of the time
_FIRST_RETRY_S = 1.0  # after a failed write, automatic flushes wait this long, doubling ...
_LAST_RETRY_S = 30.0  # ... up to this
_STALE_TEMP_S = 60.0
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")
_O_BINARY = getattr(os, "O_BINARY", 0)
_FSYNC_FATAL = {errno.ENOSPC, errno.EIO, getattr(errno, "EDQUOT", errno.ENOSPC)}

_JOURNAL_MAGIC = b"BVAERLJ1"
_JOURNAL_BASE = struct.Struct("<Q")  # the journal_seq of the snapshot this journal continues
_JOURNAL_HEADER = len(_JOURNAL_MAGIC) + 16 + _JOURNAL_BASE.size
_RECORD = struct.Struct("<4sII")  # magic, payload length, CRC32 of the payload
_RECORD_MAGIC = b"RLJr"
_BODY = struct.Struct("<QBqHH")  # seq, kind, step, number of KL values, number of metrics
_KINDS = {TRAIN: 1, VALIDATION: 2, EVENTS: 3}
_KIND_GROUPS = {kind: name for name, kind in _KINDS.items()}
_TRUNCATE = 4


class RunLogError(BvaeError):
    """A run log cannot be read or written: missing, not HDF5, not a run log, or mismatched."""


class _Damaged(RunLogError):
    """An HDF5 file that HDF5 cannot open at all (a writer moves it aside and starts afresh)."""


@dataclass
class RunHistory:
    config: dict
    latent_dim: int
    train: dict[str, np.ndarray] = field(default_factory=dict)  # includes "step" and "kl_per_dim"
    validation: dict[str, np.ndarray] = field(default_factory=dict)  # includes "step"
    beta_changes: dict[str, np.ndarray] = field(default_factory=dict)  # step, beta, beta_norm


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _journal_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.journal")


def _reason(exc: BaseException) -> str:
    """A short reason for a message that already names the file ("No space left on device")."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _check_metric_name(key: str) -> str:
    if not isinstance(key, str) or not key or "/" in key or key in (".", _STEP, _KL):
        raise ValueError(f"Metric name {key!r} cannot be logged (empty, contains '/', or reserved).")
    return key


# -- rows in memory --------------------------------------------------------------------------------


class _Buffer:
    """Rows not yet turned into columns. Consecutive rows with the same keys share one key tuple,
    so `columns` turns each run of them into one 2-D array."""

    __slots__ = ("keys", "kl", "last_keys", "steps", "values")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.keys: list[tuple[str, ...]] = []
        self.values: list[tuple[float, ...]] = []
        self.kl: list[np.ndarray] = []
        self.last_keys: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, keys: tuple[str, ...], values: tuple[float, ...], kl: np.ndarray | None) -> None:
        if keys != self.last_keys:
            self.last_keys = keys
        self.steps.append(step)
        self.keys.append(self.last_keys)
        self.values.append(values)
        if kl is not None:
            self.kl.append(kl)

    def clear(self) -> None:
        self.steps.clear()
        self.keys.clear()
        self.values.clear()
        self.kl.clear()

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


class _Table:
    """One group's rows: numpy columns plus a tail of newer rows, merged on demand (a compaction, a read)."""

    def __init__(self, kl_dim: int | None, required: Sequence[str] = ()) -> None:
        self.kl_dim = kl_dim
        self.required = tuple(required)
        self.steps = np.zeros(0, dtype=np.int64)
        self.columns: dict[str, np.ndarray] = {key: np.zeros(0) for key in self.required}
        self.kl = np.zeros((0, kl_dim), dtype=np.float32) if kl_dim else None
        self.tail = _Buffer()

    def __len__(self) -> int:
        return len(self.steps) + len(self.tail)

    def load(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Take the columns read from a snapshot (already trimmed to one length)."""
        self.steps = np.asarray(arrays.get(_STEP, np.zeros(0)), dtype=np.int64)
        n = len(self.steps)
        self.columns = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items() if k not in (_STEP, _KL)}
        for key in self.required:
            self.columns.setdefault(key, np.full(n, np.nan))
        if self.kl_dim:
            kl = arrays.get(_KL)
            if kl is None or kl.ndim != 2 or kl.shape[1] != self.kl_dim:
                kl = np.full((n, self.kl_dim), np.nan, dtype=np.float32)
            self.kl = np.asarray(kl, dtype=np.float32)
        self.tail.clear()

    def add(self, step: int, keys: tuple[str, ...], values: tuple[float, ...], kl: np.ndarray | None) -> None:
        if self.kl_dim and (kl is None or kl.shape != (self.kl_dim,)):
            kl = np.full(self.kl_dim, np.nan, dtype=np.float32)
        self.tail.add(step, keys, values, kl if self.kl_dim else None)

    def consolidate(self) -> None:
        n_new = len(self.tail)
        if not n_new:
            return
        n_old = len(self.steps)
        new = self.tail.columns()
        for key in new.keys() - self.columns.keys():
            self.columns[key] = np.full(n_old, np.nan)  # earlier rows read as NaN
        for key, column in self.columns.items():
            extra = new.get(key)
            self.columns[key] = np.concatenate([column, extra if extra is not None else np.full(n_new, np.nan)])
        self.steps = np.concatenate([self.steps, np.asarray(self.tail.steps, dtype=np.int64)])
        if self.kl is not None:
            self.kl = np.concatenate([self.kl, np.stack(self.tail.kl).astype(np.float32, copy=False)])
        self.tail.clear()

    def arrays(self) -> dict[str, np.ndarray]:
        self.consolidate()
        out = {_STEP: self.steps, **self.columns}
        if self.kl is not None:
            out[_KL] = self.kl
        return out

    def keep_through(self, step: int) -> bool:
        """Drop rows past `step`, and all but the last row of each step; True if any went."""
        self.consolidate()
        keep = _rows_to_keep(self.steps, step)
        if len(keep) == len(self.steps):
            return False
        self.steps = self.steps[keep]
        self.columns = {k: v[keep] for k, v in self.columns.items()}
        if self.kl is not None:
            self.kl = self.kl[keep]
        return True


def _rows_to_keep(steps: np.ndarray, step: int) -> np.ndarray:
    """Indices of the rows with step <= `step`, the last of each step only, in their order."""
    candidates = np.flatnonzero(steps <= step)[::-1]
    _, first = np.unique(steps[candidates], return_index=True)
    return np.sort(candidates[first])


def _new_tables(latent_dim: int) -> dict[str, _Table]:
    return {TRAIN: _Table(latent_dim), VALIDATION: _Table(None), EVENTS: _Table(None, _EVENT_KEYS)}


# -- the snapshot (runlog.h5) ----------------------------------------------------------------------


@dataclass
class _Snapshot:
    attrs: dict[str, Any]
    latent_dim: int
    version: int
    log_id: bytes | None
    seq: int
    groups: dict[str, dict[str, np.ndarray]]


def _read_bytes(path: Path, deadline: float) -> bytes:
    """The whole file in one go; retries while Windows refuses it during a rename."""
    while True:
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise RunLogError(f"Run log {path} does not exist.") from exc
        except IsADirectoryError as exc:
            raise RunLogError(f"Run log {path} is a folder, not a file.") from exc
        except PermissionError as exc:
            if path.is_dir():
                raise RunLogError(f"Run log {path} is a folder, not a file.") from exc
            if time.monotonic() >= deadline:
                raise RunLogError(f"Run log {path} cannot be read ({_reason(exc)}).") from exc
        except OSError as exc:
            raise RunLogError(f"Run log {path} cannot be read ({_reason(exc)}).") from exc
        time.sleep(_RETRY_SLEEP_S)


def _has_hdf5_signature(data: bytes) -> bool:
    offset = 0
    while offset + len(_HDF5_SIGNATURE) <= len(data):
        if data[offset : offset + len(_HDF5_SIGNATURE)] == _HDF5_SIGNATURE:
            return True
        offset = 512 if offset == 0 else offset * 2
    return False


def _open_image(data: bytes, path: Path) -> tuple[h5py.File, bool]:
    """Open file bytes with HDF5, and say whether they had to be padded: a file cut short (a format-1
    log on a full disk) is padded with 0xFF up to its recorded end, so that unwritten addresses read as
    "undefined" and unwritten steps as -1."""
    if not _has_hdf5_signature(data):
        raise RunLogError(f"Run log {path} is not a readable HDF5 file (no HDF5 signature).")
    try:
        return h5py.File(io.BytesIO(data), "r"), False
    except (OSError, RuntimeError, ValueError) as exc:
        found = re.search(r"stored_eof = (\d+)", str(exc))
        stored_eof = int(found.group(1)) if found else 0
        if not len(data) < stored_eof <= max(64 * len(data), 1 << 26):
            raise _Damaged(f"Run log {path} is damaged: HDF5 cannot open it ({_reason(exc)}).") from exc
    try:
        return h5py.File(io.BytesIO(data + b"\xff" * (stored_eof - len(data))), "r"), True
    except (OSError, RuntimeError, ValueError) as exc:
        raise _Damaged(f"Run log {path} is damaged: HDF5 cannot open it ({_reason(exc)}).") from exc


def _check_format(fh: h5py.File, path: Path) -> tuple[int, int]:
    """(format version, latent_dim) of a run log, or RunLogError."""
    if fh.attrs.get("format") != FORMAT:
        raise RunLogError(f"{path} is an HDF5 file but not a bvae_desktop run log (no format={FORMAT!r} attribute).")
    version = int(fh.attrs.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise RunLogError(f"Run log {path} has format version {version}; this program reads up to {FORMAT_VERSION}.")
    try:
        return version, int(fh.attrs["latent_dim"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RunLogError(f"Run log {path} has no valid latent_dim attribute.") from exc


def _read_rows(ds: h5py.Dataset, n: int, *, strict: bool) -> np.ndarray:
    """The first `n` rows. Where HDF5 fails to read a block (a damaged format-1 file), `strict` stops
    there (for steps: the rows after are unknown); otherwise the block reads as NaN."""
    try:
        return ds[:n]
    except (OSError, RuntimeError, ValueError, KeyError):
        pass
    block = ds.chunks[0] if ds.chunks else _CHUNK_ROWS
    parts = []
    for start in range(0, n, block):
        stop = min(n, start + block)
        try:
            parts.append(ds[start:stop])
        except (OSError, RuntimeError, ValueError, KeyError):
            if strict:
                break
            parts.append(np.full((stop - start, *ds.shape[1:]), np.nan, dtype=ds.dtype))
    if not parts:
        return np.zeros((0, *ds.shape[1:]), dtype=ds.dtype)
    return np.concatenate(parts)


def _read_group(group: h5py.Group, *, format1: bool) -> dict[str, np.ndarray]:
    """Every dataset, trimmed to the shortest (a format-1 flush cut short wrote "step" last)."""
    datasets = {k: v for k, v in group.items() if isinstance(v, h5py.Dataset) and v.ndim in (1, 2)}
    if _STEP not in datasets:
        return {}
    n = min(int(ds.shape[0]) for ds in datasets.values())
    out = {_STEP: _read_rows(datasets.pop(_STEP), n, strict=True)}
    n = len(out[_STEP])
    for key, ds in datasets.items():
        if ds.dtype.kind == "f" and (ds.ndim == 1 or key == _KL):
            out[key] = _read_rows(ds, n, strict=False)
    if format1:
        out = _drop_unwritten(out)
    return out


def _drop_unwritten(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Format 1 written in place on a full disk: rows whose chunks never reached the disk read as the
    fill value (step -1) or, in a sparse file, as zero bytes throughout. Neither is a logged row."""
    steps = arrays[_STEP]
    if not len(steps):
        return arrays
    blank = (steps == 0) & (len(arrays) > 1)
    for key, values in arrays.items():
        if key != _STEP:
            blank &= (values == 0).reshape(len(steps), -1).all(axis=1)
    keep = (steps >= 0) & ~blank
    if keep.all():
        return arrays
    _log.info("Run log: left out %d unwritten rows of an interrupted format-1 write.", int((~keep).sum()))
    return {k: v[keep] for k, v in arrays.items()}


_READER_ATTRS = ("format", "format_version", "latent_dim", "config_json", "journal_id", "journal_seq")


def _parse_snapshot(data: bytes, path: Path, *, all_attrs: bool) -> _Snapshot:
    """The snapshot's rows and attributes (all of them for a writer; a reader's few are faster to get)."""
    fh, padded = _open_image(data, path)
    try:
        with fh:
            version, latent_dim = _check_format(fh, path)
            names = list(fh.attrs) if all_attrs else [k for k in _READER_ATTRS if k in fh.attrs]
            attrs = {key: fh.attrs[key] for key in names}
            groups = {name: _read_group(fh[name], format1=version < 2) if name in fh else {} for name in GROUPS}
    except _Damaged:
        raise
    except RunLogError as exc:
        if padded:  # a file cut short whose attributes were lost: damaged, not foreign
            raise _Damaged(f"Run log {path} is damaged: it was cut short ({exc})") from exc
        raise
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:  # HDF5 failing inside the file
        raise _Damaged(f"Run log {path} is damaged: {_reason(exc)}") from exc
    log_id, seq = _journal_link(attrs) if version >= 2 else (None, 0)
    return _Snapshot(attrs, latent_dim, version, log_id, seq, groups)


def _journal_link(attrs: Mapping[str, Any]) -> tuple[bytes | None, int]:
    """(log id, last journal record held) from a snapshot's attributes; (None, 0) if unreadable."""
    try:
        log_id = bytes.fromhex(str(attrs["journal_id"]))
        seq = int(attrs["journal_seq"])
    except (KeyError, TypeError, ValueError):
        return None, 0
    return (log_id, seq) if len(log_id) == 16 and seq >= 0 else (None, 0)


def _load_snapshot(path: Path, deadline: float, *, all_attrs: bool = False) -> _Snapshot:
    return _parse_snapshot(_read_bytes(path, deadline), path, all_attrs=all_attrs)


def _build_image(attrs: Mapping[str, Any], groups: Mapping[str, Mapping[str, np.ndarray]]) -> bytes:
    """A whole run log as bytes, made in memory: HDF5 itself never writes to the disk."""
    name = f"bvae-runlog-{uuid.uuid4().hex}.h5"  # in-memory files are told apart by name
    size = sum(a.nbytes for arrays in groups.values() for a in arrays.values())
    block = 1 << max(16, min(24, int(size).bit_length()))
    with h5py.File(name, "w", driver="core", backing_store=False, block_size=block) as fh:
        for key, value in attrs.items():
            fh.attrs[key] = value
        for group_name, arrays in groups.items():
            group = fh.create_group(group_name)
            for key, values in arrays.items():
                _put_dataset(group, key, values)
        fh.flush()
        return bytes(fh.id.get_file_image())


def _put_dataset(group: h5py.Group, key: str, values: np.ndarray) -> None:
    rows = min(_CHUNK_ROWS, max(256, 1 << int(len(values)).bit_length()))
    if key == _STEP:
        dtype, fill = np.int64, -1
    elif key == _KL:
        dtype, fill = np.float32, np.nan
        rows = max(1, min(rows, (1 << 14) // max(1, values.shape[1])))  # about 64 KiB a chunk
    else:
        dtype, fill = np.float64, np.nan
    group.create_dataset(
        key,
        data=np.ascontiguousarray(values, dtype=dtype),
        maxshape=(None, *values.shape[1:]),
        chunks=(rows, *values.shape[1:]),
        fillvalue=fill,
    )


# -- writing bytes (the only places that touch the disk; tests inject faults here) ----------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _journal_write(fd: int, data: bytes) -> None:
    _write_all(fd, data)


def _snapshot_write(fd: int, data: bytes) -> None:
    _write_all(fd, data)


def _fsync(fd: int) -> None:
    """A full disk or an I/O error means the data is not there; a file system that cannot fsync is no reason to fail."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno in _FSYNC_FATAL:
            raise


def _fsync_folder(folder: Path) -> None:
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _replace(source: Path, target: Path, deadline: float) -> None:
    """os.replace, retried while Windows refuses it (a reader has the target open) until `deadline`."""
    while True:
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if os.name != "nt" or time.monotonic() >= deadline:  # elsewhere a rename ignores readers
                raise
        time.sleep(_RETRY_SLEEP_S)


def _save_image(
    path: Path, image: bytes, *, replace_timeout: float = 0.0, write: Callable[[int, bytes], None] | None = None
) -> None:
    """Write `image` beside `path` and rename it over; on any error the temporary file goes and `path` stays."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)  # the umask applies, as for open()
    try:
        try:
            (write or _snapshot_write)(fd, image)
            _fsync(fd)
        finally:
            os.close(fd)
        _replace(tmp, path, time.monotonic() + replace_timeout)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_folder(path.parent)


def _remove_stale_temps(path: Path) -> None:
    """Temporary files that a killed writer left (over a minute old, so none being written now)."""
    cutoff = time.time() - _STALE_TEMP_S
    targets = {path.name, _journal_path(path).name}
    with contextlib.suppress(OSError), os.scandir(path.parent) as entries:
        for entry in entries:
            match = _TEMP_NAME.match(entry.name)
            if match is None or match.group("target") not in targets:
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)


# -- the journal -----------------------------------------------------------------------------------


@dataclass
class _Record:
    seq: int
    kind: int
    step: int
    keys: tuple[str, ...]
    values: tuple[float, ...]
    kl: np.ndarray | None
    end: int  # offset just past this record in the journal


def _encode(seq: int, kind: int, step: int, metrics: tuple[tuple[str, ...], tuple[float, ...]], kl: Any) -> bytes:
    keys, values = metrics
    kl_bytes = b"" if kl is None else np.asarray(kl, dtype="<f4").tobytes()
    payload = b"".join(
        (
            _BODY.pack(seq, kind, step, len(kl_bytes) // 4, len(values)),
            kl_bytes,
            struct.pack(f"<{len(values)}d", *values),
            _keys_json(keys),
        )
    )
    return _RECORD.pack(_RECORD_MAGIC, len(payload), zlib.crc32(payload)) + payload


_KEY_CACHE: dict[Any, Any] = {}  # key tuple <-> its JSON bytes; a run has few distinct key sets


def _cache(key: Any, value: Any) -> Any:
    if len(_KEY_CACHE) > 1024:
        _KEY_CACHE.clear()
    _KEY_CACHE[key] = value
    return value


def _keys_json(keys: tuple[str, ...]) -> bytes:
    found = _KEY_CACHE.get(keys)
    if found is None:
        found = _cache(keys, json.dumps(list(keys), separators=(",", ":")).encode())
    return found


def _keys_from_json(raw: bytes) -> tuple[str, ...]:
    found = _KEY_CACHE.get(raw)
    if found is None:
        keys = json.loads(raw) if raw else []
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError("not a run log record")
        found = _cache(raw, tuple(keys))  # one shared tuple per key set keeps _Buffer.columns fast
    return found


def _journal_header(log_id: bytes, base: int) -> bytes:
    return _JOURNAL_MAGIC + log_id + _JOURNAL_BASE.pack(base)


def _decode_records(data: bytes, log_id: bytes) -> tuple[int, list[_Record]] | None:
    """(the journal's base, every record up to the first torn or garbage one); None if not this log's."""
    if len(data) < _JOURNAL_HEADER or data[: len(_JOURNAL_MAGIC)] != _JOURNAL_MAGIC:
        return None
    if data[len(_JOURNAL_MAGIC) : len(_JOURNAL_MAGIC) + 16] != log_id:
        return None
    (base,) = _JOURNAL_BASE.unpack_from(data, len(_JOURNAL_MAGIC) + 16)
    records: list[_Record] = []
    offset = _JOURNAL_HEADER
    while offset + _RECORD.size <= len(data):
        magic, length, crc = _RECORD.unpack_from(data, offset)
        end = offset + _RECORD.size + length
        if magic != _RECORD_MAGIC or end > len(data) or length < _BODY.size:
            break
        payload = data[offset + _RECORD.size : end]
        if zlib.crc32(payload) != crc:
            break
        try:
            records.append(_decode_payload(payload, end))
        except (ValueError, TypeError, UnicodeDecodeError, struct.error):
            break
        offset = end
    return base, records


def _decode_payload(payload: bytes, end: int) -> _Record:
    seq, kind, step, n_kl, n_values = _BODY.unpack_from(payload)
    kl_end = _BODY.size + 4 * n_kl
    values_end = kl_end + 8 * n_values
    if values_end > len(payload) or kind not in (*_KIND_GROUPS, _TRUNCATE):
        raise ValueError("not a run log record")
    kl = np.frombuffer(payload, dtype="<f4", count=n_kl, offset=_BODY.size).astype(np.float32) if n_kl else None
    values = struct.unpack_from(f"<{n_values}d", payload, kl_end)
    keys = _keys_from_json(payload[values_end:])
    if len(keys) != len(values):
        raise ValueError("not a run log record")
    return _Record(seq, kind, step, keys, values, kl, end)


def _records_after(base: int, records: list[_Record], seq: int) -> tuple[list[_Record], int, bool]:
    """(the records numbered seq+1, seq+2, ... in a row; the journal offset after them; whether the
    journal is newer than a snapshot at `seq`, i.e. a compaction came between reading the two)."""
    out: list[_Record] = []
    end = _JOURNAL_HEADER
    if base > seq:
        return out, end, True
    for record in records:
        if record.seq <= seq and not out:
            end = record.end
            continue
        if record.seq != seq + len(out) + 1:
            return out, end, not out
        out.append(record)
        end = record.end
    return out, end, False


def _replay(tables: Mapping[str, _Table], records: Iterable[_Record]) -> None:
    for record in records:
        if record.kind == _TRUNCATE:
            for table in tables.values():
                table.keep_through(record.step)
        else:
            tables[_KIND_GROUPS[record.kind]].add(record.step, record.keys, record.values, record.kl)


def _read_journal_bytes(path: Path) -> bytes | None:
    try:
        return _journal_path(path).read_bytes()
    except OSError:
        return None


class _Journal:
    """The writer's handle on the journal. Appends go at a known good end only; a failed append is
    cut off again, and if that fails too the journal is set aside until the next `start`."""

    def __init__(self, path: Path, log_id: bytes) -> None:
        self.path = _journal_path(path)
        self.log_id = log_id
        self.fd: int | None = None
        self.end = 0
        self.error: OSError | None = None  # why the last append or start failed

    @property
    def usable(self) -> bool:
        return self.fd is not None

    def resume(self, valid_end: int) -> bool:
        """Append to the journal on disk after `valid_end`, cutting off a torn tail."""
        self.drop()
        try:
            fd = os.open(self.path, os.O_RDWR | _O_BINARY)
        except OSError as exc:
            self.error = exc
            return False
        try:
            os.ftruncate(fd, valid_end)
        except OSError as exc:
            self.error = exc
            os.close(fd)
            return False
        self.fd, self.end = fd, valid_end
        return True

    def start(self, base: int) -> bool:
        """Replace the journal with an empty one following the snapshot at `base` (atomically, so a
        reader holding the old one reads it whole). If that fails, appends go on in the old one."""
        end, had_fd = self.end, self.fd is not None
        self.drop()  # Windows cannot rename over a file that is open, even by us
        try:
            _save_image(self.path, _journal_header(self.log_id, base), write=_journal_write)
            return self.resume(_JOURNAL_HEADER)
        except OSError as exc:
            self.error = exc
            return had_fd and self.resume(end)

    def append(self, data: bytes) -> bool:
        assert self.fd is not None
        try:
            os.lseek(self.fd, self.end, os.SEEK_SET)
            _journal_write(self.fd, data)
        except OSError as exc:
            self.error = exc
            try:
                os.ftruncate(self.fd, self.end)
            except OSError:
                self.drop()  # bytes of unknown state past self.end: append no more until start()
            return False
        self.end += len(data)
        return True

    def sync(self) -> bool:
        if self.fd is None:
            return False
        try:
            _fsync(self.fd)
        except OSError:
            return False
        return True

    def drop(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


# -- attributes ------------------------------------------------------------------------------------


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


def _set_config(attrs: dict[str, Any], config: Mapping[str, Any]) -> None:
    try:
        old_keys = json.loads(str(attrs.get("config_keys", "[]")))
    except ValueError:
        old_keys = []
    for old in old_keys:
        if old not in _RESERVED_ATTRS:
            attrs.pop(old, None)
    attrs["config_json"] = json.dumps(config, sort_keys=True, default=str)
    written = []
    for name, value in _flat_scalars(config).items():
        if name in _RESERVED_ATTRS or "/" in name:
            continue
        attrs[name] = value
        written.append(name)
    attrs["config_keys"] = json.dumps(written)


def _resumed_list(attrs: Mapping[str, Any]) -> list:
    try:
        resumed = json.loads(str(attrs.get("resumed", "[]")))
    except ValueError:
        return []
    return resumed if isinstance(resumed, list) else []


# -- the writer ------------------------------------------------------------------------------------


class _Trouble:
    """Failures of one kind of write: one warning per spell of them, and automatic retries that wait
    longer each time (1 s, doubling up to 30 s), so a full disk costs little while it lasts."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.failures = 0
        self.retry_at = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.retry_at

    def hit(self, path: Path, exc: BaseException | None, rows: str) -> None:
        self.failures += 1
        self.retry_at = time.monotonic() + min(_LAST_RETRY_S, _FIRST_RETRY_S * 2 ** (self.failures - 1))
        if self.failures == 1:
            reason = _reason(exc) if exc is not None else "unknown error"
            _log.warning(self.message.format(path=path, reason=reason, rows=rows))

    def over(self, path: Path, what: str) -> None:
        if self.failures:
            _log.warning("Run log %s: %s is written again.", path, what)
        self.failures = 0
        self.retry_at = 0.0

    def wait_over(self) -> None:
        self.retry_at = 0.0


class RunLog:
    """Per-step metrics and the config of one run, written crash-safely (see the module docstring).

    Use as a context manager or call `close`. Appends never raise for a disk problem: the rows stay in
    memory and are written at a later flush. One writer per run log at a time.
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
        #: How long `close` retries renaming the last snapshot over one a reader holds open (Windows).
        self.lock_timeout = float(lock_timeout)
        self._lock = threading.RLock()
        self._tables = _new_tables(self.latent_dim)
        self._queue: list[tuple[int, int, tuple[tuple[str, ...], tuple[float, ...]], np.ndarray | None]] = []
        self._pending = 0
        self._seq = 0  # the last journal record number used
        self._dirty = True  # something the snapshot on disk lacks
        self._closed = False
        self._valid_keys: set[tuple[str, ...]] = set()
        self._last_flush = time.monotonic()
        self._last_compaction = 0.0
        self._compaction_s = 0.0
        self._journal_trouble = _Trouble("Cannot append to the journal of run log {path} ({reason}); {rows}")
        self._snapshot_trouble = _Trouble("Cannot rewrite run log {path} ({reason}); it stays as it was. {rows}")
        self._attrs: dict[str, Any] = {}
        self._log_id = uuid.uuid4().bytes
        self._journal = _Journal(self.path, self._log_id)
        _remove_stale_temps(self.path)
        if self.path.exists() and (self.path.is_dir() or self.path.stat().st_size > 0):  # empty (mkstemp): new
            self._open_existing(config)
        else:
            self._create(config)

    # -- opening -----------------------------------------------------------------------------------

    def _create(self, config: dict, *, resumed: Sequence[str] = ()) -> None:
        self._attrs = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "latent_dim": self.latent_dim,
            "created": _now_iso(),
            "resumed": json.dumps(list(resumed)),
            **_library_versions(),
        }
        _set_config(self._attrs, config)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_snapshot(replace_timeout=self.lock_timeout)
        except (OSError, RuntimeError, ValueError, TypeError) as exc:
            raise RunLogError(f"Cannot create run log {self.path} ({_reason(exc)}).") from exc
        self._journal.start(self._seq)

    def _open_existing(self, config: dict) -> None:
        try:
            snapshot = _load_snapshot(self.path, time.monotonic() + self.lock_timeout, all_attrs=True)
        except _Damaged as exc:
            self._set_aside(exc, config)
            return
        if snapshot.latent_dim != self.latent_dim:
            raise RunLogError(
                f"Run log {self.path} was written with latent_dim={snapshot.latent_dim}, not {self.latent_dim}; "
                "use a new log file for a different model."
            )
        for name, table in self._tables.items():
            table.load(snapshot.groups.get(name, {}))
        self._attrs = dict(snapshot.attrs)
        self._attrs.update(
            format_version=FORMAT_VERSION,
            resumed=json.dumps([*_resumed_list(snapshot.attrs), _now_iso()]),
            **_library_versions(),
        )
        _set_config(self._attrs, config)
        if snapshot.log_id is not None:
            self._take_over_journal(snapshot)
        if not self._compact(replace_timeout=self.lock_timeout) and snapshot.log_id is None:
            _log.warning("Run log %s is kept in format %d until it can be rewritten.", self.path, snapshot.version)

    def _take_over_journal(self, snapshot: _Snapshot) -> None:
        """Adopt the log id and replay the journal's records after the snapshot; cut off a torn tail."""
        self._log_id = snapshot.log_id
        self._journal = _Journal(self.path, self._log_id)
        self._seq = snapshot.seq
        data = _read_journal_bytes(self.path)
        decoded = _decode_records(data, self._log_id) if data is not None else None
        if decoded is None:
            self._journal.start(self._seq)
            return
        tail, end, newer = _records_after(*decoded, snapshot.seq)
        if newer:  # not after this snapshot (someone put an older one back): of no use
            self._journal.start(self._seq)
            return
        _replay(self._tables, tail)
        if tail:
            self._seq = tail[-1].seq
        self._journal.resume(end)

    def _set_aside(self, exc: RunLogError, config: dict) -> None:
        """A run log HDF5 cannot open at all: keep it under another name and start a new one."""
        aside = self.path.with_name(f"{self.path.name}.damaged-{_dt.datetime.now():%Y%m%d-%H%M%S}")
        try:
            os.replace(self.path, aside)
        except OSError as move_exc:
            raise RunLogError(f"{exc} It cannot be moved aside either ({_reason(move_exc)}).") from move_exc
        _log.warning("%s Moved it to %s and started a new run log.", exc, aside.name)
        self._create(config, resumed=[_now_iso()])

    # -- appending ---------------------------------------------------------------------------------

    def append_step(self, step: int, metrics: dict[str, float], kl_per_dim: Sequence[float] | np.ndarray) -> None:
        kl = np.array(kl_per_dim, dtype=np.float32).reshape(-1)
        if kl.shape[0] != self.latent_dim:
            raise ValueError(f"kl_per_dim has {kl.shape[0]} values; this run log has latent_dim={self.latent_dim}.")
        self._add(TRAIN, step, metrics, kl)

    def append_validation(self, step: int, metrics: dict[str, float]) -> None:
        self._add(VALIDATION, step, metrics, None)

    def record_beta_change(self, step: int, beta: float, beta_norm: float) -> None:
        self._add(EVENTS, step, {"beta": beta, "beta_norm": beta_norm}, None)

    def _add(self, group: str, step: int, metrics: Mapping[str, float], kl: np.ndarray | None) -> None:
        with self._lock:
            self._check_open()
            keys = tuple(metrics)
            if keys not in self._valid_keys:
                for key in keys:
                    _check_metric_name(key)
                self._valid_keys.add(keys)
            row = (keys, tuple(map(float, metrics.values())))
            step = int(step)
            self._tables[group].add(step, *row, kl)
            self._queue.append((_KINDS[group], step, row, kl))
            self._pending += 1
            self._dirty = True
            self._maybe_flush()

    @property
    def pending_rows(self) -> int:
        """Rows held only in memory: neither in the journal nor in the snapshot yet."""
        return self._pending

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if self._pending < self.flush_rows and now - self._last_flush < self.flush_seconds:
            return
        self._write_out(sync=False, compact=self._compaction_due(now, floor=self.flush_seconds), eager=False)

    def _compaction_due(self, now: float, *, floor: float = 0.0) -> bool:
        """Whether a compaction now keeps compactions under their share of the time (and `floor` apart)."""
        spacing = max(floor, self._compaction_s / _COMPACTION_DUTY)
        return now - self._last_compaction >= spacing

    # -- flushing ----------------------------------------------------------------------------------

    def flush(self) -> bool:
        """Put every row on disk (journal fsync'd; a fresh snapshot when affordable, see the module doc).

        Returns False, with a warning logged once, when the disk refused: the rows stay in memory and
        the next flush retries. Never raises for a disk problem, so a checkpoint can follow regardless.
        """
        with self._lock:
            self._check_open()
            cheap = sum(len(table) for table in self._tables.values()) <= _SMALL_LOG_ROWS
            return self._write_out(sync=True, compact=cheap or self._compaction_due(time.monotonic()), eager=True)

    def _write_out(self, *, sync: bool, compact: bool, eager: bool) -> bool:
        """Journal the queued rows, then compact when asked or when the journal failed (the only way
        left). After a failed write, automatic flushes wait before retrying it; an `eager` one (an
        explicit flush) retries at once."""
        now = self._last_flush = time.monotonic()
        journaled = self._append_journal() if eager or self._journal_trouble.ready(now) else not self._queue
        durable = journaled and (not sync or self._journal.sync() or not self._dirty)
        if (compact or not durable) and (eager or self._snapshot_trouble.ready(now)):
            durable = self._compact() or durable
        return durable

    def _append_journal(self) -> bool:
        if not self._queue:
            return True
        if not self._journal.usable:
            return False
        data = b"".join(_encode(self._seq + 1 + i, *entry) for i, entry in enumerate(self._queue))
        if self._journal.append(data):
            self._seq += len(self._queue)
            self._queue.clear()
            self._pending = 0
            self._journal_trouble.over(self.path, "its journal")
            return True
        if not self._journal.usable:
            self._seq += len(self._queue)  # those numbers may lie on disk: never reuse them
        self._journal_trouble.hit(self.path, self._journal.error, self._rows_note())
        return False

    def _compact(self, *, replace_timeout: float = 0.0) -> bool:
        """Rewrite the snapshot whole from memory, then start an empty journal; on failure the old
        snapshot stays as it was."""
        if not self._dirty:
            return True
        try:
            self._write_snapshot(replace_timeout=replace_timeout)
        except (OSError, RuntimeError, ValueError, TypeError) as exc:  # h5py's own errors are OSError or these
            self._snapshot_trouble.hit(self.path, exc, self._rows_note())
            return False
        self._snapshot_trouble.over(self.path, "it")
        if self._journal.start(self._seq):
            self._journal_trouble.wait_over()  # there was room for a whole snapshot: try the journal again
        return True

    def _write_snapshot(self, *, replace_timeout: float) -> None:
        start = time.perf_counter()
        arrays = {name: table.arrays() for name, table in self._tables.items()}
        attrs = {**self._attrs, "journal_id": self._log_id.hex(), "journal_seq": np.int64(self._seq)}
        _save_image(self.path, _build_image(attrs, arrays), replace_timeout=replace_timeout)
        self._queue.clear()
        self._pending = 0
        self._dirty = False
        self._last_compaction = time.monotonic()
        self._compaction_s = time.perf_counter() - start

    def _rows_note(self) -> str:
        if self._pending:
            return f"{self._pending} rows are held in memory until a later flush writes them."
        return "Its journal holds the newer rows meanwhile."

    # -- editing -----------------------------------------------------------------------------------

    def truncate_after(self, step: int) -> None:
        """Drop every row (on disk and buffered) whose step is greater than `step`, in every group, and
        repeated rows of one step but the last (left by a crash or a resume without truncation).

        Never fails for a disk problem: the change is kept in memory and written at the next flush.
        """
        with self._lock:
            self._check_open()
            step = int(step)
            changed = [table.keep_through(step) for table in self._tables.values()]
            if any(changed):
                self._queue = [entry for entry in self._queue if entry[1] <= step]
                self._queue.append((_TRUNCATE, step, ((), ()), None))
                self._pending = sum(1 for entry in self._queue if entry[0] != _TRUNCATE)
                self._dirty = True
            self.flush()

    # -- closing -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Write the last snapshot (the journal stays, empty); calling it again does nothing.

        If the snapshot cannot be written (a full disk), the journal keeps the rows, fsync'd, and the
        next writer or reader picks them up.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            compacted = self._compact(replace_timeout=self.lock_timeout)
            if not compacted:
                self._append_journal()
                self._journal.sync()
            self._journal.drop()
            if not compacted and self._pending:
                _log.warning("Run log %s: %d rows could not be written and are lost.", self.path, self._pending)

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


def read_runlog(path: str | Path, *, timeout: float = 5.0) -> RunHistory:
    """Read a whole run log: the snapshot plus the journal's newer rows. Safe at any time, from any
    process, while a `RunLog` writes it; `timeout` bounds the retries when a compaction races the read."""
    path = Path(path)
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        snapshot = _load_snapshot(path, deadline)
        tail, complete = _journal_tail(path, snapshot, deadline)
        if complete or time.monotonic() >= deadline:
            break  # after the deadline: the snapshot alone, which is consistent, only older
        time.sleep(_RETRY_SLEEP_S)
    tables = _new_tables(snapshot.latent_dim)
    for name, table in tables.items():
        table.load(snapshot.groups.get(name, {}))
    _replay(tables, tail)
    try:
        config = json.loads(str(snapshot.attrs.get("config_json", "{}")))
    except ValueError as exc:
        raise RunLogError(f"Run log {path} has an unreadable config_json attribute.") from exc
    return RunHistory(
        config=config,
        latent_dim=snapshot.latent_dim,
        train=tables[TRAIN].arrays(),
        validation=tables[VALIDATION].arrays(),
        beta_changes=tables[EVENTS].arrays(),
    )


def _journal_tail(path: Path, snapshot: _Snapshot, deadline: float) -> tuple[list[_Record], bool]:
    """The journal's records after the snapshot, and False if a compaction raced the read."""
    if snapshot.log_id is None:
        return [], True
    data = _read_journal_bytes(path)
    if data is None:  # none (a writer always leaves one): complete unless the snapshot changed meanwhile
        again = _load_snapshot(path, deadline)
        return [], (again.log_id, again.seq) == (snapshot.log_id, snapshot.seq)
    decoded = _decode_records(data, snapshot.log_id)
    if decoded is None:
        return [], True
    tail, _end, raced = _records_after(*decoded, snapshot.seq)
    return ([], False) if raced else (tail, True)


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
