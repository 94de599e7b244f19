"""Small data and settings shared by the training tests: fast on 2 CPU cores, quick to learn."""

from __future__ import annotations

import numpy as np

from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data import ArrayImageSet


def squares(n: int = 256, size: int = 32, seed: int = 0) -> ArrayImageSet:
    """Binary images of a square at a random position: easy to learn, so losses move fast."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, size, size), dtype=np.uint8)
    for i, (x, y) in enumerate(rng.integers(2, size - 10, (n, 2))):
        images[i, 0, y : y + 8, x : x + 8] = 255
    return ArrayImageSet(images, name="squares", source="test")


def small_config(**overrides) -> TrainConfig:
    values = dict(latent_dim=4, batch_size=16, steps=20, val_every=10, checkpoint_every=10, lr=1e-3, device="cpu")
    values.update(overrides)
    return TrainConfig(**values)


def poison_loss_at(trainer, calls_to_poison):
    """Make the loss non-finite on the given calls (1-based) of the trainer's step computation."""
    original = trainer._loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        total, values, z = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] in calls_to_poison:
            total, values = total * float("nan"), values * float("nan")
        return total, values, z

    trainer._loss = poisoned
