"""The one registry of data sources: a spec per source, registered by the source's own module.

The CLI's --dataset choices, the Training panel's source list, labels, file dialogs and initial image
shapes, config validation and `load_dataset` all read it, so a new source is one new module in
`core/data` (calling `register`) plus its tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bvae_desktop.core.data.imageset import ImageSet
from bvae_desktop.core.errors import DatasetError
from bvae_desktop.core.plugins import import_submodules

NEEDS = ("nothing", "file", "folder", "file or folder")
_NOT_SOURCES = {"imageset", "registry"}


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
