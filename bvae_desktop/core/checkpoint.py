"""One-file checkpoints: written atomically, read with weights_only=True so a file never runs code."""

from __future__ import annotations

import io
import os
import pickle
import platform
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bvae_desktop.core.atomic import atomic_write_bytes
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import CheckpointError, ConfigError, os_reason
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
    # an objective's own network and its optimizer (FactorVAE's discriminator): tensors only, like the model
    auxiliary_state: dict[str, torch.Tensor] | None = None
    auxiliary_optimizer_state: dict[str, Any] | None = None
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
    if checkpoint.auxiliary_state is not None:
        payload["auxiliary"] = {
            "model": {k: v.detach().to("cpu").contiguous() for k, v in checkpoint.auxiliary_state.items()},
            "optimizer": _to_cpu(checkpoint.auxiliary_optimizer_state)
            if checkpoint.auxiliary_optimizer_state is not None
            else None,
        }
    target = Path(path)
    try:
        buffer = io.BytesIO()  # serialised in memory: a disk error then surfaces as an OSError with its errno
        torch.save(payload, buffer)
        atomic_write_bytes(target, buffer.getbuffer())
    except (OSError, RuntimeError) as exc:
        kept = " (the previous checkpoint there is kept)" if _is_file(target) else ""
        raise CheckpointError(f"{target}: cannot write the checkpoint: {os_reason(exc)}{kept}") from exc
    return target


def check_finite_weights(state: dict[str, Any], where: str | os.PathLike[str]) -> None:
    """Refuse weights holding NaN or ±inf: a model from a diverged run decodes only black (or NaN) images."""
    bad = [
        name
        for name, value in state.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise CheckpointError(
            f"{where}: its weights hold NaN or infinite values (in {bad[0]}{more}): the run had diverged when it "
            "was saved; use an earlier checkpoint, or resume training from one with a lower β or learning rate"
        )


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and check a checkpoint; anything that is not one of ours raises CheckpointError."""
    file = Path(path)
    _check_readable(file)
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _holds_code(exc):
            raise CheckpointError(
                f"{file}: refused: it holds code that would run on loading, not only weights and settings "
                f"({_unpickler_reason(exc)}); open only checkpoints you made or trust"
            ) from None
        raise CheckpointError(f"{file}: not a readable checkpoint, truncated or corrupted") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{file}: not a readable checkpoint, truncated or corrupted ({_first_line(exc)})"
        ) from None
    return _parse(payload, file)


def _check_readable(file: Path) -> None:
    """Missing, a folder or unreadable (permissions): say which, before torch reports it as corruption."""
    try:
        if file.is_dir():
            raise CheckpointError(f"{file}: is a folder, not a checkpoint file")
        with open(file, "rb") as fh:
            fh.read(1)
    except FileNotFoundError:
        raise CheckpointError(f"{file}: no such checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{file}: cannot read the checkpoint: {os_reason(exc)}") from None


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
        config = TrainConfig.from_dict(dict(payload["config"]), source=str(file), saved=True)
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
            auxiliary_state=dict(payload["auxiliary"]["model"]) if payload.get("auxiliary") else None,
            auxiliary_optimizer_state=payload["auxiliary"].get("optimizer") if payload.get("auxiliary") else None,
            path=file,
        )
    except ConfigError as exc:
        raise CheckpointError(f"{file}: its settings are invalid ({exc})") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{file}: checkpoint is missing or has a malformed entry ({_first_line(exc)})") from None
    checkpoint.build_model()  # raises CheckpointError if the weights do not fit the config
    return checkpoint


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


# what torch's weights_only unpickler says when a file asks it to import or call something; the wording
# and case change between torch versions ("Unsupported global: GLOBAL x", "unsupported GLOBAL x whose module")
_CODE_MARKERS = (
    "unsupported global",
    "call reduce for unrecognized function",
    "can only create new object",
    "can only build",
)


def _holds_code(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _CODE_MARKERS)


def _unpickler_reason(exc: BaseException) -> str:
    """torch's message is long; keep the line that names the refused object."""
    for line in str(exc).splitlines():
        lowered = line.lower()
        if any(marker in lowered for marker in _CODE_MARKERS):
            text = line.strip().removeprefix("WeightsUnpickler error: ")
            return text.split(" was not")[0].split(". Please")[0].rstrip(".")
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
