"""MNIST from IDX files (raw or gzip) or `mnist.npz`, padded to 32 x 32 so the conv stack halves cleanly.

IDX headers are checked against the byte length before any pixel is trusted: a truncated
download or a wrong file gives a DatasetError naming it, never a numpy reshape error.
"""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from bvae_desktop.core.data.imageset import ArrayImageSet
from bvae_desktop.core.data.registry import DatasetSpec, register
from bvae_desktop.core.data.sniffing import idx_header, npz_members, shape_text
from bvae_desktop.core.errors import DatasetError, os_reason
from bvae_desktop.core.image_input import NativeInput

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
SIDE = 28
PAD = 2
LABEL_NAMES = tuple(str(d) for d in range(10))
SPLITS = ("train", "test", "all")
_PREFIXES = {"train": "train", "test": "t10k"}
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, zipfile.BadZipFile)


def load_mnist(path: str | Path, *, split: str = "all", **_options: object) -> ArrayImageSet:
    """Open an IDX folder, a single IDX images file or an mnist.npz; `split` is train, test or all."""
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    path = Path(path)
    if path.is_dir():
        images, labels = _load_folder(path, split)
    elif not path.exists():
        raise DatasetError(f"{path}: file or folder not found")
    elif path.suffix.lower() == ".npz":
        images, labels = _load_npz(path, split)
    else:
        images, labels = _load_idx_pair(path)
    padded = pad_digits(images)[:, None]
    name = "MNIST" if split == "all" else f"MNIST ({split})"
    return ArrayImageSet(
        padded,
        name=name,
        source=str(path),
        labels=labels,
        label_names=LABEL_NAMES if labels is not None else None,
    )


def pad_digits(images: np.ndarray) -> np.ndarray:
    """28x28 digits (the last two axes) with a black border of PAD pixels: the 32x32 frame the model sees.

    The one place the padding is done: training data here, and a user's 28x28 image through
    `NATIVE_INPUT` (core/image_input.py), so a digit from a file reaches the model as training's do.
    """
    images = np.asarray(images)
    return np.pad(images, [(0, 0)] * (images.ndim - 2) + [(PAD, PAD), (PAD, PAD)])


NATIVE_INPUT = NativeInput(shape=(1, SIDE, SIDE), transform=pad_digits, label="MNIST training")


def _load_folder(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Use whichever of train/t10k are in the folder, in that order."""
    wanted = ("train", "test") if split == "all" else (split,)
    parts = []
    for part in wanted:
        images_file = _find(folder, _PREFIXES[part], "images", "idx3")
        if images_file is not None:
            parts.append(_load_idx_pair(images_file))
    if not parts:
        which = "train or t10k" if split == "all" else _PREFIXES[split]
        raise DatasetError(
            f"{folder}: no {which} IDX images file (e.g. {_PREFIXES.get(split, 'train')}-images-idx3-ubyte.gz)"
        )
    images = np.concatenate([p[0] for p in parts])
    if any(p[1] is None for p in parts):
        return images, None
    return images, np.concatenate([p[1] for p in parts])  # type: ignore[misc]


def _find(folder: Path, prefix: str, kind: str, idx: str) -> Path | None:
    """The usual file names (`train-images-idx3-ubyte`, the dotted Kaggle form), raw or .gz."""
    for stem in (f"{prefix}-{kind}-{idx}-ubyte", f"{prefix}-{kind}.{idx}-ubyte"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _labels_beside(images_file: Path) -> Path | None:
    name = images_file.name
    for old, new in (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1")):
        if old in name:
            stem = name.replace(old, new).removesuffix(".gz")
            for candidate in (stem, stem + ".gz"):
                if (images_file.parent / candidate).is_file():
                    return images_file.parent / candidate
    return None


def _load_idx_pair(images_file: Path) -> tuple[np.ndarray, np.ndarray | None]:
    images = read_idx_images(images_file)
    labels_file = _labels_beside(images_file)
    if labels_file is None:
        return images, None
    labels = read_idx_labels(labels_file)
    if len(labels) != len(images):
        raise DatasetError(f"{labels_file}: {len(labels)} labels for {len(images)} images in {images_file.name}")
    return images, labels


def _read_bytes(path: Path) -> bytes:
    """Whole file, gunzipped when it is gzip (by magic, not by name)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        return data
    except _READ_ERRORS as exc:
        raise DatasetError(
            f"{path}: cannot read ({'corrupt or truncated gzip: ' if path.suffix == '.gz' else ''}{exc})"
        ) from exc


def _header(path: Path, data: bytes, magic: int, dims: int) -> tuple[int, ...]:
    """Check the magic and that the byte length matches the header; return the dimensions."""
    header_len = 4 + 4 * dims
    if len(data) < header_len:
        raise DatasetError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        kind = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}.get(found)
        hint = f" (that is an IDX {kind} file)" if kind else ""
        raise DatasetError(f"{path}: bad magic number {found}, expected {magic}{hint}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    expected = header_len + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise DatasetError(f"{path}: {state} ({len(data)} bytes, header says {expected})")
    return shape


def read_idx_images(path: Path) -> np.ndarray:
    """(N, 28, 28) uint8 from an IDX3 images file."""
    data = _read_bytes(path)
    count, rows, cols = _header(path, data, IMAGES_MAGIC, 3)
    if (rows, cols) != (SIDE, SIDE):
        raise DatasetError(f"{path}: images are {rows}x{cols}, expected {SIDE}x{SIDE}")
    if count == 0:
        raise DatasetError(f"{path}: holds no images")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols).copy()


