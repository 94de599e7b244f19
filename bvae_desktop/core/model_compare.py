"""Two models side by side: traversal grids around the same reference image, rows labelled by factor.

The study's figures 5-7 in one picture: a VAE's and a β-VAE's latent traversals next to each other,
each row "z3 · KL 2.31 · posX (0.82)" (KL and the factor it follows most, see core.traversal), the
reference image they both start from shown above. The window's comparison view draws the image
this module composes (Pillow, no Qt), and exports it as PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bvae_desktop.core.atomic import atomic_path
from bvae_desktop.core.charts import _font as chart_font
from bvae_desktop.core.charts import text_for_font
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.traversal import (
    ACTIVE_KL,
    GRID_GAP,
    latent_order,
    reference_code,
    row_label,
    tile_grid,
    traversal_grid,
    traversal_values,
)

BACKGROUND = 255
TEXT = (20, 20, 20)
MUTED = (150, 150, 150)
PANEL_GUTTER = 28  # pixels between the two panels
MARGIN = 12
LABEL_PAD = 8


@dataclass(frozen=True)
class ComparePanel:
    """One model's side: a title, its traversal grid and one label per row."""

    title: str
    grid: np.ndarray  # uint8 (rows, steps, C, H, W)
    labels: list[str]
    inactive: list[bool]  # per row: KL below ACTIVE_KL (drawn in grey)


def same_data(a: ModelSource, b: ModelSource) -> bool:
    """Whether both models were trained on the same images (so one reference image serves both)."""
    return (
        a.dataset is not None
        and b.dataset is not None
        and (a.config.dataset, a.config.data_path, a.image_shape)
        == (b.config.dataset, b.config.data_path, b.image_shape)
    )


def validation_image(source: ModelSource, position: int) -> tuple[np.ndarray, int] | None:
    """The `position`-th validation image (wrapping around) as uint8 (C, H, W), and its dataset index."""
    if source.dataset is None:
        return None
    pool = source.val_indices if source.val_indices is not None else np.arange(len(source.dataset))
    if len(pool) == 0:
        return None
    index = int(pool[position % len(pool)])
    return source.dataset.batch([index]).numpy()[0], index


def model_panel(
    source: ModelSource,
    title: str,
    image: np.ndarray | None,
    *,
    kl: np.ndarray | None,
    factors: list[tuple[str, float]] | None,
    range_: float = 3.0,
    steps: int = 9,
    hide_inactive: bool = False,
) -> ComparePanel:
    """Every dimension (or the active ones) swept around `image`'s code, rows sorted by KL when known."""
    values = traversal_values(range_, steps)
    dims = latent_order(kl) if kl is not None else np.arange(source.latent_dim, dtype=np.int64)
    if hide_inactive and kl is not None:
        active = [int(d) for d in dims if kl[d] >= ACTIVE_KL]
        dims = np.asarray(active or [int(dims[0])], dtype=np.int64)  # at least one row
    grid = traversal_grid(source, reference_code(source, image), dims, values)
    labels = [
        row_label(int(d), None if kl is None else float(kl[d]), None if factors is None else factors[d]) for d in dims
    ]
    inactive = [bool(kl is not None and kl[d] < ACTIVE_KL) for d in dims]
    return ComparePanel(title=title, grid=grid, labels=labels, inactive=inactive)


# --- drawing -------------------------------------------------------------------------------------


def _font(size: int):
    """The charts' font: a system font that draws β where there is one, else Pillow's own."""
    return chart_font(size)[0]


def _text(text: str, size: int) -> str:
    """Greek spelled out when the font has no glyphs for it."""
    return text_for_font(text, size)


