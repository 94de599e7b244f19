import math
import struct
import zlib

import numpy as np
import pytest

from bvae_desktop.core import codec
from bvae_desktop.core.codec import BitAllocation
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import CodecError
from bvae_desktop.core.image_input import FIT_AS_IS, FIT_PADDED, FIT_RESIZED, Origin
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
    assert len(data) == 63 + 9 * 4 + expected  # version 2, images as is with no name: an empty image table
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
    data = codec.build_file(source.fingerprint(), source.image_shape, 2**32 - 1, 50, zero, b"", version=1)
    with pytest.raises(CodecError, match="too many"):
        codec.decompress(source, data)
    # a version 2 table has 6 or more bytes per image: a count past what it holds is refused before anything else
    _, height, width = source.image_shape
    named = [Origin(height, width, FIT_AS_IS, "a.png")] * 3
    two = codec.build_file(source.fingerprint(), source.image_shape, 3, 50, zero, b"", origins=named)
    body = bytearray(two[:-4])
    struct.pack_into("<I", body, 43, 2**32 - 1)
    with pytest.raises(
        CodecError, match=r"the image table holds 33 bytes; 4294967295 images need at least 25769803770"
    ):
        codec.decompress(source, _recrc(bytes(body)))
    # with no table (every image as is, no name) the count meets the same limit as in version 1
    plain = bytearray(codec.build_file(source.fingerprint(), source.image_shape, 3, 50, zero, b"")[:-4])
    struct.pack_into("<I", plain, 43, 2**32 - 1)
    with pytest.raises(CodecError, match="too many"):
        codec.decompress(source, _recrc(bytes(plain)))


def test_images_as_is_with_no_name_cost_no_table_bytes(source, images):
    """A data set's own images (what `bvae rd` codes) carry no table: 6 bytes an image would outweigh
    their codes; any name or other size brings the table back, for every image."""
    _, height, width = source.image_shape
    plain = codec.compress(source, images, 50, alloc=ALLOC, method=codec.METHOD_RAW)
    same = codec.compress(
        source, images, 50, alloc=ALLOC, method=codec.METHOD_RAW, origins=[Origin(height, width)] * len(images)
    )
    assert plain == same and struct.unpack_from("<I", plain, 50 + 9 * 4 + 5)[0] == 0
    header = codec.parse_header(plain)
    assert [header.origin(i) for i in range(len(images))] == [Origin(height, width, FIT_AS_IS, "")] * len(images)
    np.testing.assert_array_equal(codec.decompress(source, plain), codec.decompress(source, same))
    one_named = [Origin(height, width)] * (len(images) - 1) + [Origin(height, width, FIT_AS_IS, "last.png")]
    named = codec.compress(source, images, 50, alloc=ALLOC, method=codec.METHOD_RAW, origins=one_named)
    assert len(named) == len(plain) + 6 * len(images) + len("last.png")
    assert codec.parse_header(named).origin(len(images) - 1).name == "last.png"


# ---------------------------------------------------------------- version 2: names and original sizes


def _mnist_source():
    """An untrained 32x32 model whose config says MNIST: its 28x28 inputs are padded as in training."""
    import torch

    from bvae_desktop.core.nets import BetaVAE

    torch.manual_seed(3)
    config = TrainConfig(latent_dim=4, dataset="mnist", data_path="mnist.npz")
    return ModelSource.from_state(BetaVAE((1, 32, 32), 4).state_dict(), config, (1, 32, 32), step=0, beta=1.0)


ORIGINS = [
    Origin(28, 28, FIT_PADDED, "seven.png"),
    Origin(30, 40, FIT_RESIZED, "wide photo.jpg"),
    Origin(64, 64, FIT_AS_IS, ""),
]


def test_names_and_original_sizes_round_trip_inside_the_crc(source, images):
    data = codec.compress(source, images[:3], 60, alloc=ALLOC, origins=ORIGINS, method=codec.METHOD_RAW)
    header = codec.parse_header(data)
    assert header.version == 2 and [header.origin(i) for i in range(3)] == ORIGINS
    assert header.names == {0: "seven.png", 1: "wide photo.jpg"} and header.fitted_count() == 2
    table = b"".join(
        struct.pack("<HHBB", o.height, o.width, codec.FITS.index(o.fit), len(o.name.encode())) + o.name.encode()
        for o in ORIGINS
    )
    assert data[-4 - len(table) : -4] == table  # the table sits last, before the CRC that covers it
    assert len(data) == 63 + 9 * 4 + ALLOC.payload_bytes(3) + len(table)
    decoded = codec.decompress(source, data)
    restored = codec.restore_images(header, decoded)
    assert [r.shape for r in restored] == [(1, 28, 28), (1, 30, 40), (1, 64, 64)]
    np.testing.assert_array_equal(restored[0], decoded[0][:, 18:46, 18:46])  # padded: the centre cropped out
    np.testing.assert_array_equal(restored[2], decoded[2])  # as is: untouched
    assert codec.output_names(header) == ["seven.png", "wide photo.png", "img_0002.png"]


