"""Capacity β-VAE (Burgess et al. 2018): recon + γ·|KL − C(t)|, C rising linearly to C_max over N steps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bvae_desktop.core.objectives import register
from bvae_desktop.core.objectives.base import Objective, ObjectiveSpec, Param
from bvae_desktop.core.objectives.terms import ForwardPass, LossTerms, capacity_at, loss_terms


class BetaBLoss(Objective):
    """The weight (`beta` here) is γ, on the distance of the KL from the capacity target C(t)."""

    def schedule(self, step: int) -> dict[str, float]:
        return {"capacity": capacity_at(step, self.params["c_max"], self.params["c_steps"])}

    def loss(self, batch: ForwardPass) -> LossTerms:
        recon, kl_dims, kl = loss_terms(batch.output, batch.x, batch.mean, batch.logvar, self.reconstruction)
        total = recon + batch.weight * (kl - batch.schedule["capacity"]).abs()
        return LossTerms(total, recon, kl, kl_dims)


def _beta_b(params: Mapping[str, Any], reconstruction: str) -> BetaBLoss:
    return BetaBLoss(CAPACITY, params, reconstruction)


CAPACITY = register(
    ObjectiveSpec(
        name="beta-b",
        label="Capacity β-VAE",
        summary="recon + γ·|KL − C(t)|, C rising to C_max over N steps",
        params=(
            Param("gamma", "γ", 1000.0, 0.0, 1e6, "weight on |KL − C| (Burgess et al.: 1000)", log_scale=True),
            Param("c_max", "C_max", 25.0, 0.0, 1e5, "final capacity C in nats (Burgess et al.: 25 on dSprites)"),
            Param("c_steps", "C steps", 100_000, 1, 1e9, "steps over which C rises to C_max", integer=True),
        ),
        main="gamma",
        factory=_beta_b,
        reference="Burgess et al. 2018, Understanding disentangling in β-VAE",
        rank=2,
    )
)
