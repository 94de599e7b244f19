"""Small files in each supported data layout, for tests that pick, detect or load them."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import h5py
import numpy as np
from PIL import Image


def dsprites_npz(path: Path, count: int = 6, *, factors: bool = True) -> Path:
    rng = np.random.default_rng(0)
    arrays = {"imgs": rng.integers(0, 2, (count, 64, 64), dtype=np.uint8)}
    if factors:
        arrays["latents_classes"] = np.zeros((count, 6), dtype=np.int64)
        arrays["latents_values"] = np.zeros((count, 6), dtype=np.float64)
    with open(path, "wb") as f:  # a file object: savez would add ".npz" to another name
        np.savez_compressed(f, **arrays)
    return path


def mnist_npz(path: Path, count: int = 5) -> Path:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, count).astype(np.uint8)
    with open(path, "wb") as f:
        np.savez(f, x_train=images, y_train=labels, x_test=images, y_test=labels)
    return path


def mnist_idx(path: Path, count: int = 5, *, gz: bool = False) -> Path:
    images = np.random.default_rng(2).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    data = struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def shapes3d_h5(path: Path, count: int = 8) -> Path:
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=rng.integers(0, 256, (count, 64, 64, 3), dtype=np.uint8))
        f.create_dataset("labels", data=rng.random((count, 6)))
    return path


def image_folder(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((16, 16), 40 * i, dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder
