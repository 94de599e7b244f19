"""Atomic writes: the mode the umask asks for, stale temporary files, a full disk at fsync."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import pytest

from bvae_desktop.core import atomic
from bvae_desktop.core.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    is_temp_file_name,
    remove_stale_temp_files,
)
from bvae_desktop.core.config import TrainConfig


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back (the mask is process-wide)."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_text(tmp_path / "a.txt", "hello")
    TrainConfig().save(tmp_path / "config.json")
    with atomic_path(tmp_path / "b.bin") as tmp, open(tmp, "wb") as fh:
        fh.write(b"x")
    for name in ("a.txt", "config.json", "b.bin"):
        assert _mode(tmp_path / name) == expected, name
    assert atomic.new_file_mode() == expected


def test_umask_is_read_without_changing_it(umask):
    umask(0o027)
    assert atomic.current_umask() == 0o027
    assert os.umask(0o027) == 0o027  # still what the test set


def _temp(folder: Path, target: str, age_s: float, suffix: str = "abcd_123") -> Path:
    path = folder / f".{target}.{suffix}.tmp"
    path.write_bytes(b"half a checkpoint")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_remove_stale_temp_files_removes_only_old_temp_files_of_ours(tmp_path):
    old_ckpt = _temp(tmp_path, "checkpoint.pt", 3600)
    old_log = _temp(tmp_path, "runlog.h5", 3600, "zz99yy88")
    fresh = _temp(tmp_path, "checkpoint.pt", 1, "new_0001")  # a write going on now
    keep = [tmp_path / "checkpoint.pt", tmp_path / ".hidden.tmp", tmp_path / ".checkpoint.pt.short.tmp"]
    for path in keep:
        path.write_bytes(b"user data")
        os.utime(path, (0, 0))
    sub = tmp_path / "sub"
    sub.mkdir()
    nested = _temp(sub, "checkpoint.pt", 3600)

    assert remove_stale_temp_files(tmp_path, targets=["checkpoint.pt"]) == [old_ckpt]
    assert old_log.exists() and fresh.exists()
    assert remove_stale_temp_files(tmp_path) == [old_log]
    assert fresh.exists() and nested.exists() and all(p.exists() for p in keep)
    assert remove_stale_temp_files(tmp_path, older_than_s=0, now=time.time() + 10) == [fresh]


def test_remove_stale_temp_files_on_a_missing_folder_is_empty(tmp_path):
    assert remove_stale_temp_files(tmp_path / "nowhere") == []


def test_the_names_atomic_path_uses_are_recognised(tmp_path):
    seen = []
    with atomic_path(tmp_path / "checkpoint.pt") as tmp:
        seen.append(tmp.name)
    assert is_temp_file_name(seen[0], ["checkpoint.pt"]) and not is_temp_file_name(seen[0], ["config.json"])


def test_killed_write_leaves_a_temp_file_that_is_cleaned(tmp_path):
    """A process killed inside atomic_path (simulated: the rename never happens) leaves its temp file."""
    context = atomic_path(tmp_path / "checkpoint.pt")
    tmp = context.__enter__()  # never exited, as after a kill
    tmp.write_bytes(b"partial")
    then = time.time() - 3600
    os.utime(tmp, (then, then))
    assert remove_stale_temp_files(tmp_path) == [tmp]
    assert list(tmp_path.iterdir()) == []


def test_full_disk_at_fsync_fails_the_write_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "c.bin"
    atomic_write_bytes(target, b"good")

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(target, b"new data the disk had no room for")
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"good" and [p.name for p in tmp_path.iterdir()] == ["c.bin"]


def test_fsync_unsupported_is_not_a_failure(tmp_path, monkeypatch):
    def fsync(fd):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "fsync", fsync)
    atomic_write_bytes(tmp_path / "c.bin", b"data")
    assert (tmp_path / "c.bin").read_bytes() == b"data"
