"""A user's image as a model's input, prepared the way the model's own training data was.

MNIST digits are 28x28 and the model sees them padded to 32x32 with a black border; a digit
from a file must be padded the same way, not stretched (a stretched digit is larger than any the
model was trained on). A data set whose raw images need such a transform declares it once, in its
own module, as the `native_input` (a `NativeInput`) of its registry spec. An image of
the model's own size is used as is; any other is resized, and the record says so. The original
size and how the image was fitted travel with it, so a decoder can give the picture back at the
size it came in (`restore`: crop the border off, or resize back).

The codec (`bvae compress`, the Compress tab) and the traversal's reference image (`bvae traverse
--image`, "File…") all read files through `load_image`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bvae_desktop.core.errors import DatasetError

FIT_AS_IS, FIT_PADDED, FIT_RESIZED = "as is", "padded", "resized"
FITS = (FIT_AS_IS, FIT_PADDED, FIT_RESIZED)  # a .bvz stores the position in this tuple
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
_HIGH_DEPTH = ("I", "I;16", "I;16B", "I;16L", "F")


@dataclass(frozen=True)
class NativeInput:
    """How a data set turns one of its raw images (`shape`, (C, h, w)) into the model's input.

    `transform` maps uint8 (n, C, h, w) to (n, C, H, W) by padding, with the original centred
    (top-left corner at ((H - h) // 2, (W - w) // 2)): `restore` crops it back from there.
    `label` names the data in messages ("padded from 28x28 as in MNIST training").
    """

    shape: tuple[int, int, int]
    transform: Callable[[np.ndarray], np.ndarray]
    label: str


@dataclass(frozen=True)
class Origin:
    """Where a model input came from: the size it had, how it was fitted to the model, its file's name."""

    height: int
    width: int
    fit: str = FIT_AS_IS
    name: str = ""  # a file name, never a path; "" when the image did not come from a file


@dataclass(frozen=True)
class Fitted:
    """One image ready for the model, with its origin and a note on what was done to it ("" when nothing)."""

    image: np.ndarray  # uint8 (C, H, W): what the model takes
    origin: Origin
    note: str = ""
    converted: bool = False  # grey made colour or colour made grey

    @property
    def changed(self) -> bool:
        """Resized, padded or converted: anything but the file's own pixels at the model's size."""
        return bool(self.note)

    @property
    def resized(self) -> bool:
        """Resized or converted: its pixels are not the file's own (padding alone keeps them)."""
        return self.converted or self.origin.fit == FIT_RESIZED


def native_input(dataset: str | None) -> NativeInput | None:
    """The transform the data set `dataset` declares for its raw images, or None (unknown name, or none declared).

    Read from the data registry's spec: no per-name list here.
    """
    if not dataset:
        return None
    from bvae_desktop.core.data.registry import dataset_spec

    try:
        return dataset_spec(dataset).native_input
    except DatasetError:
        return None


def fit_image(
    image: np.ndarray,
    shape: tuple[int, int, int],
    dataset: str | None = None,
    *,
    resize: bool = True,
    name: str = "",
    what: str = "image",
) -> Fitted:
    """A uint8 (C, h, w) or (h, w) image as the input of a model taking `shape` and trained on `dataset`.

    Used as is when it has the model's size; padded by the data set's own transform when it has the data
    set's raw size; otherwise resized (LANCZOS). Without `resize`, anything but the model's size and channels
    or the data set's own raw form is refused (DatasetError naming `what`).
    """
    array = _as_chw(image, what)
    channels, height, width = (int(v) for v in shape)
    c, h, w = array.shape
    native = native_input(dataset)
    converted = ""
    if c != channels:
        if not resize:
            raise DatasetError(
                f"{what}: image is {w}x{h} {'grey' if c == 1 else 'colour'}; the model takes {width}x{height} with "
                f"{channels} channel(s) (use --resize to convert it)"
            )
        array = _convert_channels(array, channels)
        converted = "converted to grey" if channels == 1 else "converted to colour"
    origin = Origin(h, w, FIT_AS_IS, name)
    if (h, w) == (height, width):
        return Fitted(np.array(array, dtype=np.uint8), origin, converted, bool(converted))  # a copy, writable
    if native is not None and (channels, h, w) == tuple(native.shape):
        out = np.asarray(native.transform(array[None]), dtype=np.uint8)
        if out.shape != (1, channels, height, width):
            raise DatasetError(
                f"{what}: the {native.label} transform gave {out.shape[1:]}, not the model's {(channels, height, width)}"
            )
        note = f"padded from {w}x{h} as in {native.label}"
        return Fitted(
            np.ascontiguousarray(out[0]), Origin(h, w, FIT_PADDED, name), _join(converted, note), bool(converted)
        )
    if not resize:
        raise DatasetError(
            f"{what}: image is {w}x{h}; the model takes {width}x{height}"
            + (f" (or {native.shape[2]}x{native.shape[1]} as in {native.label})" if native is not None else "")
            + " (use --resize to convert it)"
        )
    out = _resize(array, height, width)
    return Fitted(out, Origin(h, w, FIT_RESIZED, name), _join(converted, f"resized from {w}x{h}"), bool(converted))


def load_image(
    path: str | Path, shape: tuple[int, int, int], dataset: str | None = None, *, resize: bool = True
) -> Fitted:
    """An image file as the input of a model taking `shape` (see `fit_image`); DatasetError naming the file."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as pil:
            pil.load()
            array = _pil_array(pil)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: cannot read the image: {exc}") from exc
    return fit_image(array, shape, dataset, resize=resize, name=path.name, what=str(path))


def restore(image: np.ndarray, origin: Origin) -> np.ndarray:
    """A model-sized uint8 (C, H, W) image given back at its origin's size: the border cropped off, or resized."""
    image = np.asarray(image, dtype=np.uint8)
    _, height, width = image.shape
    if origin.fit == FIT_AS_IS or (origin.height, origin.width) == (height, width):
        return image
    if origin.fit == FIT_PADDED:
        top, left = (height - origin.height) // 2, (width - origin.width) // 2
        if top < 0 or left < 0:
            raise ValueError(f"a padded image of {origin.width}x{origin.height} cannot come from {width}x{height}")
        return np.ascontiguousarray(image[:, top : top + origin.height, left : left + origin.width])
    if origin.fit == FIT_RESIZED:
        return _resize(image, origin.height, origin.width)
    raise ValueError(f"unknown fit {origin.fit!r}; expected one of {', '.join(FITS)}")


# ---------------------------------------------------------------- helpers


def _join(*notes: str) -> str:
    return ", ".join(n for n in notes if n)


def _as_chw(image: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[None]
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[0] not in (1, 3, 4) or 0 in array.shape:
        raise DatasetError(
            f"{what}: an image must be uint8 (C, H, W) with 1, 3 or 4 channels; got {array.dtype} {array.shape}"
        )
    return array[:3]  # an alpha channel is dropped, as Pillow's convert("RGB") does


def _pil_array(pil: object) -> np.ndarray:
    """uint8 (1, h, w) for a grey image (16-bit and float greys scaled into 0..255), else (3, h, w)."""
    from PIL import Image

    assert isinstance(pil, Image.Image)
    if pil.mode in _HIGH_DEPTH:
        arr = np.asarray(pil, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0.0) > 255 else 255.0
        return np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)[None]
    if pil.mode in _GREY_MODES:
        return np.array(pil.convert("L"), dtype=np.uint8)[None]
    rgb = np.array(pil.convert("RGB"), dtype=np.uint8)
    if pil.mode == "P" and (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return np.ascontiguousarray(rgb[..., 0])[None]  # a grey palette
    return np.ascontiguousarray(np.moveaxis(rgb, -1, 0))


def _to_pil(array: np.ndarray) -> object:
    from PIL import Image

    return Image.fromarray(array[0]) if array.shape[0] == 1 else Image.fromarray(np.moveaxis(array, 0, -1))


def _from_pil(pil: object, channels: int) -> np.ndarray:
    arr = np.array(pil.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)  # type: ignore[attr-defined]
    return arr[None] if channels == 1 else np.ascontiguousarray(np.moveaxis(arr, -1, 0))


def _convert_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """Grey to colour (three equal channels) or colour to grey (ITU-R 601 luma, as Pillow's convert("L"))."""
    if channels == 3:
        return np.repeat(array[:1], 3, axis=0)
    return _from_pil(_to_pil(array), 1)


def _resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    pil = _to_pil(array).resize((width, height), Image.Resampling.LANCZOS)  # type: ignore[attr-defined]
    return _from_pil(pil, array.shape[0])
