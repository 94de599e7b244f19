"""`bvae compress`, `bvae decompress` and `bvae rd`: the .bvz codec on the command line.

Hook into cli.build_parser with `add_codec_parsers(commands)`. Handlers return exit codes and raise
BvaeError subclasses for bad input (cli.main prints those on one line).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bvae_desktop.core.errors import BvaeError, CodecError

DEFAULT_QUALITIES = (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
JPEG_QUALITIES = (1, 2, 3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)
WEBP_QUALITIES = (0, 1, 2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)


def add_codec_parsers(commands: Any) -> None:
    """Register compress, decompress and rd on an argparse sub-parsers object."""
    compress = commands.add_parser(
        "compress",
        help="compress images into a .bvz file with a trained model",
        description="Store images as quantised latent means of a trained β-VAE (a .bvz file). "
        "Prints the size, bits per pixel, the ratio against PNG and the PSNR/SSIM of the decoded images.",
    )
    compress.add_argument("checkpoint", type=Path, help="checkpoint file, or a bundled model's name (bvae models)")
    compress.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    compress.add_argument("-o", "--output", type=Path, required=True, help="the .bvz file to write")
    compress.add_argument("--quality", type=int, default=50, help="1..100: higher spends more bits (default 50)")
    compress.add_argument("--resize", action="store_true", help="resize and convert images that do not fit the model")
    compress.set_defaults(handler=cmd_compress)

    decompress = commands.add_parser(
        "decompress", help="decode a .bvz file to PNGs", description="Decode a .bvz file with the model that made it."
    )
    decompress.add_argument("checkpoint", type=Path, help="checkpoint file, or a bundled model's name (bvae models)")
    decompress.add_argument("input", type=Path, metavar="FILE.bvz")
    decompress.add_argument("-o", "--output", type=Path, required=True, help="folder for img_0000.png ...")
    decompress.add_argument(
        "--allow-large",
        action="store_true",
        help="decode a file that expands to more than 100,000 images, 1 GiB of pixels or a million times its size",
    )
    decompress.set_defaults(handler=cmd_decompress)

    rd = commands.add_parser(
        "rd",
        help="rate-distortion: the .bvz codec against JPEG and WebP",
        description="PSNR and SSIM against bits per pixel on held-out images, for the .bvz codec across "
        "qualities and Pillow's JPEG and WebP across theirs. Writes rd.csv and rd.png to --out.",
    )
    rd.add_argument("checkpoint", type=Path, help="checkpoint file, or a bundled model's name (bvae models)")
    rd.add_argument("--data", help="data file or folder (default: the checkpoint's own data path)")
    rd.add_argument("--count", type=int, default=200, help="held-out images (default 200)")
    rd.add_argument("--qualities", type=int, nargs="+", help="codec qualities (default 1 10 20 ... 100)")
    rd.add_argument("--seed", type=int, default=1, help="which held-out images (default 1)")
    rd.add_argument("--out", type=Path, required=True, help="folder for rd.csv and rd.png")
    rd.set_defaults(handler=cmd_rd)


def _bpp(nbytes: int, count: int, shape: Sequence[int]) -> float:
    """Bits per pixel (per pixel position, all channels together); NaN when there are no pixels."""
    pixels = count * shape[-1] * shape[-2]
    return 8.0 * nbytes / pixels if pixels else math.nan


def cmd_compress(args: argparse.Namespace) -> int:
    from bvae_desktop.core import codec
    from bvae_desktop.core.model_source import ModelSource
    from bvae_desktop.core.model_zoo import resolve_checkpoint

    if not 1 <= args.quality <= 100:
        raise CodecError(f"--quality must be from 1 to 100; got {args.quality}")
    source = ModelSource.from_checkpoint(resolve_checkpoint(args.checkpoint))
    inputs = codec.load_inputs(args.images, source.image_shape, args.resize, dataset=source.config.dataset)
    images = np.stack([f.image for f in inputs])
    stats = codec.allocation_stats(source, images)
    alloc = codec.allocation_from_stats(stats, args.quality)
    data = codec.compress(
        source,
        images,
        args.quality,
        alloc=alloc,
        origins=[f.origin for f in inputs],
        resized=any(f.resized for f in inputs),
    )
    header = codec.parse_header(data)
    decoded = codec.decompress(source, data, allow_large=True)  # our own file, its images already in memory
    codec.write_bvz(args.output, data)
    warning = codec.coding_warning(alloc, stats.kl)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    png = sum(codec.png_size(img) for img in images)
    c, h, w = source.image_shape
    print(
        f"wrote {args.output}: {len(images)} image(s) {w}x{h}x{c}, quality {args.quality}, "
        f"{codec.METHOD_NAMES[header.method]} payload"
    )
    print(f"bytes           {len(data)}")
    print(f"bits per pixel  {_bpp(len(data), len(images), source.image_shape):.4f}")
    if alloc.bits_per_image == 0:  # a header and nothing else: a ratio would praise a file that stores no image
        print(f"PNG bytes       {png}  (no ratio: {codec.NOTHING_CODED})")
    else:
        print(f"PNG bytes       {png}  (ratio {png / len(data):.2f}x smaller than PNG)")
    print(f"PSNR            {codec.psnr(images, decoded):.2f} dB")
    print(f"SSIM            {codec.ssim(images, decoded):.4f}")
    print(f"allocation      {header.alloc.describe()}")
    for note, count in _notes(inputs).items():
        print(f"fitted          {count} image(s) {note} to {w}x{h}x{c}")
    if any(f.changed for f in inputs):
        print(
            "                (PSNR/SSIM are against the images as the model takes them; decompress restores their sizes)"
        )
    return 0


def _notes(inputs: Sequence[Any]) -> dict[str, int]:
    """How many images had each kind of fitting ("padded from 28x28 as in MNIST training": 3), in first-seen order."""
    counts: dict[str, int] = {}
    for fitted in inputs:
        if fitted.note:
            counts[fitted.note] = counts.get(fitted.note, 0) + 1
    return counts


def cmd_decompress(args: argparse.Namespace) -> int:
    from bvae_desktop.core import codec
    from bvae_desktop.core.model_source import ModelSource
    from bvae_desktop.core.model_zoo import resolve_checkpoint

    data = codec.read_bvz(args.input)
    header = codec.parse_header(data, name=args.input)  # check the file before loading the model's data
    source = ModelSource.from_checkpoint(resolve_checkpoint(args.checkpoint), load_data=False)
    codec.check_model(header, source, name=args.input)  # "another model" first: --allow-large would not help
    _check_size(header, len(data), args)
    # decoded, given back their original sizes and written in batches: the memory needed is the codes', not the images'
    _, codes = codec.decode_codes(source, data, name=args.input, allow_large=True, images_in_memory=False)
    batch = codec.DECODE_BATCH
    written = codec.write_png_folder(
        args.output,
        (
            codec.restore_images(header, source.decode(codes[start : start + batch]), start)
            for start in range(0, len(codes), batch)
        ),
        names=codec.output_names(header),
    )
    print(f"wrote {written} PNG(s) to {args.output}")
    print(f"bytes           {len(data)}")
    print(f"bits per pixel  {_bpp(len(data), header.count, header.image_shape):.4f}")
    print(f"images          {header.count}")
    if header.fitted_count():
        print(f"restored        {header.fitted_count()} image(s) to their original sizes")
    return 0


def _check_size(header: Any, file_size: int, args: argparse.Namespace) -> None:
    """Before anything is decoded: a file expanding past the limits needs --allow-large, and the PNGs
    must fit on the disk (checked against an upper bound, so a full disk is found out before writing)."""
    from bvae_desktop.core import codec
    from bvae_desktop.core.machine import format_bytes, free_disk_bytes

    reason = codec.large_reason(header, file_size)
    if reason is not None and not args.allow_large:
        raise CodecError(f"{args.input}: {reason}; pass --allow-large to decode it anyway")
    need = codec.png_bytes_bound(header)
    free = free_disk_bytes(args.output)
    if free is not None and need > free:
        raise CodecError(
            f"{args.output}: {header.count:,} PNGs need up to {format_bytes(need)}; "
            f"only {format_bytes(free)} is free there"
        )


# ---------------------------------------------------------------- rate-distortion


@dataclass
class RDPoint:
    codec: str
    quality: int
    nbytes: int
    bpp: float
    psnr: float
    ssim: float
    extra: dict[str, Any]


def held_out_images(source: Any, data: str | None, count: int, seed: int) -> tuple[np.ndarray, str]:
    """`count` images from the validation split of the model's data set (or of the same kind at `data`)."""
    from bvae_desktop.core.data import load_dataset, split_indices

    config = source.config
    if data is not None:
        dataset = load_dataset(config.dataset, data)
        if dataset.shape != tuple(source.image_shape):
            raise CodecError(f"{data}: images are {dataset.shape}; the model takes {tuple(source.image_shape)}")
        _, val = split_indices(len(dataset), config.val_fraction, config.seed)
    else:
        if source.dataset is None:
            raise CodecError(
                f"the model's data is not available ({source.dataset_error or 'unknown'}); give it with --data"
            )
        dataset, val = source.dataset, source.val_indices
    if val is None or len(val) == 0:
        raise CodecError("the data set has no held-out images")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(val, size=min(count, len(val)), replace=False))
    return dataset.batch(idx).cpu().numpy(), dataset.describe() if hasattr(dataset, "describe") else str(dataset)


