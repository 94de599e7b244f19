"""A β-VAE encoder as a lossy image codec: store each image as its quantised latent mean.

Rate. A β-VAE pays KL_k nats per image for latent k; the information it actually carries about
an image is about KL_k / ln 2 bits. We spend bits only where the model does: the posterior
standard deviation σ_k says how precisely the decoder needs dimension k (it was trained on
samples mean ± σ_k), so a quantisation step of the order of σ_k costs little distortion.

Bit allocation (`allocate`), from the encoder on reference images (the checkpoint's own
validation split, up to 1000 images, or the images being compressed when no data is at hand):

- σ_k = mean over images of exp(0.5 · logvar_k); KL_k = mean of 0.5 · (μ² + σ² − 1 − log σ²).
- Inactive dimension: KL_k < 0.1 nats, or σ_k > 0.98, or std(μ_k) < 0.5 · σ_k (the means move less
  than the posterior noise, so the dimension carries under ~0.16 bits, I_k ≈ ½·log2(1 + var μ_k / σ_k²):
  an under-trained or collapsed model has KL ≥ 0.1 from σ_k < 1 alone). It gets 0 bits; the decoder
  uses the prior mean 0 there.
- Active dimension: range [low_k, high_k] = mean(μ_k) ± 4 · std(μ_k) (the spread of the encoded
  means); step target Δ_k = σ_k · s(Q) with s(Q) = 2^((50 − Q) / 12.5) for quality Q in 1..100
  (Q 50: Δ = σ; Q 100: Δ = σ/16; Q 1: Δ ≈ 15σ). bits_k = clip(round(log2((high_k − low_k) / Δ_k)), 1, 16).
  Higher quality never gives fewer bits.
- Quantiser: uniform mid-rise over the range with 2^bits_k cells; means outside the range clip to
  the end cells. symbol = clip(floor((μ − low) / (high − low) · 2^b), 0, 2^b − 1);
  value = low + (symbol + 0.5) · (high − low) / 2^b, computed in float64 from the float32 range
  stored in the file, then cast to float32.

Payload: each image's symbols in latent order, each written MSB first with its bit depth, images
one after another with no padding, the whole bit string packed into bytes (the last byte padded
with zero bits): ceil(n · Σ bits_k / 8) bytes. Then optionally entropy coded (method byte 1: zlib
level 9; 2: raw LZMA2 stream, preset 9 | extreme, 1 MiB dictionary, no container);
`compress(method="auto")` keeps whichever is shortest, raw bits included.

File format `.bvz` (version 2), all integers little-endian:

| offset      | size   | field                                                          |
|-------------|--------|----------------------------------------------------------------|
| 0           | 4      | magic `b"BVZ1"` (the same in every version)                    |
| 4           | 1      | version, u8 = 2                                                |
| 5           | 1      | flags, u8: bit 0 = some image was resized or converted to fit the model; others 0 |
| 6           | 32     | model fingerprint: raw SHA-256 of the weights (`ModelSource.fingerprint`) |
| 38          | 1      | channels C, u8 (1 or 3)                                        |
| 39          | 2      | height H, u16                                                  |
| 41          | 2      | width W, u16                                                   |
| 43          | 4      | image count n, u32                                             |
| 47          | 2      | latent dimensions D, u16                                       |
| 49          | 1      | quality, u8 (1..100)                                           |
| 50          | 9·D    | allocation, per dimension: bits u8 (0..16), low f32, high f32  |
| 50+9D       | 1      | payload method, u8: 0 raw bits, 1 zlib, 2 LZMA2 (raw stream)   |
| 51+9D       | 4      | payload length L, u32                                          |
| 55+9D       | 4      | image table length T, u32                                      |
| 59+9D       | L      | payload                                                        |
| 59+9D+L     | T      | image table: per image, in payload order, 6 + k bytes (below); |
|             |        | empty (T = 0) when every image is as is, with no name          |
| 59+9D+L+T   | 4      | CRC-32 (zlib.crc32), u32, over every byte before it           |

An image table entry: original height u16, original width u16, fit u8 (0 as is: the original had
the model's size; 1 padded: the original sits centred in the model's frame, its top-left corner at
((H − h) // 2, (W − w) // 2), as a data set's own transform pads it (MNIST's 28x28 digits); 2 resized),
name length k u8 (0..255), then k bytes of the image file's name in UTF-8 (k = 0: no name). A name is a
name, never a path: no `/`, `\\`, NUL or other control character, not `.` or `..`. Decoding gives
each image back at its original size (`restore_images`: the border cropped off, or resized back) and
`bvae decompress` writes it under its own name (made safe and unique: `output_names`).

The file is exactly 63 + 9·D + L + T bytes, and T is 0 or at least 6·n. T = 0 says every image had
the model's size and has no name (a data set's own images, as `bvae rd` codes them): the table would
be 6 bytes an image, more than a well-coded latent vector (2-5 bytes). Version 1 (still read) has no
image table and no T field: 59 + 9·D + L bytes, the payload at 55+9D; its images come back at the
model's size as img_0000.png, ...

A reader checks the length and the CRC before it trusts any field, then the magic, the version, that the
payload and table lengths match, that n ≥ 1 and the table holds n well-formed entries, that every
range is finite with low ≤ high (low < high where coded), the fingerprint against the model in
hand, and that the unpacked payload has exactly the expected number of bytes. A CRC proves only
that the file is as written, not that it is sane: a 149-byte version 1 file (or a version 2 file with
an empty table) can declare 2^21 images of
0 bits each, and a version 2 entry can declare a 65535x65535 original. So before decoding,
`check_expansion` wants `allow_large` for a file past `LARGE_IMAGE_COUNT` images, `LARGE_DECODED_BYTES`
of pixels (at their original sizes) or `LARGE_RATIO` times its own size, and refuses one whose decoding
needs more memory than the machine has available.
"""

from __future__ import annotations

import io
import lzma
import math
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bvae_desktop.core.atomic import atomic_write_bytes, new_folder_mode
from bvae_desktop.core.errors import CodecError, DatasetError, os_reason
from bvae_desktop.core.image_input import (
    FIT_AS_IS,
    FIT_PADDED,
    FITS,
    Fitted,
    Origin,
    fit_image,
    load_image,
    restore,
)
from bvae_desktop.core.latent_activity import ACTIVE_KL, activity_warning
from bvae_desktop.core.machine import available_memory_bytes, format_bytes

if TYPE_CHECKING:
    from bvae_desktop.core.model_source import ModelSource

