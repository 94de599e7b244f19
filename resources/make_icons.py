"""Render the app icon's PNG, ICO and ICNS files from its SVG source.

Run after editing `resources/icons/bvae-desktop.svg`; the outputs are committed so neither a build
nor the app needs an SVG renderer:

    QT_QPA_PLATFORM=offscreen .venv/bin/python resources/make_icons.py

Each size is rendered from the vector source (not scaled down from one bitmap) so 16 px stays crisp.
The PNGs ship inside the package (the window icon, the Linux menu icon); the ICO and ICNS are only
needed by the Windows and macOS builds, so they live in packaging/icons.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "resources" / "icons" / "bvae-desktop.svg"
PNG_DIR = ROOT / "bvae_desktop" / "resources" / "icons"
PACKAGING_DIR = ROOT / "packaging" / "icons"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)  # 256 is the largest an ICO holds
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)  # what macOS asks of an .icns (1x and 2x)


def render_png(size: int) -> bytes:
    """The SVG drawn at `size` x `size` pixels, anti-aliased, as PNG bytes."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"{SVG}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())


def _write(path: Path, data: bytes) -> None:
    """Write atomically, so an interrupted run never leaves half an icon."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    rendered = {size: render_png(size) for size in sorted({*PNG_SIZES, *ICO_SIZES, *ICNS_SIZES})}
    for size in PNG_SIZES:
        _write(PNG_DIR / f"bvae-desktop-{size}.png", rendered[size])
    images = {size: Image.open(io.BytesIO(rendered[size])).convert("RGBA") for size in rendered}

    out = io.BytesIO()
    largest = images[max(ICO_SIZES)]
    largest.save(
        out,
        format="ICO",
        sizes=[(s, s) for s in ICO_SIZES],
        append_images=[images[s] for s in ICO_SIZES if s != max(ICO_SIZES)],
    )
    _write(PACKAGING_DIR / "bvae-desktop.ico", out.getvalue())

    out = io.BytesIO()
    images[max(ICNS_SIZES)].save(
        out, format="ICNS", append_images=[images[s] for s in ICNS_SIZES if s != max(ICNS_SIZES)]
    )
    _write(PACKAGING_DIR / "bvae-desktop.icns", out.getvalue())
    print(f"wrote {len(PNG_SIZES)} PNGs to {PNG_DIR.relative_to(ROOT)}, .ico and .icns to {PACKAGING_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
