""".bvz files that are damaged or crafted: every one is a CodecError or a well-formed decode, never a crash,
a warning, an 8 GiB allocation or a half-written folder of PNGs."""

from __future__ import annotations

import errno
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
import torch

from bvae_desktop.core import codec
from bvae_desktop.core.codec import BitAllocation
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import CodecError
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.nets import BetaVAE

SHAPE = (1, 32, 32)
ALLOC = BitAllocation(bits=[3, 0, 7, 12], low=[-0.5, 0.0, -0.1, -2.0], high=[0.5, 0.0, 0.1, 2.0])
ZERO_BITS = BitAllocation(bits=[0] * 4, low=[0] * 4, high=[0] * 4)


@pytest.fixture(scope="module")
def source() -> ModelSource:
    """An untrained 32x32 model with 4 latents: decoding a few images takes about a millisecond."""
    torch.manual_seed(0)
    model = BetaVAE(SHAPE, 4)
    return ModelSource.from_state(model.state_dict(), TrainConfig(latent_dim=4), SHAPE, step=0, beta=1.0)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, *SHAPE), dtype=np.uint8)


def _file(source, count, alloc=ZERO_BITS, raw=b"", shape=SHAPE) -> bytes:
    return codec.build_file(source.fingerprint(), shape, count, 50, alloc, raw, method=codec.METHOD_RAW)


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _set_range(data: bytes, dim: int, low: float, high: float) -> bytes:
    """The file with dimension `dim`'s range replaced and a valid CRC: only the range check can refuse it."""
    body = bytearray(data[:-4])
    struct.pack_into("<ff", body, 50 + 9 * dim + 1, low, high)
    return _recrc(bytes(body))


def test_a_file_of_zero_images_is_refused(source):
    data = _file(source, 0)
    with pytest.raises(CodecError, match="x.bvz: malformed .bvz file: it declares 0 images"):
        codec.decompress(source, data, name="x.bvz")


def test_the_149_byte_bomb_is_refused_before_anything_is_allocated():
    """0 bits per dimension and 2^21 images for a 64x64 model with 10 latents: valid CRC, 8 GiB of pixels."""
    torch.manual_seed(1)
    shape = (1, 64, 64)
    source = ModelSource.from_state(
        BetaVAE(shape, 10).state_dict(), TrainConfig(latent_dim=10), shape, step=0, beta=1.0
    )
    bomb = codec.build_file(source.fingerprint(), shape, 2**21, 50, BitAllocation([0] * 10, [0] * 10, [0] * 10), b"")
    assert len(bomb) == 149
    header = codec.parse_header(bomb)
    assert "2,097,152 images" in codec.large_reason(header, len(bomb))
    with pytest.raises(codec.LargeFileError, match="b.bvz: it declares 2,097,152 images"):
        codec.decompress(source, bomb, name="b.bvz")
    # asked to go ahead anyway, it still needs the memory: 8 GiB of images twice, on a machine with 4 GiB free
    with pytest.raises(CodecError, match=r"needs about 16\.\d GiB of memory; 4\.0 GiB is available"):
        codec.check_expansion(header, len(bomb), allow_large=True, available_memory=4 << 30)
    # decoded in batches (the CLI) the images need not fit in memory at once
    codec.check_expansion(header, len(bomb), allow_large=True, images_in_memory=False, available_memory=4 << 30)


def test_expansion_limits(source):
    small = codec.parse_header(_file(source, 1000))  # 1,000 images, 1 MiB: decoded without a question
    assert codec.large_reason(small, 100) is None
    ratio = codec.parse_header(_file(source, 90_000))  # 88 MiB from 60 bytes: a ratio no real file has
    assert "times their size" in codec.large_reason(ratio, 60)
    assert codec.large_reason(ratio, 10_000_000) is None
    big = codec.parse_header(_file(source, 2000, shape=(3, 64, 64)))  # count and size fine
    assert codec.large_reason(big, 10_000) is None


def test_ok_zero_bit_file_decodes_to_the_prior_mean_image(source):
    out = codec.decompress(source, _file(source, 5))
    assert out.shape == (5, *SHAPE) and out.dtype == np.uint8 and (out == out[0]).all()


@pytest.mark.parametrize(
    ("dim", "low", "high"),
    [
        (1, float("inf"), float("inf")),  # a 0-bit dimension: its range used to reach numpy's arithmetic
        (1, float("-inf"), float("inf")),
        (1, float("nan"), float("nan")),
        (1, 1.0, -1.0),
        (0, float("nan"), 0.5),
        (0, -0.5, float("inf")),
        (0, 0.5, 0.5),  # a coded dimension needs low < high
        (2, -1e30, 1e30),  # finite, but no latent code is ever there
    ],
)
def test_crc_valid_bad_ranges_are_refused_without_a_warning(source, images, dim, low, high):
    data = codec.compress(source, images[:2], 50, alloc=ALLOC, method=codec.METHOD_RAW)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CodecError, match=r"malformed \.bvz file: bit allocation: .*range"):
            codec.decompress(source, _set_range(data, dim, low, high))


