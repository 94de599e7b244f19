"""ImageSet: the one shape every data source takes, so the trainer and metrics never care where images came from."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

Progress = Callable[[int, int], None]  # progress(images done, images in all), from sources slow to open


@dataclass(frozen=True)
class Factors:
    """Ground-truth factors of variation laid out as a full grid.

    `values[k]` is the value grid of factor k. When `classes` is None image i has the classes
    `np.unravel_index(i, sizes)` (last factor fastest, as dSprites and 3D Shapes are stored);
    otherwise `classes[i]` gives them and `index_of` inverts that table.
    """

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    values: tuple[np.ndarray, ...]
    classes: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.sizes) == len(self.values)):
            raise ValueError("names, sizes and values must have one entry per factor")
        for name, size, vals in zip(self.names, self.sizes, self.values, strict=True):
            if len(vals) != size:
                raise ValueError(f"factor {name}: {len(vals)} values for size {size}")
        if self.classes is not None:
            flat = np.ravel_multi_index(tuple(self.classes.T), self.sizes)
            inverse = np.full(self.count, -1, dtype=np.int64)
            inverse[flat] = np.arange(len(flat), dtype=np.int64)
            object.__setattr__(self, "_inverse", inverse)

    @property
    def count(self) -> int:
        """Number of grid points (= images when the grid is complete)."""
        return int(np.prod(self.sizes, dtype=np.int64))

    @property
    def num_factors(self) -> int:
        return len(self.sizes)

    def classes_of(self, indices: np.ndarray) -> np.ndarray:
        """Class index of every factor for each image: (n, K) int64."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.classes is not None:
            return self.classes[indices].astype(np.int64, copy=False)
        return np.stack(np.unravel_index(indices, self.sizes), axis=1).astype(np.int64)

    def values_of(self, indices: np.ndarray) -> np.ndarray:
        """Factor values for each image: (n, K) float64."""
        classes = self.classes_of(indices)
        return np.stack([self.values[k][classes[:, k]] for k in range(self.num_factors)], axis=1)

    def index_of(self, classes: np.ndarray) -> np.ndarray:
        """Image index for each row of factor classes; raises KeyError for grid points with no image."""
        classes = np.asarray(classes, dtype=np.int64)
        flat = np.ravel_multi_index(tuple(classes.T), self.sizes)
        if self.classes is None:
            return flat.astype(np.int64)
        found = self._inverse[flat]  # type: ignore[attr-defined]
        if (found < 0).any():
            raise KeyError("some factor combinations have no image in this dataset")
        return found

    def sample_classes(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n random factor combinations, each factor uniform over its classes."""
        return np.stack([rng.integers(0, size, n) for size in self.sizes], axis=1).astype(np.int64)

    def sample_with_fixed(self, n: int, factor: int, rng: np.random.Generator) -> np.ndarray:
        """n random combinations sharing one random value of `factor` (the β-VAE metric's draw)."""
        classes = self.sample_classes(n, rng)
        classes[:, factor] = rng.integers(0, self.sizes[factor])
        return classes


class ImageSet(ABC):
    """A read-only collection of uint8 images (N x C x H x W) with optional labels and factors.

    Sources implement `_batch`; storage may be in memory, bit-packed, lazily read from disk or
    rendered on demand. `to(device)` lets a source move its storage to the training device.
    """

    name: str = "images"
    source: str = ""
    labels: np.ndarray | None = None
    label_names: Sequence[str] | None = None
    factors: Factors | None = None

    @property
    @abstractmethod
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _batch(self, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
        """uint8 images for int64 `indices` (on any device), returned on `device`."""

    @property
    def binary(self) -> bool:
        """True when pixels are (close to) black/white or grey: Bernoulli reconstruction fits."""
        return self.shape[0] == 1

    def batch(
        self, indices: torch.Tensor | np.ndarray | Sequence[int], device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """uint8 tensor (n, C, H, W) on `device`; indices out of range raise IndexError."""
        device = torch.device(device)
        idx = torch.as_tensor(np.ascontiguousarray(indices) if not isinstance(indices, torch.Tensor) else indices)
        idx = idx.to(torch.int64).reshape(-1)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"{self.name}: index out of range 0..{len(self) - 1}")
        return self._batch(idx, device)

    def to(self, device: torch.device | str) -> ImageSet:
        """Move storage to `device` when it helps; the default keeps it where it is."""
        return self

    def describe(self) -> str:
        """One line for a status bar: count, size, and what ground truth there is."""
        c, h, w = self.shape
        text = f"{self.name}: {len(self):,} images, {h}x{w}, {c} channel{'s' if c > 1 else ''}"
        if self.factors is not None:
            parts = ", ".join(f"{n} {s}" for n, s in zip(self.factors.names, self.factors.sizes, strict=True))
            text += f"; factors: {parts}"
        elif self.labels is not None:
            text += f"; labels: {len(np.unique(self.labels))} classes"
        return text


class ArrayImageSet(ImageSet):
    """Images held whole as one uint8 tensor; moved to the GPU when it fits so batches index there."""

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        *,
        name: str,
        source: str = "",
        labels: np.ndarray | None = None,
        label_names: Sequence[str] | None = None,
        factors: Factors | None = None,
    ) -> None:
        tensor = torch.as_tensor(images)
        if tensor.dtype != torch.uint8 or tensor.ndim != 4:
            raise ValueError("ArrayImageSet needs uint8 images shaped (N, C, H, W)")
        self._images = tensor.contiguous()
        self.name = name
        self.source = source
        self.labels = labels
        self.label_names = label_names
        self.factors = factors

    @property
    def images(self) -> torch.Tensor:
        return self._images

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self._images.shape[1:]
        return int(c), int(h), int(w)

    def __len__(self) -> int:
        return int(self._images.shape[0])

    def _batch(self, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
        out = self._images[indices.to(self._images.device)]
        return out.to(device, non_blocking=True)

    def to(self, device: torch.device | str) -> ArrayImageSet:
        device = torch.device(device)
        if device.type == "cpu" or self._images.device == device:
            return self
        free = _free_device_bytes(device)
        if free is not None and self._images.numel() > 0.5 * free:
            return self  # would crowd out the model: keep on CPU and copy per batch
        self._images = self._images.to(device)
        return self


def _free_device_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return None


def split_indices(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split of 0..count-1; the same seed always gives the same split."""
    if count < 2:
        raise ValueError("a split needs at least 2 images")
    rng = np.random.default_rng(seed)
    order = rng.permutation(count)
    n_val = min(max(1, int(round(count * val_fraction))), count - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