MAGIC = b"BVZ1"
VERSION = 2  # written; READ_VERSIONS are read
READ_VERSIONS = (1, 2)
FLAG_RESIZED = 0x01
MAX_NAME_BYTES = 255
# said wherever the codec's figures would otherwise read as an achievement (the Compress tab, `bvae compress`)
NOTHING_CODED = "no latent dimension is coded: every image decodes to the same picture"
METHOD_RAW, METHOD_ZLIB, METHOD_LZMA = 0, 1, 2
METHOD_NAMES = {METHOD_RAW: "raw", METHOD_ZLIB: "zlib", METHOD_LZMA: "lzma"}
MAX_BITS = 16
MIN_KL = ACTIVE_KL
MAX_SIGMA = 0.98
MIN_SPREAD = 0.5  # std of the means over the posterior σ
RANGE_STDS = 4.0
MAX_DECODE_ELEMENTS = 2**33  # a crafted header (0-bit payload, 2^32 images) must not exhaust memory
MAX_RANGE = 1e6  # |low|, |high|: encoder means live within a few units; the writer's range is mean ± 4 std
# Past any of these a file is "large": decoding it needs allow_large=True (`bvae decompress --allow-large`,
# a question in the window). A 149-byte file (0 bits per dimension, 2^21 images) otherwise meant 8 GiB of
# pixels and two million PNGs. Legitimate files stay far below: 10,000 dSprites images decode to 40 MiB.
LARGE_IMAGE_COUNT = 100_000
LARGE_DECODED_BYTES = 1 << 30
LARGE_RATIO = 1 << 20  # decoded bytes per file byte; 1 bit per 64x64x3 image is 98,304 before entropy coding
LARGE_RATIO_MIN_BYTES = 64 << 20  # ... checked only past this much output: small files may have huge ratios
_DECODER_WORKSPACE = 64 << 20  # one batch of 256 images through the decoder's layers

_FIXED = struct.Struct("<4sBB32sBHHIHB")  # 50 bytes, up to the allocation
_DIM = struct.Struct("<Bff")  # 9 bytes per latent dimension
_TAIL = struct.Struct("<BI")  # method, payload length (version 1)
_TAIL2 = struct.Struct("<BII")  # method, payload length, image table length (version 2)
_ENTRY = struct.Struct("<HHBB")  # original height, width, fit, name length; then the name
_ENTRY_DTYPE = np.dtype([("height", "<u2"), ("width", "<u2"), ("fit", "u1"), ("name_length", "u1")])
_CRC = struct.Struct("<I")
# a 1 MiB dictionary: preset 9 alone allocates ~700 MB per call (70 ms) for payloads of a few hundred bytes
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 20}]
MIN_FILE_SIZE = _FIXED.size + _TAIL.size + _CRC.size  # a version 1 file with D = 0; version 2 needs 4 more
_MAX_SIDE = 0xFFFF


# ---------------------------------------------------------------- allocation


@dataclass(frozen=True)
class LatentStats:
    """What the allocation is derived from: per-dimension statistics of the encoder on reference images."""

    mean_mu: np.ndarray  # (D,) mean of the encoded means
    std_mu: np.ndarray  # (D,) spread of the encoded means
    sigma: np.ndarray  # (D,) mean posterior std, exp(0.5 · logvar)
    kl: np.ndarray  # (D,) mean KL to the prior, nats
    count: int


@dataclass(frozen=True)
class BitAllocation:
    """Per latent dimension: bit depth (0 = not stored) and the quantisation range [low, high] (float32)."""

    bits: np.ndarray  # (D,) uint8
    low: np.ndarray  # (D,) float32
    high: np.ndarray  # (D,) float32

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", np.asarray(self.bits, dtype=np.uint8).reshape(-1))
        object.__setattr__(self, "low", np.asarray(self.low, dtype=np.float32).reshape(-1))
        object.__setattr__(self, "high", np.asarray(self.high, dtype=np.float32).reshape(-1))
        if not (len(self.bits) == len(self.low) == len(self.high)):
            raise CodecError("bit allocation: bits, low and high must have one entry per latent dimension")
        if (self.bits > MAX_BITS).any():
            raise CodecError(f"bit allocation: at most {MAX_BITS} bits per dimension; got {int(self.bits.max())}")
        # every dimension, coded or not: a NaN or inf range in a 0-bit one still reached numpy's arithmetic
        with np.errstate(invalid="ignore"):
            finite = bool(np.isfinite(self.low).all() and np.isfinite(self.high).all())
            ordered = finite and bool((self.low <= self.high).all())
        if not finite or not ordered:
            raise CodecError("bit allocation: every dimension needs a finite range with low <= high")
        if max(float(np.abs(self.low).max(initial=0.0)), float(np.abs(self.high).max(initial=0.0))) > MAX_RANGE:
            raise CodecError(f"bit allocation: a range reaches past ±{MAX_RANGE:g}, far outside any latent code")
        active = self.bits > 0
        if not (self.high[active] > self.low[active]).all():
            raise CodecError("bit allocation: every coded dimension needs a range with low < high")

    @property
    def latent_dim(self) -> int:
        return len(self.bits)

    @property
    def bits_per_image(self) -> int:
        return int(self.bits.astype(np.int64).sum())

    def payload_bytes(self, count: int) -> int:
        """Length of the raw (method 0) payload for `count` images."""
        return (count * self.bits_per_image + 7) // 8

    def describe(self) -> str:
        active = int((self.bits > 0).sum())
        return (
            f"{active} of {self.latent_dim} dims coded, {self.bits_per_image} bits/image ({list(map(int, self.bits))})"
        )


def quality_scale(quality: int) -> float:
    """Quantisation step as a multiple of the posterior σ: 2^((50 − Q) / 12.5)."""
    return float(2.0 ** ((50 - quality) / 12.5))


def _check_quality(quality: object) -> int:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= int(quality) <= 100:
        raise CodecError(f"quality must be an integer from 1 to 100; got {quality!r}")
    return int(quality)


def reference_images(source: ModelSource, count: int = 1000, seed: int = 0) -> np.ndarray | None:
    """Up to `count` validation images of the model's own data set, or None when it has none attached."""
    if source.dataset is None or source.val_indices is None or len(source.val_indices) == 0:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.choice(source.val_indices, size=min(count, len(source.val_indices)), replace=False)
    return source.dataset.batch(np.sort(idx)).cpu().numpy()


