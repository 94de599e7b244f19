"""3D Shapes through its decoded copy: the same pixels as the file, built once, rebuilt when the file or
the copy changes, never trusted half-built, and a fallback to the file itself (with a warning) when no
copy can be made. Small gzip-chunked files in the official layout stand in for the 5.9 GB one."""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections import namedtuple
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from bvae_desktop.core.data import decoded_cache, load_dataset
from bvae_desktop.core.data import shapes3d as shapes3d_module
from bvae_desktop.core.data.decoded_cache import CACHE_ENV, HEADER_BYTES, CacheWarning, cache_folder
from bvae_desktop.core.data.shapes3d import H5ImageSet, load_shapes3d
from bvae_desktop.core.errors import DatasetError

SIZES = (2, 2, 2, 2, 2, 3)
COUNT = 96
ROW = 64 * 64 * 3


def shapes_file(path: Path, seed: int = 0, **options: object) -> tuple[Path, np.ndarray]:
    """96 random images and their factor labels, gzip-chunked 5 images a chunk (the last one partial)."""
    classes = np.stack(np.unravel_index(np.arange(COUNT), SIZES), axis=1)
    labels = classes.astype(np.float64) / 2.0
    images = np.random.default_rng(seed).integers(0, 256, (COUNT, 64, 64, 3), dtype=np.uint8)
    layout = options or {"chunks": (5, 64, 64, 3), "compression": "gzip"}
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, **layout)
        f.create_dataset("labels", data=labels)
    return path, images


