"""Small Pillow charts for reports: lines, markers, seed spread, log axes and a heat map.

The engine never imports Qt and the app does not ship matplotlib, so a report's figures are drawn
here: enough for "metric against β (log axis) with the spread over seeds" and training curves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
_FONT_CANDIDATES = ("DejaVuSans.ttf", "arial.ttf", "Arial.ttf", "Arial Unicode.ttf", "LiberationSans-Regular.ttf")
_GREEK_FALLBACK = {"β": "beta", "σ": "sigma", "μ": "mu", "γ": "gamma", "±": "+/-", "–": "-", "≈": "~"}
BACKGROUND = "white"
INK = "#222222"
GRID = "#e4e4e4"


@lru_cache(maxsize=8)
def _font(size: int) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, bool]:
    """(font, has Greek): a system font that draws β when there is one, else Pillow's own."""
    for name in _FONT_CANDIDATES:
        try:
            font = ImageFont.truetype(name, size)
        except OSError:
            continue
        if _draws(font, "β"):
            return font, True
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        font = ImageFont.load_default()
    return font, _draws(font, "β")


def _draws(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, char: str) -> bool:
    """False when the font has no glyph for `char` (it would draw the same box as for a private-use code)."""
    try:
        return bytes(font.getmask(char)) != bytes(font.getmask("\ue000"))
    except (UnicodeEncodeError, OSError, ValueError):
        return False


def text_for_font(text: str, size: int) -> str:
    """`text` as the chosen font can draw it: Greek spelled out where it has no glyphs."""
    if _font(size)[1]:
        return text
    for char, spelled in _GREEK_FALLBACK.items():
        text = text.replace(char, spelled)
    return text


@dataclass
class Series:
    name: str
    x: np.ndarray
    y: np.ndarray
    low: np.ndarray | None = None  # spread (e.g. min over seeds), drawn as error bars
    high: np.ndarray | None = None
    color: str = ""
    lines: bool = True
    markers: bool = True
    point_labels: Sequence[str] | None = None
    dashed: bool = False


@dataclass
class LineChart:
    """A chart of named series; `logx` for β axes; values that are not finite are left out."""

    title: str
    xlabel: str
    ylabel: str
    logx: bool = False
    ylim: tuple[float, float] | None = None
    xlim: tuple[float, float] | None = None  # e.g. room beside the points for their labels
    series: list[Series] = field(default_factory=list)

    def add(self, name: str, x: Sequence[float], y: Sequence[float], **options: object) -> LineChart:
        color = str(options.pop("color", "")) or PALETTE[len(self.series) % len(PALETTE)]
        low = options.pop("low", None)
        high = options.pop("high", None)
        self.series.append(
            Series(
                name,
                np.asarray(x, dtype=np.float64),
                np.asarray(y, dtype=np.float64),
                None if low is None else np.asarray(low, dtype=np.float64),
                None if high is None else np.asarray(high, dtype=np.float64),
                color,
                **options,  # type: ignore[arg-type]
            )
        )
        return self

    def render(self, width: int = 640, height: int = 420) -> Image.Image:
        image = Image.new("RGB", (width, height), BACKGROUND)
        draw = ImageDraw.Draw(image)
        small, _ = _font(12)
        big, _ = _font(15)
        left, right, top, bottom = 70, 16, 34, 52
        legend_rows = _legend_rows(self.series, width - left - right, small)
        bottom += 18 * legend_rows
        box = (left, top, width - right, height - bottom)
        draw.text((left, 8), text_for_font(self.title, 15), fill=INK, font=big)
        xs, ys = self._extents()
        if xs is None or ys is None:
            draw.text((left + 10, top + 20), "no data yet", fill="#888888", font=small)
            draw.rectangle(box, outline="#bbbbbb")
            return image
        x_axis = _Axis(*xs, log=self.logx, start=box[0], end=box[2])
        y_axis = _Axis(*ys, log=False, start=box[3], end=box[1])
        self._draw_grid(draw, box, x_axis, y_axis, small)
        for series in self.series:
            _draw_series(draw, series, x_axis, y_axis, small)
        draw.rectangle(box, outline="#888888")
        _draw_centered(draw, ((box[0] + box[2]) / 2, box[3] + 24), text_for_font(self.xlabel, 12), small)
        ylabel_text = text_for_font(self.ylabel, 12)
        ylabel = Image.new("RGB", (int(draw.textlength(ylabel_text, font=small)) + 2, 16), BACKGROUND)
        ImageDraw.Draw(ylabel).text((0, 0), ylabel_text, fill=INK, font=small)
        rotated = ylabel.rotate(90, expand=True)
        image.paste(rotated, (4, int((box[1] + box[3]) / 2 - rotated.height / 2)))
        _draw_legend(draw, self.series, (left, height - 8 - 18 * legend_rows), width - left - right, small)
        return image

    def _extents(self) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
        xs: list[float] = []
        ys: list[float] = []
        for s in self.series:
            ok = np.isfinite(s.x) & np.isfinite(s.y)
            if self.logx:
                ok &= s.x > 0
            xs.extend(s.x[ok])
            ys.extend(s.y[ok])
            for band in (s.low, s.high):
                if band is not None:
                    ys.extend(band[ok & np.isfinite(band)])
        if not xs:
            return None, None
        y_range = self.ylim or (min(ys), max(ys))
        return self.xlim or (min(xs), max(xs)), y_range

    def _draw_grid(
        self, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], x_axis: _Axis, y_axis: _Axis, font: object
    ) -> None:
        for value in x_axis.ticks():
            px = x_axis.to_pixel(value)
            draw.line((px, box[1], px, box[3]), fill=GRID)
            _draw_centered(draw, (px, box[3] + 8), _tick_text(value), font)
        for value in y_axis.ticks():
            py = y_axis.to_pixel(value)
            draw.line((box[0], py, box[2], py), fill=GRID)
            text = _tick_text(value)
            width = draw.textlength(text, font=font)  # type: ignore[arg-type]
            draw.text((box[0] - 6 - width, py - 7), text, fill=INK, font=font)  # type: ignore[arg-type]