def latent_stats(source: ModelSource, images: np.ndarray | None = None, *, count: int = 1000) -> LatentStats:
    """Encoder statistics on `images`, or on the model's validation images when `images` is None."""
    if images is None:
        images = reference_images(source, count)
        if images is None:
            reason = f" ({source.dataset_error})" if source.dataset_error else ""
            raise CodecError(
                "cannot derive a bit allocation: no images given and the model's training data is not available"
                + reason
            )
    images = np.asarray(images)
    if len(images) == 0:
        raise CodecError("cannot derive a bit allocation from zero images")
    mu, logvar = source.encode(images)
    mu = mu.astype(np.float64)
    logvar = logvar.astype(np.float64)
    kl = 0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar)
    return LatentStats(
        mean_mu=mu.mean(axis=0),
        std_mu=mu.std(axis=0),
        sigma=np.exp(0.5 * logvar).mean(axis=0),
        kl=kl.mean(axis=0),
        count=len(mu),
    )


def allocation_from_stats(
    stats: LatentStats,
    quality: int,
    *,
    min_kl: float = MIN_KL,
    max_sigma: float = MAX_SIGMA,
    min_spread: float = MIN_SPREAD,
) -> BitAllocation:
    """The rule of the module docstring, applied to precomputed statistics."""
    quality = _check_quality(quality)
    active = (stats.kl >= min_kl) & (stats.sigma <= max_sigma) & (stats.std_mu >= min_spread * stats.sigma)
    spread = np.maximum(stats.std_mu, 1e-3)
    low = (stats.mean_mu - RANGE_STDS * spread).astype(np.float32)
    high = (stats.mean_mu + RANGE_STDS * spread).astype(np.float32)
    step = np.maximum(stats.sigma, 1e-6) * quality_scale(quality)
    ratio = (high.astype(np.float64) - low.astype(np.float64)) / step
    bits = np.clip(np.round(np.log2(np.maximum(ratio, 1e-12))), 1, MAX_BITS)
    bits = np.where(active, bits, 0).astype(np.uint8)
    low = np.where(active, low, 0.0).astype(np.float32)
    high = np.where(active, high, 0.0).astype(np.float32)
    return BitAllocation(bits, low, high)


def allocate(
    source: ModelSource,
    quality: int,
    images: np.ndarray | None = None,
    *,
    count: int = 1000,
    min_kl: float = MIN_KL,
    max_sigma: float = MAX_SIGMA,
    min_spread: float = MIN_SPREAD,
) -> BitAllocation:
    """Bits and ranges per latent dimension for `quality` (1..100), from `images` or the model's validation data."""
    _check_quality(quality)
    stats = latent_stats(source, images, count=count)
    return allocation_from_stats(stats, quality, min_kl=min_kl, max_sigma=max_sigma, min_spread=min_spread)


# ---------------------------------------------------------------- quantiser


def quantise(means: np.ndarray, alloc: BitAllocation) -> np.ndarray:
    """Latent means (n, D) -> symbols (n, D) uint32; 0 in every 0-bit dimension."""
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2 or means.shape[1] != alloc.latent_dim:
        raise CodecError(f"quantise: means must be (n, {alloc.latent_dim}); got {means.shape}")
    bits = alloc.bits.astype(np.int64)
    levels = (1 << bits).astype(np.float64)
    low = alloc.low.astype(np.float64)
    width = np.where(bits > 0, alloc.high.astype(np.float64) - low, 1.0)
    scaled = np.floor((np.nan_to_num(means) - low) / width * levels)
    symbols = np.clip(scaled, 0, levels - 1)
    symbols[:, bits == 0] = 0
    return symbols.astype(np.uint32)


def dequantise(symbols: np.ndarray, alloc: BitAllocation) -> np.ndarray:
    """Symbols (n, D) -> latent codes (n, D) float32: cell centres; the prior mean 0 in 0-bit dimensions."""
    symbols = np.asarray(symbols)
    if symbols.ndim != 2 or symbols.shape[1] != alloc.latent_dim:
        raise CodecError(f"dequantise: symbols must be (n, {alloc.latent_dim}); got {symbols.shape}")
    bits = alloc.bits.astype(np.int64)
    levels = (1 << bits).astype(np.float64)
    low = alloc.low.astype(np.float64)
    width = alloc.high.astype(np.float64) - low
    codes = low + (symbols.astype(np.float64) + 0.5) * width / levels
    codes[:, bits == 0] = 0.0
    return codes.astype(np.float32)


# ---------------------------------------------------------------- bit packing


