"""The official dSprites npz, held bit-packed: 377 MB instead of 3 GB, unpacked per batch on the device.

The packed array is built by streaming the `imgs.npy` member of the zip in chunks, so the 3 GB
uint8 array never exists in memory. The pickled `metadata` member is never unpickled.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np
import torch

from bvae_desktop.core.data.imageset import Factors, ImageSet, Progress, _free_device_bytes
from bvae_desktop.core.data.procedural import FACTOR_NAMES
from bvae_desktop.core.data.registry import DatasetSpec, register
from bvae_desktop.core.data.sniffing import npz_members, shape_text
from bvae_desktop.core.errors import DatasetError, os_reason

_CHUNK_IMAGES = 4096  # 16 MB of uint8 per streamed chunk for 64 x 64 images
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


class PackedImageSet(ImageSet):
    """Binary 1-channel images stored as np.packbits rows (N, H, W/8); `_batch` unpacks with bit shifts."""

    def __init__(
        self, packed: np.ndarray | torch.Tensor, *, name: str, source: str = "", factors: Factors | None = None
    ):
        tensor = torch.as_tensor(packed)
        if tensor.dtype != torch.uint8 or tensor.ndim != 3:
            raise ValueError("PackedImageSet needs uint8 packed rows shaped (N, H, W/8)")
        self._packed = tensor.contiguous()
        self.name = name
        self.source = source
        self.factors = factors

    @property
    def packed(self) -> torch.Tensor:
        return self._packed

    @property
    def shape(self) -> tuple[int, int, int]:
        return 1, int(self._packed.shape[1]), int(self._packed.shape[2]) * 8

    @property
    def binary(self) -> bool:
        return True

    def __len__(self) -> int:
        return int(self._packed.shape[0])

    def _batch(self, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
        rows = self._packed[indices.to(self._packed.device)]  # (n, H, W/8)
        shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=rows.device)  # packbits is MSB first
        bits = (rows.unsqueeze(-1) >> shifts) & 1
        images = (bits.reshape(rows.shape[0], 1, rows.shape[1], -1) * 255).to(torch.uint8)
        return images.to(device, non_blocking=True)

    def to(self, device: torch.device | str) -> PackedImageSet:
        """Move the packed bits to the training device when they take under half its free memory."""
        device = torch.device(device)
        if device.type == "cpu" or self._packed.device == device:
            return self
        free = _free_device_bytes(device)
        if free is not None and self._packed.numel() > 0.5 * free:
            return self
        self._packed = self._packed.to(device)
        return self


def load_dsprites(path: str | Path, *, progress: Progress | None = None, **_options: object) -> PackedImageSet:
    """Open `dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz` (or a smaller file in the same layout).

    Unzipping and packing the official file takes seconds: `progress(done, total)` hears of each chunk.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    packed = _read_packed_images(path, progress)
    factors = _read_factors(path, len(packed))
    return PackedImageSet(packed, name="dSprites", source=str(path), factors=factors)


def _read_packed_images(path: Path, progress: Progress | None = None) -> np.ndarray:
    """Stream `imgs.npy` out of the zip and pack each chunk, never holding the unpacked array."""
    try:
        with zipfile.ZipFile(path) as archive:
            if "imgs.npy" not in archive.namelist():
                raise DatasetError(f"{path}: no 'imgs' array in the file (is it the dSprites npz?)")
            info = archive.getinfo("imgs.npy")
            with archive.open(info) as member:
                return _pack_stream(path, member, _member_limit(info), progress)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{path}: not a readable npz/zip file ({exc})") from exc
    except DatasetError:
        raise
    except MemoryError:
        raise DatasetError(f"{path}: 'imgs' is too large to hold in memory, even bit-packed") from None
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path}: cannot read 'imgs' ({os_reason(exc)})") from exc


# deflate cannot shrink data by more than 1032:1; other zip methods (bzip2, lzma) are not bounded that way
_MAX_DEFLATE_RATIO = 1032


def _member_limit(info: zipfile.ZipInfo) -> int:
    """Most bytes the member can really hold: its declared size, and for a stored or deflated member also
    what its compressed bytes can expand to, so a forged size in the zip directory cannot be believed either."""
    if info.compress_type == zipfile.ZIP_STORED:
        return min(info.file_size, info.compress_size)
    if info.compress_type == zipfile.ZIP_DEFLATED:
        return min(info.file_size, info.compress_size * _MAX_DEFLATE_RATIO + 1024)
    return info.file_size