class _Axis:
    """Maps data to pixels, linear or log10, padded so points do not sit on the frame."""

    def __init__(self, low: float, high: float, *, log: bool, start: float, end: float) -> None:
        self.log = log
        if log:
            low, high = math.log10(low), math.log10(high)
        if high - low < 1e-12:
            pad = abs(low) * 0.1 or 1.0
            low, high = low - pad, high + pad
        pad = (high - low) * 0.06
        self.low, self.high = low - pad, high + pad
        self.start, self.end = start, end

    def to_pixel(self, value: float) -> float:
        v = math.log10(value) if self.log else value
        return self.start + (v - self.low) / (self.high - self.low) * (self.end - self.start)

    def ticks(self) -> list[float]:
        if self.log:
            first, last = math.ceil(self.low), math.floor(self.high)
            return [10.0**e for e in range(first, last + 1)]
        span = self.high - self.low
        step = 10 ** math.floor(math.log10(span / 5))
        for factor in (1, 2, 5, 10):
            if span / (step * factor) <= 6:
                step *= factor
                break
        first = math.ceil(self.low / step) * step
        return [first + i * step for i in range(int((self.high - first) / step) + 1)]


def _tick_text(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.6g}" if abs(value) >= 1e-3 else "0"
    return f"{value:.0e}"


def _draw_centered(draw: ImageDraw.ImageDraw, center: tuple[float, float], text: str, font: object) -> None:
    width = draw.textlength(text, font=font)  # type: ignore[arg-type]
    draw.text((center[0] - width / 2, center[1]), text, fill=INK, font=font)  # type: ignore[arg-type]