def _bit_layout(alloc: BitAllocation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each payload bit of one image: its dimension and shift; and where each coded dimension starts."""
    bits = alloc.bits.astype(np.int64)
    dims = np.repeat(np.arange(len(bits)), bits)
    shifts = np.concatenate([np.arange(b - 1, -1, -1) for b in bits]) if len(bits) else np.zeros(0, np.int64)
    return dims, shifts.astype(np.uint32), np.flatnonzero(bits)


def pack_symbols(symbols: np.ndarray, alloc: BitAllocation) -> bytes:
    """Symbols (n, D) -> the raw payload: each symbol MSB first at its bit depth, no padding until the end."""
    symbols = np.asarray(symbols, dtype=np.uint32)
    dims, shifts, _ = _bit_layout(alloc)
    if len(dims) == 0 or len(symbols) == 0:
        return b""
    bit_matrix = ((symbols[:, dims] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bit_matrix.reshape(-1)).tobytes()


def unpack_symbols(payload: bytes, alloc: BitAllocation, count: int) -> np.ndarray:
    """The inverse of `pack_symbols`; the payload must have exactly the expected length."""
    expected = alloc.payload_bytes(count)
    if len(payload) != expected:
        raise CodecError(f"payload holds {len(payload)} bytes; {count} images at this allocation need {expected}")
    symbols = np.zeros((count, alloc.latent_dim), dtype=np.uint32)
    dims, shifts, starts = _bit_layout(alloc)
    if len(dims) == 0 or count == 0:
        return symbols
    bit_matrix = np.unpackbits(np.frombuffer(payload, dtype=np.uint8), count=count * len(dims))
    values = bit_matrix.reshape(count, len(dims)).astype(np.uint32) << shifts
    offsets = np.concatenate([[0], np.cumsum(alloc.bits.astype(np.int64)[starts])[:-1]])
    symbols[:, starts] = np.add.reduceat(values, offsets, axis=1)
    return symbols


def _encode_payload(raw: bytes, method: int) -> bytes:
    if method == METHOD_RAW:
        return raw
    if method == METHOD_ZLIB:
        return zlib.compress(raw, 9)
    if method == METHOD_LZMA:
        return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    raise CodecError(f"unknown payload method {method}")


def _decode_payload(payload: bytes, method: int, expected: int) -> bytes:
    try:
        if method == METHOD_RAW:
            raw = payload
        elif method == METHOD_ZLIB:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(payload, expected + 1)
            if not inflater.eof or inflater.unused_data:
                raise CodecError("the zlib payload is truncated or has trailing data")
        elif method == METHOD_LZMA:
            decoder = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
            raw = decoder.decompress(payload, max_length=expected + 1)
        else:
            raise CodecError(f"unknown payload method {method}")
    except (zlib.error, lzma.LZMAError) as exc:
        raise CodecError(f"the {METHOD_NAMES[method]} payload cannot be decoded: {exc}") from exc
    return raw


# ---------------------------------------------------------------- the file


@dataclass(frozen=True)
class BvzHeader:
    version: int
    flags: int
    fingerprint: str  # hex
    channels: int
    height: int
    width: int
    count: int
    quality: int
    alloc: BitAllocation
    method: int
    payload_offset: int
    payload_length: int
    # version 2: per image its original (height, width) and fit code (index into FITS); None in version 1
    origin_sizes: np.ndarray | None = field(default=None, compare=False)  # (n, 2) int64
    origin_fits: np.ndarray | None = field(default=None, compare=False)  # (n,) uint8
    names: dict[int, str] = field(default_factory=dict)  # image index -> file name, only the images that have one

    @property
    def latent_dim(self) -> int:
        return self.alloc.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def resized(self) -> bool:
        return bool(self.flags & FLAG_RESIZED)

    def origin(self, index: int) -> Origin:
        """Image `index`'s original size, fit and name (version 1: the model's size, as is, no name)."""
        name = self.names.get(index, "")
        if self.origin_sizes is None or self.origin_fits is None:
            return Origin(self.height, self.width, FIT_AS_IS, name)
        height, width = (int(v) for v in self.origin_sizes[index])
        return Origin(height, width, FITS[int(self.origin_fits[index])], name)

    def decoded_pixels(self) -> int:
        """Pixel values of every image at its original size (what decoding gives back)."""
        if self.origin_sizes is None:
            return self.count * self.channels * self.height * self.width
        return self.channels * int(np.prod(self.origin_sizes, axis=1, dtype=np.int64).sum())

    def fitted_count(self) -> int:
        """Images that were padded or resized to fit the model (decoding gives them back at their own size)."""
        if self.origin_fits is None:
            return 0
        return int((self.origin_fits != FITS.index(FIT_AS_IS)).sum())

    def restored_pixels(self) -> tuple[int, int]:
        """Pixel values of the images given back at another size than the model's (new arrays), in all and
        of the largest one: (0, 0) for a version 1 file or one whose images are all as is."""
        if self.origin_sizes is None or self.origin_fits is None:
            return 0, 0
        moved = np.prod(self.origin_sizes, axis=1, dtype=np.int64)[self.origin_fits != FITS.index(FIT_AS_IS)]
        return self.channels * int(moved.sum()), self.channels * int(moved.max(initial=0))


def _prefix(name: str | os.PathLike[str] | None) -> str:
    return f"{name}: " if name is not None else ""


_FORBIDDEN_IN_NAMES = frozenset("/\\\0") | frozenset(chr(c) for c in (*range(32), 127))


def name_problem(name: str) -> str | None:
    """Why `name` cannot be an image's name in a .bvz (a path, a control character, `.`/`..`), or None."""
    bad = sorted({c for c in name if c in _FORBIDDEN_IN_NAMES})
    if bad:
        return f"it holds {', '.join(repr(c) for c in bad)}: a name must not be a path"
    if name and set(name) == {"."}:
        return f"{name!r} is not a file name"
    return None


def storable_name(name: str) -> str:
    """A file's name as a .bvz can hold it: forbidden characters as "_", at most 255 UTF-8 bytes (suffix kept)."""
    text = "".join("_" if c in _FORBIDDEN_IN_NAMES else c for c in str(name))
    text = text.encode("utf-8", "replace").decode("utf-8")  # undecodable file-system bytes become "?"
    if set(text) <= {"."}:
        return ""
    if len(text.encode("utf-8")) > MAX_NAME_BYTES:
        stem, dot, suffix = text.rpartition(".")
        suffix = f".{suffix}" if dot and stem and len(suffix.encode("utf-8")) < 16 else ""
        room = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
        text = (text[: -len(suffix)] if suffix else text).encode("utf-8")[:room].decode("utf-8", "ignore") + suffix
    return text


def _entry_bytes(origin: Origin) -> bytes:
    encoded = storable_name(origin.name).encode("utf-8")
    if not (1 <= origin.height <= _MAX_SIDE and 1 <= origin.width <= _MAX_SIDE):
        raise CodecError(
            f"{origin.name or 'an image'}: {origin.width}x{origin.height} is too large to record (at most {_MAX_SIDE} a side)"
        )
    return _ENTRY.pack(origin.height, origin.width, FITS.index(origin.fit), len(encoded)) + encoded


def build_file(
    fingerprint: str,
    image_shape: tuple[int, int, int],
    count: int,
    quality: int,
    alloc: BitAllocation,
    raw_payload: bytes,
    *,
    method: int | str = "auto",
    flags: int = 0,
    version: int = VERSION,
    origins: Sequence[Origin] | None = None,
) -> bytes:
    """Assemble a .bvz file from its parts; `method` "auto" keeps the shortest payload encoding.
    `origins`: each image's original size, fit and name (default: the model's size, as is, no name);
    `version` 1 writes the old layout, which has no room for them."""
    if method == "auto":
        candidates = [(m, _encode_payload(raw_payload, m)) for m in (METHOD_RAW, METHOD_ZLIB, METHOD_LZMA)]
        method, payload = min(candidates, key=lambda item: (len(item[1]), item[0]))
    else:
        if method not in METHOD_NAMES:
            raise CodecError(f"unknown payload method {method!r}; use 0 (raw), 1 (zlib), 2 (lzma) or 'auto'")
        payload = _encode_payload(raw_payload, int(method))
    channels, height, width = image_shape
    head = _FIXED.pack(
        MAGIC, version, flags, bytes.fromhex(fingerprint), channels, height, width, count, alloc.latent_dim, quality
    )
    dims = b"".join(
        _DIM.pack(int(b), float(lo), float(hi)) for b, lo, hi in zip(alloc.bits, alloc.low, alloc.high, strict=True)
    )
    if version == 1:
        if origins is not None:
            raise CodecError("a version 1 .bvz has no room for the images' names and sizes")
        body = head + dims + _TAIL.pack(int(method), len(payload)) + payload
    else:
        if origins is not None and len(origins) != count:
            raise CodecError(f"{len(origins)} image records for {count} images")
        plain = Origin(height, width, FIT_AS_IS, "")
        if origins is None or all(origin == plain for origin in origins):
            table = b""  # every image as is, no name: nothing to record
        else:
            table = b"".join(_entry_bytes(origin) for origin in origins)
        body = head + dims + _TAIL2.pack(int(method), len(payload), len(table)) + payload + table
    return body + _CRC.pack(zlib.crc32(body))


