"""The codec view: compress one image with the model, against PNG, JPEG and WebP at the same quality.

Encoding is one small encode/decode (milliseconds), so the quality slider re-encodes live on the
GUI thread; the encoder statistics behind the bit allocation are measured once per model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from bvae_desktop.core import codec
from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.tiling import tile_rows
from bvae_desktop.gui.pg_setup import configure_pyqtgraph

RD_QUALITIES = (5, 15, 25, 35, 50, 65, 80, 90, 100)
RD_IMAGES = 16


class CodecView(QWidget):
    """Original | reconstruction | difference, the numbers, a quality slider and a rate-distortion chart."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        configure_pyqtgraph()
        self.setObjectName("codecView")
        self._source: ModelSource | None = None
        self._stats: codec.LatentStats | None = None
        self._image: np.ndarray | None = None
        self._image_pos = 0
        self._bvz: bytes | None = None
        self._decoded: np.ndarray | None = None
        self._numbers: dict[str, float] = {}
        # asked before decoding a file past the codec's size limits; a test or a script replaces it
        self.confirm_large: Callable[[str], bool] = self._ask_large
        self._build()
        self.set_source(None)

    # ----- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        self.imageView = pg.GraphicsLayoutWidget()
        self.imageView.setObjectName("codecImages")
        box = self.imageView.addViewBox(lockAspect=True, invertY=True, enableMouse=False)
        self._image_item = pg.ImageItem(levels=(0, 255))
        box.addItem(self._image_item)
        self._caption = QLabel("original · reconstruction · |difference| ×4", alignment=Qt.AlignmentFlag.AlignCenter)
        self.qualitySlider = QSlider(Qt.Orientation.Horizontal, objectName="qualitySlider")
        self.qualitySlider.setRange(1, 100)
        self.qualitySlider.setValue(50)
        self.qualitySlider.valueChanged.connect(self._on_quality_changed)
        self.qualityLabel = QLabel("quality 50", objectName="qualityLabel")
        self.prevButton = QPushButton("◀ Image", objectName="codecPrevButton")
        self.nextButton = QPushButton("Image ▶", objectName="codecNextButton")
        self.openImageButton = QPushButton("Open image…", objectName="codecOpenImageButton")
        self.saveButton = QPushButton("Save compressed…", objectName="saveCompressedButton")
        self.openButton = QPushButton("Open compressed…", objectName="openCompressedButton")
        self.rdButton = QPushButton("Rate-distortion chart", objectName="rdButton")
        self.prevButton.clicked.connect(lambda: self._step_image(-1))
        self.nextButton.clicked.connect(lambda: self._step_image(1))
        self.openImageButton.clicked.connect(self._on_open_image)
        self.saveButton.clicked.connect(self._on_save)
        self.openButton.clicked.connect(self._on_open)
        self.rdButton.clicked.connect(self.compute_rd)
        self.numbersLabel = QLabel(objectName="codecNumbersLabel")
        self.numbersLabel.setTextFormat(Qt.TextFormat.RichText)
        self.numbersLabel.setWordWrap(True)  # the allocation line is long: wrap rather than widen the window
        self.numbersLabel.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.statusLabel = QLabel(objectName="codecStatusLabel", wordWrap=True)
        self.rdPlot = pg.PlotWidget()
        self.rdPlot.setObjectName("rdPlot")
        self.rdPlot.setLabel("bottom", "bits per pixel")
        self.rdPlot.setLabel("left", "PSNR (dB)")
        self.rdPlot.addLegend(offset=(-10, 10))
        self.rdPlot.showGrid(x=True, y=True, alpha=0.15)
        self._rd_curves = {
            name: self.rdPlot.plot(
                pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=6, symbolBrush=colour, name=name
            )
            for name, colour in (("β-VAE codec", "#1f4e9c"), ("JPEG", "#e07b00"), ("WebP", "#2a9d3a"))
        }

        controls = QGridLayout()
        controls.addWidget(QLabel("Quality"), 0, 0)
        controls.addWidget(self.qualitySlider, 0, 1, 1, 3)
        controls.addWidget(self.qualityLabel, 0, 4)
        for column, button in enumerate((self.prevButton, self.nextButton, self.openImageButton)):
            controls.addWidget(button, 1, column + 1)
        for column, button in enumerate((self.saveButton, self.openButton, self.rdButton)):
            controls.addWidget(button, 2, column + 1)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.imageView, 1)
        left_layout.addWidget(self._caption)
        left_layout.addLayout(controls)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.numbersLabel)
        right_layout.addWidget(self.rdPlot, 1)
        right_layout.addWidget(self.statusLabel)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setSizes([520, 480])
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

    # ----- API -------------------------------------------------------------------------------
    def set_source(self, source: ModelSource | None) -> None:
        """Use `source`'s model; its validation images are the ones to compress."""
        self._source = source
        self._stats = None
        self._bvz = None
        self._image = None
        for curve in self._rd_curves.values():
            curve.setData([], [])
        enabled = source is not None
        for widget in (self.qualitySlider, self.openImageButton, self.saveButton, self.openButton, self.rdButton):
            widget.setEnabled(enabled)
        has_data = enabled and source.dataset is not None
        self.prevButton.setEnabled(has_data)
        self.nextButton.setEnabled(has_data)
        if source is None:
            self._image_item.clear()
            self.numbersLabel.setText("no model: load a checkpoint or train one")
            self.statusLabel.setText("")
            return
        if has_data:
            self._image_pos = 0
            self._step_image(0)
        else:
            self.statusLabel.setText(f"training data not available ({source.dataset_error}): open an image to compress")

    def set_image(self, image: np.ndarray) -> None:
        """Compress this uint8 (C, H, W) image (it must fit the model)."""
        self._image = np.asarray(image, dtype=np.uint8)
        self.reencode()

    def reencode(self) -> None:
        """Compress the image at the slider's quality, decode it back and show the numbers."""
        source, image = self._source, self._image
        if source is None or image is None:
            return
        quality = self.qualitySlider.value()
        try:
            if self._stats is None:
                reference = None if codec.reference_images(source, 1) is not None else image[None]
                self._stats = codec.latent_stats(source, reference)
            alloc = codec.allocation_from_stats(self._stats, quality)
            self._bvz = codec.compress(source, image[None], quality, alloc=alloc)
            self._decoded = codec.decompress(source, self._bvz, allow_large=True)[0]
        except BvaeError as exc:
            self.statusLabel.setText(str(exc))
            return
        self._show(image, self._decoded, quality, alloc)

    def numbers(self) -> dict[str, float]:
        """The last encoding's figures (bytes, bpp, ratios, PSNR, SSIM), for tests and scripts."""
        return dict(self._numbers)

    def compressed(self) -> bytes | None:
        return self._bvz

    def shown_image(self) -> np.ndarray | None:
        return self._image_item.image

    def save_compressed(self, path: str | Path) -> None:
        if self._bvz is None:
            raise BvaeError("nothing to save: no image compressed yet")
        codec.write_bvz(path, self._bvz)
        self.statusLabel.setText(f"wrote {path} ({len(self._bvz):,} bytes)")

    def open_compressed(self, path: str | Path) -> np.ndarray | None:
        """Decode a .bvz with this model and show its first image; an error is shown, not raised."""
        if self._source is None:
            return None
        try:
            data = codec.read_bvz(path)
            header = codec.parse_header(data, name=path)
            reason = codec.large_reason(header, len(data))
            if reason is not None and not self.confirm_large(
                f"{Path(path).name}: {reason}.\n\nDecoding it may take long and much memory. Decode it anyway?"
            ):
                self.statusLabel.setText(f"not decoded: {path}: {reason}")
                return None
            images = codec.decompress(self._source, data, name=path, allow_large=reason is not None)
        except BvaeError as exc:
            self.statusLabel.setText(str(exc))
            return None
        self._bvz, self._decoded = data, images[0]
        self._image_item.setImage(tile_rows([images[:8]]), levels=(0, 255))
        c, h, w = header.image_shape
        self.numbersLabel.setText(
            f"<b>{Path(path).name}</b>: {header.count} image(s), {len(data):,} bytes, "
            f"{len(data) * 8 / (header.count * h * w):.3f} bits per pixel, quality {header.quality}"
        )
        self.statusLabel.setText(f"decoded {header.count} image(s) from {path}")
        return images

    def compute_rd(self) -> dict[str, list[tuple[float, float]]]:
        """PSNR against bits per pixel on a few validation images, for our codec, JPEG and WebP."""
        source = self._source
        if source is None:
            return {}
        images = codec.reference_images(source, RD_IMAGES, seed=1)
        if images is None:
            images = self._image[None] if self._image is not None else None
        if images is None:
            return {}
        if self._stats is None:
            self._stats = codec.latent_stats(source, None if codec.reference_images(source, 1) is not None else images)
        pixels = images.shape[0] * images.shape[2] * images.shape[3]
        series: dict[str, list[tuple[float, float]]] = {"β-VAE codec": [], "JPEG": [], "WebP": []}
        for quality in RD_QUALITIES:
            alloc = codec.allocation_from_stats(self._stats, quality)
            data = codec.compress(source, images, quality, alloc=alloc)
            decoded = codec.decompress(source, data, allow_large=True)
            series["β-VAE codec"].append((len(data) * 8 / pixels, codec.psnr(images, decoded)))
            for name, encode in (("JPEG", codec.jpeg_bytes), ("WebP", codec.webp_bytes)):
                results = [encode(image, quality) for image in images]
                size = sum(r[0] for r in results)
                decoded_other = np.stack([_chw(r[1], image.shape) for r, image in zip(results, images, strict=True)])
                series[name].append((size * 8 / pixels, codec.psnr(images, decoded_other)))
        for name, points in series.items():
            finite = [(x, y) for x, y in points if np.isfinite(y)]
            self._rd_curves[name].setData([p[0] for p in finite], [p[1] for p in finite])
        self.statusLabel.setText(f"rate-distortion on {len(images)} validation images, qualities {list(RD_QUALITIES)}")
        return series

    # ----- internals -------------------------------------------------------------------------
    def _show(self, image: np.ndarray, decoded: np.ndarray, quality: int, alloc: codec.BitAllocation) -> None:
        diff = np.clip(np.abs(image.astype(np.int16) - decoded.astype(np.int16)) * 4, 0, 255).astype(np.uint8)
        self._image_item.setImage(tile_rows([np.stack([image, decoded, diff])]), levels=(0, 255))
        c, h, w = image.shape
        size = len(self._bvz or b"")
        payload = alloc.payload_bytes(1)
        raw = c * h * w
        png = codec.png_size(image)
        jpeg_size, jpeg_img = codec.jpeg_bytes(image, quality)
        webp_size, webp_img = codec.webp_bytes(image, quality)
        ours_psnr = codec.psnr(image, decoded)
        self._numbers = {
            "bytes": size,
            "payload_bytes": payload,
            "bpp": size * 8 / (h * w),
            "payload_bpp": payload * 8 / (h * w),
            "ratio_raw": raw / size,
            "ratio_png": png / size,
            "png_bytes": png,
            "jpeg_bytes": jpeg_size,
            "webp_bytes": webp_size,
            "ratio_jpeg": jpeg_size / size,
            "ratio_webp": webp_size / size,
            "psnr": ours_psnr,
            "ssim": codec.ssim(image, decoded),
            "jpeg_psnr": codec.psnr(image, _chw(jpeg_img, image.shape)),
            "webp_psnr": codec.psnr(image, _chw(webp_img, image.shape)),
        }
        n = self._numbers
        self.qualityLabel.setText(f"quality {quality}")
        self.numbersLabel.setText(
            "<table cellspacing=4>"
            f"<tr><td><b>β-VAE codec</b></td><td>{size:,} bytes (payload {payload} B; {int((alloc.bits > 0).sum())} of {alloc.latent_dim} dims coded, {alloc.bits_per_image} bits/image)</td></tr>"
            f"<tr><td>bits per pixel</td><td>{n['bpp']:.3f} (payload {n['payload_bpp']:.3f})</td></tr>"
            f"<tr><td>ratio</td><td>{n['ratio_raw']:.1f}× raw ({raw:,} B) · {n['ratio_png']:.1f}× PNG ({png:,} B)</td></tr>"
            f"<tr><td>PSNR · SSIM</td><td>{_db(ours_psnr)} · {n['ssim']:.3f}</td></tr>"
            f"<tr><td>JPEG q{quality}</td><td>{jpeg_size:,} bytes ({jpeg_size / size:.1f}× ours) · "
            f"{_db(n['jpeg_psnr'])}</td></tr>"
            f"<tr><td>WebP q{quality}</td><td>{webp_size:,} bytes ({webp_size / size:.1f}× ours) · "
            f"{_db(n['webp_psnr'])}</td></tr>"
            "</table>"
        )

    def _step_image(self, delta: int) -> None:
        source = self._source
        if source is None or source.dataset is None or source.val_indices is None or not len(source.val_indices):
            return
        self._image_pos = (self._image_pos + delta) % len(source.val_indices)
        index = int(source.val_indices[self._image_pos])
        self.statusLabel.setText(f"validation image {self._image_pos + 1:,} of {len(source.val_indices):,}")
        self.set_image(source.dataset.batch([index]).numpy()[0])

    def _on_quality_changed(self, _value: int) -> None:
        self.reencode()

    def _on_open_image(self) -> None:
        if self._source is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Image to compress", "", "Images (*.png *.jpg *.jpeg *.bmp)")
        if not path:
            return
        try:
            image = codec.load_images([path], self._source.image_shape, resize=True)[0]
        except BvaeError as exc:
            self.statusLabel.setText(str(exc))
            return
        self.set_image(image)

    def _on_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save compressed", "image.bvz", "β-VAE compressed (*.bvz)")
        if path:
            try:
                self.save_compressed(path)
            except BvaeError as exc:
                self.statusLabel.setText(str(exc))

    def _ask_large(self, text: str) -> bool:
        answer = QMessageBox.question(
            self,
            "Large compressed file",
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _on_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open compressed", "", "β-VAE compressed (*.bvz)")
        if path:
            self.open_compressed(path)


def _chw(decoded: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Pillow round trips may come back as (H, W) or (C, H, W): give the original's layout."""
    return np.asarray(decoded, dtype=np.uint8).reshape(shape)


def _db(value: float) -> str:
    return "∞ dB" if not np.isfinite(value) else f"{value:.2f} dB"