def _draw_series(draw: ImageDraw.ImageDraw, s: Series, x_axis: _Axis, y_axis: _Axis, font: object) -> None:
    ok = np.isfinite(s.x) & np.isfinite(s.y)
    if x_axis.log:
        ok &= s.x > 0
    points = [(x_axis.to_pixel(x), y_axis.to_pixel(y)) for x, y in zip(s.x[ok], s.y[ok], strict=True)]
    if s.low is not None and s.high is not None:
        for x, lo, hi in zip(s.x[ok], s.low[ok], s.high[ok], strict=True):
            if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
                px = x_axis.to_pixel(x)
                top, bottom = y_axis.to_pixel(hi), y_axis.to_pixel(lo)
                draw.line((px, top, px, bottom), fill=s.color, width=1)
                draw.line((px - 4, top, px + 4, top), fill=s.color)
                draw.line((px - 4, bottom, px + 4, bottom), fill=s.color)
    if s.lines and len(points) > 1:
        if s.dashed:
            for a, b in zip(points[:-1], points[1:], strict=True):
                _dashed_line(draw, a, b, s.color)
        else:
            draw.line(points, fill=s.color, width=2, joint="curve")
    if s.markers:
        for px, py in points:
            draw.ellipse((px - 3.5, py - 3.5, px + 3.5, py + 3.5), fill=s.color, outline="white")
    if s.point_labels is not None:
        labels = [label for label, keep in zip(s.point_labels, ok, strict=True) if keep]
        for (px, py), label in zip(points, labels, strict=True):
            draw.text((px + 5, py - 15), text_for_font(label, 12), fill=s.color, font=font)  # type: ignore[arg-type]


def _dashed_line(draw: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float], color: str) -> None:
    length = math.hypot(b[0] - a[0], b[1] - a[1])
    dashes = max(1, int(length / 8))
    for i in range(0, dashes, 2):
        t0, t1 = i / dashes, min(1.0, (i + 1) / dashes)
        draw.line(
            (
                a[0] + (b[0] - a[0]) * t0,
                a[1] + (b[1] - a[1]) * t0,
                a[0] + (b[0] - a[0]) * t1,
                a[1] + (b[1] - a[1]) * t1,
            ),
            fill=color,
            width=2,
        )


def _legend_rows(series: list[Series], width: int, font: object) -> int:
    rows, used = 1, 0.0
    for s in series:
        entry = 30 + ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text_for_font(s.name, 12), font=font)  # type: ignore[arg-type]
        if used and used + entry > width:
            rows, used = rows + 1, 0.0
        used += entry + 12
    return rows if series else 0


def _draw_legend(
    draw: ImageDraw.ImageDraw, series: list[Series], origin: tuple[float, float], width: int, font: object
) -> None:
    x, y = origin
    for s in series:
        name = text_for_font(s.name, 12)
        entry = 30 + draw.textlength(name, font=font)  # type: ignore[arg-type]
        if x > origin[0] and x + entry > origin[0] + width:
            x, y = origin[0], y + 18
        draw.line((x, y + 7, x + 22, y + 7), fill=s.color, width=2)
        draw.text((x + 26, y), name, fill=INK, font=font)  # type: ignore[arg-type]
        x += entry + 12


def heatmap(
    title: str, values: np.ndarray, row_labels: Sequence[str], column_label: str, width: int = 640
) -> Image.Image:
    """Rows of non-negative values (e.g. KL per latent dimension for each β), darker = larger."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    rows, cols = values.shape if values.ndim == 2 and values.size else (0, 0)
    small, _ = _font(12)
    big, _ = _font(15)
    left, top, cell_h = 90, 34, 22
    height = top + max(rows, 1) * cell_h + 40
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((left, 8), text_for_font(title, 15), fill=INK, font=big)
    if rows == 0:
        draw.text((left, top + 4), "no data yet", fill="#888888", font=small)
        return image
    cell_w = (width - left - 70) / cols
    peak = float(values.max()) or 1.0
    for r in range(rows):
        draw.text((6, top + r * cell_h + 4), text_for_font(row_labels[r], 12), fill=INK, font=small)
        for c in range(cols):
            shade = int(round(255 * (1.0 - min(values[r, c] / peak, 1.0))))
            x0 = left + c * cell_w
            y0 = top + r * cell_h
            draw.rectangle((x0, y0, x0 + cell_w - 1, y0 + cell_h - 2), fill=(shade, shade, 255))
            text = f"{values[r, c]:.1f}"
            text_width = draw.textlength(text, font=small)
            if cell_w > text_width + 4:
                ink = "white" if shade < 120 else INK
                draw.text((x0 + cell_w / 2 - text_width / 2, y0 + 4), text, fill=ink, font=small)
    _draw_centered(draw, (left + cols * cell_w / 2, top + rows * cell_h + 10), text_for_font(column_label, 12), small)
    draw.text((width - 64, top), f"max {peak:.1f}", fill=INK, font=small)
    return image
