"""3D Shapes (`3dshapes.h5`): read through a decoded copy, or lazily through h5py.

Only `labels` (23 MB) is read up front, to build the factor grid. The official file stores its
images gzip-compressed in chunks: HDF5 inflates a whole chunk to return one image, and random
batches ran at 16-19 images/s. So a compressed file of CACHE_MIN_BYTES or more of pixels is decoded
once into a raw copy in the user's cache folder (core.data.decoded_cache: with progress, reused while
the file is unchanged) and batches index a read-only map of it, at in-memory speed. Uncompressed
files, small ones, `cache=False`, or a copy that cannot be made (no room, a folder that cannot be
written: a CacheWarning says so) are read from the file itself: whole compressed chunks are read once
and kept in a small LRU cache; otherwise runs of consecutive indices are read as slices and lone
indices one by one (measured faster than h5py fancy indexing on both layouts).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import torch

from bvae_desktop.core.data.decoded_cache import (
    CacheUnavailable,
    CacheWarning,
    MappedImages,
    decoded_copy,
    is_compressed,
)
from bvae_desktop.core.data.dsprites import build_factors
from bvae_desktop.core.data.imageset import Factors, ImageSet, Progress, _free_device_bytes
from bvae_desktop.core.data.registry import DatasetSpec, register
from bvae_desktop.core.data.sniffing import hdf5_datasets, shape_text
from bvae_desktop.core.errors import DatasetError, os_reason

FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
_DEFAULT_CACHE_BYTES = 64 << 20
_MAX_CACHED_CHUNK_BYTES = 16 << 20
# Below this many bytes of pixels a compressed file gets no decoded copy: the chunk LRU above holds all
# of it after one pass (5,461 images of 64x64x3), so the copy would only cost disk and a wait.
CACHE_MIN_BYTES = _DEFAULT_CACHE_BYTES
_DEVICE_COPY_ROWS = 8192  # rows per host-to-device copy when a decoded copy moves to the GPU


class H5ImageSet(ImageSet):
    """Images (N, H, W, C) uint8 in an HDF5 dataset, returned as (n, C, H, W) per batch.

    With `mapped` (a decoded copy of the dataset) batches come from that copy and the HDF5 file is
    never opened; otherwise the file stays open for reading. Pickling keeps only paths and settings:
    the copy reopens the file or the map on first use, and so does a forked process (HDF5 handles
    must not cross a fork). `note` says why a compressed file is read directly (shown by `describe`).
    """

    def __init__(
        self,
        path: str | Path,
        key: str = "images",
        *,
        name: str,
        source: str = "",
        factors: Factors | None = None,
        cache_bytes: int = _DEFAULT_CACHE_BYTES,
        mapped: MappedImages | None = None,
        note: str = "",
    ) -> None:
        self._path = Path(path)
        self._key = key
        self.name = name
        self.source = source or str(path)
        self.factors = factors
        self.note = note
        self._cache_bytes = int(cache_bytes)
        self._file: h5py.File | None = None
        self._pid = -1
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # training thread and GUI previews may ask for batches at once
        self._mapped = mapped
        self._on_device: torch.Tensor | None = None  # the whole set (N, C, H, W) on a GPU, see `to`
        self._chunk_len = 0
        if mapped is not None:
            self._count = mapped.source.count
            self._hwc = tuple(mapped.source.shape[1:])
            return
        ds = self._dataset()
        self._count = int(ds.shape[0])
        self._hwc = tuple(int(s) for s in ds.shape[1:])
        chunk_bytes = int(np.prod(ds.chunks)) if ds.chunks else 0
        use_chunks = (
            is_compressed(ds) and ds.chunks[0] > 1 and chunk_bytes <= min(_MAX_CACHED_CHUNK_BYTES, self._cache_bytes)
        )
        self._chunk_len = int(ds.chunks[0]) if use_chunks else 0

    @property
    def shape(self) -> tuple[int, int, int]:
        h, w, c = self._hwc
        return c, h, w

    def __len__(self) -> int:
        return self._count

    @property
    def decoded_path(self) -> Path | None:
        """The decoded copy batches are read from; None when they come from the HDF5 file itself."""
        return self._mapped.path if self._mapped is not None else None

    def describe(self) -> str:
        text = super().describe()
        return f"{text}; {self.note}" if self.note else text

    def _dataset(self) -> h5py.Dataset:
        """The open dataset, (re)opening the file after unpickling or in a forked child."""
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self._path, "r")
            self._pid = os.getpid()
            self._cache.clear()
        return self._file[self._key]

    def close(self) -> None:
        """Release the file handle and the map of the decoded copy; the next batch reopens them."""
        with self._lock:
            if self._file is not None and self._pid == os.getpid():
                self._file.close()
            self._file = None
            self._cache.clear()
            if self._mapped is not None:
                self._mapped.close()

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = -1
        state["_cache"] = OrderedDict()
        state["_on_device"] = None  # a worker process maps the copy itself
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def to(self, device: torch.device | str) -> H5ImageSet:
        """On a GPU, hold a decoded copy there whole when it takes under half the free memory (as an
        in-memory set does): batches then index on the device. Anything else stays where it is."""
        device = torch.device(device)
        if device.type != "cuda" or self._mapped is None:
            return self
        if self._on_device is not None and self._on_device.device == device:
            return self
        free = _free_device_bytes(device)
        if free is not None and self._mapped.source.nbytes > 0.5 * free:
            return self
        images = torch.empty((self._count, *self.shape), dtype=torch.uint8, device=device)
        with self._lock:
            for start in range(0, self._count, _DEVICE_COPY_ROWS):
                stop = min(start + _DEVICE_COPY_ROWS, self._count)
                block = torch.from_numpy(self._mapped.block(start, stop)).to(device)
                images[start:stop] = block.permute(0, 3, 1, 2)
        self._on_device = images
        return self

    def _batch(self, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
        on_device = self._on_device
        if on_device is not None:
            return on_device[indices.to(on_device.device)].to(device, non_blocking=True)
        wanted = indices.cpu().numpy()
        if self._mapped is not None:
            try:
                with self._lock:
                    rows = self._mapped.rows(wanted)
            except (OSError, ValueError) as exc:
                raise DatasetError(f"{self._mapped.path}: cannot read the decoded images ({os_reason(exc)})") from exc
        else:
            unique, inverse = np.unique(wanted, return_inverse=True)
            try:
                with self._lock:
                    rows = self._read_chunked(unique) if self._chunk_len else self._read_runs(unique)
            except (OSError, KeyError, ValueError, RuntimeError) as exc:
                raise DatasetError(f"{self._path}: cannot read images ({exc})") from exc
            rows = rows[inverse.reshape(-1)]
        # numpy's transpose copy: one thread, ~10x faster than torch's permute().contiguous() on a busy CPU
        images = torch.from_numpy(np.ascontiguousarray(rows.transpose(0, 3, 1, 2)))
        return images.to(device, non_blocking=True)

    def _read_runs(self, unique: np.ndarray) -> np.ndarray:
        """Sorted unique indices read as slices of consecutive runs."""
        ds = self._dataset()
        out = np.empty((len(unique), *self._hwc), dtype=np.uint8)
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        start = 0
        for run in np.split(unique, breaks):
            if len(run) == 0:
                continue
            out[start : start + len(run)] = ds[int(run[0]) : int(run[-1]) + 1]
            start += len(run)
        return out

    def _read_chunked(self, unique: np.ndarray) -> np.ndarray:
        """Sorted unique indices served from whole chunks, each decompressed once and cached."""
        out = np.empty((len(unique), *self._hwc), dtype=np.uint8)
        chunk_ids = unique // self._chunk_len
        for cid in np.unique(chunk_ids):
            where = np.flatnonzero(chunk_ids == cid)
            out[where] = self._chunk(int(cid))[unique[where] - cid * self._chunk_len]
        return out

    def _chunk(self, cid: int) -> np.ndarray:
        if cid in self._cache:
            self._cache.move_to_end(cid)
            return self._cache[cid]
        start = cid * self._chunk_len
        data = self._dataset()[start : min(start + self._chunk_len, self._count)]
        self._cache[cid] = data
        while sum(a.nbytes for a in self._cache.values()) > self._cache_bytes and len(self._cache) > 1:
            self._cache.popitem(last=False)
        return data


def load_shapes3d(
    path: str | Path, *, progress: Progress | None = None, cache: bool | None = None, **_options: object
) -> H5ImageSet:
    """Open `3dshapes.h5` (or a smaller file in the same layout); only the labels are read now.

    A compressed file is decoded once into a local copy (`cache`: None decides by size, True always,
    False never); that first open takes minutes on the official file and calls `progress(done, total)`
    (images) at each step, about every 0.5%. `progress` may raise to cancel the decoding.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    labels, compressed, nbytes = _check_file(path)
    factors = build_factors(FACTOR_NAMES, _rounded(labels), labels)
    mapped, note = None, ""
    if compressed and (cache if cache is not None else nbytes >= CACHE_MIN_BYTES):
        try:
            mapped = decoded_copy(path, "images", progress=progress)
        except CacheUnavailable as exc:
            note = str(exc)
            warnings.warn(note, CacheWarning, stacklevel=2)
    try:
        return H5ImageSet(path, "images", name="3D Shapes", source=str(path), factors=factors, mapped=mapped, note=note)
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot open the images ({exc})") from exc


