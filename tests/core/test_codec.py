import math
import struct
import zlib

import numpy as np
import pytest

from bvae_desktop.core import codec
from bvae_desktop.core.codec import BitAllocation
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import CodecError
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.trainer import Trainer


def _train(run_dir, seed=0):
    trainer = Trainer(TrainConfig(steps=2, batch_size=8, latent_dim=4, device="cpu", seed=seed), run_dir=run_dir)
    for _ in trainer.steps():
        pass
    return ModelSource.from_checkpoint(run_dir / "checkpoint.pt")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("codec_model"))


@pytest.fixture(scope="module")
def images(source):
    return codec.reference_images(source, 6)


# a hand-made allocation with every kind of dimension: 0 bits, odd widths, wide ones
ALLOC = BitAllocation(bits=[3, 0, 7, 12], low=[-0.5, 0.0, -0.1, -2.0], high=[0.5, 0.0, 0.1, 2.0])


def test_round_trip_equals_decoded_quantised_means(source, images):
    data = codec.compress(source, images, 60, alloc=ALLOC)
    out = codec.decompress(source, data)
    means, _ = source.encode(images)
    expected = source.decode(codec.dequantise(codec.quantise(means, ALLOC), ALLOC))
    assert out.dtype == np.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(out, expected)


def test_default_allocation_round_trip(source, images):
    data = codec.compress(source, images, 50)
    header = codec.parse_header(data)
    means, _ = source.encode(images)
    expected = source.decode(codec.dequantise(codec.quantise(means, header.alloc), header.alloc))
    np.testing.assert_array_equal(codec.decompress(source, data), expected)
    assert header.count == len(images) and header.quality == 50 and header.fingerprint == source.fingerprint()


def test_raw_payload_size_matches_allocation(source, images):
    data = codec.compress(source, images, 60, alloc=ALLOC, method=codec.METHOD_RAW)
    header = codec.parse_header(data)
    expected = math.ceil(22 * len(images) / 8)
    assert header.payload_length == expected == ALLOC.payload_bytes(len(images))
    assert len(data) == 59 + 9 * 4 + expected
    for method in (codec.METHOD_ZLIB, codec.METHOD_LZMA):
        other = codec.compress(source, images, 60, alloc=ALLOC, method=method)
        assert codec.parse_header(other).method == method
        np.testing.assert_array_equal(codec.decompress(source, other), codec.decompress(source, data))


def test_auto_method_keeps_the_shortest(source, images):
    many = np.concatenate([images] * 20)
    sizes = [len(codec.compress(source, many, 60, alloc=ALLOC, method=m)) for m in (0, 1, 2)]
    auto = codec.compress(source, many, 60, alloc=ALLOC)
    assert len(auto) == min(sizes)
    np.testing.assert_array_equal(codec.decompress(source, auto)[:6], codec.decompress(source, auto)[6:12])


def test_pack_unpack_symbols_random():
    rng = np.random.default_rng(1)
    alloc = BitAllocation(bits=[1, 16, 0, 5, 9], low=[-1] * 5, high=[1] * 5)
    alloc = BitAllocation(bits=alloc.bits, low=np.where(alloc.bits > 0, -1, 0), high=np.where(alloc.bits > 0, 1, 0))
    symbols = np.stack([rng.integers(0, 1 << int(b), 37) for b in alloc.bits], axis=1).astype(np.uint32)
    packed = codec.pack_symbols(symbols, alloc)
    assert len(packed) == math.ceil(37 * 31 / 8)
    np.testing.assert_array_equal(codec.unpack_symbols(packed, alloc, 37), symbols)


def test_quantiser_cells_and_prior_mean():
    alloc = BitAllocation(bits=[2, 0], low=[-1, 0], high=[1, 0])
    means = np.array([[-5.0, 3.0], [-0.9, 3.0], [-0.1, 0.0], [0.2, 1.0], [0.99, 2.0], [7.0, 0.0]])
    symbols = codec.quantise(means, alloc)
    np.testing.assert_array_equal(symbols[:, 0], [0, 0, 1, 2, 3, 3])
    np.testing.assert_array_equal(symbols[:, 1], 0)
    codes = codec.dequantise(symbols, alloc)
    np.testing.assert_allclose(codes[:, 0], [-0.75, -0.75, -0.25, 0.25, 0.75, 0.75])
    np.testing.assert_array_equal(codes[:, 1], 0.0)


