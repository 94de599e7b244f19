"""FactorVAE (Kim & Mnih 2018, "Disentangling by factorising"): recon + KL + γ·TC, the total correlation
estimated by a discriminator D trained alongside the model (the density-ratio trick):

    TC(z) ≈ E_q(z)[log D(z)_joint / D(z)_product] = mean_batch(D(z)[:, 0] − D(z)[:, 1])

with D's two softmax logits (class 0: a code of q(z); class 1: a code of Π_d q(z_d), made by permuting
each latent dimension independently across the batch). D: 6 fully connected layers of 1000 units with
LeakyReLU(0.2), then 2 logits (disentanglement_lib's `fc_discriminator`, after the paper's appendix A);
trained with Adam(lr, betas (0.5, 0.9)) on 0.5·(CE(D(z), 0) + CE(D(permute_dims(z)), 1)), right after
each model step, on that step's detached codes (the paper and disentangling-vae draw the permuted codes
from a second batch; the trainer hands one batch to both, as disentanglement_lib does). The model's loss
also puts gradients into D's weights; the trainer drops them before D's own step.

Extras: `tc_estimate` (nats) and `d_accuracy`, D's balanced accuracy on the batch's codes and on a fixed
shuffle of them (column d rolled by d + 1 rows: a deterministic stand-in for the permutation, so the loss
stays free of randomness), computed without gradients and left on the device (no host read).

Reproducible permutations: the discriminator owns its permutation stream. At creation it draws a base
seed from torch's global generator, which the trainer seeds with the run's seed just before building the
model, so the base follows from the run's seed; each draw then seeds a fresh generator on the codes'
device with (base seed, number of draws so far). Both numbers are the discriminator's extra state, in its
state_dict, so a checkpoint carries them and a resumed run continues the same stream. Nothing is read
back from the device.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bvae_desktop.core.objectives import register
from bvae_desktop.core.objectives.base import Objective, ObjectiveSpec, Param
from bvae_desktop.core.objectives.terms import ForwardPass, LossTerms, loss_terms

REFERENCE = "Kim & Mnih 2018, Disentangling by factorising"
HIDDEN_UNITS = 1000
HIDDEN_LAYERS = 6
NEGATIVE_SLOPE = 0.2
ADAM_BETAS = (0.5, 0.9)
_SEED_LIMIT = 2**62
_SEED_STRIDE = 1_000_003


class Discriminator(nn.Module):
    """latent → [1000, LeakyReLU(0.2)] × 6 → 2 logits (class 0: from q(z), class 1: permuted)."""

    def __init__(
        self,
        latent_dim: int,
        *,
        hidden_units: int = HIDDEN_UNITS,
        hidden_layers: int = HIDDEN_LAYERS,
        permutation_seed: int = 0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = latent_dim
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden_units), nn.LeakyReLU(NEGATIVE_SLOPE)]
            width = hidden_units
        self.body = nn.Sequential(*layers)
        self.logits = nn.Linear(width, 2)
        self.permutation_seed = int(permutation_seed) % _SEED_LIMIT
        self.permutations_drawn = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.logits(self.body(z))

    def permutation_generator(self, device: torch.device) -> torch.Generator:
        """A generator on `device` for the next permutation, seeded from (base seed, draws so far)."""
        generator = torch.Generator(device=device)
        generator.manual_seed((self.permutation_seed + _SEED_STRIDE * self.permutations_drawn) % _SEED_LIMIT)
        self.permutations_drawn += 1
        return generator

    # the permutation stream's position travels with the weights (a CPU tensor: no device read to save it)
    def get_extra_state(self) -> torch.Tensor:
        return torch.tensor([self.permutation_seed, self.permutations_drawn], dtype=torch.int64)

    def set_extra_state(self, state: Any) -> None:
        seed, drawn = (int(v) for v in torch.as_tensor(state).tolist())
        self.permutation_seed, self.permutations_drawn = seed, drawn


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each latent dimension (column) of z (B, D) shuffled independently across the batch: codes of Π_d q(z_d)."""
    keys = torch.rand(z.shape, generator=generator, device=z.device)
    order = keys.argsort(dim=0, stable=True)
    return z.gather(0, order)


