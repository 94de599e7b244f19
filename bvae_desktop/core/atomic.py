"""Atomic file writes: a crash mid-write never leaves a half-written file under the real name.

A temporary file `.NAME.XXXXXXXX.tmp` is written beside the target and renamed over it. It gets the
mode the user's umask asks for (0666 & ~umask), as a file written by any other program would:
mkstemp alone would leave every checkpoint, config, run log and .bvz file at 0600. A process killed
mid-write leaves its temporary file behind; `remove_stale_temp_files` clears those.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

# mkstemp names: prefix + 8 characters from this alphabet + suffix (see tempfile._RandomNameSequence)
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")
STALE_AFTER_S = 60.0  # a write in progress touches its file far more often than this
# fsync failures that mean the data did not reach the disk: never rename such a file over a good one
_FSYNC_FATAL = {errno.ENOSPC, errno.EIO, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _umask_from_proc() -> int | None:
    """The umask from /proc/self/status (Linux 4.7+): read without changing it, so no thread can race."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _umask_by_set_and_restore() -> int:
    """os.umask can only be read by setting it. The mask is process-wide, so a thread creating a file
    between the two calls would get 0o077: this runs once, at import (before any worker thread of
    ours exists), under a lock so two importers cannot interleave."""
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()
_IMPORT_UMASK = _umask_from_proc()
if _IMPORT_UMASK is None:
    _IMPORT_UMASK = _umask_by_set_and_restore()


def current_umask() -> int:
    """The process's umask: live from /proc where there is one, else the value read at import."""
    live = _umask_from_proc()
    return live if live is not None else int(_IMPORT_UMASK)


def new_file_mode() -> int:
    """The permission bits open() would give a new file: 0666 & ~umask."""
    return 0o666 & ~current_umask()


def new_folder_mode() -> int:
    """The permission bits mkdir() would give a new folder: 0777 & ~umask (mkdtemp makes 0700)."""
    return 0o777 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        _set_mode(fd, tmp, new_file_mode())
    finally:
        os.close(fd)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write a file through `write(fileobj)` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def is_temp_file_name(name: str, targets: Iterable[str] | None = None) -> bool:
    """Whether `name` is one of our temporary names (for one of `targets`, when given)."""
    match = _TEMP_NAME.match(name)
    if match is None:
        return False
    return targets is None or match.group("target") in set(targets)


def remove_stale_temp_files(
    folder: str | os.PathLike[str],
    *,
    targets: Iterable[str] | None = None,
    older_than_s: float = STALE_AFTER_S,
    now: float | None = None,
) -> list[Path]:
    """Delete temporary files a killed write left in `folder` (not its sub-folders); return what went.

    Only our own names are touched (`.NAME.XXXXXXXX.tmp`, NAME among `targets` when given), and only
    files untouched for `older_than_s` seconds, so a write going on right now (another process on the
    same run folder) keeps its file. A file that cannot be removed is left and not listed.
    """
    wanted = None if targets is None else set(targets)
    cutoff = (time.time() if now is None else now) - older_than_s
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed  # no folder, or one we cannot list: nothing of ours to clean
    for entry in entries:
        if not is_temp_file_name(entry.name, wanted):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_mtime > cutoff:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return sorted(removed)


def _set_mode(fd: int, path: Path, mode: int) -> None:
    """chmod the new file; where that is not possible (some network or Windows file systems) keep mkstemp's."""
    with contextlib.suppress(OSError, NotImplementedError):
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        else:  # Windows: only the read-only bit exists
            os.chmod(path, mode)


def _fsync_file(path: Path) -> None:
    """Flush to disk before the rename. A full disk or an I/O error is raised (the data is not there);
    a file system that cannot fsync at all (EINVAL and the like) is no reason to fail the write."""
    try:
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
    except OSError as exc:
        if exc.errno in _FSYNC_FATAL:
            raise
