"""Tiny bundled models for the tests: a few CPU steps on procedural dSprites, exported as the real ones are.

`bundled_pair(tmp_path_factory)` trains and exports `vae-dsprites` (β = 1) and `beta4-dsprites` (β = 4) once per
test session into one folder (tests point BVAE_DESKTOP_MODELS at it, or at a copy when they damage a file).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.model_export import export_model
from bvae_desktop.core.trainer import Trainer

LATENT_DIM = 3
_CACHE: dict[str, Path] = {}


def train_run(
    run_dir: Path,
    *,
    objective: str = "beta-h",
    beta: float = 4.0,
    steps: int = 4,
    seed: int = 0,
    weight_init: str = "he",
) -> Path:
    """A real run folder (checkpoint, run log, config) of a tiny model."""
    config = TrainConfig(
        objective=objective,
        beta=beta,
        latent_dim=LATENT_DIM,
        batch_size=8,
        steps=steps,
        val_every=steps,
        checkpoint_every=steps,
        lr=2e-3,
        seed=seed,
        device="cpu",
        weight_init=weight_init,
    )
    trainer = Trainer(config, run_dir=run_dir)
    for _event in trainer.steps():
        pass
    return run_dir


def export(run_dir: Path, models_dir: Path, name: str, **options) -> Path:
    options.setdefault("val_images", 32)
    return export_model(run_dir, name, models_dir=models_dir, **options).weights


def bundled_pair(tmp_path_factory) -> Path:
    """A models folder holding vae-dsprites and beta4-dsprites (trained once per session; do not modify)."""
    if "pair" not in _CACHE:
        root = tmp_path_factory.mktemp("bundled-pair")
        models = root / "models"
        vae = train_run(root / "run-vae", objective="vae", beta=1.0, steps=4, seed=1)
        beta4 = train_run(root / "run-beta4", objective="beta-h", beta=4.0, steps=4, seed=0)
        export(vae, models, "vae-dsprites", command="bvae train --objective vae (test)")
        export(beta4, models, "beta4-dsprites", command="bvae train --objective beta-h --beta 4 (test)")
        _CACHE["pair"] = models
    return _CACHE["pair"]


def copy_models(models: Path, target: Path) -> Path:
    """A copy of a models folder, for tests that damage or add files."""
    shutil.copytree(models, target)
    return target
