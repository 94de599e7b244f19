"""Latent traversals: sweep one dimension at a time around a reference code and decode the sweep.

Also the factor labelling the latent explorer shows beside each row: the mutual information
between each latent mean (discretised into equal-width bins, as disentanglement_lib's histogram
discretiser does for MIG) and each ground-truth factor, and the best factor per dimension.

Everything here takes and returns numpy arrays; the views and the `bvae traverse` command
share it, so the window and the command line draw the same grid.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bvae_desktop.core.atomic import atomic_path
from bvae_desktop.core.image_input import load_image
from bvae_desktop.core.latent_activity import ACTIVE_KL
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.tiling import GAP_VALUE, tile_rows

MIN_STEPS, MAX_STEPS = 2, 31
LABEL_POINTS = 2000  # validation images encoded to name the factor each dimension follows
GRID_GAP = 2


def traversal_values(range_: float = 3.0, steps: int = 9) -> np.ndarray:
    """`steps` evenly spaced latent values from -range_ to +range_ (float32)."""
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool):
        raise ValueError(f"steps must be an integer; got {steps!r}")
    if not MIN_STEPS <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be between {MIN_STEPS} and {MAX_STEPS}; got {steps}")
    if not np.isfinite(range_) or range_ <= 0:
        raise ValueError(f"range must be a positive number of standard deviations; got {range_}")
    return np.linspace(-float(range_), float(range_), int(steps), dtype=np.float32)


def latent_order(kl_per_dim: Sequence[float] | np.ndarray) -> np.ndarray:
    """Dimension indices sorted by KL, largest first; ties keep index order."""
    kl = np.asarray(kl_per_dim, dtype=np.float64).reshape(-1)
    return np.argsort(-kl, kind="stable").astype(np.int64)


def traversal_grid(source: ModelSource, reference: np.ndarray, dims: Sequence[int], values: np.ndarray) -> np.ndarray:
    """Decode a traversal: uint8 (len(dims), len(values), C, H, W).

    Row r holds the reference code with dimension dims[r] set to each of `values` in turn (the
    other dimensions stay at the reference). All rows go through the decoder in one batch.
    """
    reference = np.asarray(reference, dtype=np.float32).reshape(-1)
    if reference.shape[0] != source.latent_dim:
        raise ValueError(f"reference code has {reference.shape[0]} dimensions; the model has {source.latent_dim}")
    dims = np.asarray(dims, dtype=np.int64).reshape(-1)
    if dims.size and (dims.min() < 0 or dims.max() >= source.latent_dim):
        raise ValueError(f"latent dimensions must lie in 0..{source.latent_dim - 1}; got {dims.tolist()}")
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    rows, steps = len(dims), len(values)
    if rows == 0 or steps == 0:
        return np.zeros((rows, steps, *source.image_shape), dtype=np.uint8)
    codes = np.repeat(reference[None, :], rows * steps, axis=0)
    codes[np.arange(rows * steps), np.repeat(dims, steps)] = np.tile(values, rows)
    images = source.decode(codes, batch_size=max(rows * steps, 1))
    return images.reshape(rows, steps, *source.image_shape)


def reference_code(source: ModelSource, image: np.ndarray | None) -> np.ndarray:
    """The encoder mean of one uint8 (C, H, W) image, or zeros (the prior mean) for None."""
    if image is None:
        return np.zeros(source.latent_dim, dtype=np.float32)
    image = np.asarray(image)
    if image.dtype != np.uint8 or tuple(image.shape) != tuple(source.image_shape):
        raise ValueError(f"reference image must be uint8 {tuple(source.image_shape)}; got {image.dtype} {image.shape}")
    mean, _logvar = source.encode(image[None])
    return mean[0].astype(np.float32)


def load_image_file(path: str | Path, image_shape: tuple[int, int, int], dataset: str | None = None) -> np.ndarray:
    """An image file as uint8 (C, H, W) for a model taking `image_shape`, trained on `dataset`: prepared as that
    data set's own images are (a 28x28 digit padded for MNIST), else converted and resized (core/image_input.py)."""
    return load_image(path, image_shape, dataset).image


def source_kl(source: ModelSource) -> np.ndarray | None:
    """KL per dimension: the run's own figure when it has one, else measured on validation data."""
    if source.kl_per_dim is not None:
        return np.asarray(source.kl_per_dim, dtype=np.float64).reshape(-1)
    kl = source.kl_from_data()
    return None if kl is None else np.asarray(kl, dtype=np.float64)


