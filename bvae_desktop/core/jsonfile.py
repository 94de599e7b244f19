"""Our small JSON files (configs, experiment specs, results, model cards): reading them with errors that
name the file, and writing the numpy and path values they hold."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bvae_desktop.core.errors import BvaeError


def read_json_object(
    path: str | os.PathLike[str], error: type[BvaeError], *, missing: str, unreadable: str, not_object: str
) -> dict[str, Any]:
    """The JSON object in `path`; `error` with "<path>: <reason>" when it is absent, unreadable or not an object."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{file}: {missing}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{file}: {unreadable} ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{file}: {not_object}")
    return data


def json_default(value: Any) -> Any:
    """`json.dumps(default=...)` for what results and cards hold besides plain values."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
