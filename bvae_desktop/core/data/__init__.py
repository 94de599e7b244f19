"""Data sources. Each returns an ImageSet; `load_dataset` picks one by name."""

from __future__ import annotations

from bvae_desktop.core.data.imageset import ArrayImageSet, Factors, ImageSet, split_indices
from bvae_desktop.core.errors import DatasetError, os_reason

__all__ = ["ArrayImageSet", "Factors", "ImageSet", "load_dataset", "split_indices", "DATASET_NAMES"]

DATASET_NAMES = ("dsprites-procedural", "dsprites", "shapes3d", "mnist", "folder")


def load_dataset(name: str, path: str | None = None, **options: object) -> ImageSet:
    """Open a data source by name; file sources need `path`. Raises DatasetError for bad input."""
    if name == "dsprites-procedural":
        from bvae_desktop.core.data.procedural import ProceduralDSprites

        return ProceduralDSprites(**options)  # type: ignore[arg-type]
    if name not in DATASET_NAMES:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if not path:
        raise DatasetError(f"dataset {name!r} needs a file or folder path")
    try:
        return _load_file_source(name, path, **options)
    except OSError as exc:  # what a loader did not name itself: permissions, a vanished disk, ...
        where = exc.filename if exc.filename is not None else path
        raise DatasetError(f"{where}: cannot read ({os_reason(exc)})") from None
    except MemoryError:
        raise DatasetError(f"{path}: too large to hold in memory") from None


def _load_file_source(name: str, path: str, **options: object) -> ImageSet:
    if name == "dsprites":
        from bvae_desktop.core.data.dsprites import load_dsprites

        return load_dsprites(path, **options)  # type: ignore[arg-type]
    if name == "shapes3d":
        from bvae_desktop.core.data.shapes3d import load_shapes3d

        return load_shapes3d(path, **options)  # type: ignore[arg-type]
    if name == "mnist":
        from bvae_desktop.core.data.mnist import load_mnist

        return load_mnist(path, **options)  # type: ignore[arg-type]
    from bvae_desktop.core.data.folder import load_folder

    return load_folder(path, **options)  # type: ignore[arg-type]