# --- factor labels ----------------------------------------------------------------------------


def _histogram_discretise(values: np.ndarray, bins: int) -> np.ndarray:
    """disentanglement_lib's `_histogram_discretize` for one column: bin ids 1..bins, equal widths."""
    edges = np.histogram(values, bins)[1]
    return np.digitize(values, edges[:-1])


def _mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information (nats) between two discrete label vectors, from their contingency table."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    if ia.max(initial=0) == 0 or ib.max(initial=0) == 0:
        return 0.0  # a constant shares nothing (exactly, not up to rounding)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.float64)
    np.add.at(table, (ia, ib), 1.0)
    joint = table / table.sum()
    pa = joint.sum(axis=1, keepdims=True)
    pb = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float(max((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum(), 0.0))


def _entropy(labels: np.ndarray) -> float:
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def factor_mutual_information(means: np.ndarray, classes: np.ndarray, bins: int = 20) -> np.ndarray:
    """(D, K) mutual information in nats between latent mean d (in `bins` equal-width bins) and factor k."""
    means = np.asarray(means, dtype=np.float64)
    classes = np.asarray(classes)
    if means.ndim != 2 or classes.ndim != 2 or len(means) != len(classes):
        raise ValueError(f"need means (N, D) and classes (N, K) with the same N; got {means.shape}, {classes.shape}")
    if bins < 2:
        raise ValueError(f"bins must be at least 2; got {bins}")
    if len(means) == 0:
        raise ValueError("need at least one point")
    discrete = [_histogram_discretise(means[:, d], bins) for d in range(means.shape[1])]
    out = np.zeros((means.shape[1], classes.shape[1]), dtype=np.float64)
    for d, codes in enumerate(discrete):
        for k in range(classes.shape[1]):
            out[d, k] = _mutual_info(codes, classes[:, k])
    return out


def factor_entropy(classes: np.ndarray) -> np.ndarray:
    """(K,) entropy in nats of each factor's classes."""
    classes = np.asarray(classes)
    return np.array([_entropy(classes[:, k]) for k in range(classes.shape[1])], dtype=np.float64)


def normalised_factor_mutual_information(means: np.ndarray, classes: np.ndarray, bins: int = 20) -> np.ndarray:
    """Mutual information divided by each factor's entropy (0..1); NaN for factors with one class."""
    mi = factor_mutual_information(means, classes, bins)
    entropy = factor_entropy(classes)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = mi / entropy[None, :]
    out[:, entropy <= 1e-12] = np.nan
    return out


def label_dimensions(mi: np.ndarray, factor_names: Sequence[str]) -> list[tuple[str, float]]:
    """The factor each latent dimension shares most information with, and that information.

    Factor columns that are NaN or zero throughout (a single class: nothing to share) are skipped;
    a dimension with no usable factor, or sharing nothing with any, gets ("", 0.0).
    """
    mi = np.asarray(mi, dtype=np.float64)
    if mi.ndim != 2 or mi.shape[1] != len(factor_names):
        raise ValueError(f"mi must be (D, {len(factor_names)}); got {mi.shape}")
    usable = ~np.all(np.isnan(mi), axis=0)
    usable &= np.nan_to_num(np.abs(mi), nan=0.0).max(axis=0, initial=0.0) > 0  # one class: MI 0 everywhere
    labels: list[tuple[str, float]] = []
    for row in mi:
        scores = np.where(usable & ~np.isnan(row), row, -np.inf)
        if scores.size == 0 or not np.isfinite(scores.max()) or scores.max() <= 0:
            labels.append(("", 0.0))
            continue
        k = int(np.argmax(scores))
        labels.append((str(factor_names[k]), float(row[k])))
    return labels


def label_sample(source: ModelSource, count: int = LABEL_POINTS, seed: int = 0) -> np.ndarray | None:
    """Up to `count` sorted validation indices (all images when there is no split); None without data."""
    dataset = source.dataset
    if dataset is None:
        return None
    indices = source.val_indices if source.val_indices is not None else np.arange(len(dataset))
    if len(indices) == 0:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(indices, size=min(count, len(indices)), replace=False)).astype(np.int64)


def needs_summary(source: ModelSource) -> bool:
    """Whether `latent_summary` has anything to encode: KL unknown, or factors to label."""
    if source.dataset is None:
        return False
    return source.kl_per_dim is None or source.dataset.factors is not None


