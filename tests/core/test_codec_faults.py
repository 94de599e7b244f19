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
from bvae_desktop.core.image_input import FIT_PADDED, FIT_RESIZED, Origin
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
    zero = BitAllocation([0] * 10, [0] * 10, [0] * 10)
    bomb = codec.build_file(source.fingerprint(), shape, 2**21, 50, zero, b"", version=1)  # still read
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


# ---------------------------------------------------------------- version 2's image table

ORIGINS = [Origin(28, 28, FIT_PADDED, "seven.png"), Origin(20, 40, FIT_RESIZED, "wide.png"), Origin(32, 32)]


@pytest.fixture(scope="module")
def named_file(source, images) -> bytes:
    return codec.compress(source, images, 50, alloc=ALLOC, origins=ORIGINS, method=codec.METHOD_RAW)


def _entry(height: int, width: int, fit: int, name: bytes = b"") -> bytes:
    return struct.pack("<HHBB", height, width, fit, len(name)) + name


def _with_table(data: bytes, table: bytes, count: int | None = None) -> bytes:
    """`data` (version 2, D = 4) with its image table replaced, the table length and CRC made to match."""
    tail = 50 + 9 * 4
    _method, payload_length, table_length = struct.unpack_from("<BII", data, tail)
    body = bytearray(data[: tail + 9 + payload_length] + table)
    struct.pack_into("<I", body, tail + 5, len(table))
    if count is not None:
        struct.pack_into("<I", body, 43, count)
    return _recrc(bytes(body))


def test_the_table_is_written_and_read_as_documented(source, named_file):
    header = codec.parse_header(named_file)
    table = _entry(28, 28, 1, b"seven.png") + _entry(20, 40, 2, b"wide.png") + _entry(32, 32, 0)
    assert named_file[-4 - len(table) : -4] == table and _with_table(named_file, table) == named_file
    assert [header.origin(i) for i in range(3)] == ORIGINS


@pytest.mark.parametrize(
    ("table", "words"),
    [
        (_entry(28, 28, 1) + _entry(20, 40, 2), "the image table holds 12 bytes; 3 images need at least 18"),
        (_entry(28, 28, 1) * 3 + b"\0", "the image table has 1 bytes after its 3 entries"),
        (_entry(28, 28, 1, b"a") + _entry(28, 28, 1) + b"\0" * 5, "the image table is shorter than its names"),
        (_entry(28, 28, 1, b"abc") + _entry(28, 28, 1) + b"\0" * 4, "the image table ends inside image 2's entry"),
        (_entry(28, 28, 1) * 2 + _entry(28, 28, 1, b"abcd")[:-2], "the image table ends inside image 2's name"),
        (_entry(28, 28, 1, b"../up.png") + _entry(28, 28, 1) * 2, "image 0's name '../up.png': it holds '/'"),
        (_entry(28, 28, 1, b"a\\b") + _entry(28, 28, 1) * 2, "image 0's name 'a\\\\b': it holds '\\\\'"),
        (_entry(28, 28, 1, b"..") + _entry(28, 28, 1) * 2, "image 0's name '..': '..' is not a file name"),
        (_entry(28, 28, 1, b"n\0l") + _entry(28, 28, 1) * 2, "it holds '\\x00'"),
        (_entry(28, 28, 1, b"\xff.png") + _entry(28, 28, 1) * 2, "image 0's name is not UTF-8"),
        (_entry(28, 28, 1) + _entry(28, 28, 3) + _entry(28, 28, 1), "image 1: unknown fit 3"),
        (_entry(28, 0, 2) + _entry(28, 28, 1) * 2, "image 0: an original size of 0x28"),
        (_entry(28, 28, 1) * 2 + _entry(30, 32, 0), "image 2: 32x30 'as is' for a 32x32 model"),
        (_entry(28, 40, 1) + _entry(28, 28, 1) * 2, "image 0: 40x28 'padded' into a smaller 32x32 frame"),
    ],
)
def test_crc_valid_bad_tables_are_refused(source, named_file, table, words):
    with pytest.raises(CodecError) as info:
        codec.decompress(source, _with_table(named_file, table), name="t.bvz")
    assert str(info.value).startswith("t.bvz: malformed .bvz file: ") and words in str(info.value)


def test_every_truncation_and_flipped_byte_of_a_named_file_is_refused(source, named_file):
    for cut in range(len(named_file)):
        with pytest.raises(CodecError):
            codec.decompress(source, named_file[:cut])
    for pos in range(len(named_file)):
        for mask in (0x01, 0x80):
            damaged = bytearray(named_file)
            damaged[pos] ^= mask
            with pytest.raises(CodecError):
                codec.decompress(source, bytes(damaged))


def test_a_huge_declared_original_size_needs_asking_and_the_memory(source, named_file):
    """Two bytes a side let an entry declare 65535x65535: 4 GiB to give back from a 32x32 decode."""
    data = _with_table(named_file, _entry(65535, 65535, 2) + _entry(28, 28, 1) * 2)
    header = codec.parse_header(data)
    assert codec.decoded_bytes(header) == 65535 * 65535 + 2 * 28 * 28
    assert "it decodes to 4.0 GiB of images" in codec.large_reason(header, len(data))
    with pytest.raises(codec.LargeFileError, match="it decodes to 4.0 GiB"):
        codec.decompress(source, data)
    with pytest.raises(CodecError, match=r"needs about 4\.\d GiB of memory; 1\.0 GiB is available"):
        codec.check_expansion(header, len(data), allow_large=True, available_memory=1 << 30)
    assert codec.png_bytes_bound(header) >= 65535 * 65535


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


def test_write_png_folder_takes_plain_names_only(tmp_path, images):
    assert codec.write_png_folder(tmp_path / "ok", [list(images)], names=["a.png", "b b.png", "c.png"]) == 3
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["a.png", "b b.png", "c.png"]
    for bad in ("../escape.png", "sub/x.png", ".."):
        with pytest.raises(CodecError, match="is not a plain file name"):
            codec.write_png_folder(tmp_path / "out", [images[:1]], names=[bad])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok"]  # no folder, no staging, nothing outside


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
    """One seeded mutation: byte flips (anywhere, in the header where the fields are, or in the last 40 bytes
    where the image table is), a truncation, an extension, or a byte inserted or removed; then half the time
    a CRC recomputed to match."""
    kind = rng.integers(0, 6)
    out = bytearray(data)
    header_end = min(len(out), 59 + 9 * 4)
    if kind <= 1 or kind == 5:
        low, high = {0: (0, header_end), 1: (0, len(out)), 5: (max(0, len(out) - 44), len(out))}[int(kind)]
        for _ in range(int(rng.integers(1, 4))):
            out[int(rng.integers(low, high))] ^= int(rng.integers(1, 256))
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
    seeds.append(codec.compress(source, images, 50, alloc=ALLOC, origins=ORIGINS, method=codec.METHOD_RAW))
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
