"""A folder of PNG/JPEG images as a dataset: the researcher's own pictures, resized to one square size.

Images are stretched to size x size (no cropping: nothing the user drew is cut off). Transparent
pixels are composited onto black, matching the black backgrounds of the built-in datasets.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from bvae_desktop.core.data.imageset import ArrayImageSet
from bvae_desktop.core.data.registry import DatasetSpec, register
from bvae_desktop.core.errors import DatasetError, os_reason

SUFFIXES = (".png", ".jpg", ".jpeg")
MODES = ("auto", "grey", "gray", "rgb")


def load_folder(path: str | Path, *, size: int = 64, mode: str = "auto", **_options: object) -> ArrayImageSet:
    """Every PNG/JPEG under `path` (recursive, sorted) as (N, C, size, size) uint8.

    mode "auto" gives one grey channel when every image is greyscale, else RGB; "grey"/"rgb" force it.
    """
    mode = mode.lower()
    if mode not in MODES:
        raise DatasetError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 4 <= size <= 1024:
        raise DatasetError(f"size must be a whole number of pixels from 4 to 1024, not {size!r}")
    folder = Path(path)
    files = image_files(folder)
    arrays = np.stack([_read(f, size) for f in files])  # (N, size, size, 3)
    if mode in ("grey", "gray"):
        images = _luminance(arrays)
    elif mode == "auto" and _all_grey(arrays):
        images = arrays[..., :1]
    else:
        images = arrays
    return ArrayImageSet(
        np.ascontiguousarray(images.transpose(0, 3, 1, 2)),
        name=folder.name or str(folder),
        source=str(folder),
    )


def image_files(folder: Path) -> list[Path]:
    """PNG/JPEG files under `folder`, any case of suffix, sorted by relative path for a stable order."""
    try:
        if not folder.exists():
            raise DatasetError(f"{folder}: folder not found")
        if not folder.is_dir():
            raise DatasetError(f"{folder}: not a folder")
    except OSError as exc:  # e.g. a parent folder we may not enter
        raise DatasetError(f"{folder}: cannot read the folder ({os_reason(exc)})") from None
    unreadable: list[OSError] = []
    found = []
    # os.walk, not Path.rglob: rglob skips a folder it may not read without a word, which turned
    # "permission denied" into "no images found"
    seen: set[str] = set()
    for root, dirs, names in os.walk(folder, onerror=unreadable.append, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up the tree: walked already
            dirs.clear()
            continue
        seen.add(real)
        found += [Path(root) / name for name in names if Path(name).suffix.lower() in SUFFIXES]
    top = next((e for e in unreadable if e.filename is not None and Path(e.filename) == folder), None)
    if top is not None:
        raise DatasetError(f"{folder}: cannot read the folder ({os_reason(top)})")
    files = sorted((p for p in found if _is_file_or_unknown(p)), key=lambda p: p.relative_to(folder).as_posix())
    if not files:
        skipped = f"; could not read {unreadable[0].filename} ({os_reason(unreadable[0])})" if unreadable else ""
        raise DatasetError(f"{folder}: no PNG or JPEG images found (searched sub-folders too){skipped}")
    return files


def _is_file_or_unknown(path: Path) -> bool:
    """Skip folders named like images; keep what cannot even be looked at, so reading it names the problem."""
    try:
        return path.is_file()
    except OSError:
        return True


def _read(path: Path, size: int) -> np.ndarray:
    """One image as (size, size, 3) uint8; a grey image has three equal channels."""
    try:
        with Image.open(path) as img:
            img.load()
            rgb = _to_rgb(img)
            rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
            return np.asarray(rgb, dtype=np.uint8)
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, DecompressionBombError, ...)
        raise DatasetError(f"{path}: cannot read this image ({exc})") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB with any transparency composited onto black."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return _high_depth_to_l(img).convert("RGB")
    if img.mode in ("1", "L"):
        return img.convert("L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img.convert("RGB")


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit or float greys scaled into 0..255 (Pillow's own convert would clip them)."""
    arr = np.asarray(img, dtype=np.float64)
    peak = float(arr.max(initial=0.0))
    if img.mode == "F" and peak <= 1.0:
        arr = arr * 255.0
    elif peak > 255.0:
        arr = arr * (255.0 / 65535.0)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def _all_grey(arrays: np.ndarray) -> bool:
    return bool((arrays[..., 0] == arrays[..., 1]).all() and (arrays[..., 1] == arrays[..., 2]).all())


def _luminance(arrays: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, as Pillow's convert("L"), for forcing colour images to grey."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.rint(arrays.astype(np.float32) @ weights), 0, 255).astype(np.uint8)[..., None]


def sniff_folder(path: Path) -> str | None:
    """A folder with PNG/JPEG images anywhere under it."""
    if not path.is_dir():
        return None
    try:
        count = len(image_files(path))
    except DatasetError:
        return None
    return f"a folder of {count:,} PNG/JPEG images"


register(
    DatasetSpec(
        name="folder",
        label="Image folder (PNG/JPEG)",
        needs="folder",
        shape=(1, 64, 64),
        factors=False,
        opener=load_folder,
        rank=4,
        sniff=sniff_folder,
    )
)