def parse_header(data: bytes, *, name: str | os.PathLike[str] | None = None) -> BvzHeader:
    """Check a whole .bvz file (length, CRC, magic, version, lengths, field ranges) and return its header."""
    where = _prefix(name)
    data = bytes(data)
    if len(data) < MIN_FILE_SIZE:
        if not data.startswith(MAGIC[: len(data)]) or not data:
            raise CodecError(f"{where}not a .bvz file ({len(data)} bytes, no BVZ1 magic)")
        raise CodecError(f"{where}truncated .bvz file: {len(data)} bytes, at least {MIN_FILE_SIZE} needed")
    (stored_crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[: -_CRC.size]) != stored_crc:
        if not data.startswith(MAGIC):
            raise CodecError(f"{where}not a .bvz file (no BVZ1 magic)")
        raise CodecError(f"{where}corrupted or truncated .bvz file: CRC-32 check failed")
    magic, version, flags, fp, channels, height, width, count, latent_dim, quality = _FIXED.unpack_from(data, 0)
    if magic != MAGIC:
        raise CodecError(f"{where}not a .bvz file (no BVZ1 magic)")
    if version not in READ_VERSIONS:
        raise CodecError(
            f"{where}unsupported .bvz version {version} (this program reads versions "
            f"{', '.join(map(str, READ_VERSIONS))})"
        )
    tail = _TAIL if version == 1 else _TAIL2
    tail_at = _FIXED.size + _DIM.size * latent_dim
    if len(data) < tail_at + tail.size + _CRC.size:
        raise CodecError(f"{where}malformed .bvz file: too short for {latent_dim} latent dimensions")
    if version == 1:
        method, payload_length = _TAIL.unpack_from(data, tail_at)
        table_length = 0
    else:
        method, payload_length, table_length = _TAIL2.unpack_from(data, tail_at)
    payload_offset = tail_at + tail.size
    if payload_offset + payload_length + table_length + _CRC.size != len(data):
        held = len(data) - payload_offset - _CRC.size
        raise CodecError(
            f"{where}malformed .bvz file: the header declares a {payload_length}-byte payload"
            + (f" and a {table_length}-byte image table" if version > 1 else "")
            + f", the file holds {held}"
        )
    if method not in METHOD_NAMES:
        raise CodecError(f"{where}malformed .bvz file: unknown payload method {method}")
    if channels not in (1, 3) or height == 0 or width == 0:
        raise CodecError(f"{where}malformed .bvz file: image shape {channels}x{height}x{width}")
    if not 1 <= quality <= 100:
        raise CodecError(f"{where}malformed .bvz file: quality {quality}")
    if count == 0:
        # compress() refuses to write an empty file, so this one is damaged or not ours: say so rather
        # than "decode" nothing and report a successful, empty result
        raise CodecError(f"{where}malformed .bvz file: it declares 0 images (an empty .bvz is never written)")
    if flags & ~FLAG_RESIZED:
        raise CodecError(f"{where}malformed .bvz file: unknown flags 0x{flags:02x}")
    dims = np.array(
        [_DIM.unpack_from(data, _FIXED.size + _DIM.size * k) for k in range(latent_dim)], dtype=np.float64
    ).reshape(latent_dim, 3)
    try:
        alloc = BitAllocation(dims[:, 0].astype(np.uint8), dims[:, 1], dims[:, 2])
    except CodecError as exc:
        raise CodecError(f"{where}malformed .bvz file: {exc}") from exc
    header = BvzHeader(
        version=version,
        flags=flags,
        fingerprint=fp.hex(),
        channels=channels,
        height=height,
        width=width,
        count=count,
        quality=quality,
        alloc=alloc,
        method=method,
        payload_offset=payload_offset,
        payload_length=payload_length,
    )
    if version == 1 or table_length == 0:  # no table: every image as is, no name
        return header
    try:
        sizes, fits, names = _parse_table(data, payload_offset + payload_length, table_length, header)
    except CodecError as exc:
        raise CodecError(f"{where}malformed .bvz file: {exc}") from exc
    return replace(header, origin_sizes=sizes, origin_fits=fits, names=names)


