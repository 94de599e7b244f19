"""The app icon: generated files exist at their sizes, match the SVG source, and the app loads them."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from bvae_desktop.gui.app import ICON_SIZES, app_icon

ROOT = Path(__file__).resolve().parents[2]
SVG = ROOT / "resources" / "icons" / "bvae-desktop.svg"
PNG_DIR = ROOT / "bvae_desktop" / "resources" / "icons"


def test_the_svg_source_is_a_square_svg():
    root = ET.parse(SVG).getroot()
    assert root.tag.endswith("svg") and root.get("viewBox") == "0 0 256 256"


def test_every_png_decodes_to_its_size_with_transparent_corners():
    for size in ICON_SIZES:
        with Image.open(PNG_DIR / f"bvae-desktop-{size}.png") as im:
            assert im.format == "PNG" and im.size == (size, size)
            rgba = np.asarray(im.convert("RGBA"))
        assert rgba[0, 0, 3] == 0  # rounded corners: the corner pixel is transparent
        assert rgba[size // 2, size // 2, 3] == 255


def test_ico_and_icns_hold_the_sizes_windows_and_macos_ask_for():
    with Image.open(ROOT / "packaging" / "icons" / "bvae-desktop.ico") as ico:
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    with Image.open(ROOT / "packaging" / "icons" / "bvae-desktop.icns") as icns:
        assert icns.size == (1024, 1024)
        assert (512, 512, 2) in icns.info["sizes"] and (128, 128, 1) in icns.info["sizes"]


def test_committed_pngs_are_rendered_from_the_current_svg(qapp):
    """Editing the SVG without running resources/make_icons.py fails here."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_icons", ROOT / "resources" / "make_icons.py")
    assert spec is not None and spec.loader is not None
    make_icons = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_icons)
    for size in (16, 64):
        fresh = np.asarray(Image.open(io.BytesIO(make_icons.render_png(size))).convert("RGBA"), dtype=np.int16)
        committed = np.asarray(Image.open(PNG_DIR / f"bvae-desktop-{size}.png").convert("RGBA"), dtype=np.int16)
        assert np.abs(fresh - committed).mean() < 1.0, f"{size} px icon is stale: run resources/make_icons.py"


def test_app_icon_offers_every_size_from_the_package(qapp):
    icon = app_icon()
    assert not icon.isNull()
    sizes = {(s.width(), s.height()) for s in icon.availableSizes()}
    assert {(16, 16), (32, 32), (256, 256)} <= sizes