def summary_from_codes(
    source: ModelSource, indices: np.ndarray, means: np.ndarray, logvars: np.ndarray, bins: int = 20
) -> tuple[np.ndarray | None, list[tuple[str, float]] | None]:
    """KL per dimension and factor labels from encoder outputs for the images `indices` (see `latent_summary`)."""
    if source.kl_per_dim is not None:
        kl = np.asarray(source.kl_per_dim, dtype=np.float64).reshape(-1)
    elif len(means):
        m = np.asarray(means, dtype=np.float64)
        lv = np.asarray(logvars, dtype=np.float64)
        kl = (0.5 * (m**2 + np.exp(lv) - 1.0 - lv)).mean(axis=0)
    else:
        kl = None
    factors = source.dataset.factors if source.dataset is not None else None
    if factors is None or len(means) == 0:
        return kl, None
    mi = normalised_factor_mutual_information(means, factors.classes_of(np.asarray(indices)), bins)
    labels = label_dimensions(mi, factors.names)
    if kl is not None:  # a dead latent follows nothing: its faint correlation with a factor is noise
        labels = [label if value >= ACTIVE_KL else ("", 0.0) for label, value in zip(labels, kl, strict=False)]
    return kl, labels


def factor_labels(
    source: ModelSource, count: int = LABEL_POINTS, seed: int = 0, bins: int = 20
) -> list[tuple[str, float]] | None:
    """Best factor and normalised MI per dimension from up to `count` validation images; None without factors."""
    if source.dataset is None or source.dataset.factors is None:
        return None
    return latent_summary(source, count, seed, bins)[1]


def latent_summary(
    source: ModelSource, count: int = LABEL_POINTS, seed: int = 0, bins: int = 20
) -> tuple[np.ndarray | None, list[tuple[str, float]] | None]:
    """KL per dimension and factor labels from ONE encode of up to `count` validation images.

    KL is the run's own figure when the source carries one; otherwise the mean KL on the sample.
    Either part is None when it cannot be had (no data; no factors).
    """
    chosen = label_sample(source, count, seed) if needs_summary(source) else None
    if chosen is None:
        kl = None if source.kl_per_dim is None else np.asarray(source.kl_per_dim, dtype=np.float64).reshape(-1)
        return kl, None
    means, logvars = source.encode(source.dataset.batch(chosen).numpy())  # type: ignore[union-attr]
    return summary_from_codes(source, chosen, means, logvars, bins)


@contextlib.contextmanager
def torch_threads(count: int = 1) -> Iterator[None]:
    """Run the block on `count` torch threads, then restore the previous setting.

    For decodes on the GUI thread: the window keeps one core (the trainer has the rest), and on
    a busy machine a multi-threaded decode of one 64x64 image can take 100x longer than a
    single-threaded one (threads waiting on each other).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(count)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def decode_one(source: ModelSource, code: np.ndarray) -> np.ndarray:
    """Decode one latent code to uint8 (C, H, W) on one torch thread (see `torch_threads`)."""
    with torch_threads(1):
        return source.decode(np.asarray(code, dtype=np.float32).reshape(1, -1))[0]


def row_label(dim: int, kl: float | None = None, factor: tuple[str, float] | None = None) -> str:
    """'z3 · KL 2.31 · posX (0.82)': the caption of one traversal row."""
    parts = [f"z{dim}"]
    if kl is not None and np.isfinite(kl):
        parts.append(f"KL {kl:.2f}")
    if factor is not None and factor[0]:
        parts.append(f"{factor[0]} ({factor[1]:.2f})")
    return " · ".join(parts)


# --- one call for the command line and the view -----------------------------------------------


@dataclass(frozen=True)
class Traversal:
    """A decoded traversal grid with what its rows mean."""

    grid: np.ndarray  # uint8 (rows, steps, C, H, W)
    dims: np.ndarray  # latent dimension of each row
    values: np.ndarray  # latent value of each column
    kl: np.ndarray | None  # KL per dimension (all dimensions, by index), None when unknown
    factors: list[tuple[str, float]] | None  # best factor per dimension (by index), None without factors

    def row_labels(self) -> list[str]:
        return [
            row_label(
                int(d),
                None if self.kl is None else float(self.kl[d]),
                None if self.factors is None else self.factors[d],
            )
            for d in self.dims
        ]


def traverse(
    source: ModelSource,
    image: np.ndarray | None = None,
    *,
    range_: float = 3.0,
    steps: int = 9,
    kl: np.ndarray | None = None,
    label_factors: bool = True,
    points: int = LABEL_POINTS,
) -> Traversal:
    """Every dimension swept around `image`'s code (or the prior mean), rows sorted by KL when known."""
    values = traversal_values(range_, steps)
    factors = None
    if kl is None or label_factors:
        found_kl, factors = latent_summary(source, count=points)
        kl = kl if kl is not None else found_kl
        factors = factors if label_factors else None
    dims = latent_order(kl) if kl is not None else np.arange(source.latent_dim, dtype=np.int64)
    grid = traversal_grid(source, reference_code(source, image), dims, values)
    return Traversal(grid=grid, dims=dims, values=values, kl=kl, factors=factors)


