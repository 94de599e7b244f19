"""Tile rows of images into one uint8 image: re-exported from the engine, which needs it for exports."""

from __future__ import annotations

from bvae_desktop.core.tiling import GAP_VALUE, tile_rows

__all__ = ["GAP_VALUE", "tile_rows"]
