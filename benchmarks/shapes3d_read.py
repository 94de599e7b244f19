"""3D Shapes reading: in-memory images against the compressed file read directly and its decoded copy, in one run.

A synthetic file in the official layout (`images` (N, 64, 64, 3) uint8 gzip-chunked, `labels` (N, 6)
float64; flat-shaded scenes of floor, wall and object, so gzip packs them ~20:1 as it does the real
renders) is written to a temporary folder. Then, in the same run:

- data: images/s of random batches of 64 from (a) the same images held in memory (ArrayImageSet, the
  baseline), (b) the file read directly (H5ImageSet over gzip chunks: the path that trained at 16-19
  images/s), (c) the decoded copy (`load_shapes3d`'s default for a large compressed file; its one-off
  build time is reported apart);
- training: images/s of our Trainer (batch 64, validation and checkpoints off) on (a) and on (c).
  The issue's bar: (c) within 10% of (a).

Rounds interleave the sources and keep each one's best (the machine is shared).

    python benchmarks/shapes3d_read.py [--images 48000] [--chunk-images 1000] [--rounds 3] [--steps 40]
                                       [--device auto] [--json out.json]

`--chunk-images N` chunks the file (N, 64, 64, 3); `--chunk-images 0` lets h5py choose (tiles of
(15000, 4, 4, 1) on the full file), the layout of a file saved with `compression="gzip"` alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bvae_desktop.core.config import TrainConfig  # noqa: E402
from bvae_desktop.core.data import ArrayImageSet, ImageSet  # noqa: E402
from bvae_desktop.core.data.decoded_cache import CACHE_ENV  # noqa: E402
from bvae_desktop.core.data.shapes3d import load_shapes3d  # noqa: E402
from bvae_desktop.core.device import device_label, pick_device  # noqa: E402
from bvae_desktop.core.trainer import Trainer  # noqa: E402

SIZES = (10, 10, 10, 8, 4, 15)  # floor hue, wall hue, object hue, scale, shape, orientation
BATCH = 64
WRITE_BLOCK = 2000


def hue_rgb(hue: np.ndarray) -> np.ndarray:
    """(n,) hues in [0, 1) to (n, 3) saturated RGB in [0, 1]."""
    k = (hue[:, None] * 6.0 + np.array([5.0, 3.0, 1.0])) % 6.0
    return 1.0 - 0.8 * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


class Scenes:
    """Scenes like 3D Shapes': a shaded wall over a shaded floor and one shaded object, composed from
    precomputed backgrounds (floor x wall hues) and object masks (scale x shape x orientation)."""

    def __init__(self) -> None:
        y, x = np.mgrid[0:64, 0:64].astype(np.float32)
        hues = hue_rgb(np.arange(10) / 10.0).astype(np.float32)  # (10, 3)
        wall = hues[:, None, None, :] * (0.55 + 0.35 * y / 40.0)[None, :, :, None]
        floor = hues[:, None, None, :] * (0.45 + 0.5 * (y - 40.0) / 24.0)[None, :, :, None]
        sky = (y < 40)[None, None, :, :, None]
        background = np.where(sky, wall[None, :], floor[:, None])  # (floor, wall, 64, 64, 3)
        self.background = np.round(background * 255).astype(np.uint8).reshape(100, 64, 64, 3)
        scale, shape, orient = np.meshgrid(np.arange(8), np.arange(4), np.arange(15), indexing="ij")
        radius = (5.0 + 0.9 * scale.reshape(-1))[:, None, None]
        dx = (x[None] - (32.0 + (orient.reshape(-1) - 7) * 0.8)[:, None, None]) / radius
        dy = (y[None] - 44.0) / radius
        kind = shape.reshape(-1)[:, None, None]
        square, tall = np.maximum(abs(dx), abs(dy)) <= 1.0, (abs(dx) <= 0.7) & (abs(dy) <= 1.2)
        disc, oval = dx**2 + dy**2 <= 1.0, dx**2 / 0.5 + dy**2 / 1.6 <= 1.0
        self.mask = np.where(
            kind == 0, square, np.where(kind == 1, tall, np.where(kind == 2, disc, oval))
        )  # (480, 64, 64)
        shade = 0.6 + 0.3 * np.clip(1.0 - dx, 0.0, 2.0) / 2.0  # (480, 64, 64)
        self.objects = np.round(hues[:, None, None, None, :] * shade[None, ..., None] * 255).astype(np.uint8)

    def render(self, classes: np.ndarray) -> np.ndarray:
        """(n, 64, 64, 3) uint8 images for (n, 6) factor classes."""
        pose = np.ravel_multi_index(tuple(classes[:, 3:].T), SIZES[3:])
        background = self.background[classes[:, 0] * 10 + classes[:, 1]]
        return np.where(self.mask[pose][..., None], self.objects[classes[:, 2], pose], background)


def write_file(path: Path, count: int, chunk_images: int) -> tuple[np.ndarray, float]:
    """The synthetic file; returns its images (held for the in-memory baseline) and the seconds it took."""
    start = time.perf_counter()
    classes = np.stack(np.unravel_index(np.arange(count), SIZES), axis=1)
    images = np.empty((count, 64, 64, 3), dtype=np.uint8)
    scenes = Scenes()
    chunks = (chunk_images, 64, 64, 3) if chunk_images else True
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("images", (count, 64, 64, 3), dtype=np.uint8, chunks=chunks, compression="gzip")
        for lo in range(0, count, WRITE_BLOCK):
            hi = min(lo + WRITE_BLOCK, count)
            images[lo:hi] = scenes.render(classes[lo:hi])
            ds[lo:hi] = images[lo:hi]
        values = [np.linspace(0, 1, 10, endpoint=False)] * 3 + [np.linspace(0.75, 1.25, 8), np.arange(4.0)]
        values.append(np.linspace(-30.0, 30.0, 15))
        f.create_dataset("labels", data=np.stack([values[k][classes[:, k]] for k in range(6)], axis=1))
    return images, time.perf_counter() - start


def data_rate(dataset: ImageSet, batches: int, seed: int) -> float:
    """images/s of `batches` random batches of 64, after one warm-up batch."""
    rng = np.random.default_rng(seed)
    dataset.batch(rng.integers(0, len(dataset), BATCH))
    start = time.perf_counter()
    for _ in range(batches):
        dataset.batch(rng.integers(0, len(dataset), BATCH))
    return batches * BATCH / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_rate(dataset: ImageSet, steps: int, device: torch.device) -> float:
    """images/s of our Trainer over `dataset` (validation and checkpoints off), 5 warm-up steps excluded."""
    config = TrainConfig(
        batch_size=BATCH, steps=steps + 6, val_every=10**9, checkpoint_every=10**9, device=str(device), latent_dim=10
    )
    start = end = time.perf_counter()
    for event in Trainer(config, dataset=dataset).steps():
        if event.step == 5:
            sync(device)
            start = time.perf_counter()
        if event.step == steps + 5:
            sync(device)
            end = time.perf_counter()
    return steps * BATCH / (end - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48_000, help="images in the synthetic file (official: 480,000)")
    parser.add_argument("--chunk-images", type=int, default=1000, help="images per gzip chunk; 0: h5py's choice")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each source's best is kept")
    parser.add_argument("--batches", type=int, default=200, help="timed batches per data measurement")
    parser.add_argument("--direct-batches", type=int, default=4, help="timed batches from the file read directly")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per measurement (0: skip)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dir", type=Path, help="folder for the file and the copy (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        os.environ[CACHE_ENV] = str(folder / "cache")  # never the user's own cache folder
        path = folder / "3dshapes_synthetic.h5"
        images, write_s = write_file(path, args.images, args.chunk_images)
        with h5py.File(path, "r") as f:
            chunks = f["images"].chunks
        print(
            f"device: {device_label(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
            f"{args.images:,} images, chunks {chunks}, gzip: {path.stat().st_size / 1e6:.1f} MB on disk, "
            f"{images.nbytes / 1e6:.0f} MB raw (written in {write_s:.1f} s); best of {args.rounds} rounds"
        )
        memory = ArrayImageSet(np.ascontiguousarray(images.transpose(0, 3, 1, 2)), name="in memory")
        direct = load_shapes3d(path, cache=False)
        calls: list[tuple[int, int]] = []
        start = time.perf_counter()
        decoded = load_shapes3d(path, cache=True, progress=lambda done, total: calls.append((done, total)))
        build_s = time.perf_counter() - start
        assert decoded.decoded_path is not None, "no decoded copy was made"
        probe = np.random.default_rng(0).integers(0, args.images, BATCH)
        assert torch.equal(decoded.batch(probe), memory.batch(probe)), "the decoded copy differs from the images"
        start = time.perf_counter()
        load_shapes3d(path, cache=True)
        reopen_s = time.perf_counter() - start
        print(
            f"decoded copy: built in {build_s:.1f} s ({args.images / build_s:,.0f} images/s, {len(calls)} progress "
            f"calls), reopened in {reopen_s * 1000:.0f} ms"
        )
        best = {"memory": 0.0, "direct": 0.0, "decoded": 0.0, "train_memory": 0.0, "train_decoded": 0.0}
        for round_ in range(args.rounds):
            best["memory"] = max(best["memory"], data_rate(memory, args.batches, round_))
            best["decoded"] = max(best["decoded"], data_rate(decoded, args.batches, round_))
            best["direct"] = max(best["direct"], data_rate(direct, args.direct_batches, round_))
            if args.steps:
                best["train_memory"] = max(best["train_memory"], train_rate(memory, args.steps, device))
                best["train_decoded"] = max(best["train_decoded"], train_rate(decoded, args.steps, device))
        print()
        print("| source | data img/s | vs in memory | training img/s | vs in memory |")
        print("|---|---:|---:|---:|---:|")
        for key, label in (
            ("memory", "in memory (baseline)"),
            ("direct", "file, read directly"),
            ("decoded", "decoded copy"),
        ):
            train = best.get(f"train_{key}", 0.0)
            train_text = (
                f"{train:,.0f} | {train / best['train_memory']:.2f}x" if train and best["train_memory"] else "– | –"
            )
            print(f"| {label} | {best[key]:,.0f} | {best[key] / best['memory']:.3f}x | {train_text} |")
        report = {
            "device": device_label(device),
            "images": args.images,
            "chunks": list(chunks),
            "file_mb": path.stat().st_size / 1e6,
            "build_s": build_s,
            "reopen_s": reopen_s,
            "progress_calls": len(calls),
            "rounds": args.rounds,
            "images_per_s": best,
            "data_ratio_decoded": best["decoded"] / best["memory"],
            "data_ratio_direct": best["direct"] / best["memory"],
            "train_ratio_decoded": best["train_decoded"] / best["train_memory"] if best["train_memory"] else None,
        }
        memory = direct = decoded = None  # unmap before the folder goes (Windows)
        if args.json is not None:
            args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
