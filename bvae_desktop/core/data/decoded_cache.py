"""A decoded copy of a compressed HDF5 image array: inflate it once, then read it at page-cache speed.

A gzip-chunked HDF5 dataset must inflate a whole chunk to return one image, so random batches crawl
(3D Shapes: 16-19 images/s against ~450 for the model). The first open decodes the dataset chunk by
chunk (a sequential read) into one raw file in the user's cache folder; later opens map that file
read-only and index it like an array in memory. Not a data source: importing it registers nothing.

The file: a HEADER_BYTES header (MAGIC, then JSON naming the source's resolved path, size, mtime_ns,
dataset key, shape and dtype, and a digest of sampled rows, zero-padded), then the rows, raw C order.
It is written beside its final name and renamed over it (core.atomic), under a lock file so that two
processes opening the same file (parallel runs) decode it once. It is trusted only when the header
matches the source as it is now, the length is exact and the sampled rows hash to the digest; a
changed source, a truncated or damaged copy or a half-built temp file is never read, only rebuilt.

Windows cannot replace or delete a file that is mapped. Maps opened in this process are closed before
a rebuild removes the old copy (they reopen lazily and refuse a copy that changed under them); a map
held by another process makes the rebuild give up with CacheUnavailable: the caller reads the source.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import time
import weakref
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from bvae_desktop.core.atomic import atomic_path, remove_stale_temp_files
from bvae_desktop.core.data.imageset import Progress
from bvae_desktop.core.errors import DatasetError, os_reason

CACHE_ENV = "BVAE_DESKTOP_CACHE"  # the app's cache folder; decoded copies go to its `datasets` sub-folder
APP_FOLDER = "bvae-desktop"
MAGIC = b"BVAE-DESKTOP decoded images\n"
FORMAT = 1
HEADER_BYTES = 4096
SPACE_MARGIN_BYTES = 1 << 30  # a copy is made only if this much stays free beside it
STEP_BYTES = 32 << 20  # decoded per step (a whole number of chunk rows): 3D Shapes reports every ~0.5%
SAMPLE_ROWS = 16  # rows hashed into the header, checked at every open
LOCK_STALE_S = 60.0  # a builder rewrites its lock at every step, far more often than this
LOCK_POLL_S = 0.25
_READ_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError)


class CacheUnavailable(Exception):
    """No decoded copy can be made or used now; the message names the folder, the room needed and why."""


class CacheWarning(UserWarning):
    """Warned when a source is read from its compressed file instead of a decoded copy (slow random access)."""


def cache_folder() -> Path:
    """Where decoded copies live: $BVAE_DESKTOP_CACHE/datasets, else the platform's user cache folder
    (Linux $XDG_CACHE_HOME or ~/.cache /bvae-desktop/datasets; macOS ~/Library/Caches/bvae-desktop/datasets;
    Windows %LOCALAPPDATA%\\bvae-desktop\\Cache\\datasets)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        base = Path(root)
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / APP_FOLDER / "Cache"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches" / APP_FOLDER
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / APP_FOLDER
    return base / "datasets"


def is_compressed(dataset: h5py.Dataset) -> bool:
    """Whether reading one row means running a filter (gzip, shuffle, ...) over a whole chunk."""
    return dataset.chunks is not None and dataset.id.get_create_plist().get_nfilters() > 0


@dataclass(frozen=True)
class SourceStamp:
    """What a decoded copy was made from: a different path, size, mtime, key or shape means another copy."""

    path: str
    size: int
    mtime_ns: int
    key: str
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, path: Path, key: str, shape: Iterable[int], dtype: np.dtype) -> SourceStamp:
        info = os.stat(path)
        return cls(str(path), info.st_size, info.st_mtime_ns, key, tuple(int(s) for s in shape), np.dtype(dtype).str)

    @classmethod
    def from_json(cls, data: object) -> SourceStamp | None:
        try:
            return cls(**{**data, "shape": tuple(data["shape"])})  # type: ignore[arg-type, index]
        except (TypeError, KeyError):
            return None

    @property
    def count(self) -> int:
        return self.shape[0]

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * np.dtype(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        return self.count * self.row_bytes


def cache_file(source: SourceStamp, folder: Path) -> Path:
    """One copy per source path and key: a rebuild for a changed file replaces it, never piles up."""
    digest = hashlib.sha256(f"{source.path}\0{source.key}".encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source.path).stem)[:40]
    return folder / f"{stem}-{digest}.decoded"


_OPEN_MAPS: weakref.WeakSet[MappedImages] = weakref.WeakSet()


