"""Tile rows of images into one uint8 image (sample strips, traversal grids, exported PNGs).

Numpy only, so the engine (traversal exports, the CLI) and the views share one layout.
"""

from __future__ import annotations

import numpy as np

GAP_VALUE = 64  # mid-dark grey between tiles


def tile_rows(rows: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Tile rows of images into one image, `gap` pixels of grey (64) between tiles.

    Each row is a uint8 array (n, C, H, W) with C in {1, 3}; all rows share C, H and W, and
    may hold different counts n (a short row is padded with the gap grey on the right).
    Returns (H_total, W_total) for C == 1, (H_total, W_total, 3) for C == 3, row-major, where
    H_total = R*H + (R-1)*gap and W_total = N*W + (N-1)*gap with N the longest row.
    """
    if not rows:
        raise ValueError("tile_rows needs at least one row")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    arrays = [np.asarray(r) for r in rows]
    first = arrays[0]
    for i, row in enumerate(arrays):
        if row.dtype != np.uint8:
            raise ValueError(f"row {i}: expected uint8 images, got {row.dtype}")
        if row.ndim != 4:
            raise ValueError(f"row {i}: expected shape (n, C, H, W), got {row.shape}")
        if row.shape[1:] != first.shape[1:]:
            raise ValueError(f"row {i}: image shape {row.shape[1:]} differs from row 0's {first.shape[1:]}")
    channels, height, width = first.shape[1:]
    if channels not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got {channels}")
    n_rows = len(arrays)
    n_cols = max(row.shape[0] for row in arrays)
    if n_cols == 0:
        raise ValueError("tile_rows needs at least one image")
    total_h = n_rows * height + (n_rows - 1) * gap
    total_w = n_cols * width + (n_cols - 1) * gap
    out = np.full((total_h, total_w, channels), GAP_VALUE, dtype=np.uint8)
    for r, row in enumerate(arrays):
        y = r * (height + gap)
        for k in range(row.shape[0]):
            x = k * (width + gap)
            out[y : y + height, x : x + width, :] = row[k].transpose(1, 2, 0)
    return out[:, :, 0] if channels == 1 else out
