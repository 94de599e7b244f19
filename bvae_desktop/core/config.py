"""TrainConfig: every setting of a run, validated once, saved as JSON beside the run."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bvae_desktop.core.atomic import atomic_write_text
from bvae_desktop.core.errors import ConfigError
from bvae_desktop.core.jsonfile import read_json_object

RECONSTRUCTIONS = ("auto", "bernoulli", "gaussian")
COMPILE_MODES = ("auto", "on", "off")  # auto: compiled on CUDA, eager elsewhere
WEIGHT_INITS = ("he", "torch")  # the first weights (core/nets.py: initialise_weights)
WEIGHT_INIT_BEFORE = "torch"  # what a saved config without the setting was trained with


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
    compile: str = "auto"
    weight_init: str = "he"  # he: Kaiming for ReLU nets (leaves the early KL plateau sooner); torch: PyTorch's
    sync_every: int = 0  # steps between host reads of the losses; 0: every step on the CPU, blocks on a GPU
    objective_params: dict[str, Any] = field(default_factory=dict)  # the objective's own settings (its spec's)
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad setting; return self so calls can chain.

        Every field is checked for its type (a JSON config can hold anything) and for a range no real run
        leaves: a value past it would fail later, deep in numpy, torch or the allocator, with a traceback.
        """
        _dataset(self)
        _objective(self)
        _choice("reconstruction", self.reconstruction, RECONSTRUCTIONS)
        _choice("compile", self.compile, COMPILE_MODES)
        _choice("weight_init", self.weight_init, WEIGHT_INITS)
        if not isinstance(self.sync_every, int) or isinstance(self.sync_every, bool) or self.sync_every < 0:
            raise ConfigError(f"sync_every must be a non-negative integer (0: automatic); got {self.sync_every!r}")
        _int_in_range("sync_every", self.sync_every, 0, MAX_STEPS)
        _positive_float("beta", self.beta, allow_zero=True, high=MAX_BETA)
        _positive_float("gamma", self.gamma, allow_zero=True, high=MAX_GAMMA)
        _positive_float("c_max", self.c_max, allow_zero=True, high=MAX_C_MAX)
        _positive_float("lr", self.lr, high=MAX_LR)
        for name, high in INT_LIMITS.items():
            _positive_int(name, getattr(self, name), high=high)
        _fraction("val_fraction", self.val_fraction)
        _int_in_range("seed", self.seed, 0, MAX_SEED)
        _device("device", self.device)
        for name in ("bf16", "channels_last"):
            _bool(name, getattr(self, name))
        _extra("extra", self.extra)
        return self

    @property
    def effective_beta(self) -> float:
        """The objective's main weight as it trains (a plain VAE is β = 1 whatever the field says)."""
        from bvae_desktop.core.objectives import main_weight

        return main_weight(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config", saved: bool = False) -> TrainConfig:
        """`saved`: the settings a run was trained with (a checkpoint's, an experiment's): a setting added
        since then gets the value those runs had, not today's default (a partial file of the user's gets
        the defaults)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}")
        if saved:
            data = {"weight_init": WEIGHT_INIT_BEFORE, **data}
        try:
            config = cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        try:
            return config.validate()
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

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


# Upper bounds: far past any published or sensible run, low enough that nothing overflows or asks the
# allocator for terabytes. β, γ: Higgins uses β ≤ 250 (summed unit), Burgess γ = 1000; β_norm = 10 on
# 3x64x64 images with 10 latents is β ≈ 12,000. C_max: 25-50 nats in the literature. Adam diverges far below lr 1.
MAX_BETA = 1e6
MAX_GAMMA = 1e6
MAX_C_MAX = 1e5
MAX_LR = 1.0
MAX_STEPS = 10**9  # years of training at any speed
# a batch of 16,384 64x64 images already takes ~4 GB of activations in the first conv layer
MAX_BATCH_SIZE = 16_384
MAX_LATENT_DIM = 1024  # the .bvz header and the traversal grid have room for far more; no β-VAE uses this many
MAX_VAL_BATCHES = 10_000
# numpy's legacy RandomState and scikit-learn take seeds below 2^32; torch takes < 2^64, and the trainer
# derives seed * 1,000,003 + step from it, which stays below 2^63 for any seed under 2^32
MAX_SEED = 2**32 - 1
INT_LIMITS = {
    "latent_dim": MAX_LATENT_DIM,
    "batch_size": MAX_BATCH_SIZE,
    "steps": MAX_STEPS,
    "val_every": MAX_STEPS,
    "checkpoint_every": MAX_STEPS,
    "c_steps": MAX_STEPS,
    "val_batches": MAX_VAL_BATCHES,
}
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,3})?")


def _dataset(config: TrainConfig) -> None:
    """A registered source, given the file or folder it needs (core/data/registry.py)."""
    from bvae_desktop.core.data.registry import dataset_names, dataset_spec
    from bvae_desktop.core.errors import DatasetError

    try:
        spec = dataset_spec(config.dataset)
    except DatasetError:
        _choice("dataset", config.dataset, dataset_names())
        raise
    _optional_path("data_path", config.data_path)
    if spec.needs_path and not config.data_path:
        raise ConfigError(f"dataset {config.dataset!r} needs a {spec.needs} (data_path / --data)")


def _objective(config: TrainConfig) -> None:
    """The objective must be registered, and objective_params hold only its own parameters, in range."""
    from bvae_desktop.core.objectives import check_objective_params, objective_spec

    if not isinstance(config.objective_params, dict):
        raise ConfigError(f"objective_params must be a mapping of settings; got {_shown(config.objective_params)}")
    objective_spec(config.objective)
    check_objective_params(config)


def _shown(value: object) -> str:
    """repr of a bad value, cut short: a config file can hold a megabyte-long string."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_float(value: object) -> float | None:
    """A real number (int or float, never a bool or a string) as a finite float, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int past 1e308
        return None
    return number if math.isfinite(number) else None


def _positive_float(name: str, value: object, *, allow_zero: bool = False, high: float = math.inf) -> None:
    number = _as_float(value)
    if number is None or not (number >= 0 if allow_zero else number > 0) or number > high:
        bound = ">= 0" if allow_zero else "> 0"
        limit = f" and at most {high:g}" if math.isfinite(high) else ""
        raise ConfigError(f"{name} must be a finite number {bound}{limit}; got {_shown(value)}")


def _positive_int(name: str, value: object, *, high: int | None = None) -> None:
    if not _is_int(value) or value <= 0 or (high is not None and value > high):  # type: ignore[operator]
        limit = f" up to {high:,}" if high is not None else ""
        raise ConfigError(f"{name} must be a positive integer{limit}; got {_shown(value)}")


def _int_in_range(name: str, value: object, low: int, high: int) -> None:
    if not _is_int(value) or not low <= value <= high:  # type: ignore[operator]
        raise ConfigError(f"{name} must be an integer from {low:,} to {high:,}; got {_shown(value)}")


def _fraction(name: str, value: object) -> None:
    number = _as_float(value)
    if number is None or not 0.0 < number < 1.0:
        raise ConfigError(f"{name} must be between 0 and 1 (exclusive); got {_shown(value)}")


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {_shown(value)}")


def _optional_path(name: str, value: object) -> None:
    if value is not None and (not isinstance(value, str) or "\x00" in value):
        raise ConfigError(f"{name} must be a file or folder path (text) or null; got {_shown(value)}")


def _device(name: str, value: object) -> None:
    if not isinstance(value, str) or _DEVICE.fullmatch(value) is None:
        raise ConfigError(f"{name} must be auto, cpu, cuda, cuda:N or mps; got {_shown(value)}")


def _bool(name: str, value: object) -> None:
    """true or false, never "yes", 1 or "false" (a non-empty string is truthy: "false" would mean on)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false; got {_shown(value)}")


def _extra(name: str, value: object) -> None:
    """Free-form notes, but they must survive the JSON round trip the run folder relies on."""
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ConfigError(f"{name} must be an object with text keys; got {_shown(value)}")
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must hold only JSON values (text, numbers, lists, objects): {exc}") from None