def _rolled_dims(z: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for `permute_dims` (column d rolled by d + 1 rows): no randomness, for diagnostics."""
    batch, dims = z.shape
    rows = torch.arange(batch, device=z.device)[:, None]
    shifts = torch.arange(1, dims + 1, device=z.device)[None, :]
    return z.gather(0, (rows + shifts) % batch)


def tc_estimate(logits: torch.Tensor) -> torch.Tensor:
    """The density-ratio estimate of the total correlation: mean of logit(joint) − logit(product)."""
    return (logits[:, 0] - logits[:, 1]).mean()


class FactorVAELoss(Objective):
    """recon + KL + γ·TC_est; γ (the main weight) is read from the forward record, D from `batch.auxiliary`."""

    extra_names = ("tc_estimate", "d_accuracy")

    def loss(self, batch: ForwardPass) -> LossTerms:
        discriminator = batch.auxiliary
        if discriminator is None:
            raise ValueError("FactorVAE's loss needs its discriminator (ForwardPass.auxiliary)")
        recon, kl_dims, kl = loss_terms(batch.output, batch.x, batch.mean, batch.logvar, self.reconstruction)
        z = batch.z.float()
        logits = discriminator(z)
        tc = tc_estimate(logits)
        with torch.no_grad():  # D's balanced accuracy on these codes and a fixed shuffle of them: a device tensor
            shuffled = discriminator(_rolled_dims(z.detach()))
            joint_right = (logits[:, 0] >= logits[:, 1]).float().mean()
            accuracy = 0.5 * (joint_right + (shuffled[:, 1] > shuffled[:, 0]).float().mean())
        total = recon + kl + batch.weight * tc
        return LossTerms(total, recon, kl, kl_dims, {"tc_estimate": tc, "d_accuracy": accuracy})

    def auxiliary_network(self, latent_dim: int) -> Discriminator:
        seed = int(torch.randint(0, _SEED_LIMIT, (1,)).item())  # from torch's global generator (CPU): the run's seed
        return Discriminator(latent_dim, permutation_seed=seed)

    def auxiliary_optimizer(self, network: nn.Module, *, fused: bool) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            network.parameters(), lr=float(self.params["factor_d_lr"]), betas=ADAM_BETAS, fused=True if fused else None
        )

    def auxiliary_loss(self, z: torch.Tensor, network: nn.Module) -> torch.Tensor:
        """0.5·(CE(D(z), joint) + CE(D(permute_dims(z)), product)) on detached codes."""
        z = z.detach().float()
        generator = network.permutation_generator(z.device) if isinstance(network, Discriminator) else None
        both = torch.cat([z, permute_dims(z, generator)])
        labels = torch.arange(2, device=z.device).repeat_interleave(z.shape[0])  # B zeros (joint), B ones
        return F.cross_entropy(network(both), labels)  # the mean over both halves: 0.5·(CE_joint + CE_product)


def _factor(params: Mapping[str, Any], reconstruction: str) -> FactorVAELoss:
    return FactorVAELoss(FACTOR_VAE, params, reconstruction)


FACTOR_VAE = register(
    ObjectiveSpec(
        name="factor-vae",
        label="FactorVAE",
        summary="recon + KL + γ·TC, the total correlation estimated by a discriminator trained alongside",
        params=(
            Param(
                "factor_gamma",
                "γ",
                10.0,
                0.0,
                1e6,
                "weight on the discriminator's total-correlation estimate (Kim & Mnih: 35-40 on dSprites)",
                log_scale=True,
            ),
            Param(
                "factor_d_lr",
                "D learning rate",
                1e-4,
                1e-6,
                1.0,
                "the discriminator's Adam learning rate (betas 0.5, 0.9; Kim & Mnih: 1e-4)",
                log_scale=True,
            ),
        ),
        main="factor_gamma",
        factory=_factor,
        vmap_stackable=False,
        reference=REFERENCE,
        rank=6,
    )
)
