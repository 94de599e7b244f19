"""dSprites rendered on demand: the default dataset needs no download and no disk, only a few ms per batch.

The factor grid is the official one (737,280 images, posY fastest), and the geometry imitates the
published sprites closely enough for the disentanglement metrics to mean the same thing: a square
about 20 px wide at scale 1, a 2:1 ellipse, a heart with its lobes on top, centres spanning
pixels ~10..54. Images are binary (0 or 255), 1 x 64 x 64, and never stored.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from bvae_desktop.core.data.imageset import Factors, ImageSet
from bvae_desktop.core.data.registry import DatasetSpec, register

SIZE = 64
FACTOR_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
SHAPE_NAMES = ("square", "ellipse", "heart")

_CENTRE_LOW, _CENTRE_HIGH = 10.0, 54.0  # sprite centre (pixels) at pos 0 and pos 1
_SQUARE_HALF = 9.75  # half side at scale 1: a 19-20 px square, as in dSprites
_ELLIPSE_AXES = (14.0, 7.0)  # semi-axes at scale 1: elongated 2:1
_HEART_UNIT = 9.0  # pixels per unit of the implicit heart curve (about 20 px wide at scale 1)
_HEART_CENTROID = 0.293  # centroid height of the curve's area, so the heart turns about its middle
_MAX_RADIUS = 14.5  # farthest any shape reaches from its centre at scale 1 (square corner: 9.75 * sqrt 2)


def dsprites_factors() -> Factors:
    """The official dSprites factor grid in canonical order (posY fastest)."""
    values = (
        np.array([1.0]),
        np.array([1.0, 2.0, 3.0]),
        np.linspace(0.5, 1.0, 6),
        np.linspace(0.0, 2 * np.pi, 40),
        np.linspace(0.0, 1.0, 32),
        np.linspace(0.0, 1.0, 32),
    )
    return Factors(names=FACTOR_NAMES, sizes=tuple(len(v) for v in values), values=values)


def _sample_grid(pixels: int, supersample: int, device: torch.device) -> torch.Tensor:
    """Sample positions along one axis of a `pixels`-wide window, in pixel units (pixel j spans [j, j+1])."""
    step = 1.0 / supersample
    offsets = torch.arange(supersample, dtype=torch.float32, device=device) * step + step / 2
    return (torch.arange(pixels, dtype=torch.float32, device=device)[:, None] + offsets).reshape(-1)


def _inside(code: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inside test in the sprite's own frame (u right, v down, in pixels at scale 1)."""
    if code == 1:
        return (u.abs() <= _SQUARE_HALF) & (v.abs() <= _SQUARE_HALF)
    if code == 2:
        a, b = _ELLIPSE_AXES
        return u * u * (1.0 / (a * a)) + v * v * (1.0 / (b * b)) <= 1.0
    x = u * (1.0 / _HEART_UNIT)
    y = _HEART_CENTROID - v * (1.0 / _HEART_UNIT)  # the curve's y points up; image rows grow downward
    x2 = x * x
    t = x2 + y * y - 1.0
    return t * t * t <= x2 * y * y * y


