"""One-file checkpoints: written atomically, read with weights_only=True so a file never runs code."""

from __future__ import annotations

import os
import pickle
import platform
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bvae_desktop.core.atomic import atomic_path
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import CheckpointError, ConfigError
from bvae_desktop.core.nets import BetaVAE

FORMAT = "bvae-desktop-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """What a checkpoint holds; `model_state` and `optimizer_state` are plain tensor dicts."""

    config: TrainConfig
    image_shape: tuple[int, int, int]
    step: int
    beta: float
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None = None
    rng_state: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    dataset: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def build_model(self, device: torch.device | str = "cpu") -> BetaVAE:
        """A model with these weights, in eval mode."""
        model = BetaVAE(self.image_shape, self.config.latent_dim)
        try:
            model.load_state_dict(self.model_state)
        except RuntimeError as exc:
            where = self.path or "checkpoint"
            raise CheckpointError(
                f"{where}: weights do not fit a latent size {self.config.latent_dim} model "
                f"for {self.image_shape} images ({_first_line(exc)})"
            ) from None
        return model.to(device).eval()


def library_versions() -> dict[str, str]:
    import numpy

    from bvae_desktop import __version__

    versions = {
        "bvae_desktop": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    return {k: str(v) for k, v in versions.items()}  # torch's version is a str subclass pickle would name


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Write atomically: a crash mid-write leaves the previous file under `path` untouched."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": checkpoint.config.to_dict(),
        "image_shape": list(checkpoint.image_shape),
        "step": int(checkpoint.step),
        "beta": float(checkpoint.beta),
        "model": {k: v.detach().to("cpu").contiguous() for k, v in checkpoint.model_state.items()},
        "optimizer": _to_cpu(checkpoint.optimizer_state) if checkpoint.optimizer_state is not None else None,
        "rng": {k: v.to("cpu") for k, v in checkpoint.rng_state.items()},
        "metrics": {k: float(v) for k, v in checkpoint.metrics.items()},
        "dataset": dict(checkpoint.dataset),
        "versions": {k: str(v) for k, v in (checkpoint.versions or library_versions()).items()},
    }
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and check a checkpoint; anything that is not one of ours raises CheckpointError."""
    file = Path(path)
    if not file.exists():
        raise CheckpointError(f"{file}: no such checkpoint file")
    if file.is_dir():
        raise CheckpointError(f"{file}: is a folder, not a checkpoint file")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{file}: refused, it holds objects other than weights and settings "
                f"(only weights_only checkpoints are loaded; {_unpickler_reason(exc)})"
            ) from None
        raise CheckpointError(f"{file}: not a readable checkpoint, truncated or corrupted") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{file}: not a readable checkpoint, truncated or corrupted ({_first_line(exc)})"
        ) from None
    return _parse(payload, file)


def _parse(payload: object, file: Path) -> Checkpoint:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{file}: not a β-VAE Desktop checkpoint (no '{FORMAT}' marker)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: checkpoint format version {version!r} is newer than this app reads "
            f"({FORMAT_VERSION}); update β-VAE Desktop"
        )
    try:
        config = TrainConfig.from_dict(dict(payload["config"]), source=str(file))
        shape = tuple(int(v) for v in payload["image_shape"])
        checkpoint = Checkpoint(
            config=config,
            image_shape=(shape[0], shape[1], shape[2]),
            step=int(payload["step"]),
            beta=float(payload["beta"]),
            model_state=dict(payload["model"]),
            optimizer_state=payload.get("optimizer"),
            rng_state=dict(payload.get("rng") or {}),
            metrics={k: float(v) for k, v in (payload.get("metrics") or {}).items()},
            dataset={k: str(v) for k, v in (payload.get("dataset") or {}).items()},
            versions={k: str(v) for k, v in (payload.get("versions") or {}).items()},
            path=file,
        )
    except ConfigError as exc:
        raise CheckpointError(f"{file}: its settings are invalid ({exc})") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{file}: checkpoint is missing or has a malformed entry ({_first_line(exc)})") from None
    checkpoint.build_model()  # raises CheckpointError if the weights do not fit the config
    return checkpoint


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _unpickler_reason(exc: BaseException) -> str:
    """torch's message is long; keep the line that names the refused object."""
    for line in str(exc).splitlines():
        if "Unsupported" in line or "WeightsUnpickler error" in line:
            return line.strip().removeprefix("WeightsUnpickler error: ").split(" was not")[0]
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