# ---------------------------------------------------------------- writing PNGs


def test_write_png_folder_all_or_nothing_on_a_full_disk(tmp_path, images, monkeypatch):
    from PIL import Image

    real_save = Image.Image.save
    written = []

    def save(self, fp, *args, **kwargs):
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(fp)
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "decoded"
    with pytest.raises(CodecError, match=r"decoded: cannot write PNGs: no space left on device; none were written"):
        codec.write_png_folder(out, [images, images])
    assert written and list(tmp_path.iterdir()) == []  # no folder, no staging folder, no partial PNGs

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "img_0000.png").write_bytes(b"an older result")
    written.clear()
    with pytest.raises(CodecError):
        codec.write_png_folder(existing, [images])
    assert [p.name for p in existing.iterdir()] == ["img_0000.png"]
    assert (existing / "img_0000.png").read_bytes() == b"an older result"


def test_write_png_folder_new_and_existing(tmp_path, images):
    assert codec.write_png_folder(tmp_path / "a" / "b", [images[:2], images[2:]]) == 3
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["img_0000.png", "img_0001.png", "img_0002.png"]
    assert codec.write_png_folder(tmp_path / "a" / "b", [images[:1]]) == 1  # replaces img_0000.png only
    assert len(list((tmp_path / "a" / "b").iterdir())) == 3
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b"]  # no staging folder left
    with pytest.raises(CodecError, match="not a folder"):
        codec.write_png_folder(tmp_path / "a" / "b" / "img_0000.png", [images])


# ---------------------------------------------------------------- fuzzing

FUZZ_CASES = 3000


def _mutate(rng: np.random.Generator, data: bytes) -> bytes:
    """One seeded mutation: byte flips (anywhere, or in the header where the fields are), a truncation, an
    extension, or a byte inserted or removed; then half the time a CRC recomputed to match."""
    kind = rng.integers(0, 5)
    out = bytearray(data)
    header_end = min(len(out), 55 + 9 * 4)
    if kind <= 1:
        span = header_end if kind == 0 else len(out)
        for _ in range(int(rng.integers(1, 4))):
            out[int(rng.integers(0, span))] ^= int(rng.integers(1, 256))
    elif kind == 2:
        out = out[: int(rng.integers(0, len(out)))]
    elif kind == 3:
        out += rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8).tobytes()
    else:
        pos = int(rng.integers(0, len(out)))
        if rng.integers(0, 2):
            out.insert(pos, int(rng.integers(0, 256)))
        else:
            del out[pos]
    if rng.integers(0, 2) and len(out) >= 4:
        return _recrc(bytes(out[:-4]))
    return bytes(out)


def test_fuzz_damaged_and_crafted_files(source, images, monkeypatch):
    """A few thousand seeded mutations of valid files, with and without a matching CRC."""
    # limits scaled down so that a mutated image count is refused (LargeFileError) instead of decoding
    # tens of thousands of images; what is under test is the refusal, not the size of the threshold
    monkeypatch.setattr(codec, "LARGE_IMAGE_COUNT", 64)
    monkeypatch.setattr(codec, "LARGE_DECODED_BYTES", 1 << 20)
    seeds = [
        codec.compress(source, images, 50, alloc=ALLOC, method=method)
        for method in (codec.METHOD_RAW, codec.METHOD_ZLIB, codec.METHOD_LZMA)
    ]
    seeds.append(_file(source, 3))  # 0 bits per dimension: the count alone says how much to decode
    rng = np.random.default_rng(20240515)
    outcomes = {"refused": 0, "decoded": 0}
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for case in range(FUZZ_CASES):
            data = _mutate(rng, seeds[case % len(seeds)])
            try:
                out = codec.decompress(source, data, name="fuzz.bvz")
            except CodecError as exc:
                assert str(exc) and "\n" not in str(exc)
                outcomes["refused"] += 1
                continue
            header = codec.parse_header(data)
            assert out.dtype == np.uint8 and out.shape == (header.count, *SHAPE), case
            outcomes["decoded"] += 1
    elapsed = time.perf_counter() - started
    assert outcomes["refused"] > FUZZ_CASES // 2 and outcomes["decoded"] > 20, outcomes  # 64 decode with this seed
    assert elapsed < 60, f"fuzzing took {elapsed:.1f} s"