def _check_file(path: Path) -> tuple[np.ndarray, bool, int]:
    """Validate the layout; return the labels (N, 6) float64, whether the images are compressed, and
    how many bytes of pixels they hold."""
    try:
        with h5py.File(path, "r") as f:
            for key in ("images", "labels"):
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise DatasetError(f"{path}: no '{key}' dataset (is it 3dshapes.h5?)")
            images, labels = f["images"], f["labels"]
            _check_images(path, images.shape, images.dtype)
            if labels.ndim != 2 or labels.shape[1] != len(FACTOR_NAMES):
                raise DatasetError(f"{path}: 'labels' has shape {labels.shape}, expected (N, {len(FACTOR_NAMES)})")
            if labels.shape[0] != images.shape[0]:
                raise DatasetError(f"{path}: {labels.shape[0]} labels for {images.shape[0]} images")
            if labels.dtype.kind not in "fiu":
                raise DatasetError(f"{path}: 'labels' has dtype {labels.dtype}, expected numbers")
            values = labels[()].astype(np.float64)
            compressed, nbytes = is_compressed(images), int(np.prod(images.shape, dtype=np.int64))
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file ({exc})") from exc
    if not np.isfinite(values).all():
        raise DatasetError(f"{path}: 'labels' has non-finite values")
    return values, compressed, nbytes


