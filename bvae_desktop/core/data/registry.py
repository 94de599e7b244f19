"""The one registry of data sources: a spec per source, registered by the source's own module.

The CLI's --dataset choices, the Training panel's source list, labels, file dialogs and initial image
shapes, config validation and `load_dataset` all read it, so a new source is one new module in
`core/data` (calling `register`) plus its tests.
"""

from __future__ import annotations

import inspect
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bvae_desktop.core.data.imageset import ImageSet
from bvae_desktop.core.errors import DatasetError
from bvae_desktop.core.plugins import import_submodules

if TYPE_CHECKING:
    from bvae_desktop.core.image_input import NativeInput

NEEDS = ("nothing", "file", "folder", "file or folder")
_NOT_SOURCES = {"imageset", "registry", "sniffing"}


@dataclass(frozen=True)
class DatasetSpec:
    """A data source: what it is called, what it needs, what it gives, and how to open it."""

    name: str
    label: str
    needs: str  # one of NEEDS
    shape: tuple[int, int, int]  # (C, H, W) before a file is read (a folder may turn out colour)
    factors: bool  # ground-truth factors (for the disentanglement metrics and factor labels)
    opener: Callable[..., ImageSet]  # opener(path, **options), or opener(**options) when it needs nothing
    file_filter: str = "All files (*)"  # for file dialogs
    rank: int = 100
    # sniff(path) -> what was found ("MNIST IDX images: 10,000 of 28×28") when the file or folder is in this
    # source's layout, else None. Reads headers only: the dataset chooser calls every sniffer on a pick.
    sniff: Callable[[Path], str | None] | None = None
    # how one of the source's raw images becomes the model's input (MNIST: 28x28 padded to 32x32), so a
    # user's image file reaches the model as training's do (core/image_input.py); None: used as is or resized
    native_input: NativeInput | None = None

    @property
    def reports_progress(self) -> bool:
        """Whether the opener takes `progress(done, total)`: sources that take long to open say how far they are."""
        return "progress" in inspect.signature(self.opener).parameters

    @property
    def needs_path(self) -> bool:
        return self.needs != "nothing"

    def open(self, path: str | None = None, **options: object) -> ImageSet:
        if not self.needs_path:
            return self.opener(**options)
        if not path:
            raise DatasetError(f"dataset {self.name!r} needs a {self.needs} (data_path / --data)")
        return self.opener(path, **options)


_REGISTRY: dict[str, DatasetSpec] = {}
_loaded = False


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.needs not in NEEDS:
        raise ValueError(f"{spec.name}: needs must be one of {NEEDS}")
    known = _REGISTRY.get(spec.name)
    if known is not None and known != spec:
        raise ValueError(f"dataset {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import_submodules("bvae_desktop.core.data", _NOT_SOURCES)


def dataset_specs() -> list[DatasetSpec]:
    _load()
    return sorted(_REGISTRY.values(), key=lambda spec: (spec.rank, spec.name))


def dataset_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in dataset_specs())


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of `name`; an unknown name is an error naming the known ones."""
    _load()
    spec = _REGISTRY.get(name) if isinstance(name, str) else None
    if spec is None:
        raise DatasetError(f"dataset must be one of {', '.join(dataset_names())}; got {name!r}")
    return spec


@dataclass(frozen=True)
class Detection:
    """What `detect_source` found: the source that reads the path, and what it saw there."""

    spec: DatasetSpec
    found: str


def detect_source(path: str | Path) -> Detection:
    """The data source whose layout `path` has (npz keys, HDF5 datasets, IDX magic, image folder).

    Raises DatasetError naming the path, what it holds and what each source looks for when none matches.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    for spec in dataset_specs():
        if spec.sniff is None:
            continue
        try:
            found = spec.sniff(path)
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # a damaged file: not this layout
            found = None
        if found:
            return Detection(spec, found)
    from bvae_desktop.core.data.sniffing import describe_contents

    wanted = "; ".join(f"{spec.label}" for spec in dataset_specs() if spec.sniff is not None)
    raise DatasetError(f"{path}: not a data set this app reads ({describe_contents(path)}). It reads: {wanted}")


def supported_file_filter() -> str:
    """One file-dialog filter line matching every file source's patterns, for File ▸ Open dataset."""
    patterns: list[str] = []
    for spec in dataset_specs():
        if "(" in spec.file_filter and spec.needs != "nothing":
            for pattern in spec.file_filter.split("(", 1)[1].rstrip(")").split():
                if pattern != "*" and pattern not in patterns:
                    patterns.append(pattern)
    return f"Data sets ({' '.join(patterns)})"
