"""Data sources, one module each, registered in `registry`; each returns an ImageSet."""

from __future__ import annotations

from bvae_desktop.core.data.imageset import ArrayImageSet, Factors, ImageSet, split_indices
from bvae_desktop.core.data.registry import (
    DatasetSpec,
    Detection,
    dataset_names,
    dataset_spec,
    dataset_specs,
    detect_source,
    supported_file_filter,
)
from bvae_desktop.core.errors import DatasetError, os_reason

__all__ = [
    "ArrayImageSet",
    "DatasetSpec",
    "Detection",
    "Factors",
    "ImageSet",
    "dataset_names",
    "dataset_spec",
    "dataset_specs",
    "detect_source",
    "load_dataset",
    "split_indices",
    "supported_file_filter",
]


def load_dataset(name: str, path: str | None = None, **options: object) -> ImageSet:
    """Open a data source by name; file sources need `path`. Raises DatasetError for bad input."""
    spec = dataset_spec(name)
    try:
        return spec.open(path, **options)
    except OSError as exc:  # what a loader did not name itself: permissions, a vanished disk, ...
        where = exc.filename if exc.filename is not None else path
        raise DatasetError(f"{where}: cannot read ({os_reason(exc)})") from None
    except MemoryError:
        raise DatasetError(f"{path}: too large to hold in memory") from None