class MappedImages:
    """Rows of a decoded copy through a read-only np.memmap, opened on first use (and again after
    unpickling or in a forked child), checked against the header it was trusted with when it reopens."""

    def __init__(self, path: Path, source: SourceStamp, digest: str) -> None:
        self.path = Path(path)
        self.source = source
        self._digest = digest
        self._map: np.memmap | None = None
        self._pid = -1
        _OPEN_MAPS.add(self)

    def _array(self) -> np.memmap:
        if self._map is None or self._pid != os.getpid():
            meta = _read_meta(self.path)
            if (
                meta is None
                or meta.get("digest") != self._digest
                or SourceStamp.from_json(meta.get("source")) != self.source
            ):
                raise DatasetError(
                    f"{self.path}: the decoded copy of {self.source.path} changed since it was opened; open the data again"
                )
            self._map = np.memmap(
                self.path, dtype=self.source.dtype, mode="r", offset=HEADER_BYTES, shape=self.source.shape
            )
            self._pid = os.getpid()
        return self._map

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """A copy of the rows at `indices` (any order, repeats allowed)."""
        return np.array(self._array()[indices])

    def block(self, start: int, stop: int) -> np.ndarray:
        return np.array(self._array()[start:stop])

    def close(self) -> None:
        """Drop the map (it unmaps once no copy refers to it): on Windows the file can then be replaced."""
        self._map = None

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_map": None, "_pid": -1}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        _OPEN_MAPS.add(self)


def close_maps_of(path: Path) -> None:
    """Close this process's maps of `path`, so the file can be deleted or replaced on Windows too."""
    for mapped in list(_OPEN_MAPS):
        if mapped.path == path:
            mapped.close()


def decoded_copy(
    path: str | Path, key: str, *, progress: Progress | None = None, folder: str | Path | None = None
) -> MappedImages:
    """The decoded copy of HDF5 dataset `key` in `path`: reused when valid, else built now, calling
    `progress(done, total)` at each step (it may raise to cancel: the half-built file is removed).

    Raises CacheUnavailable when no copy can be made (folder not writable, not enough free space,
    the old copy held open elsewhere): the caller then reads the source directly. A source that cannot
    be decoded raises DatasetError naming it.
    """
    source_path = Path(path).resolve()
    stamp = _source_stamp(source_path, key)
    folder = Path(folder) if folder is not None else cache_folder()
    target = cache_file(stamp, folder)
    for _attempt in range(3):
        digest = _trusted_digest(target, stamp)
        if digest is not None:
            return MappedImages(target, stamp, digest)
        lock = _BuildLock(target)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            acquired = lock.acquire()
        except OSError as exc:
            raise _unavailable(stamp, folder, f"cannot write there ({os_reason(exc)})") from None
        if not acquired:
            lock.wait(progress)  # another process is building it: use its copy when it is done
            continue
        try:
            return _build_locked(source_path, stamp, target, lock, progress)
        finally:
            lock.release()
    raise _unavailable(stamp, folder, "another process keeps rebuilding it")


def _source_stamp(path: Path, key: str) -> SourceStamp:
    try:
        with h5py.File(path, "r") as f:
            ds = f[key]
            return SourceStamp.of(path, key, ds.shape, ds.dtype)
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path}: cannot read '{key}' ({os_reason(exc)})") from exc


def _unavailable(stamp: SourceStamp, folder: Path, reason: str) -> CacheUnavailable:
    return CacheUnavailable(
        f"{stamp.path}: reading the compressed file directly (slow): no decoded copy "
        f"({_gb(stamp.nbytes + HEADER_BYTES)}) in {folder}: {reason}. "
        f"Set {CACHE_ENV} to a writable folder with room to make one."
    )


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _build_locked(
    source_path: Path, stamp: SourceStamp, target: Path, lock: _BuildLock, progress: Progress | None
) -> MappedImages:
    """With the lock held: free the old copy's space, check the room, decode, and trust what came out."""
    folder = target.parent
    digest = _trusted_digest(target, stamp)  # built by the lock's last holder while we looked
    if digest is not None:
        return MappedImages(target, stamp, digest)
    remove_stale_temp_files(folder, targets=[target.name], older_than_s=0.0)  # ours alone, under the lock
    close_maps_of(target)
    try:
        target.unlink(missing_ok=True)  # invalid anyway; its room counts towards the new copy
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise _unavailable(stamp, folder, f"the old copy cannot be removed ({os_reason(exc)})") from None
    need = HEADER_BYTES + stamp.nbytes
    if free < need + SPACE_MARGIN_BYTES:
        raise _unavailable(stamp, folder, f"only {_gb(free)} free, and {_gb(SPACE_MARGIN_BYTES)} must stay free")
    try:
        digest = _build(source_path, stamp, target, lock, progress)
    except OSError as exc:  # the copy's own writes: the disk filled up, the folder went away
        raise _unavailable(stamp, folder, f"writing it failed ({os_reason(exc)})") from None
    except MemoryError:
        raise _unavailable(stamp, folder, "not enough memory for a decoding step") from None
    if _source_stamp(source_path, stamp.key) != stamp:
        with contextlib.suppress(OSError):
            target.unlink()
        raise _unavailable(stamp, folder, "the file changed while it was decoded")
    return MappedImages(target, stamp, digest)


class _SourceReadError(Exception):
    """A decoding step failed on the source (kept apart from the copy's own write errors)."""


