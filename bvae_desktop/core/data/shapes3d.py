"""3D Shapes (`3dshapes.h5`) read lazily through h5py: the 5.9 GB of pixels never have to fit in memory.

Only `labels` (23 MB) is read up front, to build the factor grid; images are read per batch. For
compressed chunked files HDF5 must decompress a whole chunk to return one image, so whole chunks
are read once and kept in a small LRU cache; otherwise runs of consecutive indices are read as
slices and lone indices one by one (measured faster than h5py fancy indexing on both layouts).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import torch

from bvae_desktop.core.data.dsprites import build_factors
from bvae_desktop.core.data.imageset import Factors, ImageSet
from bvae_desktop.core.data.registry import DatasetSpec, register
from bvae_desktop.core.errors import DatasetError

FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
_DEFAULT_CACHE_BYTES = 64 << 20
_MAX_CACHED_CHUNK_BYTES = 16 << 20


class H5ImageSet(ImageSet):
    """Images (N, H, W, C) uint8 in an HDF5 dataset, returned as (n, C, H, W) per batch.

    The file stays open for reading. Pickling keeps only the path and settings: the copy reopens
    the file on first use, and so does a forked process (HDF5 handles must not cross a fork).
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
    ) -> None:
        self._path = Path(path)
        self._key = key
        self.name = name
        self.source = source or str(path)
        self.factors = factors
        self._cache_bytes = int(cache_bytes)
        self._file: h5py.File | None = None
        self._pid = -1
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # training thread and GUI previews may ask for batches at once
        ds = self._dataset()
        self._count = int(ds.shape[0])
        self._hwc = tuple(int(s) for s in ds.shape[1:])
        chunk_bytes = int(np.prod(ds.chunks)) if ds.chunks else 0
        compressed = bool(ds.chunks) and ds.id.get_create_plist().get_nfilters() > 0
        use_chunks = compressed and ds.chunks[0] > 1 and chunk_bytes <= min(_MAX_CACHED_CHUNK_BYTES, self._cache_bytes)
        self._chunk_len = int(ds.chunks[0]) if use_chunks else 0

    @property
    def shape(self) -> tuple[int, int, int]:
        h, w, c = self._hwc
        return c, h, w

    def __len__(self) -> int:
        return self._count

    def _dataset(self) -> h5py.Dataset:
        """The open dataset, (re)opening the file after unpickling or in a forked child."""
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self._path, "r")
            self._pid = os.getpid()
            self._cache.clear()
        return self._file[self._key]

    def close(self) -> None:
        """Release the file handle; the next batch reopens it."""
        with self._lock:
            if self._file is not None and self._pid == os.getpid():
                self._file.close()
            self._file = None
            self._cache.clear()

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = -1
        state["_cache"] = OrderedDict()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _batch(self, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
        wanted = indices.cpu().numpy()
        unique, inverse = np.unique(wanted, return_inverse=True)
        try:
            with self._lock:
                rows = self._read_chunked(unique) if self._chunk_len else self._read_runs(unique)
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise DatasetError(f"{self._path}: cannot read images ({exc})") from exc
        images = torch.from_numpy(rows[inverse.reshape(-1)]).permute(0, 3, 1, 2).contiguous()
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


def load_shapes3d(path: str | Path, **_options: object) -> H5ImageSet:
    """Open `3dshapes.h5` (or a smaller file in the same layout); only the labels are read now."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    labels = _check_file(path)
    factors = build_factors(FACTOR_NAMES, _rounded(labels), labels)
    try:
        return H5ImageSet(path, "images", name="3D Shapes", source=str(path), factors=factors)
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot open the images ({exc})") from exc


def _check_file(path: Path) -> np.ndarray:
    """Validate the layout and return the labels (N, 6) float64."""
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
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file ({exc})") from exc
    if not np.isfinite(values).all():
        raise DatasetError(f"{path}: 'labels' has non-finite values")
    return values


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
    )
)