def _v1_by_hand(fingerprint: str, count: int, alloc: BitAllocation, payload: bytes) -> bytes:
    """A version 1 file assembled from its documented layout, not by build_file."""
    body = struct.pack("<4sBB32sBHHIHB", b"BVZ1", 1, 0, bytes.fromhex(fingerprint), 1, 64, 64, count, 4, 60)
    for b, lo, hi in zip(alloc.bits, alloc.low, alloc.high, strict=True):
        body += struct.pack("<Bff", int(b), float(lo), float(hi))
    body += struct.pack("<BI", 0, len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def test_version_1_files_are_still_read(source, images):
    means, _ = source.encode(images[:3])
    payload = codec.pack_symbols(codec.quantise(means, ALLOC), ALLOC)
    old = _v1_by_hand(source.fingerprint(), 3, ALLOC, payload)
    assert old == codec.build_file(source.fingerprint(), (1, 64, 64), 3, 60, ALLOC, payload, method=0, version=1)
    header = codec.parse_header(old)
    assert header.version == 1 and header.names == {} and header.origin(1) == Origin(64, 64, FIT_AS_IS, "")
    new = codec.compress(source, images[:3], 60, alloc=ALLOC)
    np.testing.assert_array_equal(codec.decompress(source, old), codec.decompress(source, new))
    assert codec.output_names(header) == ["img_0000.png", "img_0001.png", "img_0002.png"]
    assert codec.decoded_bytes(header) == 3 * 64 * 64 and codec.png_bytes_bound(header) == 3 * 8192
    with pytest.raises(CodecError, match="version 1 .bvz has no room"):
        codec.build_file(source.fingerprint(), (1, 64, 64), 3, 60, ALLOC, payload, version=1, origins=ORIGINS)


def test_mnist_digits_are_padded_without_resize_and_come_back_28x28():
    source = _mnist_source()
    digits = np.random.default_rng(0).integers(0, 256, (2, 1, 28, 28), dtype=np.uint8)
    data = codec.compress(source, digits, 50)  # no resize asked: padding is what training does
    header = codec.parse_header(data)
    assert header.origin(0) == Origin(28, 28, FIT_PADDED, "") and not header.resized
    restored = codec.restore_images(header, codec.decompress(source, data))
    assert [r.shape for r in restored] == [(1, 28, 28)] * 2
    with pytest.raises(CodecError, match=r"image 0: image is 30x30; the model takes 32x32 \(or 28x28 as in MNIST"):
        codec.compress(source, np.zeros((1, 1, 30, 30), np.uint8), 50)


def test_load_inputs_keep_file_names(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((28, 28), 9, np.uint8)).save(tmp_path / "nine.png")
    fitted = codec.load_inputs([tmp_path / "nine.png"], (1, 32, 32), dataset="mnist")
    assert fitted[0].origin == Origin(28, 28, FIT_PADDED, "nine.png")
    converted: list[str] = []
    out = codec.load_images([tmp_path / "nine.png"], (1, 32, 32), converted=converted, dataset="mnist")
    assert out.shape == (1, 1, 32, 32) and converted == [str(tmp_path / "nine.png")]


def test_stored_names_are_names_never_paths():
    assert codec.storable_name("a/b\\c\x00d\ne.png") == "a_b_c_d_e.png"
    assert codec.storable_name("..") == "" and codec.storable_name(".") == ""
    long = "é" * 200 + ".png"  # 404 bytes of UTF-8
    short = codec.storable_name(long)
    assert short.endswith(".png") and len(short.encode()) <= 255 and short.startswith("éé")
    assert codec.storable_name("ok name (1).PNG") == "ok name (1).PNG"
    for bad in ("../x.png", "a/b", "a\\b", "nul\x00", "..", "tab\there"):
        assert codec.name_problem(bad) is not None, bad
    assert codec.name_problem("") is None and codec.name_problem("..hidden.png") is None


def test_output_names_are_safe_on_every_system_and_unique():
    header = codec.BvzHeader(
        version=2,
        flags=0,
        fingerprint="00" * 32,
        channels=1,
        height=8,
        width=8,
        count=9,
        quality=50,
        alloc=ALLOC,
        method=0,
        payload_offset=0,
        payload_length=0,
        names={
            0: "a.png",
            1: "a.jpg",
            2: "A.PNG",
            3: "CON.png",
            4: ".hidden.png",
            6: "img_0005.png",
            7: 'x<y>:"z|?*.png',
        },
    )
    assert codec.output_names(header) == [
        "a.png",
        "a-1.png",  # the same stem
        "A-2.png",  # the same but for case: one file on Windows and macOS
        "_CON.png",  # a device name on Windows
        "hidden.png",  # not a hidden file
        "img_0005.png",
        "img_0005-1.png",  # a named image clashing with a numbered one
        "x_y___z___.png",
        "img_0008.png",
    ]


def test_coding_warning_says_when_nothing_is_stored():
    from bvae_desktop.core.latent_activity import NO_ACTIVE_LATENT

    zero = BitAllocation([0] * 4, [0] * 4, [0] * 4)
    words = codec.coding_warning(zero, np.full(4, 0.001))
    assert words.startswith(codec.NOTHING_CODED + "; " + NO_ACTIVE_LATENT) and "0.001 nats" in words
    assert codec.coding_warning(zero, None) == codec.NOTHING_CODED  # KL unknown: nothing coded is still true
    assert codec.coding_warning(ALLOC, np.array([2.0, 0.0, 1.0, 3.0])) is None
