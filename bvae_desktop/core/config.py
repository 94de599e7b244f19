"""TrainConfig: every setting of a run, validated once, saved as JSON beside the run."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bvae_desktop.core.atomic import atomic_write_text
from bvae_desktop.core.errors import ConfigError
from bvae_desktop.core.jsonfile import read_json_object

OBJECTIVES = ("vae", "beta-h", "beta-b")
RECONSTRUCTIONS = ("auto", "bernoulli", "gaussian")
DATASETS = ("dsprites-procedural", "dsprites", "shapes3d", "mnist", "folder")


def beta_normalised(beta: float, latent_dim: int, image_shape: tuple[int, int, int]) -> float:
    """β for a loss averaged over pixels and latents instead of summed (design §3)."""
    channels, height, width = image_shape
    return beta * latent_dim / (height * width * channels)


def beta_from_normalised(beta_norm: float, latent_dim: int, image_shape: tuple[int, int, int]) -> float:
    channels, height, width = image_shape
    return beta_norm * (height * width * channels) / latent_dim


@dataclass
class TrainConfig:
    """One training run. β is in the summed unit (Higgins: 4 on dSprites); see `beta_normalised`."""

    dataset: str = "dsprites-procedural"
    data_path: str | None = None
    objective: str = "beta-h"
    beta: float = 4.0
    gamma: float = 1000.0
    c_max: float = 25.0
    c_steps: int = 100_000
    latent_dim: int = 10
    lr: float = 5e-4
    batch_size: int = 64
    steps: int = 1000
    val_every: int = 100
    val_fraction: float = 0.1
    val_batches: int = 4
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "auto"
    reconstruction: str = "auto"
    bf16: bool = True
    channels_last: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad setting; return self so calls can chain."""
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset must be one of {', '.join(DATASETS)}; got {self.dataset!r}")
        if self.dataset not in ("dsprites-procedural",) and not self.data_path:
            raise ConfigError(f"dataset {self.dataset!r} needs a file or folder (data_path / --data)")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}; got {self.objective!r}")
        if self.reconstruction not in RECONSTRUCTIONS:
            raise ConfigError(
                f"reconstruction must be one of {', '.join(RECONSTRUCTIONS)}; got {self.reconstruction!r}"
            )
        _positive_float("beta", self.beta, allow_zero=True)
        _positive_float("gamma", self.gamma, allow_zero=True)
        _positive_float("c_max", self.c_max, allow_zero=True)
        _positive_float("lr", self.lr)
        for name in ("latent_dim", "batch_size", "steps", "val_every", "checkpoint_every", "c_steps", "val_batches"):
            _positive_int(name, getattr(self, name))
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be between 0 and 1 (exclusive); got {self.val_fraction}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer; got {self.seed!r}")
        return self

    @property
    def effective_beta(self) -> float:
        """β the objective actually uses: a plain VAE is β = 1 whatever the field says."""
        return 1.0 if self.objective == "vae" else self.beta

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}")
        try:
            config = cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        return config.validate()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainConfig:
        file = Path(path)
        data = read_json_object(
            file,
            ConfigError,
            missing="no such config file",
            unreadable="not a readable JSON config",
            not_object="a config must be a JSON object of settings",
        )
        return cls.from_dict(data, source=str(file))


def _positive_float(name: str, value: object, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}; got {value!r}")


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")