def _read_header(path: Path, member: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(member)
    raise DatasetError(f"{path}: 'imgs' uses unsupported .npy format version {version}")


def _pack_stream(
    path: Path, member: IO[bytes], available: int | None = None, progress: Progress | None = None
) -> np.ndarray:
    """`available`: the most bytes the member holds; a header claiming more is refused before allocating."""
    shape, fortran, dtype = _read_header(path, member)
    if len(shape) != 3 or shape[1:] != (64, 64):
        raise DatasetError(f"{path}: 'imgs' has shape {shape}, expected (N, 64, 64)")
    if dtype != np.uint8:
        raise DatasetError(f"{path}: 'imgs' has dtype {dtype}, expected uint8")
    if fortran:
        raise DatasetError(f"{path}: 'imgs' is stored in Fortran order, expected C order")
    count, height, width = shape
    if count == 0:
        raise DatasetError(f"{path}: 'imgs' holds no images")
    if available is not None:
        _check_claimed_size(path, count, height * width, available - _position(member))
    packed = np.empty((count, height, width // 8), dtype=np.uint8)
    per_image = height * width
    for start in range(0, count, _CHUNK_IMAGES):
        n = min(_CHUNK_IMAGES, count - start)
        raw = member.read(n * per_image)
        if len(raw) != n * per_image:
            raise DatasetError(f"{path}: 'imgs' is truncated ({start + len(raw) // per_image} of {count} images)")
        chunk = np.frombuffer(raw, dtype=np.uint8).reshape(n, height, width)
        if chunk.max(initial=0) > 1:
            raise DatasetError(f"{path}: 'imgs' has values other than 0 and 1 (max {chunk.max()})")
        packed[start : start + n] = np.packbits(chunk, axis=-1)
        if progress is not None:
            progress(start + n, count)
    return packed


def _position(member: IO[bytes]) -> int:
    """Bytes read so far (the .npy header); 0 where the stream cannot tell, which only loosens the check."""
    try:
        return int(member.tell())
    except OSError:
        return 0


def _check_claimed_size(path: Path, count: int, per_image: int, data_bytes: int) -> None:
    """A damaged or crafted header can claim a billion images: believe it only as far as the file's bytes go."""
    if count * per_image > data_bytes:
        held = max(data_bytes, 0) // per_image
        raise DatasetError(
            f"{path}: 'imgs' claims {count:,} images but the file holds at most {held:,} "
            "(truncated or damaged; download it again)"
        )


def _read_factors(path: Path, count: int) -> Factors | None:
    """Factor grid from latents_classes/latents_values; None when the file has neither."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            classes = archive["latents_classes"] if "latents_classes" in keys else None
            values = archive["latents_values"] if "latents_values" in keys else None
    except MemoryError:
        raise DatasetError(f"{path}: the latents are too large to hold in memory (a damaged header?)") from None
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path}: cannot read the latents ({os_reason(exc)})") from exc
    if classes is None and values is None:
        return None
    if classes is None:
        raise DatasetError(f"{path}: has 'latents_values' but no 'latents_classes'")
    _check_latents(path, "latents_classes", classes, count)
    if values is not None:
        _check_latents(path, "latents_values", values, count)
    return build_factors(FACTOR_NAMES, classes, values)


def _check_latents(path: Path, key: str, array: np.ndarray, count: int) -> None:
    if array.ndim != 2 or array.shape[1] != len(FACTOR_NAMES):
        raise DatasetError(f"{path}: '{key}' has shape {array.shape}, expected (N, {len(FACTOR_NAMES)})")
    if array.shape[0] != count:
        raise DatasetError(f"{path}: '{key}' has {array.shape[0]} rows but 'imgs' has {count} images")
    wanted = "iu" if key == "latents_classes" else "fiu"
    if array.dtype.kind not in wanted:
        raise DatasetError(
            f"{path}: '{key}' has dtype {array.dtype}, expected {'integers' if wanted == 'iu' else 'numbers'}"
        )
    if not np.isfinite(array).all():
        raise DatasetError(f"{path}: '{key}' has non-finite values")


def build_factors(names: tuple[str, ...], classes: np.ndarray, values: np.ndarray | None) -> Factors:
    """Factors from per-image class indices (renumbered 0..size-1) and optional per-image values.

    The value of class c is taken from the first image with that class; when the classes are the
    full grid in canonical order (last factor fastest) the class table is dropped (classes=None).
    """
    dense = np.empty(classes.shape, dtype=np.int64)
    grids = []
    for k in range(classes.shape[1]):
        uniq, first, inverse = np.unique(classes[:, k], return_index=True, return_inverse=True)
        dense[:, k] = inverse.reshape(-1)
        grids.append(values[first, k].astype(np.float64) if values is not None else uniq.astype(np.float64))
    sizes = tuple(len(g) for g in grids)
    flat = np.ravel_multi_index(tuple(dense.T), sizes)
    canonical = len(flat) == int(np.prod(sizes, dtype=np.int64)) and bool((flat == np.arange(len(flat))).all())
    return Factors(names=tuple(names), sizes=sizes, values=tuple(grids), classes=None if canonical else dense)


def sniff_dsprites(path: Path) -> str | None:
    """An npz with an `imgs` stack of 2-D images: the dSprites layout (factors named when present)."""
    members = npz_members(path) if path.is_file() else None
    if not members or "imgs" not in members or len(members["imgs"][0]) != 3:
        return None
    shape, dtype = members["imgs"]
    factors = [key for key in ("latents_classes", "latents_values") if key in members]
    extra = f", with {' and '.join(factors)}" if factors else ", no factors"
    return f"dSprites npz: imgs {shape_text(shape)} {dtype}{extra}"


register(
    DatasetSpec(
        name="dsprites",
        label="dSprites (.npz file)",
        needs="file",
        shape=(1, 64, 64),
        factors=True,
        opener=load_dsprites,
        file_filter="dSprites (*.npz)",
        rank=1,
        sniff=sniff_dsprites,
    )
)