def read_idx_labels(path: Path) -> np.ndarray:
    """(N,) int64 digits from an IDX1 labels file."""
    data = _read_bytes(path)
    _header(path, data, LABELS_MAGIC, 1)
    labels = np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{path}: label {labels.max()} is not a digit 0-9")
    return labels


def _load_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """x_train/y_train/x_test/y_test from the Keras-style mnist.npz (no pickles allowed)."""
    _check_zip(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            parts = _npz_parts(path, keys, split)
            pairs = [(archive[f"x_{p}"], archive[f"y_{p}"]) for p in parts]
    except DatasetError:
        raise
    except MemoryError:
        raise DatasetError(f"{path}: an array is too large to hold in memory (a damaged header?)") from None
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path}: not a readable npz file ({os_reason(exc)})") from exc
    for x, y in pairs:
        _check_npz_pair(path, x, y)
    return np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs]).astype(np.int64)


def _check_zip(path: Path) -> None:
    """An npz is a zip file. Anything else np.load takes for a pickle and says "contains pickled (object)
    data", which sends a researcher looking for pickles in what is a truncated download."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            size = os.fstat(fh.fileno()).st_size
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({os_reason(exc)})") from None
    if not is_zip:
        what = "empty" if not head else ("a truncated or damaged zip" if head.startswith(b"PK") else "not a zip")
        raise DatasetError(f"{path}: not a valid npz file ({what} file, {size} bytes); download it again")


def _npz_parts(path: Path, keys: set[str], split: str) -> list[str]:
    """Which of train/test to read: the one asked for, or for "all" whichever the file has."""
    wanted = ["train", "test"] if split == "all" else [split]
    if split == "all":
        wanted = [p for p in wanted if f"x_{p}" in keys or f"y_{p}" in keys] or wanted
    missing = [k for p in wanted for k in (f"x_{p}", f"y_{p}") if k not in keys]
    if missing:
        raise DatasetError(f"{path}: missing key(s) {', '.join(missing)} (has {', '.join(sorted(keys)) or 'none'})")
    return wanted


def _check_npz_pair(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim != 3 or x.shape[1:] != (SIDE, SIDE) or x.dtype != np.uint8:
        raise DatasetError(f"{path}: images are {x.dtype} {x.shape}, expected uint8 (N, {SIDE}, {SIDE})")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DatasetError(f"{path}: labels are {y.dtype} {y.shape}, expected integers (N,)")
    if len(x) != len(y):
        raise DatasetError(f"{path}: {len(y)} labels for {len(x)} images")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DatasetError(f"{path}: labels outside 0-9")


def sniff_mnist(path: Path) -> str | None:
    """IDX images of 28x28 (by magic number, raw or gzip, any name), a folder holding them under their usual
    names, or an npz with x_train / x_test."""
    if path.is_dir():
        found = [f for part in ("train", "test") if (f := _find(path, _PREFIXES[part], "images", "idx3")) is not None]
        described = [_idx_images_text(f) for f in found]
        return f"MNIST IDX folder: {'; '.join(d for d in described if d)}" if found and all(described) else None
    text = _idx_images_text(path)
    if text:
        return f"MNIST {text}"
    members = npz_members(path)
    if not members:
        return None
    parts = [f"{key} {shape_text(members[key][0])}" for key in ("x_train", "x_test") if key in members]
    return f"MNIST npz: {', '.join(parts)}" if parts else None


def _idx_images_text(path: Path) -> str | None:
    header = idx_header(path)
    if header is None or header[0] != IMAGES_MAGIC or len(header[1]) != 3:
        return None
    count, rows, cols = header[1]
    return f"IDX images: {count:,} of {rows}×{cols}" + ("" if (rows, cols) == (SIDE, SIDE) else " (not 28×28)")


register(
    DatasetSpec(
        name="mnist",
        label="MNIST (IDX folder or .npz)",
        needs="file or folder",
        shape=(1, 32, 32),
        factors=False,
        opener=load_mnist,
        file_filter="MNIST (*.npz *ubyte *ubyte.gz *.gz)",
        rank=3,
        sniff=sniff_mnist,
        native_input=NATIVE_INPUT,
    )
)