def chw(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 3, 1, 2)


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Decoded copies under tmp_path, decoded 10 images a step (so a build reports several steps)."""
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    monkeypatch.setattr(decoded_cache, "STEP_BYTES", 10 * ROW)
    return root / "datasets"


def open_recording(path: Path, **options: object) -> tuple[H5ImageSet, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []
    ds = load_shapes3d(path, progress=lambda done, total: calls.append((done, total)), **options)
    return ds, calls


def copies(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_decoded_copy_serves_the_files_pixels_and_reports_progress(tmp_path: Path, cache_root: Path) -> None:
    path, images = shapes_file(tmp_path / "3dshapes.h5")
    ds, calls = open_recording(path, cache=True)
    assert ds.decoded_path is not None and ds.decoded_path.parent == cache_root
    assert copies(cache_root) == [ds.decoded_path.name]  # no temp file, no lock left
    assert ds.decoded_path.stat().st_size == HEADER_BYTES + COUNT * ROW
    wanted = np.array([77, 3, 3, 0, 95, 4, 5, 6, 11, 94])  # unsorted, repeated, a run, the partial chunk
    batch = ds.batch(wanted)
    assert batch.dtype == torch.uint8 and batch.shape == (10, 3, 64, 64)
    assert np.array_equal(batch.numpy(), chw(images[wanted]))
    assert np.array_equal(ds.batch(np.arange(COUNT)).numpy(), chw(images))
    # progress: from 0, one call per 10-image step (whole chunks of 5), ending at the total
    assert calls == [(0, COUNT)] + [(min(n, COUNT), COUNT) for n in range(10, COUNT + 10, 10)]
    direct = load_shapes3d(path, cache=False)
    assert direct.decoded_path is None
    everything = np.arange(COUNT)
    assert np.array_equal(ds.factors.values_of(everything), direct.factors.values_of(everything))
    assert ds.factors.sizes == SIZES and ds.shape == (3, 64, 64) and len(ds) == COUNT
    assert ds.describe() == direct.describe()  # no note: nothing to warn about


def test_second_open_reuses_the_copy(tmp_path: Path, cache_root: Path) -> None:
    path, images = shapes_file(tmp_path / "3dshapes.h5")
    first, calls = open_recording(path, cache=True)
    assert calls
    before = first.decoded_path.stat()
    second, calls = open_recording(path, cache=True)
    assert calls == []  # not decoded again
    after = second.decoded_path.stat()
    assert second.decoded_path == first.decoded_path
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert np.array_equal(second.batch([9, 2]).numpy(), chw(images[[9, 2]]))


def test_pickled_set_reads_the_same_and_close_reopens(tmp_path: Path, cache_root: Path) -> None:
    path, images = shapes_file(tmp_path / "3dshapes.h5")
    ds = load_shapes3d(path, cache=True)
    assert np.array_equal(ds.batch([1]).numpy(), chw(images[[1]]))
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.decoded_path == ds.decoded_path and copy.factors.sizes == SIZES
    assert torch.equal(copy.batch([40, 2, 40]), ds.batch([40, 2, 40]))
    ds.close()
    assert np.array_equal(ds.batch([95, 0]).numpy(), chw(images[[95, 0]]))


@pytest.mark.parametrize("change", ["rewritten", "touched"])
def test_changed_source_rebuilds_and_old_sets_refuse_the_new_copy(
    tmp_path: Path, cache_root: Path, change: str
) -> None:
    path, images = shapes_file(tmp_path / "3dshapes.h5", seed=0)
    old, _ = open_recording(path, cache=True)
    old.batch([0])  # mapped now: the rebuild must close this map before it removes the file
    stamp = path.stat().st_mtime_ns
    if change == "rewritten":
        _, images = shapes_file(path, seed=1)  # same size and shape, other pixels
    os.utime(path, ns=(stamp + 2_000_000_000, stamp + 2_000_000_000))
    new, calls = open_recording(path, cache=True)
    assert calls and calls[-1] == (COUNT, COUNT)  # decoded again
    assert copies(cache_root) == [new.decoded_path.name]  # replaced, not piled up
    assert np.array_equal(new.batch(np.arange(COUNT)).numpy(), chw(images))
    with pytest.raises(DatasetError, match="changed since it was opened"):
        old.batch([0])
    with pytest.raises(DatasetError, match="changed since it was opened"):
        pickle.loads(pickle.dumps(old)).batch([0])


def _damage(copy: Path, kind: str) -> None:
    data = bytearray(copy.read_bytes())
    if kind == "truncated":
        data = data[: -ROW // 2]
    elif kind == "extended":
        data += bytes(100)
    elif kind == "header":
        data[:40] = b"x" * 40
    elif kind == "json":
        data[len(decoded_cache.MAGIC) + 3] ^= 0xFF
    elif kind == "pixels":
        data[HEADER_BYTES + 7] ^= 0xFF  # image 0, a sampled row
    elif kind == "empty":
        data = bytearray()
    copy.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["truncated", "extended", "header", "json", "pixels", "empty"])
def test_damaged_copy_is_rebuilt_not_trusted(tmp_path: Path, cache_root: Path, kind: str) -> None:
    path, images = shapes_file(tmp_path / "3dshapes.h5")
    first = load_shapes3d(path, cache=True)
    first.close()
    _damage(first.decoded_path, kind)
    ds, calls = open_recording(path, cache=True)
    assert calls and calls[-1] == (COUNT, COUNT)
    assert np.array_equal(ds.batch(np.arange(COUNT)).numpy(), chw(images))


def test_killed_build_leaves_nothing_that_is_trusted(
    tmp_path: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build killed mid-way leaves its temp file and its lock: the temp is never read as the copy, the
    quiet lock is broken, the temp is cleaned up, and the copy is built again."""
    path, images = shapes_file(tmp_path / "3dshapes.h5")
    target = load_shapes3d(path, cache=True).decoded_path
    target.unlink()
    stale_temp = cache_root / f".{target.name}.abcd1234.tmp"
    stale_temp.write_bytes(b"half a copy")
    lock = cache_root / f"{target.name}.lock"
    lock.write_text("99999 40 96\n")
    old = time.time() - 10 * decoded_cache.LOCK_STALE_S
    os.utime(lock, (old, old))

    def never(_seconds: float) -> None:
        raise AssertionError("waited on a stale lock")

    monkeypatch.setattr(decoded_cache, "_sleep", never)
    ds, calls = open_recording(path, cache=True)
    assert calls[-1] == (COUNT, COUNT)
    assert copies(cache_root) == [target.name]
    assert np.array_equal(ds.batch(np.arange(COUNT)).numpy(), chw(images))


def test_cancelled_build_leaves_no_copy_and_the_next_open_builds(tmp_path: Path, cache_root: Path) -> None:
    """`progress` raising (Stop pressed while loading) ends the build: the error reaches the caller, and
    neither the temp file nor the lock stays behind."""
    path, images = shapes_file(tmp_path / "3dshapes.h5")

    class Stopped(Exception):
        pass

    def stop_at_half(done: int, total: int) -> None:
        if done >= total // 2:
            raise Stopped

    with pytest.raises(Stopped):
        load_shapes3d(path, progress=stop_at_half, cache=True)
    assert copies(cache_root) == []
    ds, calls = open_recording(path, cache=True)
    assert calls[0] == (0, COUNT) and calls[-1] == (COUNT, COUNT)
    assert np.array_equal(ds.batch([50, 51]).numpy(), chw(images[[50, 51]]))


