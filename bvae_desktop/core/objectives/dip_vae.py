"""DIP-VAE I and II (Kumar et al. 2018, "Variational inference of disentangled latent concepts from
unlabeled observations"): the ELBO plus a penalty pulling a covariance of the codes towards the identity,

    recon + KL + λ_od·Σ_{i≠j} Cov_ij² + λ_d·Σ_i (Cov_ii − 1)²

- DIP-VAE-I:  Cov = Cov_batch[μ(x)], the covariance of the encoder means over the batch;
- DIP-VAE-II: Cov = Cov_batch[μ(x)] + mean_batch(diag(exp(logvar(x)))), the covariance of q(z) itself.

Cov_batch[μ] = E[μ μᵀ] − E[μ] E[μ]ᵀ over the batch: the batch mean subtracted, divided by B (not B − 1),
as disentanglement_lib's `compute_covariance_z_mean`. disentanglement_lib sets λ_d = factor·λ_od with
factor 10 for type I and 1 for type II; here λ_od (the main weight) and λ_d are two parameters whose
defaults follow that rule at its usual λ_od (I: 10 and 100; II: 1 and 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from bvae_desktop.core.objectives import register
from bvae_desktop.core.objectives.base import Objective, ObjectiveSpec, Param
from bvae_desktop.core.objectives.terms import ForwardPass, LossTerms, loss_terms

REFERENCE = "Kumar et al. 2018, Variational inference of disentangled latent concepts from unlabeled observations"


def batch_covariance(mean: torch.Tensor) -> torch.Tensor:
    """(D, D) covariance of the rows of `mean` (B, D): batch mean subtracted, divided by B."""
    centred = mean.float() - mean.float().mean(0, keepdim=True)
    return centred.T @ centred / mean.shape[0]


def dip_covariance(mean: torch.Tensor, logvar: torch.Tensor, kind: str) -> torch.Tensor:
    """The covariance DIP-VAE of `kind` ("i" or "ii") regularises."""
    cov = batch_covariance(mean)
    if kind == "ii":
        cov = cov + torch.diag_embed(logvar.float().exp().mean(0))
    return cov


def off_diagonal_and_diagonal(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_{i≠j} Cov_ij², Σ_i (Cov_ii − 1)²): the two unweighted parts of the penalty."""
    diagonal = torch.diagonal(cov)
    off = cov.square().sum() - diagonal.square().sum()
    return off, (diagonal - 1.0).square().sum()


class DIPVAELoss(Objective):
    """recon + KL + λ_od·off-diagonal + λ_d·diagonal; λ_od (the main weight) is read from the forward record."""

    extra_names = ("dip_penalty", "dip_off_diagonal", "dip_diagonal")
    kind = "i"

    def loss(self, batch: ForwardPass) -> LossTerms:
        recon, kl_dims, kl = loss_terms(batch.output, batch.x, batch.mean, batch.logvar, self.reconstruction)
        off, diagonal = off_diagonal_and_diagonal(dip_covariance(batch.mean, batch.logvar, self.kind))
        penalty = batch.weight * off + float(self.params["dip_lambda_d"]) * diagonal
        extras = {"dip_penalty": penalty, "dip_off_diagonal": off, "dip_diagonal": diagonal}
        return LossTerms(recon + kl + penalty, recon, kl, kl_dims, extras)


class DIPVAEIILoss(DIPVAELoss):
    kind = "ii"


def _params(lambda_od: float, lambda_d: float, factor: int) -> tuple[Param, ...]:
    return (
        Param(
            "dip_lambda_od",
            "λ_od",
            lambda_od,
            0.0,
            1e6,
            f"weight on the squared off-diagonal covariances (disentanglement_lib: 1 to 50; {lambda_od:g} here)",
            log_scale=True,
        ),
        Param(
            "dip_lambda_d",
            "λ_d",
            lambda_d,
            0.0,
            1e6,
            f"weight on the squared distance of the diagonal from 1 (disentanglement_lib: {factor}·λ_od)",
            log_scale=True,
        ),
    )


def _dip_i(params: Mapping[str, Any], reconstruction: str) -> DIPVAELoss:
    return DIPVAELoss(DIP_VAE_I, params, reconstruction)


def _dip_ii(params: Mapping[str, Any], reconstruction: str) -> DIPVAEIILoss:
    return DIPVAEIILoss(DIP_VAE_II, params, reconstruction)


DIP_VAE_I = register(
    ObjectiveSpec(
        name="dip-vae-i",
        label="DIP-VAE-I",
        summary="recon + KL + λ_od·Σ_{i≠j} Cov[μ]_ij² + λ_d·Σ_i (Cov[μ]_ii − 1)²",
        params=_params(10.0, 100.0, 10),
        main="dip_lambda_od",
        factory=_dip_i,
        reference=REFERENCE,
        rank=4,
    )
)
DIP_VAE_II = register(
    ObjectiveSpec(
        name="dip-vae-ii",
        label="DIP-VAE-II",
        summary="recon + KL + the DIP penalty on Cov[μ] + E[diag(σ²)], the covariance of q(z)",
        params=_params(1.0, 1.0, 1),
        main="dip_lambda_od",
        factory=_dip_ii,
        reference=REFERENCE,
        rank=5,
    )
)
