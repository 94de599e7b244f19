"""Training objectives as small classes (after disentangling-vae): one `__call__` each, β mutable mid-run."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bvae_desktop.core.config import TrainConfig


@dataclass
class LossTerms:
    """Batch means of per-image sums: the units β is defined in (design §3)."""

    total: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    kl_per_dim: torch.Tensor
    beta: float
    capacity: float | None = None


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-image reconstruction summed over pixels, averaged over the batch.

    `output` is the decoder's pre-sigmoid output; `target` is in [0, 1]. Bernoulli: binary
    cross-entropy with logits. Gaussian: squared error of sigmoid(output) (unit variance up to
    a constant), as disentangling-vae does for colour.
    """
    output = output.float()
    target = target.float()
    if kind == "bernoulli":
        per_pixel = F.binary_cross_entropy_with_logits(output, target, reduction="none")
    elif kind == "gaussian":
        per_pixel = (torch.sigmoid(output) - target).square()
    else:
        raise ValueError(f"unknown reconstruction {kind!r}")
    return per_pixel.flatten(1).sum(1).mean()


def kl_per_dimension(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per latent dimension, averaged over the batch (nats)."""
    mean = mean.float()
    logvar = logvar.float()
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean(0)


def capacity_at(step: int, c_max: float, c_steps: int) -> float:
    """Burgess et al.'s capacity C(t): linear from 0 to c_max over c_steps, then flat."""
    return float(c_max) * min(1.0, max(0, step) / float(c_steps))


def loss_terms(
    output: torch.Tensor, target: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, reconstruction: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(reconstruction, KL per dimension, total KL): what every objective weighs differently."""
    recon = reconstruction_loss(output, target, reconstruction)
    kl_dims = kl_per_dimension(mean, logvar)
    return recon, kl_dims, kl_dims.sum()


Weight = float | torch.Tensor
"""β (or γ) as a Python float, or as a device tensor where a compiled or stacked step must not
specialise on its value (a float baked into a compiled graph would recompile at every change)."""


class BetaHLoss:
    """Higgins et al. (2017): recon + β·KL. β = 1 is the traditional VAE."""

    name = "beta-h"

    def __init__(self, beta: float, reconstruction: str) -> None:
        self.beta = float(beta)
        self.reconstruction = reconstruction

    def __call__(
        self, output: torch.Tensor, target: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, step: int
    ) -> LossTerms:
        recon, kl_dims, kl = loss_terms(output, target, mean, logvar, self.reconstruction)
        return LossTerms(self.combine(recon, kl, self.beta, None), recon, kl, kl_dims, self.beta)

    def capacity(self, step: int) -> float | None:
        """The capacity target at `step`; None for objectives without one."""
        return None

    @staticmethod
    def combine(recon: torch.Tensor, kl: torch.Tensor, weight: Weight, capacity: Weight | None) -> torch.Tensor:
        return recon + weight * kl


class VAELoss(BetaHLoss):
    """The traditional VAE: β fixed at 1 (the study's baseline)."""

    name = "vae"

    def __init__(self, reconstruction: str) -> None:
        super().__init__(1.0, reconstruction)


class BetaBLoss:
    """Burgess et al. (2018): recon + γ·|KL − C(t)|; β here is γ, the weight on the capacity gap."""

    name = "beta-b"

    def __init__(self, gamma: float, c_max: float, c_steps: int, reconstruction: str) -> None:
        self.beta = float(gamma)
        self.c_max = float(c_max)
        self.c_steps = int(c_steps)
        self.reconstruction = reconstruction

    def __call__(
        self, output: torch.Tensor, target: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, step: int
    ) -> LossTerms:
        recon, kl_dims, kl = loss_terms(output, target, mean, logvar, self.reconstruction)
        capacity = self.capacity(step)
        return LossTerms(self.combine(recon, kl, self.beta, capacity), recon, kl, kl_dims, self.beta, capacity)

    def capacity(self, step: int) -> float:
        return capacity_at(step, self.c_max, self.c_steps)

    @staticmethod
    def combine(recon: torch.Tensor, kl: torch.Tensor, weight: Weight, capacity: Weight | None) -> torch.Tensor:
        return recon + weight * (kl - capacity).abs()


Objective = BetaHLoss | BetaBLoss


def resolve_reconstruction(config: TrainConfig, channels: int) -> str:
    """'auto' picks Bernoulli for grey/binary images and Gaussian for colour."""
    if config.reconstruction != "auto":
        return config.reconstruction
    return "bernoulli" if channels == 1 else "gaussian"


def make_objective(config: TrainConfig, channels: int) -> Objective:
    reconstruction = resolve_reconstruction(config, channels)
    if config.objective == "vae":
        return VAELoss(reconstruction)
    if config.objective == "beta-h":
        return BetaHLoss(config.beta, reconstruction)
    return BetaBLoss(config.gamma, config.c_max, config.c_steps, reconstruction)