def _paste(windows: torch.Tensor, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Place (n, w, w) windows with their top-left corners at (top, left) on blank 64 x 64 images, clipping."""
    n, w, _ = windows.shape
    canvas = torch.zeros(n, SIZE + 2 * w, SIZE + 2 * w, dtype=windows.dtype, device=windows.device)
    steps = torch.arange(w, device=windows.device)
    rows = (top.clamp(-w, SIZE) + w)[:, None] + steps  # (n, w)
    cols = (left.clamp(-w, SIZE) + w)[:, None] + steps
    canvas[torch.arange(n, device=windows.device)[:, None, None], rows[:, :, None], cols[:, None, :]] = windows
    return canvas[:, w : w + SIZE, w : w + SIZE]


def render(
    shape: torch.Tensor,
    scale: torch.Tensor,
    orientation: torch.Tensor,
    pos_x: torch.Tensor,
    pos_y: torch.Tensor,
    device: torch.device | str = "cpu",
    supersample: int = 2,
) -> torch.Tensor:
    """Binary sprites (n, 1, 64, 64) uint8 in {0, 255} for float factor values, one batch at once.

    `shape` holds the dSprites codes 1 (square), 2 (ellipse), 3 (heart). Each pixel is sampled on a
    supersample x supersample grid and set when at least half its samples fall inside the shape.
    Only a window around each sprite is evaluated (4x less work than the full image), then pasted.
    """
    device = torch.device(device)
    shape, scale, theta, pos_x, pos_y = (
        torch.as_tensor(t).to(device=device, dtype=torch.float32).reshape(-1)
        for t in (shape, scale, orientation, pos_x, pos_y)
    )
    n = shape.shape[0]
    if n == 0:
        return torch.zeros(0, 1, SIZE, SIZE, dtype=torch.uint8, device=device)
    span = _CENTRE_HIGH - _CENTRE_LOW
    cx = _CENTRE_LOW + span * pos_x
    cy = _CENTRE_LOW + span * pos_y
    half = math.ceil(_MAX_RADIUS * max(float(scale.abs().max()), 1e-3)) + 1  # window reaches every shape's edge
    left = cx.floor().long() - half
    top = cy.floor().long() - half
    grid = _sample_grid(2 * half, supersample, device)
    dx = (left.float()[:, None] + grid[None, :] - cx[:, None])[:, None, :]  # (n, 1, S): columns
    dy = (top.float()[:, None] + grid[None, :] - cy[:, None])[:, :, None]  # (n, S, 1): rows
    cos = (torch.cos(theta) / scale)[:, None, None]
    sin = (torch.sin(theta) / scale)[:, None, None]
    side = grid.shape[0]
    inside = torch.zeros(n, side, side, dtype=torch.bool, device=device)
    for code in (1, 2, 3):  # one vectorised pass per shape present, never one per image
        sel = (shape.round() == code).nonzero().reshape(-1)
        if sel.numel() == 0:
            continue
        u = dx[sel] * cos[sel] + dy[sel] * sin[sel]
        v = dy[sel] * cos[sel] - dx[sel] * sin[sel]
        inside[sel] = _inside(code, u, v)
    if supersample > 1:  # pooling is the fastest box filter torch has on CPU
        inside = F.avg_pool2d(inside.unsqueeze(1).float(), supersample).squeeze(1) >= 0.5
    return (_paste(inside.to(torch.uint8), top, left) * 255).unsqueeze(1)


class ProceduralDSprites(ImageSet):
    """The dSprites grid drawn by `render` per batch: index i always gives the same image."""

    name = "dSprites (procedural)"
    source = "built-in"

    def __init__(self, *, supersample: int = 2, **_options: object) -> None:
        """`supersample` trades speed for smoother edges; other options are accepted and ignored."""
        if int(supersample) < 1:
            raise ValueError("supersample must be at least 1")
        self.supersample = int(supersample)
        self.factors = dsprites_factors()
        self._values: dict[torch.device, list[torch.Tensor]] = {}
        self._render_device: torch.device | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return 1, SIZE, SIZE

    @property
    def binary(self) -> bool:
        return True

    def __len__(self) -> int:
        return self.factors.count

    def _value_tables(self, device: torch.device) -> list[torch.Tensor]:
        """Factor value grids as tensors on `device`, made once per device."""
        if device not in self._values:
            self._values[device] = [torch.as_tensor(v, dtype=torch.float32, device=device) for v in self.factors.values]
        return self._values[device]

    def to(self, device: torch.device | str) -> ProceduralDSprites:
        """Render on `device` from now on, even for batches asked for elsewhere: a GPU draws far faster."""
        device = torch.device(device)
        self._render_device = device if device.type != "cpu" else None
        return self

    def _batch(self, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
        if self._render_device is not None and device != self._render_device:
            return self._batch(indices, self._render_device).to(device)
        idx = indices.to(device=device, dtype=torch.int64)
        tables = self._value_tables(device)
        values = []
        for k in reversed(range(self.factors.num_factors)):  # unravel, last factor fastest
            size = self.factors.sizes[k]
            values.append(tables[k][idx % size])
            idx = idx // size
        _color, shape, scale, orientation, pos_x, pos_y = reversed(values)
        return render(shape, scale, orientation, pos_x, pos_y, device, self.supersample)


def _open(**options: object) -> ProceduralDSprites:
    return ProceduralDSprites(**options)  # type: ignore[arg-type]


register(
    DatasetSpec(
        name="dsprites-procedural",
        label="dSprites (procedural, built in)",
        needs="nothing",
        shape=(1, 64, 64),
        factors=True,
        opener=_open,
        rank=0,
    )
)
