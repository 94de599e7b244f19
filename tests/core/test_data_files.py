"""File loaders on small files written here in the published layouts, and on broken variants of them."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from bvae_desktop.core.data import dsprites as dsprites_module
from bvae_desktop.core.data import load_dataset
from bvae_desktop.core.data.dsprites import PackedImageSet, load_dsprites
from bvae_desktop.core.data.folder import load_folder
from bvae_desktop.core.data.mnist import load_mnist
from bvae_desktop.core.data.shapes3d import H5ImageSet, load_shapes3d
from bvae_desktop.core.errors import DatasetError

SHARED_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


def grid(sizes: tuple[int, ...]) -> np.ndarray:
    """Every class combination in canonical order (last factor fastest)."""
    return np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1).astype(np.int64)


def expect_error(call, path: Path, match: str = "") -> None:
    """The loader raises DatasetError whose message names the file (and says what is wrong)."""
    with pytest.raises(DatasetError) as info:
        call(path)
    assert path.name in str(info.value)
    assert match.lower() in str(info.value).lower()


# ---------------------------------------------------------------- dSprites npz

DSPRITES_SIZES = (1, 3, 2, 2, 2, 2)


def dsprites_arrays(order: np.ndarray | None = None) -> dict[str, np.ndarray]:
    classes = grid(DSPRITES_SIZES)
    if order is not None:
        classes = classes[order]
    grids = [np.array([1.0]), np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.0]), np.array([0.0, np.pi])]
    grids += [np.array([0.0, 1.0])] * 2
    values = np.stack([grids[k][classes[:, k]] for k in range(6)], axis=1)
    imgs = np.random.default_rng(0).integers(0, 2, (len(classes), 64, 64), dtype=np.uint8)
    return {"imgs": imgs, "latents_values": values, "latents_classes": classes}


def write_npz(path: Path, arrays: dict[str, np.ndarray], compressed: bool = True) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


@pytest.mark.parametrize("compressed", [True, False])
def test_dsprites_unpacks_to_original_images(tmp_path: Path, compressed: bool, monkeypatch) -> None:
    monkeypatch.setattr(dsprites_module, "_CHUNK_IMAGES", 7)  # several streamed chunks, one partial
    arrays = dsprites_arrays()
    arrays["metadata"] = np.array({"never": "unpickled"}, dtype=object)
    path = write_npz(tmp_path / "dsprites_small.npz", arrays, compressed)
    before = path.read_bytes()
    ds = load_dsprites(path)
    assert isinstance(ds, PackedImageSet) and len(ds) == 48 and ds.shape == (1, 64, 64) and ds.binary
    assert ds.packed.shape == (48, 64, 8)
    order = np.random.default_rng(1).permutation(48)
    batch = ds.batch(order)
    assert batch.dtype == torch.uint8
    assert np.array_equal(batch[:, 0].numpy(), arrays["imgs"][order] * 255)
    f = ds.factors
    assert f.sizes == DSPRITES_SIZES and f.classes is None
    assert f.names == ("color", "shape", "scale", "orientation", "posX", "posY")
    np.testing.assert_allclose(f.values[3], [0.0, np.pi])
    assert path.read_bytes() == before
    assert isinstance(load_dataset("dsprites", str(path)), PackedImageSet)


def test_dsprites_shuffled_order_keeps_class_table(tmp_path: Path) -> None:
    order = np.random.default_rng(2).permutation(48)
    arrays = dsprites_arrays(order)
    ds = load_dsprites(write_npz(tmp_path / "shuffled.npz", arrays))
    assert ds.factors.classes is not None
    assert np.array_equal(ds.factors.classes_of(np.arange(48)), arrays["latents_classes"])
    target = np.array([[0, 2, 1, 0, 1, 1]])
    index = ds.factors.index_of(target)
    assert np.array_equal(arrays["latents_classes"][index], target)
    np.testing.assert_allclose(ds.factors.values_of(np.arange(48)), arrays["latents_values"])


def test_dsprites_pickle_free_images_only_file(tmp_path: Path) -> None:
    arrays = dsprites_arrays()
    ds = load_dsprites(write_npz(tmp_path / "imgs_only.npz", {"imgs": arrays["imgs"]}))
    assert ds.factors is None and len(ds) == 48


def _dsprites_broken(tmp_path: Path, kind: str) -> Path:
    arrays = dsprites_arrays()
    path = tmp_path / f"dsprites_{kind}.npz"
    if kind == "not_zip":
        path.write_bytes(b"this is not an npz file at all" * 10)
        return path
    if kind == "truncated":
        write_npz(path, arrays, compressed=False)
        path.write_bytes(path.read_bytes()[:100_000])
        return path
    if kind == "no_imgs":
        arrays["images"] = arrays.pop("imgs")
    elif kind == "shape":
        arrays["imgs"] = arrays["imgs"][:, :32, :32]
    elif kind == "dtype":
        arrays["imgs"] = arrays["imgs"].astype(np.float32)
    elif kind == "values":
        arrays["imgs"][3, 5, 5] = 255
    elif kind == "length":
        arrays["latents_classes"] = arrays["latents_classes"][:-1]
    return write_npz(path, arrays)


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("not_zip", "zip"),
        ("truncated", ""),
        ("no_imgs", "imgs"),
        ("shape", "shape"),
        ("dtype", "dtype"),
        ("values", "0 and 1"),
        ("length", "rows"),
    ],
)
def test_dsprites_bad_files(tmp_path: Path, kind: str, match: str) -> None:
    expect_error(load_dsprites, _dsprites_broken(tmp_path, kind), match)


def test_dsprites_missing_file(tmp_path: Path) -> None:
    expect_error(load_dsprites, tmp_path / "nowhere.npz", "not found")


# ---------------------------------------------------------------- 3D Shapes h5

SHAPES_SIZES = (2, 2, 2, 2, 2, 3)


def shapes_arrays(order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    classes = grid(SHAPES_SIZES)
    if order is not None:
        classes = classes[order]
    grids = [np.array([0.0, 0.1]), np.array([0.0, 0.1]), np.array([0.0, 0.1]), np.array([0.75, 1.25])]
    grids += [np.array([0.0, 1.0]), np.linspace(-30.0, 30.0, 3)]
    labels = np.stack([grids[k][classes[:, k]] for k in range(6)], axis=1)
    images = np.random.default_rng(3).integers(0, 256, (len(classes), 64, 64, 3), dtype=np.uint8)
    return images, labels


def write_h5(path: Path, images: np.ndarray, labels: np.ndarray, **image_options: object) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, **image_options)
        f.create_dataset("labels", data=labels)
    return path


@pytest.mark.parametrize("options", [{}, {"chunks": (5, 64, 64, 3), "compression": "gzip"}], ids=["plain", "gzip"])
def test_shapes3d_batches_match_file(tmp_path: Path, options: dict) -> None:
    images, labels = shapes_arrays()
    path = write_h5(tmp_path / "3dshapes_small.h5", images, labels, **options)
    ds = load_shapes3d(path)
    assert isinstance(ds, H5ImageSet) and len(ds) == 96 and ds.shape == (3, 64, 64) and not ds.binary
    wanted = np.array([77, 3, 3, 0, 95, 4, 5, 6, 11])  # unsorted, repeated, with a run
    batch = ds.batch(wanted)
    assert batch.shape == (9, 3, 64, 64) and batch.dtype == torch.uint8
    assert np.array_equal(batch.numpy(), images[wanted].transpose(0, 3, 1, 2))
    assert np.array_equal(ds.batch(wanted[::-1]).numpy(), images[wanted[::-1]].transpose(0, 3, 1, 2))  # from cache
    f = ds.factors
    assert f.sizes == SHAPES_SIZES and f.classes is None
    assert f.names == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    np.testing.assert_allclose(f.values[5], [-30.0, 0.0, 30.0])
    np.testing.assert_allclose(f.values_of(np.arange(96)), labels)
    copy = pickle.loads(pickle.dumps(ds))
    assert torch.equal(copy.batch([2, 1]), ds.batch([2, 1]))
    ds.close()
    assert torch.equal(ds.batch([7]), torch.from_numpy(images[[7]]).permute(0, 3, 1, 2))


def test_shapes3d_labels_to_classes_in_any_order(tmp_path: Path) -> None:
    order = np.random.default_rng(4).permutation(96)
    images, labels = shapes_arrays(order)
    ds = load_shapes3d(write_h5(tmp_path / "shuffled.h5", images, labels))
    assert np.array_equal(ds.factors.classes_of(np.arange(96)), grid(SHAPES_SIZES)[order])
    index = ds.factors.index_of(np.array([[1, 0, 1, 0, 1, 2]]))
    np.testing.assert_allclose(labels[index][0], [0.1, 0.0, 0.1, 0.75, 1.0, 30.0])


def _shapes_broken(tmp_path: Path, kind: str) -> Path:
    images, labels = shapes_arrays()
    path = tmp_path / f"shapes_{kind}.h5"
    if kind == "not_hdf5":
        path.write_bytes(b"\x89HDF nope" * 100)
        return path
    if kind == "truncated":
        write_h5(path, images, labels)
        path.write_bytes(path.read_bytes()[:1000])
        return path
    if kind == "no_labels":
        with h5py.File(path, "w") as f:
            f["images"] = images
        return path
    if kind == "shape":
        images = images[..., 0]
    elif kind == "dtype":
        images = images.astype(np.float32)
    elif kind == "length":
        labels = labels[:-2]
    return write_h5(path, images, labels)


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("not_hdf5", "hdf5"),
        ("truncated", ""),
        ("no_labels", "labels"),
        ("shape", "shape"),
        ("dtype", "dtype"),
        ("length", "labels"),
    ],
)
def test_shapes3d_bad_files(tmp_path: Path, kind: str, match: str) -> None:
    expect_error(load_shapes3d, _shapes_broken(tmp_path, kind), match)


def test_shapes3d_missing_file(tmp_path: Path) -> None:
    expect_error(load_shapes3d, tmp_path / "3dshapes.h5", "not found")


# ---------------------------------------------------------------- MNIST


def idx_images(images: np.ndarray) -> bytes:
    return struct.pack(">IIII", 2051, len(images), 28, 28) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for kind, data in (("images-idx3", idx_images(images)), ("labels-idx1", idx_labels(labels))):
        target = folder / f"{prefix}-{kind}-ubyte{suffix}"
        target.write_bytes(gzip.compress(data) if gz else data)
    return folder / f"{prefix}-images-idx3-ubyte{suffix}"


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_mnist_idx_folder_padded_with_labels(tmp_path: Path, gz: bool) -> None:
    train, train_y = digits(12, 0)
    test, test_y = digits(5, 1)
    write_idx(tmp_path, "train", train, train_y, gz)
    write_idx(tmp_path, "t10k", test, test_y, gz)
    ds = load_mnist(tmp_path)
    assert len(ds) == 17 and ds.shape == (1, 32, 32)
    imgs = ds.images.numpy()
    assert np.array_equal(imgs[:12, 0, 2:30, 2:30], train) and np.array_equal(imgs[12:, 0, 2:30, 2:30], test)
    assert not imgs[:, :, :2].any() and not imgs[:, :, 30:].any() and not imgs[:, :, :, :2].any()
    assert ds.labels.dtype == np.int64 and np.array_equal(ds.labels, np.concatenate([train_y, test_y]))
    assert list(ds.label_names) == [str(d) for d in range(10)]
    assert len(load_mnist(tmp_path, split="train")) == 12
    assert np.array_equal(load_mnist(tmp_path, split="test").labels, test_y)
    assert len(load_dataset("mnist", str(tmp_path), split="test")) == 5


def test_mnist_single_file_and_partial_folder(tmp_path: Path) -> None:
    test, test_y = digits(4, 2)
    images_file = write_idx(tmp_path, "t10k", test, test_y, gz=True)
    ds = load_mnist(images_file)
    assert np.array_equal(ds.labels, test_y)
    assert len(load_mnist(tmp_path)) == 4  # only t10k present: "all" uses what is there
    expect_error(lambda p: load_mnist(p, split="train"), tmp_path, "train")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    alone = load_mnist(images_file)
    assert alone.labels is None and len(alone) == 4


def test_mnist_npz(tmp_path: Path) -> None:
    x_train, y_train = digits(6, 3)
    x_test, y_test = digits(3, 4)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    ds = load_mnist(path)
    assert len(ds) == 9 and np.array_equal(ds.labels, np.concatenate([y_train, y_test]))
    assert np.array_equal(load_mnist(path, split="test").images.numpy()[:, 0, 2:30, 2:30], x_test)


def _mnist_broken(tmp_path: Path, kind: str) -> Path:
    images, labels = digits(10, 5)
    if kind == "npz_keys":
        path = tmp_path / "mnist.npz"
        np.savez(path, x_train=images, labels=labels)
        return path
    images_file = write_idx(tmp_path, "train", images, labels, gz=kind in ("truncated_gz", "corrupt_gz"))
    if kind == "truncated_gz":
        images_file.write_bytes(images_file.read_bytes()[:-200])
    elif kind == "corrupt_gz":
        data = bytearray(images_file.read_bytes())
        data[40:60] = b"\xff" * 20
        images_file.write_bytes(bytes(data))
    elif kind == "magic":
        images_file.write_bytes(struct.pack(">I", 1234) + images_file.read_bytes()[4:])
    elif kind == "labels_file":
        images_file.write_bytes(idx_labels(labels))
    elif kind == "truncated":
        images_file.write_bytes(images_file.read_bytes()[:-28])
    elif kind == "count":
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_labels(labels[:-1]))
        return tmp_path / "train-labels-idx1-ubyte"
    return images_file


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("truncated_gz", "gzip"),
        ("corrupt_gz", ""),
        ("magic", "magic"),
        ("labels_file", "labels"),
        ("truncated", "truncated"),
        ("count", "9 labels for 10 images"),
        ("npz_keys", "y_train"),
    ],
)
def test_mnist_bad_files(tmp_path: Path, kind: str, match: str) -> None:
    bad = _mnist_broken(tmp_path, kind)
    with pytest.raises(DatasetError) as info:
        load_mnist(tmp_path / "mnist.npz" if kind == "npz_keys" else tmp_path)
    assert bad.name in str(info.value) and match.lower() in str(info.value).lower()


def test_mnist_missing(tmp_path: Path) -> None:
    expect_error(load_mnist, tmp_path / "mnist", "not found")
    expect_error(load_mnist, tmp_path, "no")  # empty folder


@pytest.mark.skipif(not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason="shared MNIST not present")
def test_real_mnist_t10k() -> None:
    ds = load_mnist(SHARED_MNIST, split="test")
    assert len(ds) == 10_000 and ds.shape == (1, 32, 32)
    assert ds.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(ds.labels, minlength=10).min() > 800


# ---------------------------------------------------------------- image folders


def save(path: Path, array: np.ndarray, **options: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)


def test_folder_grey_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    save(tmp_path / "b.png", rng.integers(0, 256, (40, 30), dtype=np.uint8))
    grey_rgb = np.repeat(rng.integers(0, 256, (20, 20, 1), dtype=np.uint8), 3, axis=2)
    save(tmp_path / "sub" / "a.PNG", grey_rgb)
    (tmp_path / "notes.txt").write_text("not an image")
    before = (tmp_path / "b.png").read_bytes()
    ds = load_folder(tmp_path, size=32)
    assert len(ds) == 2 and ds.shape == (1, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.source == str(tmp_path)
    assert (tmp_path / "b.png").read_bytes() == before
    assert load_folder(tmp_path, size=32, mode="rgb").shape == (3, 32, 32)
    assert len(load_dataset("folder", str(tmp_path))) == 2


def test_folder_colour_and_forced_grey(tmp_path: Path) -> None:
    red = np.zeros((64, 64, 3), dtype=np.uint8)
    red[..., 0] = 200
    save(tmp_path / "x" / "red.JPG", red, quality=95)
    save(tmp_path / "y.png", np.full((16, 16), 255, dtype=np.uint8))
    ds = load_folder(tmp_path, size=16)
    assert ds.shape == (3, 16, 16)
    first = ds.images[0].float().mean(dim=(1, 2))  # sorted: x/red.JPG before y.png
    assert first[0] > 150 and first[1] < 30 and first[2] < 30
    assert ds.images[1].min() == 255
    grey = load_folder(tmp_path, size=16, mode="grey")
    assert grey.shape == (1, 16, 16) and abs(int(grey.images[0].float().mean()) - 60) < 8  # 0.299 * 200


def test_folder_transparency_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., :3] = 255  # white but fully transparent ...
    rgba[2:6, 2:6, 3] = 255  # ... except an opaque square
    save(tmp_path / "sprite.png", rgba)
    img = load_folder(tmp_path, size=8).images[0, 0].numpy()
    assert img[0, 0] == 0 and img[4, 4] == 255


def test_folder_errors(tmp_path: Path) -> None:
    expect_error(load_folder, tmp_path / "missing", "not found")
    a_file = tmp_path / "file.png"
    a_file.write_bytes(b"x")
    expect_error(load_folder, a_file, "not a folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pictures")
    expect_error(load_folder, empty, "no png")
    broken = tmp_path / "broken"
    save(broken / "good.png", np.zeros((8, 8), dtype=np.uint8))
    (broken / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(DatasetError, match="bad.jpg"):
        load_folder(broken)
    with pytest.raises(DatasetError, match="mode"):
        load_folder(tmp_path, mode="cmyk")
