"""The traditional VAE and the β-VAE of Higgins et al. (2017): recon + β·KL (β = 1 is the VAE)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bvae_desktop.core.objectives import register
from bvae_desktop.core.objectives.base import Objective, ObjectiveSpec, Param
from bvae_desktop.core.objectives.terms import ForwardPass, LossTerms, loss_terms

BETA = Param(
    "beta",
    "β",
    4.0,
    0.0,
    1e6,
    "weight on the KL summed over latents (Higgins et al.: 4 on dSprites); 1 is the plain ELBO",
    log_scale=True,
)
REFERENCE = "Higgins et al. 2017, β-VAE: Learning basic visual concepts with a constrained variational framework"


class BetaHLoss(Objective):
    """recon + β·KL, with β read from the forward record (so it can be a tensor)."""

    def loss(self, batch: ForwardPass) -> LossTerms:
        recon, kl_dims, kl = loss_terms(batch.output, batch.x, batch.mean, batch.logvar, self.reconstruction)
        return LossTerms(recon + batch.weight * kl, recon, kl, kl_dims)


class VAELoss(BetaHLoss):
    """The traditional VAE: β fixed at 1 (the study's baseline)."""


def _vae(params: Mapping[str, Any], reconstruction: str) -> VAELoss:
    return VAELoss(VAE, params, reconstruction)


def _beta_h(params: Mapping[str, Any], reconstruction: str) -> BetaHLoss:
    return BetaHLoss(BETA_VAE, params, reconstruction)


VAE = register(
    ObjectiveSpec(
        name="vae",
        label="VAE (β = 1)",
        summary="the plain ELBO: recon + KL",
        params=(BETA,),
        main="beta",
        factory=_vae,
        fixed={"beta": 1.0},
        reference="Kingma & Welling 2014, Auto-encoding variational Bayes",
        rank=0,
    )
)
BETA_VAE = register(
    ObjectiveSpec(
        name="beta-h",
        label="β-VAE",
        summary="recon + β·KL",
        params=(BETA,),
        main="beta",
        factory=_beta_h,
        reference=REFERENCE,
        rank=1,
    )
)