def test_quality_scales_the_allocation():
    stats = codec.LatentStats(
        mean_mu=np.zeros(5),
        std_mu=np.array([1.0, 1.0, 1.0, 1.0, 0.1]),
        sigma=np.array([0.1, 0.05, 0.999, 0.3, 0.7]),
        kl=np.array([2.0, 3.0, 0.01, 0.05, 0.17]),  # the last: KL from σ < 1 alone, the means barely move
        count=100,
    )
    low_q = codec.allocation_from_stats(stats, 10)
    mid_q = codec.allocation_from_stats(stats, 50)
    high_q = codec.allocation_from_stats(stats, 100)
    assert list(mid_q.bits) == [round(math.log2(8 / 0.1)), round(math.log2(8 / 0.05)), 0, 0, 0]
    assert (low_q.bits <= mid_q.bits).all() and (mid_q.bits <= high_q.bits).all()
    assert high_q.bits_per_image > mid_q.bits_per_image > low_q.bits_per_image
    assert (high_q.bits <= 16).all() and list(high_q.bits[2:]) == [0, 0, 0]
    with pytest.raises(CodecError, match="quality"):
        codec.allocation_from_stats(stats, 0)


def test_allocate_without_data_or_images_raises(source):
    bare = ModelSource(
        model=source.model, config=source.config, image_shape=source.image_shape, step=0, beta=1.0, label="bare"
    )
    with pytest.raises(CodecError, match="no images given"):
        codec.allocate(bare, 50)


@pytest.fixture(scope="module")
def small_file(source, images):
    return codec.compress(source, images[:2], 60, alloc=ALLOC, method=codec.METHOD_RAW)


def test_every_truncation_is_refused(source, small_file, tmp_path):
    for cut in range(len(small_file)):
        with pytest.raises(CodecError):
            codec.decompress(source, small_file[:cut])


def test_every_flipped_byte_is_refused(source, small_file):
    for pos in range(len(small_file)):
        for mask in (0x01, 0x80):
            damaged = bytearray(small_file)
            damaged[pos] ^= mask
            with pytest.raises(CodecError):
                codec.decompress(source, bytes(damaged))


def test_damaged_file_on_disk_writes_nothing(source, small_file, tmp_path):
    path = tmp_path / "a.bvz"
    codec.write_bvz(path, small_file[:-3])
    with pytest.raises(CodecError, match="a.bvz"):
        codec.decompress(source, codec.read_bvz(path), name=path)
    assert [p.name for p in tmp_path.iterdir()] == ["a.bvz"]


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_unknown_version_is_refused(source, small_file):
    body = bytearray(small_file[:-4])
    body[4] = 7
    with pytest.raises(CodecError, match="unsupported .bvz version 7"):
        codec.decompress(source, _recrc(bytes(body)))


def test_crafted_bad_fields_with_valid_crc_are_refused(source, small_file):
    good = small_file[:-4]
    cases = {
        "payload": good[:-1],  # payload length no longer matches
        "magic": b"XVZ1" + good[4:],
        "bits": good[:50] + bytes([17]) + good[51:],  # 17 bits for dimension 0
        "method": good[: 50 + 36] + bytes([9]) + good[50 + 36 + 1 :],
    }
    for label, body in cases.items():
        with pytest.raises(CodecError):
            codec.decompress(source, _recrc(body))
        assert label


def test_file_from_another_model_names_both_fingerprints(source, images, tmp_path):
    other = _train(tmp_path / "other", seed=5)
    data = codec.compress(other, images[:2], 50, alloc=ALLOC)
    with pytest.raises(CodecError) as info:
        codec.decompress(source, data, name="x.bvz")
    message = str(info.value)
    assert other.fingerprint()[:12] in message and source.fingerprint()[:12] in message and "x.bvz" in message