def _check_images(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise DatasetError(f"{path}: 'images' has shape {shape}, expected (N, 64, 64, 3)")
    if shape[0] == 0:
        raise DatasetError(f"{path}: 'images' holds no images")
    if dtype != np.uint8:
        raise DatasetError(f"{path}: 'images' has dtype {dtype}, expected uint8")


def _rounded(labels: np.ndarray) -> np.ndarray:
    """Labels rounded so float noise cannot split one factor value into two classes."""
    return np.round(labels, 6)


def sniff_shapes3d(path: Path) -> str | None:
    """An HDF5 file with an `images` stack of HxWx3 pictures and six `labels` per image."""
    datasets = hdf5_datasets(path) if path.is_file() else None
    if not datasets or "images" not in datasets or "labels" not in datasets:
        return None
    (shape, dtype), (label_shape, _) = datasets["images"], datasets["labels"]
    if len(shape) != 4 or len(label_shape) != 2:
        return None
    return f"3D Shapes HDF5: images {shape_text(shape)} {dtype}, labels {shape_text(label_shape)}"


register(
    DatasetSpec(
        name="shapes3d",
        label="3D Shapes (.h5 file)",
        needs="file",
        shape=(3, 64, 64),
        factors=True,
        opener=load_shapes3d,
        file_filter="3D Shapes (*.h5 *.hdf5)",
        rank=2,
        sniff=sniff_shapes3d,
    )
)
