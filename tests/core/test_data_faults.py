"""Hostile and unreadable data files: a DatasetError naming the file and the real cause, never a traceback
(MemoryError, PermissionError) or a misleading message."""

from __future__ import annotations

import errno
import io
import os
import pathlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bvae_desktop.core.data import load_dataset
from bvae_desktop.core.data.dsprites import load_dsprites
from bvae_desktop.core.data.folder import load_folder
from bvae_desktop.core.data.mnist import load_mnist
from bvae_desktop.core.errors import DatasetError

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """A .npy header (magic included) for a uint8 array of `shape`: the pixels are up to the caller."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_dsprites_header_claiming_a_billion_images_is_refused_before_allocating(tmp_path, compression):
    path = tmp_path / "dsprites.npz"
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("imgs.npy", _npy_header((10**9, 64, 64)) + bytes(64 * 64 * 3))
    with pytest.raises(DatasetError) as info:
        load_dsprites(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 'imgs' claims 1,000,000,000 images but the file holds at most 3 ")
    assert "truncated or damaged" in message


def test_dsprites_forged_zip_size_is_not_believed_either(tmp_path):
    """The zip directory's uncompressed size is data too: a stored member cannot hold more than its bytes."""
    path = tmp_path / "dsprites.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("imgs.npy", _npy_header((10**9, 64, 64)) + bytes(64 * 64))
    data = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo("imgs.npy")
    central = data.rindex(b"PK\x01\x02")
    data[central + 24 : central + 28] = (0xFFFFFFF0).to_bytes(4, "little")  # uncompressed size: 4 GiB
    path.write_bytes(bytes(data))
    assert info.compress_size < 0xFFFFFFF0
    with pytest.raises(DatasetError, match=r"dsprites\.npz: 'imgs' claims 1,000,000,000 images but the file holds at most 1 "):
        load_dsprites(path)


def test_dsprites_unreadable_file_says_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "dsprites.npz"
    np.savez(path, imgs=np.zeros((2, 64, 64), dtype=np.uint8))
    _deny_open(monkeypatch, path)
    with pytest.raises(DatasetError, match=r"dsprites\.npz: .*permission denied"):
        load_dataset("dsprites", str(path))


def test_mnist_one_byte_npz_is_not_called_pickled(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"P")
    with pytest.raises(DatasetError) as info:
        load_mnist(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a valid npz file") and "1 bytes" in message
    assert "pickle" not in message
    truncated = tmp_path / "t.npz"
    np.savez(truncated, x_train=np.zeros((3, 28, 28), np.uint8), y_train=np.zeros(3, np.int64))
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DatasetError, match=r"t\.npz: not a valid npz file \(a truncated or damaged zip file"):
        load_mnist(truncated)


def _image_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "a.png")
    return root


def _deny_scandir(monkeypatch, folder: Path) -> None:
    real = os.scandir

    def scandir(path="."):
        if Path(os.fsdecode(path)) == folder:
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def _deny_open(monkeypatch, file: Path) -> None:
    import builtins

    real = builtins.open

    def denied(path, *args, **kwargs):
        if isinstance(path, (str, os.PathLike)) and Path(path) == file:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)


def test_unreadable_image_folder_says_it_cannot_be_read(tmp_path, monkeypatch):
    folder = _image_folder(tmp_path / "pictures")
    _deny_scandir(monkeypatch, folder)
    with pytest.raises(DatasetError) as info:
        load_folder(folder)
    assert str(info.value) == f"{folder}: cannot read the folder (permission denied)"


def test_unreadable_sub_folder_is_named_when_nothing_else_is_found(tmp_path, monkeypatch):
    folder = tmp_path / "pictures"
    hidden = _image_folder(folder / "private")
    _deny_scandir(monkeypatch, hidden)
    with pytest.raises(DatasetError, match=rf"no PNG or JPEG images found .*could not read {hidden} \(permission denied\)"):
        load_folder(folder)
    _image_folder(folder)  # a readable image beside it: the readable part loads
    assert len(load_folder(folder, size=8)) == 1


def test_folder_behind_an_unreadable_parent(tmp_path, monkeypatch):
    folder = _image_folder(tmp_path / "locked" / "pictures")
    real_exists = pathlib.Path.exists

    def exists(self, *args, **kwargs):
        if self == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_exists(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "exists", exists)
    with pytest.raises(DatasetError, match=r"pictures: cannot read the folder \(permission denied\)"):
        load_dataset("folder", str(folder))


def test_mnist_folder_without_permission_is_one_error_through_load_dataset(tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    real_is_file = pathlib.Path.is_file

    def is_file(self):
        if self.parent == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_is_file(self)

    monkeypatch.setattr(pathlib.Path, "is_file", is_file)
    with pytest.raises(DatasetError, match=r"mnist/train-images-idx3-ubyte: cannot read \(permission denied\)"):
        load_dataset("mnist", str(folder))


@pytest.mark.skipif(AS_ROOT or os.name == "nt", reason="root reads any folder; the simulated tests above cover it")
def test_real_unreadable_folder(tmp_path):
    folder = _image_folder(tmp_path / "pictures")
    folder.chmod(0)
    try:
        with pytest.raises(DatasetError, match="cannot read the folder"):
            load_folder(folder)
    finally:
        folder.chmod(0o755)