def rate_distortion(
    source: Any, images: np.ndarray, qualities: Sequence[int], *, stats: Any = None
) -> tuple[list[RDPoint], dict[int, dict[str, int]]]:
    """Points for the .bvz codec (one file for all images, and one file per image), JPEG and WebP."""
    from bvae_desktop.core import codec

    n, shape = len(images), images.shape[1:]
    if stats is None:
        stats = codec.latent_stats(source, codec.reference_images(source) if source.dataset is not None else images)
    points: list[RDPoint] = []
    methods: dict[int, dict[str, int]] = {}
    means, _ = source.encode(images)
    fingerprint = source.fingerprint()
    for q in qualities:
        alloc = codec.allocation_from_stats(stats, q)
        symbols = codec.quantise(means, alloc)

        def build(rows: slice, method: int | str, q: int = q, alloc: Any = alloc, symbols: Any = symbols) -> bytes:
            raw = codec.pack_symbols(symbols[rows], alloc)
            count = len(symbols[rows])
            return codec.build_file(fingerprint, source.image_shape, count, q, alloc, raw, method=method)

        sizes = {name: len(build(slice(None), m)) for m, name in codec.METHOD_NAMES.items()}
        data = build(slice(None), "auto")
        decoded = codec.decompress(source, data, allow_large=True)  # our own file, its images already in memory
        p, s = codec.psnr(images, decoded), codec.ssim(images, decoded)
        methods[q] = sizes
        extra = {"bits_per_image": alloc.bits_per_image, "method": codec.METHOD_NAMES[codec.parse_header(data).method]}
        extra.update({f"bytes_{k}": v for k, v in sizes.items()})
        points.append(RDPoint("bvae", q, len(data), _bpp(len(data), n, shape), p, s, extra))
        # the same images, one .bvz file each (header paid per image)
        single = sum(len(build(slice(i, i + 1), "auto")) for i in range(n))
        points.append(RDPoint("bvae-1-per-file", q, single, _bpp(single, n, shape), p, s, {}))
    for name, fn, quals in (("jpeg", codec.jpeg_bytes, JPEG_QUALITIES), ("webp", codec.webp_bytes, WEBP_QUALITIES)):
        for q in quals:
            total, decoded_list = 0, []
            for img in images:
                size, dec = fn(img, q)
                total += size
                decoded_list.append(dec)
            decoded = np.stack(decoded_list)
            points.append(
                RDPoint(
                    name, q, total, _bpp(total, n, shape), codec.psnr(images, decoded), codec.ssim(images, decoded), {}
                )
            )
    return points, methods