# --- files ------------------------------------------------------------------------------------


def _to_pil(tiled: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(tiled), mode="L" if tiled.ndim == 2 else "RGB")


def _check_grid(grid: np.ndarray) -> np.ndarray:
    grid = np.asarray(grid)
    if grid.dtype != np.uint8 or grid.ndim != 5 or grid.shape[0] == 0 or grid.shape[1] == 0:
        raise ValueError(f"expected a uint8 grid (rows, steps, C, H, W) with rows, steps >= 1; got {grid.shape}")
    return grid


def tile_grid(grid: np.ndarray, gap: int = GRID_GAP) -> np.ndarray:
    """The grid as one row-major image: (H, W) grey or (H, W, 3) colour."""
    grid = _check_grid(grid)
    return tile_rows(list(grid), gap=gap)


def _label_column(labels: Sequence[str], tile_h: int, gap: int, height: int, channels: int) -> np.ndarray:
    """A white strip with one label per row, vertically centred on the row."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    width = max(int(probe.textlength(text, font=font)) for text in labels) + 12
    strip = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(strip)
    for r, text in enumerate(labels):
        box = draw.textbbox((0, 0), text, font=font)
        y = r * (tile_h + gap) + (tile_h - (box[3] - box[1])) // 2 - box[1]
        draw.text((6, y), text, fill=0, font=font)
    arr = np.asarray(strip, dtype=np.uint8)
    return arr if channels == 1 else np.repeat(arr[:, :, None], 3, axis=2)


def render_grid_png(grid: np.ndarray, path: str | Path, *, row_labels: Sequence[str] | None = None) -> Path:
    """Write the tiled grid as a PNG (atomically), with an optional label column on the left."""
    grid = _check_grid(grid)
    tiled = tile_grid(grid)
    if row_labels is not None:
        if len(row_labels) != grid.shape[0]:
            raise ValueError(f"{len(row_labels)} row labels for {grid.shape[0]} rows")
        column = _label_column(list(row_labels), grid.shape[3], GRID_GAP, tiled.shape[0], grid.shape[2])
        tiled = np.concatenate([column, tiled], axis=1)
    target = Path(path)
    with atomic_path(target) as tmp:
        _to_pil(tiled).save(tmp, format="PNG")
    return target


def gif_frames(grid: np.ndarray, gap: int = GRID_GAP) -> list[np.ndarray]:
    """One image per traversal step: column c of every row, laid out as a near-square block of tiles.

    A thin bar under the tiles marks how far along the sweep the frame is, so the viewer can tell
    -range from +range (and no two frames are identical, which GIF writers would merge).
    """
    grid = _check_grid(grid)
    rows, steps = grid.shape[:2]
    per_row = int(np.ceil(np.sqrt(rows)))
    frames = []
    for c in range(steps):
        column = grid[:, c]
        chunks = [column[i : i + per_row] for i in range(0, rows, per_row)]
        tiled = tile_rows(chunks, gap=gap)
        bar_h = max(3, tiled.shape[0] // 60)
        bar = np.full((bar_h + gap, *tiled.shape[1:]), GAP_VALUE, dtype=np.uint8)
        width = tiled.shape[1]
        marker = max(4, width // (2 * steps))
        x = int(round(c / max(steps - 1, 1) * (width - marker)))
        bar[gap:, x : x + marker] = 255
        frames.append(np.concatenate([tiled, bar], axis=0))
    return frames


def render_gif(grid: np.ndarray, path: str | Path, frame_ms: int = 120) -> Path:
    """Write an animated GIF (atomically), one frame per traversal step, looping forever."""
    if frame_ms <= 0:
        raise ValueError(f"frame_ms must be positive; got {frame_ms}")
    images = [_to_pil(frame) for frame in gif_frames(grid)]
    target = Path(path)
    with atomic_path(target) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=int(frame_ms),
            loop=0,
            disposal=1,
            optimize=False,
        )
    return target
