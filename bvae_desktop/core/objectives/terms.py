"""The pieces every objective is made of: the forward-pass record, the loss terms, and the shared formulas."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

Weight = float | torch.Tensor
"""A weight as a Python float, or as a device tensor where a compiled or stacked step must not
specialise on its value (a float baked into a compiled graph would recompile at every change)."""


@dataclass
class ForwardPass:
    """Everything one training (or validation) step knows, handed to the loss in one record.

    `output` is the decoder's pre-sigmoid output, `x` the target in [0, 1], `z` the sampled code;
    `weight` is the objective's main weight now (β for the β-VAE, tunable mid-run), `schedule` its
    step-dependent values (the capacity C(t)), both floats or device tensors.
    """

    x: torch.Tensor
    output: torch.Tensor
    mean: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    step: int | torch.Tensor  # a 0-dim tensor in a compiled step; step-dependent weights belong in `schedule`
    dataset_size: int
    weight: Weight
    schedule: dict[str, Weight] = field(default_factory=dict)
    auxiliary: torch.nn.Module | None = None  # an objective's own network (FactorVAE's discriminator)


@dataclass
class LossTerms:
    """Batch means of per-image sums: the units β is defined in (design §3); `extras` are named
    objective-specific terms (total correlation, a discriminator's estimate) shown and logged as they are."""

    total: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    kl_per_dim: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


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


def log_normal(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(logvar)) elementwise, in nats."""
    return -0.5 * (torch.log(torch.tensor(2.0 * torch.pi, dtype=x.dtype, device=x.device)) + logvar) - 0.5 * (
        x - mean
    ).square() * torch.exp(-logvar)
