"""Cheap looks inside a data file (npz members, HDF5 datasets, IDX headers) for the dataset chooser.

Each source's `sniff` uses these to say whether a path is in its layout without reading the data:
an npz's member shapes come from the .npy headers inside the zip, an HDF5 file's from its metadata,
an IDX file's from its first 16 bytes (gunzipped when it is gzip, by magic).
"""

from __future__ import annotations

import gzip
import struct
import zipfile
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
IDX_TYPES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}


def first_bytes(path: Path, count: int = 16) -> bytes:
    """The first `count` bytes of a file (fewer when it is shorter); b"" for a folder."""
    if not path.is_file():
        return b""
    with open(path, "rb") as f:
        return f.read(count)


def npz_members(path: Path) -> dict[str, tuple[tuple[int, ...], str]] | None:
    """{key: (shape, dtype)} of an .npz archive from the .npy headers alone; None when it is not one."""
    if first_bytes(path, 4) != ZIP_MAGIC:
        return None
    members: dict[str, tuple[tuple[int, ...], str]] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            members[info.filename[: -len(".npy")]] = (tuple(int(n) for n in shape), str(dtype))
    return members


def hdf5_datasets(path: Path) -> dict[str, tuple[tuple[int, ...], str]] | None:
    """{name: (shape, dtype)} of an HDF5 file's top-level datasets; None when it is not HDF5."""
    if first_bytes(path, 8) != HDF5_MAGIC:
        return None
    import h5py

    with h5py.File(path, "r") as f:
        return {
            name: (tuple(int(n) for n in item.shape), str(item.dtype))
            for name, item in f.items()
            if isinstance(item, h5py.Dataset)
        }


def idx_header(path: Path) -> tuple[int, tuple[int, ...]] | None:
    """(magic, dims) of an IDX file, raw or gzip; None when the first bytes are not an IDX header."""
    head = first_bytes(path, 2)
    if head == GZIP_MAGIC:
        with gzip.open(path, "rb") as f:
            data = f.read(16)
    else:
        data = first_bytes(path, 16)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES or not 1 <= data[3] <= 4:
        return None
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        return None
    magic = struct.unpack(">I", data[:4])[0]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return magic, tuple(int(n) for n in dims)


def shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(f"{n:,}" for n in shape) + ")"


def members_text(members: dict[str, tuple[tuple[int, ...], str]], limit: int = 6) -> str:
    """'imgs (737,280, 64, 64) uint8, latents_classes (737,280, 6) int64' (the first `limit` of them)."""
    parts = [f"{name} {shape_text(shape)} {dtype}" for name, (shape, dtype) in list(members.items())[:limit]]
    more = len(members) - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "") if parts else "nothing"


def describe_contents(path: Path) -> str:
    """What a path holds, in a phrase, for the error when no source reads it."""
    try:
        if path.is_dir():
            entries = sorted(p.name for p in path.iterdir())
            shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
            return f"a folder holding {shown}" if entries else "an empty folder"
        members = npz_members(path)
        if members is not None:
            return f"an npz archive with {members_text(members)}"
        datasets = hdf5_datasets(path)
        if datasets is not None:
            return f"an HDF5 file with {members_text(datasets)}"
        header = idx_header(path)
        if header is not None:
            return f"an IDX file of shape {shape_text(header[1])}"
        size = path.stat().st_size
        return f"a file of {size:,} bytes starting {first_bytes(path, 8).hex(' ')}" if size else "an empty file"
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        return f"unreadable: {exc}"