def _rgb(image: np.ndarray) -> np.ndarray:
    """A tiled (H, W) grey or (H, W, 3) image as RGB."""
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def panel_image(panel: ComparePanel, *, scale: int = 1) -> np.ndarray:
    """One side as RGB uint8 (H, W, 3): the title, then the label column beside the tiled grid."""
    from PIL import Image, ImageDraw

    tiled = _rgb(tile_grid(panel.grid, GRID_GAP))
    if scale > 1:
        tiled = tiled.repeat(scale, axis=0).repeat(scale, axis=1)
    rows, _steps, _c, tile_h, _w = panel.grid.shape
    tile_h *= scale
    gap = GRID_GAP * scale
    label_font, title_font = _font(12), _font(15)
    title = _text(panel.title, 15)
    labels = [_text(label, 12) for label in panel.labels]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(int(probe.textlength(text, font=label_font)) for text in labels) + 2 * LABEL_PAD
    title_box = probe.textbbox((0, 0), title, font=title_font)
    title_h = title_box[3] - title_box[1] + 10
    width = max(label_w + tiled.shape[1], int(probe.textlength(title, font=title_font)) + 4)
    height = title_h + tiled.shape[0]
    canvas = Image.new("RGB", (width, height), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(canvas)
    draw.text((0, 2 - title_box[1]), title, fill=TEXT, font=title_font)
    canvas.paste(Image.fromarray(np.ascontiguousarray(tiled)), (label_w, title_h))
    for r, text in enumerate(labels):
        box = draw.textbbox((0, 0), text, font=label_font)
        y = title_h + r * (tile_h + gap) + (tile_h - (box[3] - box[1])) // 2 - box[1]
        x = label_w - LABEL_PAD - int(draw.textlength(text, font=label_font))
        draw.text((x, y), text, fill=MUTED if panel.inactive[r] else TEXT, font=label_font)
    return np.asarray(canvas, dtype=np.uint8)


def compose(
    panels: Sequence[ComparePanel],
    *,
    references: Sequence[np.ndarray | None] = (),
    caption: str = "",
    scale: int = 1,
) -> np.ndarray:
    """The whole comparison as RGB uint8 (H, W, 3): a caption line with the reference image(s), then the
    panels side by side, top-aligned on white."""
    from PIL import Image, ImageDraw

    if not panels:
        raise ValueError("compose needs at least one panel")
    sides = [panel_image(p, scale=scale) for p in panels]
    refs = [_rgb(_display(r)) for r in references if r is not None]
    ref_scale = max(1, 64 // max((r.shape[0] for r in refs), default=64)) * scale
    refs = [r.repeat(ref_scale, axis=0).repeat(ref_scale, axis=1) for r in refs]
    font = _font(13)
    caption = _text(caption, 13)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    caption_box = probe.textbbox((0, 0), caption or " ", font=font)
    refs_w = sum(r.shape[1] + 8 for r in refs)
    header_h = max([caption_box[3] - caption_box[1]] + [r.shape[0] for r in refs]) + 12
    body_w = sum(s.shape[1] for s in sides) + PANEL_GUTTER * (len(sides) - 1)
    width = 2 * MARGIN + max(body_w, refs_w + int(probe.textlength(caption, font=font)) + 8)
    height = 2 * MARGIN + header_h + max(s.shape[0] for s in sides)
    canvas = Image.new("RGB", (width, height), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(canvas)
    x = MARGIN
    for ref in refs:
        canvas.paste(Image.fromarray(np.ascontiguousarray(ref)), (x, MARGIN))
        x += ref.shape[1] + 8
    text_y = MARGIN + (header_h - 12 - (caption_box[3] - caption_box[1])) // 2 - caption_box[1]
    draw.text((x, text_y), caption, fill=TEXT, font=font)
    x = MARGIN
    for side in sides:
        canvas.paste(Image.fromarray(side), (x, MARGIN + header_h))
        x += side.shape[1] + PANEL_GUTTER
    return np.asarray(canvas, dtype=np.uint8)


def _display(image: np.ndarray) -> np.ndarray:
    """uint8 (C, H, W) -> (H, W) or (H, W, 3)."""
    image = np.asarray(image)
    return image[0] if image.shape[0] == 1 else np.ascontiguousarray(image.transpose(1, 2, 0))


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an RGB uint8 image as PNG, atomically."""
    from PIL import Image

    target = Path(path)
    with atomic_path(target) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")
    return target
