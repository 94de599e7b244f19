"""β-TCVAE (Chen et al. 2018, "Isolating sources of disentanglement in VAEs").

The KL term of the ELBO, averaged over the data, splits into three parts (Chen et al. eq. 2):

    E_x KL(q(z|x) || p(z)) = I(x; z)                   index-code mutual information  (MI)
                           + KL(q(z) || Π_d q(z_d))    total correlation              (TC)
                           + Σ_d KL(q(z_d) || p(z_d))  dimension-wise KL              (dim-KL)

and the loss weighs them apart: recon + α·MI + β·TC + γ·dim-KL (β on the TC is the main weight).
The aggregate posterior q(z) = 1/N Σ_n q(z|x_n) is estimated on the batch from log q(z_i|x_j) for
every pair (i, j) of the batch's codes and posteriors, with N the training-set size:

- MWS, minibatch-weighted sampling (Chen et al. §C.1):
  log q(z_i) ≈ logsumexp_j log q(z_i|x_j) − log(N·B), and the same per dimension for log q(z_id).
- MSS, minibatch-stratified sampling (Chen et al. §C.2), with B = M + 1 codes in the batch:
  q(z_i) ≈ 1/N q(z_i|x_i) + (N−M)/(N·M) q(z_i|x_k) + 1/M Σ_{j≠i,k} q(z_i|x_j), k = (i+1) mod B;
  each row of weights sums to 1 (the estimator as derived in the paper; the reference code's
  `log_importance_weight_matrix`, copied into disentangling-vae, fills columns rather than the
  diagonal, see rtqichen/beta-tcvae pull request #1, so its numbers differ from these).

With MI, TC and dim-KL all taken on the same batch estimate, MI + TC + dim-KL equals the batch mean
of log q(z_i|x_i) − log p(z_i) exactly, whichever estimator (the sum telescopes). `kl` and
`kl_per_dim` in the loss terms stay the analytic KL, for the KL plots and active units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from bvae_desktop.core.objectives import register
from bvae_desktop.core.objectives.base import Objective, ObjectiveSpec, Param
from bvae_desktop.core.objectives.terms import ForwardPass, LossTerms, log_normal, loss_terms

REFERENCE = "Chen et al. 2018, Isolating sources of disentanglement in variational autoencoders"


def log_importance_weights(batch_size: int, dataset_size: int, *, stratified: bool, device=None) -> torch.Tensor:
    """(B, B) log weights w_ij of q(z_i|x_j) in the estimate q(z_i) ≈ Σ_j w_ij q(z_i|x_j).

    MWS: every weight 1/(N·B). MSS: 1/N on the diagonal, (N−M)/(N·M) at (i, (i+1) mod B), 1/M elsewhere,
    M = B − 1. N below B (a dataset smaller than a batch) is taken as B, where both estimators stay defined.
    """
    size = max(int(dataset_size), int(batch_size), 1)
    if not stratified or batch_size == 1:  # a batch of one: MSS is 1/N on its only pair, as MWS is
        return torch.full((batch_size, batch_size), -math.log(size * batch_size), device=device)
    m = batch_size - 1
    log_other = -math.log(m)
    log_own = -math.log(size)
    log_strat = math.log(size - m) - math.log(size * m)
    own = torch.eye(batch_size, device=device)
    strat = torch.roll(own, shifts=1, dims=1)  # row i: a one at column (i + 1) mod B (B = 2: the other one)
    return log_other + own * (log_own - log_other) + strat * (log_strat - log_other)


def decomposed_kl(
    z: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    dataset_size: int,
    *,
    stratified: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(MI, TC, dim-KL), batch means in nats, from the batch's codes z and posteriors (mean, logvar).

    vmap- and compile-safe: shapes are the only Python-side values read.
    """
    z, mean, logvar = z.float(), mean.float(), logvar.float()
    batch_size = z.shape[0]
    # pair[i, j, d] = log q(z_id | x_j)
    pair = log_normal(z[:, None, :], mean[None, :, :], logvar[None, :, :])
    log_q_z_given_x = log_normal(z, mean, logvar).sum(1)  # the diagonal of pair, summed over d
    log_p_z = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    log_w = log_importance_weights(batch_size, dataset_size, stratified=stratified, device=z.device)
    log_q_z = torch.logsumexp(pair.sum(2) + log_w, dim=1)  # log Σ_j w_ij Π_d q(z_id|x_j)
    log_prod_q_zd = torch.logsumexp(pair + log_w[:, :, None], dim=1).sum(1)  # Σ_d log Σ_j w_ij q(z_id|x_j)
    mi = (log_q_z_given_x - log_q_z).mean()
    tc = (log_q_z - log_prod_q_zd).mean()
    dim_kl = (log_prod_q_zd - log_p_z).mean()
    return mi, tc, dim_kl


class BetaTCVAELoss(Objective):
    """recon + α·MI + β·TC + γ·dim-KL; β (the TC weight) is read from the forward record."""

    extra_names = ("mi", "tc", "dim_kl")

    def loss(self, batch: ForwardPass) -> LossTerms:
        recon, kl_dims, kl = loss_terms(batch.output, batch.x, batch.mean, batch.logvar, self.reconstruction)
        mi, tc, dim_kl = decomposed_kl(
            batch.z, batch.mean, batch.logvar, batch.dataset_size, stratified=bool(self.params["tcvae_mss"])
        )
        alpha = float(self.params["tcvae_alpha"])
        gamma = float(self.params["tcvae_gamma"])
        total = recon + alpha * mi + batch.weight * tc + gamma * dim_kl
        return LossTerms(total, recon, kl, kl_dims, {"mi": mi, "tc": tc, "dim_kl": dim_kl})


def _beta_tcvae(params: Mapping[str, Any], reconstruction: str) -> BetaTCVAELoss:
    return BetaTCVAELoss(BETA_TCVAE, params, reconstruction)


BETA_TCVAE = register(
    ObjectiveSpec(
        name="beta-tcvae",
        label="β-TCVAE",
        summary="recon + α·MI + β·TC + γ·dimension-wise KL, estimated on the batch",
        params=(
            Param(
                "beta",
                "β",
                4.0,
                0.0,
                1e6,
                "weight on the total correlation (Chen et al. use 6 on dSprites); 1 with α = γ = 1 is the plain ELBO",
                log_scale=True,
            ),
            Param("tcvae_alpha", "α", 1.0, 0.0, 1e6, "weight on the index-code mutual information (Chen et al.: 1)"),
            Param("tcvae_gamma", "γ", 1.0, 0.0, 1e6, "weight on the dimension-wise KL (Chen et al.: 1)"),
            Param(
                "tcvae_mss",
                "MSS",
                1,
                0,
                1,
                "estimator of q(z): 1 = minibatch-stratified sampling (as disentangling-vae), "
                "0 = minibatch-weighted sampling",
                integer=True,
            ),
        ),
        main="beta",
        factory=_beta_tcvae,
        reference=REFERENCE,
        rank=3,
    )
)