def _build(source_path: Path, stamp: SourceStamp, target: Path, lock: _BuildLock, progress: Progress | None) -> str:
    """Decode the source in whole chunk rows into a temp file, header last, renamed over `target`."""
    count, row_shape = stamp.count, stamp.shape[1:]
    sample = {int(i) for i in _sample_rows(count)}
    sampled: dict[int, bytes] = {}
    try:
        source = h5py.File(source_path, "r")
    except _READ_ERRORS as exc:
        raise DatasetError(f"{source_path}: cannot read '{stamp.key}' ({os_reason(exc)})") from exc
    with source, atomic_path(target) as tmp, open(tmp, "r+b") as out:
        ds = source[stamp.key]
        step = _step_rows(ds.chunks, count, stamp.row_bytes)
        buffer = np.empty((step, *row_shape), dtype=stamp.dtype)
        out.write(bytes(HEADER_BYTES))
        if progress is not None:
            progress(0, count)
        for start in range(0, count, step):
            stop = min(start + step, count)
            rows = buffer[: stop - start]
            try:
                ds.read_direct(rows, np.s_[start:stop], np.s_[0 : stop - start])
            except _READ_ERRORS as exc:
                raise DatasetError(
                    f"{source_path}: cannot decode '{stamp.key}' rows {start}-{stop - 1} ({os_reason(exc)})"
                ) from exc
            out.write(memoryview(rows).cast("B"))
            sampled.update({i: rows[i - start].tobytes() for i in sample if start <= i < stop})
            lock.report(stop, count)
            if progress is not None:
                progress(stop, count)
        digest = _digest(sampled[i] for i in sorted(sample))
        out.seek(0)
        out.write(_header(stamp, digest))
        out.flush()
    return digest


def _step_rows(chunks: tuple[int, ...] | None, count: int, row_bytes: int) -> int:
    """Rows per decoding step: whole chunk rows (each chunk inflated once), about STEP_BYTES of them."""
    chunk_rows = int(chunks[0]) if chunks else 1
    return min(count, chunk_rows * max(1, STEP_BYTES // max(1, chunk_rows * row_bytes)))


def _sample_rows(count: int) -> np.ndarray:
    return np.unique(np.linspace(0, count - 1, min(count, SAMPLE_ROWS)).round().astype(np.int64))


def _digest(rows: Iterable[bytes]) -> str:
    sha = hashlib.sha256()
    for row in rows:
        sha.update(row)
    return sha.hexdigest()


def _header(stamp: SourceStamp, digest: str) -> bytes:
    meta = {"format": FORMAT, "source": {**asdict(stamp), "shape": list(stamp.shape)}, "digest": digest}
    head = MAGIC + json.dumps(meta).encode("utf-8")
    if len(head) > HEADER_BYTES:
        raise OSError(f"header of {len(head)} bytes does not fit in {HEADER_BYTES} (path too long)")
    return head.ljust(HEADER_BYTES, b"\0")


def _read_meta(path: Path) -> dict | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER_BYTES)
    except OSError:
        return None
    if len(head) < HEADER_BYTES or not head.startswith(MAGIC):
        return None
    try:
        meta = json.loads(head[len(MAGIC) :].rstrip(b"\0").decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def _trusted_digest(path: Path, stamp: SourceStamp) -> str | None:
    """The copy's digest when it may be read for `stamp`: header, exact length and sampled rows all agree."""
    meta = _read_meta(path)
    if meta is None or SourceStamp.from_json(meta.get("source")) != stamp:
        return None
    try:
        if path.stat().st_size != HEADER_BYTES + stamp.nbytes:
            return None
        with open(path, "rb") as fh:
            rows = []
            for i in _sample_rows(stamp.count):
                fh.seek(HEADER_BYTES + int(i) * stamp.row_bytes)
                rows.append(fh.read(stamp.row_bytes))
    except OSError:
        return None
    digest = _digest(rows)
    return digest if digest == meta.get("digest") else None


class _BuildLock:
    """`NAME.lock` beside the copy, created exclusively; its holder writes "pid done total" at each step."""

    def __init__(self, target: Path) -> None:
        self.path = target.with_name(target.name + ".lock")

    def acquire(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        os.close(fd)
        self.report(0, 0)
        return True

    def report(self, done: int, total: int) -> None:
        with contextlib.suppress(OSError), open(self.path, "w", encoding="ascii") as fh:
            fh.write(f"{os.getpid()} {done} {total}\n")

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()

    def wait(self, progress: Progress | None) -> None:
        """Until the holder is done (or has gone quiet for LOCK_STALE_S: then its lock is removed),
        passing its progress on."""
        seen: tuple[int, int] | None = None
        while True:
            try:
                modified = self.path.stat().st_mtime
                parts = self.path.read_text(encoding="ascii").split()
            except FileNotFoundError:
                return
            except (OSError, ValueError):
                parts = []
            if time.time() - modified > LOCK_STALE_S:
                self.release()
                return
            if progress is not None and len(parts) == 3 and parts[2].isdigit() and int(parts[2]) > 0:
                now = (int(parts[1]), int(parts[2]))
                if now != seen:
                    progress(*now)
                    seen = now
            _sleep(LOCK_POLL_S)


_sleep = time.sleep  # tests replace it to act as the other builder
