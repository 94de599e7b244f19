"""ModelSource: a trained model the views and tools can use without touching the training model.

Made from a checkpoint file or from a CPU copy of a live trainer's weights; either way it owns
its own CPU model in eval mode, so decoding never races the optimizer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bvae_desktop.core.checkpoint import Checkpoint, check_finite_weights, load_checkpoint
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data import ImageSet, load_dataset, split_indices
from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.nets import BetaVAE


@dataclass
class ModelSource:
    model: BetaVAE
    config: TrainConfig
    image_shape: tuple[int, int, int]
    step: int
    beta: float
    label: str
    kl_per_dim: np.ndarray | None = None
    dataset: ImageSet | None = None
    val_indices: np.ndarray | None = None
    dataset_error: str | None = None
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # oneDNN's convolutions run ~1.7-2x faster on CPU with channels-last weights (benchmarks/cpu_inference.py);
        # the metrics encode millions of images, the scatter and traversal thousands. Outputs move by ~1e-6.
        self.model = self.model.to(memory_format=torch.channels_last)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def fingerprint(self) -> str:
        """SHA-256 (hex) over the weights in a fixed order: names a model across files and machines."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint | str | Path, *, load_data: bool = True) -> ModelSource:
        """Load the weights; also open the training data when `load_data` (a missing file is noted, not fatal).
        Weights holding NaN or inf are refused (CheckpointError): every tool using them would show garbage."""
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        check_finite_weights(ckpt.model_state, ckpt.path or "checkpoint")  # NaN weights decode only black images
        source = cls(
            model=ckpt.build_model("cpu"),
            config=ckpt.config,
            image_shape=ckpt.image_shape,
            step=ckpt.step,
            beta=ckpt.beta,
            label=str(ckpt.path or "checkpoint"),
        )
        if load_data:
            source.attach_dataset()
        return source

    @classmethod
    def from_state(
        cls,
        state: dict[str, torch.Tensor],
        config: TrainConfig,
        image_shape: tuple[int, int, int],
        *,
        step: int,
        beta: float,
        label: str = "training model",
        kl_per_dim: np.ndarray | None = None,
        dataset: ImageSet | None = None,
        val_indices: np.ndarray | None = None,
    ) -> ModelSource:
        """From a CPU copy of a live model's state dict (see Trainer.model_snapshot)."""
        model = BetaVAE(image_shape, config.latent_dim)
        model.load_state_dict(state)
        return cls(
            model=model.eval(),
            config=config,
            image_shape=image_shape,
            step=step,
            beta=beta,
            label=label,
            kl_per_dim=kl_per_dim,
            dataset=dataset,
            val_indices=val_indices,
        )

    def attach_dataset(self) -> None:
        """Open the data the model was trained on, with the same validation split."""
        try:
            dataset = load_dataset(self.config.dataset, self.config.data_path)
        except BvaeError as exc:
            self.dataset_error = str(exc)
            return
        if dataset.shape != self.image_shape:
            self.dataset_error = (
                f"{dataset.source or dataset.name}: images are {dataset.shape}, the model takes {self.image_shape}"
            )
            return
        self.dataset = dataset
        _train, self.val_indices = split_indices(len(dataset), self.config.val_fraction, self.config.seed)

    @torch.no_grad()
    def encode(self, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (n, C, H, W) images -> (means, log-variances), float32 numpy (n, latent_dim)."""
        data = torch.as_tensor(np.asarray(images))
        means, logvars = [], []
        for start in range(0, len(data), batch_size):
            x = data[start : start + batch_size].float().div_(255.0)
            mean, logvar = self.model.encode(x)
            means.append(mean)
            logvars.append(logvar)
        if not means:
            empty = np.zeros((0, self.latent_dim), dtype=np.float32)
            return empty, empty.copy()
        return torch.cat(means).numpy(), torch.cat(logvars).numpy()

    @torch.no_grad()
    def decode(self, codes: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Latent codes (n, latent_dim) -> uint8 images (n, C, H, W): sigmoid of the decoder output."""
        z = torch.as_tensor(np.asarray(codes, dtype=np.float32))
        out = []
        for start in range(0, len(z), batch_size):
            out.append(
                torch.sigmoid(self.model.decode(z[start : start + batch_size])).mul_(255).round_().to(torch.uint8)
            )
        if not out:
            return np.zeros((0, *self.image_shape), dtype=np.uint8)
        return torch.cat(out).numpy()

    def kl_from_data(self, count: int = 512, seed: int = 0) -> np.ndarray | None:
        """Average KL per dimension on validation images (when the run did not report it)."""
        if self.dataset is None or self.val_indices is None or len(self.val_indices) == 0:
            return None
        rng = np.random.default_rng(seed)
        idx = rng.choice(self.val_indices, size=min(count, len(self.val_indices)), replace=False)
        mean, logvar = self.encode(self.dataset.batch(np.sort(idx)).numpy())
        return 0.5 * (mean**2 + np.exp(logvar) - 1.0 - logvar).mean(axis=0)
