"""The codec view: compress one image with the model, against PNG, JPEG and WebP at the same quality.

Encoding is one small encode/decode (milliseconds), so the quality slider re-encodes live on the
GUI thread; the encoder statistics behind the bit allocation are measured once per model.

Laid out for a 1024x640 window and up (the tab then has about 650x570): the images and the
figures side by side, the controls in two rows of buttons under them, the rate-distortion chart
across the whole width below. The figures are short table rows that never wrap; a file name too
long for its row is shortened in the middle (the whole name in the tooltip).

An image file is read as the model's own data was prepared (core/image_input.py: a 28x28 digit
padded for an MNIST model, not stretched); its name and original size go into the .bvz, and
"Save decoded…" writes each image under its own name at its own size. When no latent dimension is
coded the file stores nothing about the image: the view says so instead of a compression ratio.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
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
    QSizePolicy,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from bvae_desktop.core import codec
from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.image_input import Fitted, Origin
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.tiling import tile_rows
from bvae_desktop.gui.pg_setup import configure_pyqtgraph

RD_QUALITIES = (5, 15, 25, 35, 50, 65, 80, 90, 100)
RD_IMAGES = 16
NAME_WIDTH_PX = 190  # a file name longer than this is shortened in the middle
NAMES_SHOWN = 3  # an opened .bvz lists this many of its images' names
_WARNING_STYLE = "color: #9a3b00; font-weight: bold;"


class CodecView(QWidget):
    """Original | reconstruction | difference, the numbers, a quality slider and a rate-distortion chart."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        configure_pyqtgraph()
        self.setObjectName("codecView")
        self._source: ModelSource | None = None
        self._stats: codec.LatentStats | None = None
        self._image: np.ndarray | None = None
        self._origin: Origin | None = None  # the shown image's file name and original size, None for a validation image
        self._image_pos = 0
        self._bvz: bytes | None = None
        self._decoded: np.ndarray | None = None
        self._decoded_all: np.ndarray | None = None  # every image of the current .bvz, model-sized
        self._numbers: dict[str, float] = {}
        # asked before decoding a file past the codec's size limits; a test or a script replaces it
        self.confirm_large: Callable[[str], bool] = self._ask_large
        self._build()
        self.set_source(None)

    # ----- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        self.imageView = pg.GraphicsLayoutWidget()
        self.imageView.setObjectName("codecImages")
        self.imageView.setMinimumSize(200, 90)
        box = self.imageView.addViewBox(lockAspect=True, invertY=True, enableMouse=False)
        self._image_item = pg.ImageItem(levels=(0, 255))
        box.addItem(self._image_item)
        self._caption = QLabel("original · reconstruction · |difference| ×4", alignment=Qt.AlignmentFlag.AlignCenter)
        self._caption.setObjectName("codecCaption")
        self.qualitySlider = QSlider(Qt.Orientation.Horizontal, objectName="qualitySlider")
        self.qualitySlider.setRange(1, 100)
        self.qualitySlider.setValue(50)
        self.qualitySlider.valueChanged.connect(self._on_quality_changed)
        self.qualityLabel = QLabel("quality 100", objectName="qualityLabel")
        self.qualityLabel.setMinimumWidth(self.qualityLabel.sizeHint().width())  # no jump from "quality 9" to 100
        self.qualityLabel.setText("quality 50")
        self.prevButton = QPushButton("◀ Image", objectName="codecPrevButton")
        self.nextButton = QPushButton("Image ▶", objectName="codecNextButton")
        self.openImageButton = QPushButton("Open image…", objectName="codecOpenImageButton")
        self.saveButton = QPushButton("Save compressed…", objectName="saveCompressedButton")
        self.openButton = QPushButton("Open compressed…", objectName="openCompressedButton")
        self.saveDecodedButton = QPushButton("Save decoded…", objectName="saveDecodedButton")
        self.saveDecodedButton.setToolTip(
            "write the decoded images as PNGs, each under its own name and at its own size"
        )
        self.rdButton = QPushButton("Rate-distortion chart", objectName="rdButton")
        self.prevButton.clicked.connect(lambda: self._step_image(-1))
        self.nextButton.clicked.connect(lambda: self._step_image(1))
        self.openImageButton.clicked.connect(self._on_open_image)
        self.saveButton.clicked.connect(self._on_save)
        self.openButton.clicked.connect(self._on_open)
        self.saveDecodedButton.clicked.connect(self._on_save_decoded)
        self.rdButton.clicked.connect(self.compute_rd)
        self.warningLabel = QLabel(objectName="codecWarningLabel", wordWrap=True)
        self.warningLabel.setStyleSheet(_WARNING_STYLE)
        self.warningLabel.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.warningLabel.setVisible(False)
        self.numbersLabel = QLabel(objectName="codecNumbersLabel")
        self.numbersLabel.setTextFormat(Qt.TextFormat.RichText)
        self.numbersLabel.setWordWrap(False)  # short rows, never wrapped: a narrow column read word by word
        self.numbersLabel.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.statusLabel = QLabel(objectName="codecStatusLabel", wordWrap=True)
        self.statusLabel.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # wraps, never widens
        self.rdPlot = pg.PlotWidget()
        self.rdPlot.setObjectName("rdPlot")
        self.rdPlot.setMinimumSize(300, 150)
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

        pictures = QVBoxLayout()
        pictures.setContentsMargins(0, 0, 0, 0)
        pictures.addWidget(self.imageView, 1)
        pictures.addWidget(self._caption)
        figures = QVBoxLayout()
        figures.setContentsMargins(0, 0, 0, 0)
        figures.addWidget(self.warningLabel)
        figures.addWidget(self.numbersLabel)
        figures.addStretch(1)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addLayout(pictures, 1)
        top.addLayout(figures, 0)
        quality = QHBoxLayout()
        quality.addWidget(QLabel("Quality"))
        quality.addWidget(self.qualitySlider, 1)
        quality.addWidget(self.qualityLabel)
        buttons = QGridLayout()
        for column, button in enumerate((self.prevButton, self.nextButton, self.openImageButton)):
            buttons.addWidget(button, 0, column)
        for column, button in enumerate((self.saveButton, self.openButton, self.saveDecodedButton, self.rdButton)):
            buttons.addWidget(button, 1, column)
        upper = QWidget(objectName="codecUpper")
        upper_layout = QVBoxLayout(upper)
        upper_layout.setContentsMargins(6, 6, 6, 0)
        upper_layout.addLayout(top, 1)
        upper_layout.addLayout(quality)
        upper_layout.addLayout(buttons)
        # the figures get their full width first; the images, then the chart, take what is left
        self.numbersLabel.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Preferred)
        splitter = QSplitter(Qt.Orientation.Vertical, objectName="codecSplitter")
        splitter.addWidget(upper)
        splitter.addWidget(self.rdPlot)
        splitter.setChildrenCollapsible(False)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 4)
        layout.addWidget(splitter, 1)
        status = QHBoxLayout()
        status.setContentsMargins(6, 0, 6, 0)
        status.addWidget(self.statusLabel)
        layout.addLayout(status)

    # ----- API -------------------------------------------------------------------------------
    def set_source(self, source: ModelSource | None) -> None:
        """Use `source`'s model; its validation images are the ones to compress."""
        self._source = source
        self._stats = None
        self._bvz = None
        self._decoded_all = None
        self._image = None
        self._origin = None
        for curve in self._rd_curves.values():
            curve.setData([], [])
        enabled = source is not None
        for widget in (self.qualitySlider, self.openImageButton, self.saveButton, self.openButton, self.rdButton):
            widget.setEnabled(enabled)
        self.saveDecodedButton.setEnabled(False)
        has_data = enabled and source.dataset is not None
        self.prevButton.setEnabled(has_data)
        self.nextButton.setEnabled(has_data)
        self._set_warning(None)
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

    def set_image(self, image: np.ndarray, origin: Origin | None = None) -> None:
        """Compress this uint8 (C, H, W) image (it must fit the model); `origin`: its file's name and original
        size when it came from a file (stored in the .bvz, so decoding gives it back as it was)."""
        self._image = np.asarray(image, dtype=np.uint8)
        self._origin = origin
        self.reencode()

    def set_input(self, fitted: Fitted) -> None:
        """Compress an image read from a file (`codec.load_inputs`), saying how it was fitted to the model."""
        name = fitted.origin.name or "image"
        self.statusLabel.setText(f"{name}: {fitted.note}" if fitted.note else f"{name}: as it is")
        self.set_image(fitted.image, fitted.origin)

    def reencode(self) -> None:
        """Compress the image at the slider's quality, decode it back and show the numbers."""
        source, image = self._source, self._image
        if source is None or image is None:
            return
        quality = self.qualitySlider.value()
        try:
            if self._stats is None:
                self._stats = codec.allocation_stats(source, image[None])
            alloc = codec.allocation_from_stats(self._stats, quality)
            origins = None if self._origin is None else [self._origin]
            self._bvz = codec.compress(source, image[None], quality, alloc=alloc, origins=origins)
            self._decoded_all = codec.decompress(source, self._bvz, allow_large=True)
            self._decoded = self._decoded_all[0]
        except BvaeError as exc:
            self.statusLabel.setText(str(exc))
            return
        self.saveDecodedButton.setEnabled(True)
        self._show(image, self._decoded, quality, alloc)

    def numbers(self) -> dict[str, float]:
        """The last encoding's figures (bytes, bpp, ratios, PSNR, SSIM), for tests and scripts. With no dimension
        coded the ratios are NaN: the file then holds a header and nothing about the image."""
        return dict(self._numbers)

    def compressed(self) -> bytes | None:
        return self._bvz

    def shown_image(self) -> np.ndarray | None:
        return self._image_item.image

    def warning(self) -> str:
        """What the view warns about (no dimension coded, no latent active), "" when nothing."""
        return self.warningLabel.text() if not self.warningLabel.isHidden() else ""

    def save_compressed(self, path: str | Path) -> None:
        if self._bvz is None:
            raise BvaeError("nothing to save: no image compressed yet")
        codec.write_bvz(path, self._bvz)
        self.statusLabel.setText(f"wrote {path} ({len(self._bvz):,} bytes)")

    def save_decoded(self, folder: str | Path) -> list[str]:
        """Write the current .bvz's decoded images into `folder` as PNGs, each under its own (safe, unique) name
        and at its original size; returns the names written."""
        if self._bvz is None or self._decoded_all is None:
            raise BvaeError("nothing to save: no image compressed or opened yet")
        header = codec.parse_header(self._bvz)
        names = codec.output_names(header)
        codec.write_png_folder(folder, [codec.restore_images(header, self._decoded_all)], names=names)
        self.statusLabel.setText(f"wrote {len(names)} PNG(s) to {folder}: {_name_list(names)}")
        return names

    def open_compressed(self, path: str | Path) -> np.ndarray | None:
        """Decode a .bvz with this model and show its first images; an error is shown, not raised."""
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
        self._bvz, self._decoded, self._decoded_all = data, images[0], images
        self.saveDecodedButton.setEnabled(True)
        self._image_item.setImage(tile_rows([images[:8]]), levels=(0, 255))
        c, h, w = header.image_shape
        named = [header.names[i] for i in sorted(header.names)]
        rows = [
            ("file", self._elided(Path(path).name)),
            ("images", f"{header.count:,} ({w}x{h}, quality {header.quality})"),
            ("bytes", f"{len(data):,} ({len(data) * 8 / (header.count * h * w):.3f} bits per pixel)"),
            ("coded", f"{int((header.alloc.bits > 0).sum())} of {header.latent_dim} dims"),
        ]
        if named:
            rows.append(("names", self._elided(_name_list(named))))
        if header.fitted_count():
            rows.append(("restored", f"{header.fitted_count()} to their own size on save"))
        self.numbersLabel.setText(_table(rows))
        self.numbersLabel.setToolTip("\n".join(named[:50]))
        self._set_warning(codec.NOTHING_CODED if header.alloc.bits_per_image == 0 else None)
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
            self._stats = codec.allocation_stats(source, images)
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
        coded = int((alloc.bits > 0).sum())
        nothing = coded == 0  # a header and no information about the image: no ratio is an achievement then
        ratio = (lambda other: float("nan")) if nothing else (lambda other: other / size)
        self._numbers = {
            "bytes": size,
            "payload_bytes": payload,
            "coded_dims": coded,
            "bpp": size * 8 / (h * w),
            "payload_bpp": payload * 8 / (h * w),
            "ratio_raw": ratio(raw),
            "ratio_png": ratio(png),
            "png_bytes": png,
            "jpeg_bytes": jpeg_size,
            "webp_bytes": webp_size,
            "ratio_jpeg": ratio(jpeg_size),
            "ratio_webp": ratio(webp_size),
            "psnr": ours_psnr,
            "ssim": codec.ssim(image, decoded),
            "jpeg_psnr": codec.psnr(image, _chw(jpeg_img, image.shape)),
            "webp_psnr": codec.psnr(image, _chw(webp_img, image.shape)),
        }
        n = self._numbers
        self.qualityLabel.setText(f"quality {quality}")
        rows = []
        if self._origin is not None and self._origin.name:
            rows.append(("file", self._elided(self._origin.name)))
        rows += [
            ("β-VAE codec", f"{size:,} bytes (payload {payload} B)"),
            ("coded", f"{coded} of {alloc.latent_dim} dims, {alloc.bits_per_image} bits/image"),
            ("bits per pixel", f"{n['bpp']:.3f} (payload {n['payload_bpp']:.3f})"),
        ]
        if nothing:
            rows += [
                ("vs raw · PNG", f"no ratio ({raw:,} B · {png:,} B)"),
                ("PSNR · SSIM", f"{_db(ours_psnr)} · {n['ssim']:.3f}"),
                (f"JPEG q{quality}", f"{jpeg_size:,} bytes · {_db(n['jpeg_psnr'])}"),
                (f"WebP q{quality}", f"{webp_size:,} bytes · {_db(n['webp_psnr'])}"),
            ]
        else:
            rows += [
                ("vs raw", f"{n['ratio_raw']:.1f}× smaller ({raw:,} B)"),
                ("vs PNG", f"{n['ratio_png']:.1f}× smaller ({png:,} B)"),
                ("PSNR · SSIM", f"{_db(ours_psnr)} · {n['ssim']:.3f}"),
                (f"JPEG q{quality}", f"{jpeg_size:,} B ({jpeg_size / size:.1f}× ours) · {_db(n['jpeg_psnr'])}"),
                (f"WebP q{quality}", f"{webp_size:,} B ({webp_size / size:.1f}× ours) · {_db(n['webp_psnr'])}"),
            ]
        self.numbersLabel.setText(_table(rows))
        self.numbersLabel.setToolTip(self._origin.name if self._origin is not None else "")
        self._set_warning(codec.coding_warning(alloc, None if self._stats is None else self._stats.kl))

    def _set_warning(self, text: str | None) -> None:
        self.warningLabel.setText(text or "")
        self.warningLabel.setVisible(bool(text))

    def _elided(self, text: str) -> str:
        """`text` shortened in the middle to NAME_WIDTH_PX, HTML-escaped for the figures table."""
        metrics = self.numbersLabel.fontMetrics()
        return escape(metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, NAME_WIDTH_PX))

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

    def open_image(self, path: str | Path) -> bool:
        """Compress an image file, prepared as the model's own data was (an MNIST digit padded, not stretched);
        an error is shown, not raised."""
        if self._source is None:
            return False
        try:
            fitted = codec.load_inputs([path], self._source.image_shape, True, dataset=self._source.config.dataset)[0]
        except BvaeError as exc:
            self.statusLabel.setText(str(exc))
            return False
        self.set_input(fitted)
        return True

    def _on_open_image(self) -> None:
        if self._source is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Image to compress", "", "Images (*.png *.jpg *.jpeg *.bmp)")
        if path:
            self.open_image(path)

    def _on_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save compressed", "image.bvz", "β-VAE compressed (*.bvz)")
        if path:
            try:
                self.save_compressed(path)
            except BvaeError as exc:
                self.statusLabel.setText(str(exc))

    def _on_save_decoded(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the decoded images")
        if folder:
            try:
                self.save_decoded(folder)
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


def _table(rows: list[tuple[str, str]]) -> str:
    """The figures as a two-column rich-text table (cells already escaped where they hold user text)."""
    cells = "".join(f"<tr><td><b>{label}</b></td><td>{value}</td></tr>" for label, value in rows)
    return f"<table cellspacing=3>{cells}</table>"


def _name_list(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN:,} more" if len(names) > NAMES_SHOWN else "")


def _chw(decoded: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Pillow round trips may come back as (H, W) or (C, H, W): give the original's layout."""
    return np.asarray(decoded, dtype=np.uint8).reshape(shape)


def _db(value: float) -> str:
    return "∞ dB" if not np.isfinite(value) else f"{value:.2f} dB"
