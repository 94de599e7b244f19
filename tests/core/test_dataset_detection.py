"""The dataset chooser infers the source from what a file holds, not from its name."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from data_fixtures import dsprites_npz, image_folder, mnist_idx, mnist_npz, shapes3d_h5

from bvae_desktop.core.data import dataset_spec, detect_source, supported_file_filter
from bvae_desktop.core.errors import DatasetError


def test_dsprites_npz_is_found_by_its_keys_whatever_its_name(tmp_path: Path) -> None:
    found = detect_source(dsprites_npz(tmp_path / "whatever.bin"))
    assert found.spec.name == "dsprites"
    assert "imgs (6, 64, 64) uint8" in found.found and "latents_classes" in found.found
    bare = detect_source(dsprites_npz(tmp_path / "bare.npz", factors=False))
    assert bare.spec.name == "dsprites" and "no factors" in bare.found


def test_image_folder_is_found_and_counted(tmp_path: Path) -> None:
    found = detect_source(image_folder(tmp_path / "pictures", count=3))
    assert found.spec.name == "folder" and "3 PNG/JPEG images" in found.found


@pytest.mark.parametrize(
    ("make", "source", "expected"),
    [
        (lambda p: mnist_npz(p / "digits.npz"), "mnist", "x_train"),
        (lambda p: mnist_idx(p / "t10k-images-idx3-ubyte"), "mnist", "28×28"),
        (lambda p: mnist_idx(p / "renamed.dat", gz=True), "mnist", "28×28"),
        (lambda p: shapes3d_h5(p / "shapes.hdf"), "shapes3d", "images (8, 64, 64, 3)"),
    ],
    ids=["mnist-npz", "mnist-idx", "mnist-idx-gz-renamed", "shapes3d"],
)
def test_each_file_layout_names_its_source(tmp_path: Path, make, source: str, expected: str) -> None:
    found = detect_source(make(tmp_path))
    assert found.spec.name == source
    assert expected in found.found


def test_mnist_idx_folder_is_mnist_not_an_image_folder(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    mnist_idx(folder / "t10k-images-idx3-ubyte.gz", gz=True)
    assert detect_source(folder).spec.name == "mnist"


def test_unknown_npz_error_names_the_file_its_keys_and_what_is_read(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(DatasetError) as info:
        detect_source(path)
    message = str(info.value)
    assert str(path) in message
    assert "npz archive with weights (3, 4) float32" in message
    assert dataset_spec("dsprites").label in message and dataset_spec("shapes3d").label in message


def test_hdf5_without_the_3d_shapes_layout_lists_its_datasets(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("pixels", data=np.zeros((2, 8), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"HDF5 file with pixels \(2, 8\) uint8"):
        detect_source(path)


def test_garbage_empty_and_missing_paths_are_errors_naming_them(tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match="junk.npz"):
        detect_source(junk)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(DatasetError, match="an empty file"):
        detect_source(empty)
    with pytest.raises(DatasetError, match="no such file or folder"):
        detect_source(tmp_path / "missing.npz")
    (tmp_path / "nothing-here").mkdir()
    with pytest.raises(DatasetError, match="an empty folder"):
        detect_source(tmp_path / "nothing-here")


def test_open_dataset_filter_offers_every_file_type() -> None:
    line = supported_file_filter()
    for pattern in ("*.npz", "*.h5", "*.hdf5", "*ubyte", "*ubyte.gz"):
        assert pattern in line