def test_waits_for_another_builder_and_passes_its_progress_on(
    tmp_path: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes opening one file (parallel runs): the second waits on the first's lock, shows the
    first's progress, and maps the copy the first made instead of decoding it again."""
    path, images = shapes_file(tmp_path / "3dshapes.h5")
    cache_root.mkdir(parents=True)
    stamp = decoded_cache.SourceStamp.of(path.resolve(), "images", (COUNT, 64, 64, 3), np.uint8)
    lock = cache_root / f"{decoded_cache.cache_file(stamp, cache_root).name}.lock"
    lock.write_text("4242 40 96\n")
    other: list[tuple[int, int]] = []

    def other_process_finishes(_seconds: float) -> None:
        lock.unlink()  # the other builder: builds the copy, then drops its lock
        decoded_cache.decoded_copy(path, "images", progress=lambda d, t: other.append((d, t)))

    monkeypatch.setattr(decoded_cache, "_sleep", other_process_finishes)
    ds, calls = open_recording(path, cache=True)
    assert calls == [(40, COUNT)]  # what the lock said; this process decoded nothing
    assert other[-1] == (COUNT, COUNT)
    assert copies(cache_root) == [ds.decoded_path.name]
    assert np.array_equal(ds.batch([3, 90]).numpy(), chw(images[[3, 90]]))


DiskUsage = namedtuple("DiskUsage", "total used free")


def test_no_room_falls_back_with_a_warning_naming_folder_and_size(
    tmp_path: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, images = shapes_file(tmp_path / "3dshapes.h5")
    monkeypatch.setattr(decoded_cache.shutil, "disk_usage", lambda _p: DiskUsage(10**9, 10**9 - 5000, 5000))
    with pytest.warns(CacheWarning) as caught:
        ds, calls = open_recording(path, cache=True)
    message = str(caught[0].message)
    assert f"no decoded copy (1.2 MB) in {cache_root}: only 0.0 MB free, and 1.1 GB must stay free" in message
    assert str(path) in message and CACHE_ENV in message
    assert ds.decoded_path is None and calls == []
    assert copies(cache_root) == []
    assert message in ds.describe()
    assert np.array_equal(ds.batch([77, 3, 3]).numpy(), chw(images[[77, 3, 3]]))


def test_unwritable_cache_folder_falls_back_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, images = shapes_file(tmp_path / "3dshapes.h5")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(CACHE_ENV, str(blocker))
    with pytest.warns(CacheWarning, match="cannot write there") as caught:
        ds = load_shapes3d(path, cache=True)
    assert str(blocker / "datasets") in str(caught[0].message)
    assert ds.decoded_path is None
    assert np.array_equal(ds.batch(np.arange(COUNT)).numpy(), chw(images))


def test_damaged_source_chunk_is_an_error_naming_the_file(tmp_path: Path, cache_root: Path) -> None:
    path, _ = shapes_file(tmp_path / "3dshapes.h5")
    with h5py.File(path, "r") as f:
        info = f["images"].id.get_chunk_info(7)
    data = bytearray(path.read_bytes())
    data[info.byte_offset : info.byte_offset + info.size] = bytes(info.size)  # zeros: not a deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError) as caught:
        load_shapes3d(path, cache=True)
    assert str(caught.value).startswith(f"{path}: cannot decode 'images' rows 30-39")
    assert copies(cache_root) == []  # no half copy, no lock


@pytest.mark.parametrize(
    ("layout", "threshold", "copied"),
    [
        ({}, 0, False),  # uncompressed: read in place, never copied
        ({"chunks": (5, 64, 64, 3), "compression": "gzip"}, None, False),  # small: the chunk LRU holds it
        ({"chunks": (5, 64, 64, 3), "compression": "gzip"}, 0, True),
        ({"chunks": True, "compression": "gzip", "shuffle": True}, 0, True),  # h5py's own tiles
    ],
    ids=["plain", "small-gzip", "gzip", "auto-chunks"],
)
def test_which_files_get_a_copy(
    tmp_path: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch, layout: dict, threshold: int | None, copied: bool
) -> None:
    if threshold is not None:
        monkeypatch.setattr(shapes3d_module, "CACHE_MIN_BYTES", threshold)
    path, images = shapes_file(tmp_path / "3dshapes.h5", **(layout or {"chunks": None}))
    ds = load_dataset("shapes3d", str(path), progress=lambda d, t: None)
    assert (ds.decoded_path is not None) is copied
    assert (copies(cache_root) != []) is copied
    assert np.array_equal(ds.batch(np.arange(COUNT)[::-1]).numpy(), chw(images[::-1]))


def test_cache_folder_per_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_folder() == tmp_path / "mine" / "datasets"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    monkeypatch.setattr(sys, "platform", "linux")
    assert cache_folder() == tmp_path / "xdg" / "bvae-desktop" / "datasets"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert cache_folder() == tmp_path / "home" / ".cache" / "bvae-desktop" / "datasets"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert cache_folder() == tmp_path / "home" / "Library" / "Caches" / "bvae-desktop" / "datasets"
    monkeypatch.setattr(sys, "platform", "win32")
    assert cache_folder() == tmp_path / "local" / "bvae-desktop" / "Cache" / "datasets"
