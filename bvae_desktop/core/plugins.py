"""Extension points that fill themselves: every module of a package registers its entries on import."""

from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package: str, skip: set[str]) -> None:
    """Import each module of `package` (not sub-packages' contents) except `skip` and private ones."""
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if module.name not in skip and not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