def test_wrong_size_refused_unless_resize(source, images):
    big = np.repeat(np.repeat(images[:2], 2, axis=2), 2, axis=3)  # 128x128
    with pytest.raises(CodecError, match="128x128"):
        codec.compress(source, big, 50, alloc=ALLOC)
    data = codec.compress(source, big, 50, alloc=ALLOC, resize=True)
    header = codec.parse_header(data)
    assert header.resized and header.image_shape == source.image_shape
    rgb = np.repeat(images[:2], 3, axis=1)
    with pytest.raises(CodecError, match="channel"):
        codec.compress(source, rgb, 50, alloc=ALLOC)
    assert codec.decompress(source, codec.compress(source, rgb, 50, alloc=ALLOC, resize=True)).shape == (2, 1, 64, 64)


def test_load_images(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((8, 6), 200, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(tmp_path / "c.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    out = codec.load_images([tmp_path / "g.png"], (1, 8, 6), False)
    assert out.shape == (1, 1, 8, 6) and (out == 200).all()
    with pytest.raises(CodecError, match="c.png"):
        codec.load_images([tmp_path / "c.png"], (1, 8, 6), False)
    assert codec.load_images([tmp_path / "c.png"], (1, 4, 4), True).shape == (1, 1, 4, 4)
    assert codec.load_images([tmp_path / "g.png"], (3, 8, 6), True).shape == (1, 3, 8, 6)
    with pytest.raises(CodecError, match="bad.png"):
        codec.load_images([tmp_path / "bad.png"], (1, 8, 6), True)
    with pytest.raises(CodecError, match="missing.png"):
        codec.load_images([tmp_path / "missing.png"], (1, 8, 6), True)


def test_write_bvz_failure_leaves_nothing(tmp_path):
    target = tmp_path / "dir_in_the_way"
    target.mkdir()
    with pytest.raises(CodecError, match="dir_in_the_way"):
        codec.write_bvz(target, b"abc")
    assert [p.name for p in tmp_path.iterdir()] == ["dir_in_the_way"] and not any(target.iterdir())


def test_psnr_known_values():
    a = np.zeros((2, 1, 4, 4), np.uint8)
    assert codec.psnr(a, a) == math.inf
    assert codec.psnr(a, a + 1) == pytest.approx(10 * math.log10(255**2))  # MSE 1: 48.1308 dB
    b = a.copy()
    b[0, 0, 0, 0] = 32  # MSE 32^2 / 32 = 32
    assert codec.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 32))


def test_ssim_identical_and_constant_images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 20, 20)).astype(np.uint8)
    assert codec.ssim(x, x) == pytest.approx(1.0)
    # constant images: σ = 0, so SSIM = (2·c1·c2 + C1) / (c1² + c2² + C1)
    c1, c2, k1 = 100.0, 120.0, (0.01 * 255) ** 2
    a, b = np.full((16, 16), 100, np.uint8), np.full((16, 16), 120, np.uint8)
    assert codec.ssim(a, b) == pytest.approx((2 * c1 * c2 + k1) / (c1**2 + c2**2 + k1))


def test_ssim_matches_direct_loop():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (13, 14)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 60, a.shape), 0, 255).astype(np.uint8).astype(np.float64)
    x = np.arange(11) - 5.0
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(13 - 10):
        for j in range(14 - 10):
            pa, pb = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    expected = float(np.mean(values))
    assert 0.2 < expected < 0.9
    assert codec.ssim(a.astype(np.uint8), b.astype(np.uint8)) == pytest.approx(expected, rel=1e-9)


def test_pillow_baselines():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 16, 16)).astype(np.uint8)
    size, decoded = codec.jpeg_bytes(img, 75)
    assert size > 100 and decoded.shape == img.shape and decoded.dtype == np.uint8
    size, decoded = codec.webp_bytes(np.repeat(img, 3, axis=0), 75)
    assert size > 20 and decoded.shape == (3, 16, 16)
    assert codec.png_size(img) > 100


def test_crafted_huge_count_is_refused(source):
    zero = BitAllocation(bits=[0] * 4, low=[0] * 4, high=[0] * 4)
    data = codec.build_file(source.fingerprint(), source.image_shape, 2**32 - 1, 50, zero, b"")
    with pytest.raises(CodecError, match="too many"):
        codec.decompress(source, data)