def _parse_table(
    data: bytes, offset: int, length: int, header: BvzHeader
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """The image table: n entries of 6 + k bytes, every field checked against the bytes there and the model's size."""
    count = header.count
    if length < _ENTRY.size * count:
        raise CodecError(f"the image table holds {length} bytes; {count} images need at least {_ENTRY.size * count}")
    names: dict[int, str] = {}
    if length == _ENTRY.size * count:  # no names: read the table in one go
        table = np.frombuffer(data, dtype=_ENTRY_DTYPE, count=count, offset=offset)
        if table["name_length"].any():
            raise CodecError("the image table is shorter than its names")
        heights, widths, fits = table["height"], table["width"], table["fit"]
    else:
        heights = np.empty(count, np.int64)
        widths = np.empty(count, np.int64)
        fits = np.empty(count, np.uint8)
        at, end = offset, offset + length
        for i in range(count):
            if at + _ENTRY.size > end:
                raise CodecError(f"the image table ends inside image {i}'s entry")
            heights[i], widths[i], fits[i], size = _ENTRY.unpack_from(data, at)
            at += _ENTRY.size
            if at + size > end:
                raise CodecError(f"the image table ends inside image {i}'s name")
            if size:
                names[i] = _read_name(data[at : at + size], i)
            at += size
        if at != end:
            raise CodecError(f"the image table has {end - at} bytes after its {count} entries")
    sizes = np.stack([np.asarray(heights, np.int64), np.asarray(widths, np.int64)], axis=1)
    fits = np.asarray(fits, np.uint8)
    _check_origins(sizes, fits, header)
    return sizes, fits, names


def _read_name(raw: bytes, index: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError(f"image {index}'s name is not UTF-8 ({exc.reason})") from None
    problem = name_problem(text)
    if problem is not None:
        raise CodecError(f"image {index}'s name {text[:40]!r}: {problem}")
    return text


def _check_origins(sizes: np.ndarray, fits: np.ndarray, header: BvzHeader) -> None:
    """Each fit code known, sides ≥ 1, "as is" at the model's size and "padded" inside it."""
    height, width = sizes[:, 0], sizes[:, 1]
    problems = (
        (fits >= len(FITS), lambda i: f"unknown fit {int(fits[i])}"),
        ((height == 0) | (width == 0), lambda i: f"an original size of {int(width[i])}x{int(height[i])}"),
        (
            (fits == FITS.index(FIT_AS_IS)) & ((height != header.height) | (width != header.width)),
            lambda i: f"{int(width[i])}x{int(height[i])} 'as is' for a {header.width}x{header.height} model",
        ),
        (
            (fits == FITS.index(FIT_PADDED)) & ((height > header.height) | (width > header.width)),
            lambda i: f"{int(width[i])}x{int(height[i])} 'padded' into a smaller {header.width}x{header.height} frame",
        ),
    )
    for bad, say in problems:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CodecError(f"image {i}: {say(i)}")


def fit_images(
    images: np.ndarray, shape: tuple[int, int, int], *, resize: bool, dataset: str | None = None
) -> tuple[np.ndarray, list[Origin], bool]:
    """(n, C, h, w) uint8 images as a model taking `shape` (trained on `dataset`) needs them: as they are when
    they fit, padded as the data set's own images are, or (with `resize`) resized/converted. Returns the images,
    each one's origin, and whether any was resized or converted."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.dtype != np.uint8:
        raise CodecError(f"images must be uint8 shaped (n, C, H, W); got {images.dtype} {images.shape}")
    if tuple(images.shape[1:]) == tuple(shape):
        return images, [Origin(shape[1], shape[2])] * len(images), False
    try:
        fitted = [fit_image(img, shape, dataset, resize=resize, what=f"image {i}") for i, img in enumerate(images)]
    except DatasetError as exc:
        raise CodecError(str(exc)) from exc
    out = np.stack([f.image for f in fitted]) if fitted else np.empty((0, *shape), np.uint8)
    return out, [f.origin for f in fitted], any(f.resized for f in fitted)


def allocation_stats(source: ModelSource, images: np.ndarray) -> LatentStats:
    """Encoder statistics for the bit allocation: on the model's validation data, or on `images` without it."""
    return latent_stats(source, None if reference_images(source, 1) is not None else np.asarray(images))


def coding_warning(alloc: BitAllocation, kl: Sequence[float] | np.ndarray | None) -> str | None:
    """What to say instead of a compression ratio: nothing is coded (every image decodes alike), and why."""
    inactive = activity_warning(kl)
    if alloc.bits_per_image > 0:
        return inactive
    return NOTHING_CODED + (f"; {inactive}" if inactive else "")


def compress(
    source: ModelSource,
    images: np.ndarray,
    quality: int,
    *,
    resize: bool = False,
    alloc: BitAllocation | None = None,
    method: int | str = "auto",
    resized: bool = False,
    origins: Sequence[Origin] | None = None,
) -> bytes:
    """uint8 images (n, C, H, W) -> a .bvz file (bytes). The allocation comes from the model's validation
    data (or, without data, from `images`) unless given. Images of the model's data set's raw form (a 28x28
    digit for an MNIST model) are padded as in training; others of another size need `resize`.
    `origins`: the images' original sizes, fits and names (from `load_inputs`) when they already fit the
    model. `resized`: the caller already resized some (sets the file's flag, as `resize` does)."""
    quality = _check_quality(quality)
    images, fitted_origins, did_resize = fit_images(
        images, source.image_shape, resize=resize, dataset=source.config.dataset
    )
    if origins is not None:
        if did_resize or any(o.fit != FIT_AS_IS for o in fitted_origins):
            raise CodecError("origins are for images that already fit the model")
        if len(origins) != len(images):
            raise CodecError(f"{len(origins)} image records for {len(images)} images")
        fitted_origins = list(origins)
    if len(images) == 0:
        raise CodecError("nothing to compress: no images")
    if len(images) >= 2**32:
        raise CodecError("too many images for one .bvz file")
    if alloc is None:
        alloc = allocation_from_stats(allocation_stats(source, images), quality)
    if alloc.latent_dim != source.latent_dim:
        raise CodecError(f"the allocation has {alloc.latent_dim} dimensions; the model has {source.latent_dim}")
    means, _ = source.encode(images)
    raw = pack_symbols(quantise(means, alloc), alloc)
    return build_file(
        source.fingerprint(),
        source.image_shape,
        len(images),
        quality,
        alloc,
        raw,
        method=method,
        flags=FLAG_RESIZED if (resized or did_resize) else 0,
        origins=fitted_origins,
    )


def decode_symbols(data: bytes, *, name: str | os.PathLike[str] | None = None) -> tuple[BvzHeader, np.ndarray]:
    """Check a file and unpack its symbols (no model needed)."""
    header = parse_header(data, name=name)
    if header.count * max(header.latent_dim, header.channels * header.height * header.width) > MAX_DECODE_ELEMENTS:
        raise CodecError(f"{_prefix(name)}the file declares {header.count} images: too many to decode at once")
    payload = bytes(data[header.payload_offset : header.payload_offset + header.payload_length])
    expected = header.alloc.payload_bytes(header.count)
    try:
        raw = _decode_payload(payload, header.method, expected)
        symbols = unpack_symbols(raw, header.alloc, header.count)
    except CodecError as exc:
        raise CodecError(f"{_prefix(name)}malformed .bvz file: {exc}") from exc
    return header, symbols


def check_model(header: BvzHeader, source: ModelSource, *, name: str | os.PathLike[str] | None = None) -> None:
    """Refuse a file made by another model, or whose images or latents do not fit this one."""
    ours = source.fingerprint()
    if header.fingerprint != ours:
        raise CodecError(
            f"{_prefix(name)}made by another model: the file's model fingerprint is {header.fingerprint[:12]}, "
            f"this model's ({source.label}) is {ours[:12]}"
        )
    if header.image_shape != tuple(source.image_shape) or header.latent_dim != source.latent_dim:
        raise CodecError(
            f"{_prefix(name)}the file holds {header.image_shape} images with {header.latent_dim} latents; "
            f"the model takes {tuple(source.image_shape)} with {source.latent_dim}"
        )


class LargeFileError(CodecError):
    """A well-formed file that expands past the limits for decoding without asking (see `large_reason`)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


DECODE_BATCH = 256  # images decoded (and restored, and written) at a time when not all in memory


def decoded_bytes(header: BvzHeader) -> int:
    """Bytes of the uint8 images the file decodes to, at their original sizes."""
    return header.decoded_pixels()


def decode_memory_bytes(header: BvzHeader, *, images_in_memory: bool = True) -> int:
    """Peak memory of decoding, roughly: unpacked bits (5 B per bit), symbols and codes (24 B per latent),
    and, unless decoded in batches, the images twice (the batches, then their concatenation); plus the images
    given back at another size (`restore_images`): all of them, or in batches one batch's worth."""
    per_image = 5 * header.alloc.bits_per_image + 24 * header.latent_dim
    restored, largest = header.restored_pixels()
    if images_in_memory:
        per_image += 2 * header.channels * header.height * header.width
    else:
        restored = min(header.count, DECODE_BATCH) * largest
    return header.count * per_image + restored + header.payload_length + _DECODER_WORKSPACE


def large_reason(header: BvzHeader, file_size: int) -> str | None:
    """Why decoding this file deserves a question first (it expands far past its size), or None."""
    out = decoded_bytes(header)
    if header.count > LARGE_IMAGE_COUNT:
        return f"it declares {header.count:,} images ({format_bytes(out)} decoded; the limit without asking is {LARGE_IMAGE_COUNT:,})"
    if out > LARGE_DECODED_BYTES:
        return f"it decodes to {format_bytes(out)} of images (the limit without asking is {format_bytes(LARGE_DECODED_BYTES)})"
    if out > LARGE_RATIO_MIN_BYTES and out > LARGE_RATIO * max(file_size, 1):
        return f"its {file_size:,} bytes expand to {format_bytes(out)}, {out / max(file_size, 1):,.0f} times their size"
    return None


def check_expansion(
    header: BvzHeader,
    file_size: int,
    *,
    name: str | os.PathLike[str] | None = None,
    allow_large: bool = False,
    images_in_memory: bool = True,
    available_memory: int | None = None,
) -> None:
    """LargeFileError past the limits unless `allow_large`; CodecError when the memory needed is not there at all.
    `available_memory`: bytes free (default: asked of the machine; None when it cannot say)."""
    if header.count * max(header.latent_dim, header.channels * header.height * header.width) > MAX_DECODE_ELEMENTS:
        raise CodecError(f"{_prefix(name)}the file declares {header.count:,} images: too many to decode at once")
    reason = large_reason(header, file_size)
    if reason is not None and not allow_large:
        raise LargeFileError(f"{_prefix(name)}{reason}; decode it only if you expect that much (allow_large)", reason)
    need = decode_memory_bytes(header, images_in_memory=images_in_memory)
    free = available_memory_bytes() if available_memory is None else available_memory
    if free is not None and need > free:
        raise CodecError(
            f"{_prefix(name)}decoding its {header.count:,} images needs about {format_bytes(need)} of memory; "
            f"{format_bytes(free)} is available"
        )


def decode_codes(
    source: ModelSource,
    data: bytes,
    *,
    name: str | os.PathLike[str] | None = None,
    allow_large: bool = False,
    images_in_memory: bool = True,
) -> tuple[BvzHeader, np.ndarray]:
    """Every check (file, model, size), then the latent codes (n, D) float32 to decode, in batches if need be."""
    header = parse_header(data, name=name)
    check_model(header, source, name=name)
    check_expansion(header, len(data), name=name, allow_large=allow_large, images_in_memory=images_in_memory)
    _, symbols = decode_symbols(data, name=name)
    return header, dequantise(symbols, header.alloc)


def decompress(
    source: ModelSource, data: bytes, *, name: str | os.PathLike[str] | None = None, allow_large: bool = False
) -> np.ndarray:
    """A .bvz file (bytes) -> uint8 images (n, C, H, W), decoded by `source` (which must be the model that made it).
    A file past the size limits raises LargeFileError unless `allow_large` (see `large_reason`)."""
    _, codes = decode_codes(source, data, name=name, allow_large=allow_large)
    return source.decode(codes)


def png_bytes_bound(header: BvzHeader) -> int:
    """Disk space the decoded PNGs can take: raw pixels plus a row filter byte and chunk overhead per image,
    each file rounded up to 4 KiB blocks (PNG of decoded images is usually far smaller)."""
    if header.origin_sizes is None:
        sizes = np.array([[header.height, header.width]], np.int64).repeat(header.count, axis=0)
    else:
        sizes = header.origin_sizes.astype(np.int64)
    per_file = header.channels * sizes[:, 0] * sizes[:, 1] + sizes[:, 0] + 512
    return int((-(-per_file // 4096) * 4096).sum())


def restore_images(header: BvzHeader, images: np.ndarray, start: int = 0) -> list[np.ndarray]:
    """Decoded model-sized images `start`, `start + 1`, ... given back at their original sizes (the padding
    cropped off, resized images resized back); a version 1 file's stay as they are."""
    if header.origin_sizes is None:
        return list(images)
    return [restore(image, header.origin(start + i)) for i, image in enumerate(images)]


_WINDOWS_UNSAFE = frozenset('<>:"|?*')
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))]
)
_MAX_STEM_BYTES = 200  # room for "-12345.png" within any file system's 255


def output_names(header: BvzHeader) -> list[str]:
    """A PNG file name per image: its own name's stem (made safe on every system) + ".png", or img_0000.png
    for an image without one; clashes (also by case, for Windows and macOS) get "-1", "-2", ..."""
    names, taken = [], set()
    for i in range(header.count):
        stem = _safe_stem(header.names.get(i, "")) or f"img_{i:04d}"
        candidate, k = f"{stem}.png", 0
        while candidate.casefold() in taken:
            k += 1
            candidate = f"{stem}-{k}.png"
        taken.add(candidate.casefold())
        names.append(candidate)
    return names


def _safe_stem(name: str) -> str:
    """The name without its suffix; characters Windows refuses as "_"; no leading dots (hidden files), no
    trailing dots or spaces; a device name (CON, NUL, ...) gets a leading "_"."""
    stem = Path(name).stem if "." in name.lstrip(".") else name
    stem = "".join("_" if c in _WINDOWS_UNSAFE or c in _FORBIDDEN_IN_NAMES else c for c in stem)
    stem = stem.lstrip(".").rstrip(". ")
    if stem.split(".")[0].upper() in _WINDOWS_DEVICES:
        stem = "_" + stem
    return stem.encode("utf-8")[:_MAX_STEM_BYTES].decode("utf-8", "ignore")


def write_png_folder(
    folder: str | os.PathLike[str], batches: Iterable[Iterable[np.ndarray]], names: Sequence[str] | None = None
) -> int:
    """Write img_0000.png, ... (or `names`, plain file names) into `folder` from batches of uint8 (C, H, W)
    images (arrays (n, C, H, W) or lists of images of any sizes); return how many.

    All or nothing: the PNGs are written into a hidden staging folder (beside a new `folder`, inside an
    existing one) and moved in at the end; any failure (a full disk, Ctrl-C) removes what was written.
    """
    target = Path(folder)
    try:
        if target.exists() and not target.is_dir():
            raise CodecError(f"{target}: not a folder")
        existed = target.is_dir()
        home = target if existed else target.absolute().parent
        home.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{target.absolute().name or 'images'}.", suffix=".tmp", dir=home))
    except OSError as exc:
        raise CodecError(f"{target}: cannot write PNGs: {os_reason(exc)}") from exc
    try:
        count = 0
        for batch in batches:
            for image in batch:
                file_name = f"img_{count:04d}.png" if names is None else names[count]
                if Path(file_name).name != file_name or name_problem(file_name) is not None:
                    raise CodecError(f"{file_name!r} is not a plain file name")
                _to_pil(image).save(stage / file_name, format="PNG")  # type: ignore[attr-defined]
                count += 1
        _move_in(stage, target, existed)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise CodecError(f"{target}: cannot write PNGs: {os_reason(exc)}; none were written") from exc
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return count


def _move_in(stage: Path, target: Path, existed: bool) -> None:
    """A new folder appears whole (one rename); into an existing one, file by file (renames need no space)."""
    if not existed:
        os.chmod(stage, new_folder_mode())  # mkdtemp made it 0700; a plain mkdir would follow the umask
        os.replace(stage, target)
        return
    for path in sorted(stage.iterdir()):
        os.replace(path, target / path.name)
    stage.rmdir()


def write_bvz(path: str | os.PathLike[str], data: bytes) -> None:
    """Write atomically: the file appears whole or not at all."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise CodecError(f"{path}: cannot write: {exc.strerror or exc}") from exc


def read_bvz(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CodecError(f"{path}: cannot read: {exc.strerror or exc}") from exc


# ---------------------------------------------------------------- images


def load_inputs(
    paths: Sequence[str | os.PathLike[str]],
    shape: tuple[int, int, int],
    resize: bool = False,
    *,
    dataset: str | None = None,
) -> list[Fitted]:
    """Image files as a model taking `shape`, trained on `dataset`, needs them (core/image_input.py): each with
    its original size, how it was fitted and its name. CodecError naming the file on trouble; without
    `resize`, images needing more than the data set's own padding are refused."""
    if not paths:
        raise CodecError("no image files given")
    try:
        return [load_image(path, shape, dataset, resize=resize) for path in paths]
    except DatasetError as exc:
        raise CodecError(str(exc)) from exc


def load_images(
    paths: Sequence[str | os.PathLike[str]],
    shape: tuple[int, int, int],
    resize: bool = False,
    *,
    converted: list[str] | None = None,
    dataset: str | None = None,
) -> np.ndarray:
    """Image files -> uint8 (n, C, H, W) (see `load_inputs`); the names of the images changed to fit go to `converted`."""
    fitted = load_inputs(paths, shape, resize, dataset=dataset)
    if converted is not None:
        converted.extend(str(path) for path, f in zip(paths, fitted, strict=True) if f.changed)
    return np.stack([f.image for f in fitted])


def _to_pil(image: np.ndarray) -> object:
    from PIL import Image

    image = np.asarray(image, dtype=np.uint8)
    if image.ndim == 2:
        return Image.fromarray(image)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise CodecError(f"an image must be (C, H, W) with 1 or 3 channels; got {image.shape}")
    return Image.fromarray(image[0]) if image.shape[0] == 1 else Image.fromarray(np.moveaxis(image, 0, -1))


def _from_pil(pil: object, channels: int) -> np.ndarray:
    arr = np.asarray(pil.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)  # type: ignore[attr-defined]
    return arr[None] if channels == 1 else np.moveaxis(arr, -1, 0)


def _pillow_round_trip(image: np.ndarray, fmt: str, **options: object) -> tuple[int, np.ndarray]:
    from PIL import Image

    pil = _to_pil(image)
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt, **options)  # type: ignore[attr-defined]
    size = buffer.tell()
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        channels = 1 if np.asarray(image).ndim == 2 else np.asarray(image).shape[0]
        out = _from_pil(decoded, channels)
    if np.asarray(image).ndim == 2:
        out = out[0]
    return size, out