def bpp_for_psnr(points: Sequence[RDPoint], target: float) -> tuple[float | None, str]:
    """Bits per pixel a codec needs to reach `target` dB (log-linear interpolation); ('', '≤') marks a bound."""
    pts = sorted(points, key=lambda p: p.bpp)
    for i, p in enumerate(pts):
        if p.psnr >= target:
            if i == 0:
                return p.bpp, "≤"
            a = pts[i - 1]
            if not math.isfinite(p.psnr) or p.psnr == a.psnr:
                return p.bpp, ""
            t = (target - a.psnr) / (p.psnr - a.psnr)
            return float(math.exp(math.log(a.bpp) + t * (math.log(p.bpp) - math.log(a.bpp)))), ""
    return None, ""


def psnr_targets(points: Sequence[RDPoint], count: int = 4) -> list[float]:
    ours = [p.psnr for p in points if p.codec == "bvae" and math.isfinite(p.psnr)]
    if not ours:
        return []
    lo, hi = min(ours), max(ours)
    if hi - lo < 0.5:
        return [math.floor(hi * 10) / 10]
    # evenly over our range, rounded down to 0.1 dB so the top target is one we reach
    return sorted({math.floor(v * 10) / 10 for v in np.linspace(lo + 0.25 * (hi - lo) / count, hi, count)})