def jpeg_bytes(image: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    """(size in bytes, decoded uint8 image) for a (C, H, W) or (H, W) image saved as baseline JPEG (optimised Huffman)."""
    return _pillow_round_trip(image, "JPEG", quality=int(quality), optimize=True)


def webp_bytes(image: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    """(size in bytes, decoded uint8 image) for lossy WebP at `quality` (0..100), slowest/best method."""
    return _pillow_round_trip(image, "WEBP", quality=int(quality), method=6)


def png_size(image: np.ndarray) -> int:
    """Bytes of the image saved as an optimised PNG."""
    pil = _to_pil(image)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", optimize=True)  # type: ignore[attr-defined]
    return buffer.tell()


# ---------------------------------------------------------------- quality metrics


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of uint8 images, peak 255, over all pixels; inf when identical."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 1-D Gaussian (the 2-D window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of the last two axes with the window outer(g, g)."""
    from numpy.lib.stride_tricks import sliding_window_view

    x = sliding_window_view(x, len(g), axis=-1) @ g
    x = np.swapaxes(x, -1, -2)
    x = sliding_window_view(x, len(g), axis=-1) @ g
    return np.swapaxes(x, -1, -2)


def ssim_map(a: np.ndarray, b: np.ndarray, *, window: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Wang et al. (2004) SSIM map over the last two axes ('valid' Gaussian filtering, L = 255, K = 0.01, 0.03)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ: {a.shape} vs {b.shape}")
    size = min(window, a.shape[-1], a.shape[-2])
    size -= 1 - size % 2  # odd
    g = gaussian_window(size, sigma)
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of uint8 images (H, W), (C, H, W) or (n, C, H, W): per channel and image, then averaged."""
    return float(ssim_map(a, b).mean())