def markdown_tables(points: Sequence[RDPoint], targets: Sequence[float]) -> str:
    by = {name: [p for p in points if p.codec == name] for name in ("bvae", "bvae-1-per-file", "jpeg", "webp")}
    lines = [
        "| PSNR target (dB) | ours bpp | ours, 1 file/image bpp | JPEG bpp | WebP bpp | JPEG / ours | WebP / ours |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for target in targets:
        cells, values = [], {}
        for name in by:
            bpp, mark = bpp_for_psnr(by[name], target)
            values[name] = (bpp, mark)
            if bpp is None:
                best = max((p.psnr for p in by[name]), default=float("nan"))
                cells.append(f"not reached (max {best:.1f} dB)")
            else:
                cells.append(f"{mark}{bpp:.4f}")
        ratios = []
        ours, ours_mark = values["bvae"]
        for name in ("jpeg", "webp"):
            other, mark = values[name]
            if ours is None or other is None or (mark and ours_mark):
                ratios.append("n/a")  # a codec missing the target, or both only bounded
            else:
                bound = "≤" if mark else ("≥" if ours_mark else "")
                ratios.append(f"{bound}{other / ours:.1f}x")
        lines.append(f"| {target:g} | " + " | ".join(cells + ratios) + " |")
    lines += [
        "",
        "| codec | quality | bytes | bpp | PSNR (dB) | SSIM | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for p in points:
        note = ""
        if p.codec == "bvae":
            e = p.extra
            note = (
                f"{e['bits_per_image']} bits/image; {e['method']}; raw {e['bytes_raw']}, "
                f"zlib {e['bytes_zlib']}, lzma {e['bytes_lzma']} bytes"
            )
        lines.append(f"| {p.codec} | {p.quality} | {p.nbytes} | {p.bpp:.4f} | {p.psnr:.2f} | {p.ssim:.4f} | {note} |")
    return "\n".join(lines)


def write_csv(path: Path, points: Sequence[RDPoint]) -> None:
    from bvae_desktop.core.atomic import atomic_path

    keys = ["bits_per_image", "method", "bytes_raw", "bytes_zlib", "bytes_lzma"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["codec", "quality", "bytes", "bpp", "psnr", "ssim", *keys])
        for p in points:
            writer.writerow(
                [p.codec, p.quality, p.nbytes, f"{p.bpp:.6f}", f"{p.psnr:.4f}", f"{p.ssim:.6f}"]
                + [p.extra.get(k, "") for k in keys]
            )


SERIES = (
    ("bvae", "beta-VAE .bvz (one file)", (200, 40, 40)),
    ("bvae-1-per-file", "beta-VAE .bvz (file per image)", (240, 150, 150)),
    ("jpeg", "JPEG (Pillow)", (40, 90, 200)),
    ("webp", "WebP (Pillow)", (30, 150, 60)),
)


def draw_chart(points: Sequence[RDPoint], title: str) -> Any:
    """Two panels, PSNR and SSIM against bits per pixel (log axis), drawn with Pillow's ImageDraw."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = 1200, 580
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((20, 10), title.replace("β", "beta"), fill="black", font=font)
    finite = [p for p in points if math.isfinite(p.psnr) and p.bpp > 0]
    if not finite:
        return image
    bpp_lo = 10 ** math.floor(math.log10(min(p.bpp for p in finite)))
    bpp_hi = 10 ** math.ceil(math.log10(max(p.bpp for p in finite)))
    psnr_lo = math.floor(min(p.psnr for p in finite) / 5) * 5
    psnr_hi = math.ceil(max(p.psnr for p in finite) / 5) * 5
    ssim_lo = math.floor(min(p.ssim for p in finite) * 10) / 10
    panels = (
        ("PSNR (dB)", "psnr", psnr_lo, max(psnr_hi, psnr_lo + 5), 5.0, (70, 40, 570, 480)),
        ("SSIM", "ssim", ssim_lo, 1.0, 0.1, (680, 40, 1180, 480)),
    )
    for label, attr, y_lo, y_hi, y_step, (x0, y0, x1, y1) in panels:

        def to_xy(
            bpp: float, y: float, box: tuple[int, int, int, int] = (x0, y0, x1, y1), lo: float = y_lo, hi: float = y_hi
        ) -> tuple[float, float]:
            fx = (math.log10(bpp) - math.log10(bpp_lo)) / (math.log10(bpp_hi) - math.log10(bpp_lo))
            fy = (y - lo) / (hi - lo) if hi > lo else 0.5
            return box[0] + fx * (box[2] - box[0]), box[3] - fy * (box[3] - box[1])

        draw.rectangle((x0, y0, x1, y1), outline="black")
        decade = bpp_lo
        while decade <= bpp_hi * 1.0001:
            x, _ = to_xy(decade, y_lo)
            draw.line((x, y0, x, y1), fill=(225, 225, 225))
            draw.text((x - 12, y1 + 6), f"{decade:g}", fill="black", font=font)
            decade *= 10
        steps = int(round((y_hi - y_lo) / y_step))
        for k in range(steps + 1):
            value = y_lo + k * y_step
            _, y = to_xy(bpp_lo, value)
            draw.line((x0, y, x1, y), fill=(225, 225, 225))
            draw.text((x0 - 40, y - 6), f"{value:.4g}", fill="black", font=font)
        draw.text(((x0 + x1) // 2 - 60, y1 + 24), "bits per pixel (log scale)", fill="black", font=font)
        draw.text((x0, y0 - 16), label, fill="black", font=font)
        for name, _legend, colour in SERIES:
            series = sorted((p for p in finite if p.codec == name), key=lambda p: p.bpp)
            xy = [to_xy(p.bpp, getattr(p, attr)) for p in series]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=2)
            for x, y in xy:
                draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        draw.rectangle((x0, y0, x1, y1), outline="black")
    lx, ly = 90, 545
    for _name, legend, colour in SERIES:
        draw.line((lx, ly + 6, lx + 24, ly + 6), fill=colour, width=3)
        draw.ellipse((lx + 9, ly + 3, lx + 15, ly + 9), fill=colour)
        draw.text((lx + 30, ly), legend, fill="black", font=font)
        lx += 270
    return image


def cmd_rd(args: argparse.Namespace) -> int:
    from bvae_desktop.core import codec
    from bvae_desktop.core.atomic import atomic_path
    from bvae_desktop.core.model_source import ModelSource
    from bvae_desktop.core.model_zoo import resolve_checkpoint

    if args.count < 1:
        raise CodecError(f"--count must be at least 1; got {args.count}")
    qualities = args.qualities or list(DEFAULT_QUALITIES)
    for q in qualities:
        if not 1 <= q <= 100:
            raise CodecError(f"--qualities must be from 1 to 100; got {q}")
    source = ModelSource.from_checkpoint(resolve_checkpoint(args.checkpoint), load_data=args.data is None)
    images, described = held_out_images(source, args.data, args.count, args.seed)
    reference = codec.reference_images(source) if source.dataset is not None else images
    stats = codec.latent_stats(source, reference)
    warning = codec.coding_warning(codec.allocation_from_stats(stats, max(qualities)), stats.kl)
    if warning:  # every quality codes nothing: the table's sizes are headers, its ratios no achievement
        print(f"warning: {warning}", file=sys.stderr)
    points, _ = rate_distortion(source, images, qualities, stats=stats)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        write_csv(args.out / "rd.csv", points)
        c, h, w = source.image_shape
        title = (
            f"{args.checkpoint} (beta {source.beta:g}, step {source.step}): {len(images)} held-out {w}x{h}x{c} images; "
            f"active dims at Q50: {int((codec.allocation_from_stats(stats, 50).bits > 0).sum())}/{source.latent_dim}"
        )
        with atomic_path(args.out / "rd.png") as tmp:
            draw_chart(points, title).save(tmp, format="PNG")
    except OSError as exc:
        raise CodecError(f"{args.out}: cannot write results: {exc.strerror or exc}") from exc
    kl = ", ".join(f"{v:.2f}" for v in stats.kl)
    sig = ", ".join(f"{v:.2f}" for v in stats.sigma)
    print(f"model {args.checkpoint}: β {source.beta:g}, step {source.step}, data {described}")
    print(f"held-out images {len(images)}; KL per dim (nats) [{kl}]; posterior σ [{sig}]")
    print("bpp counts all channels of a pixel together; JPEG/WebP sizes are per-image files (Pillow)\n")
    print(markdown_tables(points, psnr_targets(points)))
    print(f"\nwrote {args.out / 'rd.csv'} and {args.out / 'rd.png'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the codec commands alone (until cli.py registers them)."""
    parser = argparse.ArgumentParser(prog="bvae")
    add_codec_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except BvaeError as exc:
        print(f"bvae {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
