"""β-TCVAE, DIP-VAE I/II and FactorVAE: each against numbers worked out by hand on tiny tensors, then a short
real run through the Trainer (and, for FactorVAE, its discriminator in the checkpoint and an exact resume)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from training_fixtures import small_config, squares

from bvae_desktop.core.checkpoint import load_checkpoint
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import ConfigError
from bvae_desktop.core.objectives import (
    ForwardPass,
    main_weight,
    make_objective,
    objective_names,
    objective_spec,
    with_main_weight,
)
from bvae_desktop.core.objectives.beta_tcvae import decomposed_kl, log_importance_weights
from bvae_desktop.core.objectives.dip_vae import batch_covariance, dip_covariance
from bvae_desktop.core.objectives.factor_vae import Discriminator, FactorVAELoss, permute_dims, tc_estimate
from bvae_desktop.core.runlog import read_runlog
from bvae_desktop.core.stacked import StackedTrainer
from bvae_desktop.core.trainer import Trainer

LOG_2PI = math.log(2 * math.pi)

# a batch of 4 codes in 2 latents, with their posteriors (mean, log-variance), worked through by hand below
Z = [[0.3, -1.2], [1.1, 0.4], [-0.7, 0.9], [0.2, 0.05]]
MEAN = [[0.5, -1.0], [0.9, 0.1], [-0.4, 1.3], [0.0, -0.2]]
LOGVAR = [[-0.5, 0.2], [0.1, -1.0], [0.3, 0.0], [-0.2, 0.4]]
N_DATA = 10


def tensors(*rows):
    return [torch.tensor(r, dtype=torch.float32) for r in rows]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two threads spin against each other (the discriminator's
    1000-wide layers ran 4x slower); restored afterwards for the rest of the session."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def images(count, seed=0):
    """A fixed random image batch and decoder output: the reconstruction is not under test here."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((count, 1, 4, 4), generator=generator).round(), torch.randn((count, 1, 4, 4), generator=generator)


def batch_for(objective, z, mean, logvar, *, weight=None, auxiliary=None, dataset_size=N_DATA, pictures=None):
    """A forward record around given codes."""
    x, output = images(len(z)) if pictures is None else pictures
    return ForwardPass(
        x=x,
        output=output,
        mean=mean,
        logvar=logvar,
        z=z,
        step=0,
        dataset_size=dataset_size,
        weight=objective.beta if weight is None else weight,
        schedule=objective.schedule(0),
        auxiliary=auxiliary,
    )


def trained(config, **kwargs):
    trainer = Trainer(config, dataset=squares(), **kwargs)
    return trainer, list(trainer.steps())


def assert_loss_falls(events):
    losses = [e.loss for e in events]
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-10:]) < np.mean(losses[:5])


# ----- β-TCVAE, by hand ------------------------------------------------------------------------------------


def log_q(i, j, d):
    """log q(z_id | x_j) = log N(z_id; μ_jd, exp(logvar_jd))."""
    var = math.exp(LOGVAR[j][d])
    return -0.5 * (LOG_2PI + LOGVAR[j][d]) - 0.5 * (Z[i][d] - MEAN[j][d]) ** 2 / var


def hand_weight(i, j, batch, n, stratified):
    """w_ij in q(z_i) ≈ Σ_j w_ij q(z_i|x_j): Chen et al. §C.1 (MWS) and §C.2 (MSS, B = M + 1)."""
    if not stratified:
        return 1.0 / (n * batch)
    m = batch - 1
    if j == i:
        return 1.0 / n
    if j == (i + 1) % batch:
        return (n - m) / (n * m)
    return 1.0 / m


def hand_decomposition(stratified, n=N_DATA):
    batch, dims = len(Z), len(Z[0])
    mi = tc = dim_kl = 0.0
    for i in range(batch):
        log_q_given_x = sum(log_q(i, i, d) for d in range(dims))
        log_p = sum(-0.5 * LOG_2PI - 0.5 * Z[i][d] ** 2 for d in range(dims))
        q_z = sum(
            hand_weight(i, j, batch, n, stratified) * math.exp(sum(log_q(i, j, d) for d in range(dims)))
            for j in range(batch)
        )
        log_prod = sum(
            math.log(sum(hand_weight(i, j, batch, n, stratified) * math.exp(log_q(i, j, d)) for j in range(batch)))
            for d in range(dims)
        )
        mi += (log_q_given_x - math.log(q_z)) / batch
        tc += (math.log(q_z) - log_prod) / batch
        dim_kl += (log_prod - log_p) / batch
    return mi, tc, dim_kl


def hand_log_ratio():
    """E_batch[log q(z_i|x_i) − log p(z_i)], the single-sample estimate of the KL."""
    total = 0.0
    for i in range(len(Z)):
        for d in range(len(Z[0])):
            total += log_q(i, i, d) - (-0.5 * LOG_2PI - 0.5 * Z[i][d] ** 2)
    return total / len(Z)


@pytest.mark.parametrize("stratified", [False, True], ids=["mws", "mss"])
def test_tcvae_decomposition_matches_the_hand_computation(stratified):
    z, mean, logvar = tensors(Z, MEAN, LOGVAR)
    mi, tc, dim_kl = decomposed_kl(z, mean, logvar, N_DATA, stratified=stratified)
    want = hand_decomposition(stratified)
    assert [mi.item(), tc.item(), dim_kl.item()] == pytest.approx(want, rel=1e-5, abs=1e-5)
    # the three terms telescope to the batch's single-sample KL estimate, whichever estimator
    assert (mi + tc + dim_kl).item() == pytest.approx(hand_log_ratio(), rel=1e-5)


def test_tcvae_importance_weights():
    mws = log_importance_weights(4, 10, stratified=False).exp()
    assert torch.allclose(mws, torch.full((4, 4), 1 / 40))
    mss = log_importance_weights(4, 10, stratified=True).exp()
    want = torch.tensor([[hand_weight(i, j, 4, 10, True) for j in range(4)] for i in range(4)])
    assert torch.allclose(mss, want)
    assert torch.allclose(mss.sum(1), torch.ones(4))  # an unbiased estimate: each row's weights sum to 1
    two = log_importance_weights(2, 10, stratified=True).exp()
    assert torch.allclose(two, torch.tensor([[0.1, 0.9], [0.9, 0.1]]))
    assert torch.isfinite(log_importance_weights(4, 2, stratified=True)).all()  # N < B: taken as B
    assert torch.allclose(log_importance_weights(1, 10, stratified=True).exp(), torch.tensor([[0.1]]))


def test_tcvae_mutual_information_of_identical_posteriors():
    """Every image with the same posterior: q(z) = q(z|x), so MSS finds MI = 0; MWS's q(z) carries a
    1/N for every batch member and finds log N (its known bias on small batches)."""
    z = torch.tensor([[0.1, -0.3], [0.5, 0.2], [-0.4, 0.8]])
    mean, logvar = torch.full((3, 2), 0.2), torch.full((3, 2), -0.3)
    mss = decomposed_kl(z, mean, logvar, 1000, stratified=True)
    mws = decomposed_kl(z, mean, logvar, 1000, stratified=False)
    assert mss[0].item() == pytest.approx(0.0, abs=1e-5) and mss[1].item() == pytest.approx(0.0, abs=1e-5)
    assert mws[0].item() == pytest.approx(math.log(1000), rel=1e-5)


@pytest.mark.parametrize("mss", [0, 1])
def test_tcvae_loss_weighs_each_term(mss):
    params = {"tcvae_alpha": 0.5, "tcvae_gamma": 2.0, "tcvae_mss": mss}
    objective = make_objective(TrainConfig(objective="beta-tcvae", beta=3.0, objective_params=params), 1)
    assert objective.beta == 3.0 and objective.extra_names == ("mi", "tc", "dim_kl")
    z, mean, logvar = tensors(Z, MEAN, LOGVAR)
    terms = objective(batch_for(objective, z, mean, logvar))
    mi, tc, dim_kl = hand_decomposition(bool(mss))
    assert terms.extras["mi"].item() == pytest.approx(mi, rel=1e-5, abs=1e-5)
    assert terms.extras["tc"].item() == pytest.approx(tc, rel=1e-5, abs=1e-5)
    assert terms.extras["dim_kl"].item() == pytest.approx(dim_kl, rel=1e-5, abs=1e-5)
    want = terms.recon.item() + 0.5 * mi + 3.0 * tc + 2.0 * dim_kl
    assert terms.total.item() == pytest.approx(want, rel=1e-5)
    # kl stays the analytic KL of the posteriors, for the plots and active units
    analytic = [
        sum(0.5 * (MEAN[i][d] ** 2 + math.exp(LOGVAR[i][d]) - 1 - LOGVAR[i][d]) for i in range(4)) / 4 for d in range(2)
    ]
    assert terms.kl_per_dim.tolist() == pytest.approx(analytic, rel=1e-5)
    assert terms.kl.item() == pytest.approx(sum(analytic), rel=1e-5)
    # the main weight comes from the record (a tensor when compiled or stacked), not from the params
    as_tensor = objective(batch_for(objective, z, mean, logvar, weight=torch.tensor(5.0)))
    assert as_tensor.total.item() == pytest.approx(want + 2.0 * tc, rel=1e-5)


def test_tcvae_with_unit_alpha_and_gamma_is_the_elbo_plus_extra_tc():
    objective = make_objective(TrainConfig(objective="beta-tcvae", beta=6.0), 1)
    assert objective.params == {"beta": 6.0, "tcvae_alpha": 1.0, "tcvae_gamma": 1.0, "tcvae_mss": 1}
    z, mean, logvar = tensors(Z, MEAN, LOGVAR)
    terms = objective(batch_for(objective, z, mean, logvar))
    _mi, tc, _dim_kl = hand_decomposition(True)
    want = terms.recon.item() + hand_log_ratio() + (6.0 - 1.0) * tc
    assert terms.total.item() == pytest.approx(want, rel=1e-5)


def test_tcvae_and_dip_losses_are_vmap_safe():
    """The stacked trainer calls the loss inside torch.vmap, one member per slice: same numbers as one by one."""
    generator = torch.Generator().manual_seed(3)
    members = 2
    z, mean, logvar = (torch.randn((members, 5, 3), generator=generator) for _ in range(3))
    weights = torch.tensor([2.0, 7.0])
    pictures = images(5)  # drawn outside vmap (random ops inside it are refused)
    for name in ("beta-tcvae", "dip-vae-i", "dip-vae-ii"):
        objective = make_objective(TrainConfig(objective=name), 1)

        def member(z_, mean_, logvar_, weight_, objective=objective):
            record = batch_for(objective, z_, mean_, logvar_, weight=weight_, pictures=pictures)
            terms = objective(record)
            return terms.total, torch.stack([terms.extras[k] for k in objective.extra_names])

        batched_total, batched_extras = torch.vmap(member)(z, mean, logvar, weights)
        for k in range(members):
            total, extras = member(z[k], mean[k], logvar[k], weights[k])
            assert torch.allclose(batched_total[k], total, rtol=1e-5), name
            assert torch.allclose(batched_extras[k], extras, rtol=1e-5, atol=1e-6), name


# ----- DIP-VAE, by hand ------------------------------------------------------------------------------------

DIP_MEAN = [[1.0, 2.0], [3.0, 0.0], [2.0, 4.0]]
DIP_VAR = [[1.0, 2.0], [0.5, 1.0], [1.5, 3.0]]  # exp(logvar): column means 1 and 2


def hand_covariance(rows):
    count, dims = len(rows), len(rows[0])
    centre = [sum(r[d] for r in rows) / count for d in range(dims)]
    return [
        [sum((r[a] - centre[a]) * (r[b] - centre[b]) for r in rows) / count for b in range(dims)] for a in range(dims)
    ]


def hand_penalties(cov):
    dims = len(cov)
    off = sum(cov[a][b] ** 2 for a in range(dims) for b in range(dims) if a != b)
    diag = sum((cov[a][a] - 1) ** 2 for a in range(dims))
    return off, diag


def test_dip_covariance_subtracts_the_batch_mean_and_divides_by_the_batch_size():
    cov = hand_covariance(DIP_MEAN)
    # centred rows (-1, 0), (1, -2), (0, 2), summed outer products over 3
    assert sum(cov, []) == pytest.approx([2 / 3, -2 / 3, -2 / 3, 8 / 3])
    mean = torch.tensor(DIP_MEAN)
    assert batch_covariance(mean).flatten().tolist() == pytest.approx(sum(cov, []), rel=1e-6)
    logvar = torch.tensor(DIP_VAR).log()
    assert dip_covariance(mean, logvar, "i").flatten().tolist() == pytest.approx(sum(cov, []), rel=1e-6)
    type_ii = [cov[0][0] + 1.0, cov[0][1], cov[1][0], cov[1][1] + 2.0]  # + the mean posterior variances (1, 2)
    assert dip_covariance(mean, logvar, "ii").flatten().tolist() == pytest.approx(type_ii, rel=1e-6)


@pytest.mark.parametrize(
    ("name", "extra_var", "od", "d"),
    [("dip-vae-i", (0.0, 0.0), 10.0, 100.0), ("dip-vae-ii", (1.0, 2.0), 1.0, 1.0)],
)
def test_dip_penalty_by_hand(name, extra_var, od, d):
    cov = hand_covariance(DIP_MEAN)
    cov[0][0] += extra_var[0]
    cov[1][1] += extra_var[1]
    off, diag = hand_penalties(cov)
    if name == "dip-vae-i":
        assert (off, diag) == pytest.approx((8 / 9, 26 / 9))
    else:
        assert (off, diag) == pytest.approx((8 / 9, 125 / 9))
    objective = make_objective(TrainConfig(objective=name), 1)
    assert objective.params == {"dip_lambda_od": od, "dip_lambda_d": d} and objective.beta == od
    mean, logvar = torch.tensor(DIP_MEAN), torch.tensor(DIP_VAR).log()
    terms = objective(batch_for(objective, mean, mean, logvar))
    assert terms.extras["dip_off_diagonal"].item() == pytest.approx(off, rel=1e-5)
    assert terms.extras["dip_diagonal"].item() == pytest.approx(diag, rel=1e-5)
    assert terms.extras["dip_penalty"].item() == pytest.approx(od * off + d * diag, rel=1e-5)
    assert terms.total.item() == pytest.approx(terms.recon.item() + terms.kl.item() + od * off + d * diag, rel=1e-5)
    # λ_od is the main weight, read from the record; λ_d from the params
    custom = make_objective(
        TrainConfig(objective=name, objective_params={"dip_lambda_od": 3.0, "dip_lambda_d": 0.5}), 1
    )
    weighted = custom(batch_for(custom, mean, mean, logvar, weight=torch.tensor(4.0)))
    assert weighted.extras["dip_penalty"].item() == pytest.approx(4.0 * off + 0.5 * diag, rel=1e-5)


# ----- FactorVAE, by hand ----------------------------------------------------------------------------------


def factor_objective(**params) -> FactorVAELoss:
    objective = make_objective(TrainConfig(objective="factor-vae", objective_params=params), 1)
    assert isinstance(objective, FactorVAELoss)
    return objective


def test_factor_discriminator_shape_follows_the_paper():
    torch.manual_seed(0)
    network = factor_objective().auxiliary_network(5)
    linears = [m for m in network.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 1000)] + [(1000, 1000)] * 5 + [(1000, 2)]
    slopes = {m.negative_slope for m in network.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.2}
    optimizer = factor_objective(factor_d_lr=3e-4).auxiliary_optimizer(network, fused=False)
    assert optimizer.param_groups[0]["lr"] == 3e-4 and optimizer.param_groups[0]["betas"] == (0.5, 0.9)


def test_factor_tc_estimate_from_known_logits():
    objective = factor_objective(factor_gamma=7.0)
    assert objective.beta == 7.0 and objective.extra_names == ("tc_estimate", "d_accuracy")
    z, mean, logvar = tensors(Z, MEAN, LOGVAR)
    # the discriminator's last layer set so its logits are constant: TC = 1.5 − (−0.5) = 2
    torch.manual_seed(0)
    network = Discriminator(2, hidden_units=8, hidden_layers=2)
    with torch.no_grad():
        network.logits.weight.zero_()
        network.logits.bias.copy_(torch.tensor([1.5, -0.5]))
    terms = objective(batch_for(objective, z, mean, logvar, auxiliary=network))
    assert terms.extras["tc_estimate"].item() == pytest.approx(2.0)
    assert terms.total.item() == pytest.approx(terms.recon.item() + terms.kl.item() + 7.0 * 2.0, rel=1e-6)
    assert terms.extras["d_accuracy"].item() == pytest.approx(0.5)  # calls every code joint: right on half
    # a linear discriminator: logits z W^T + b worked out row by row
    linear = torch.nn.Linear(2, 2)
    w, b = [[2.0, -1.0], [0.5, 3.0]], [0.25, -0.75]
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(w))
        linear.bias.copy_(torch.tensor(b))
    by_hand = sum(
        (w[0][0] * zi[0] + w[0][1] * zi[1] + b[0]) - (w[1][0] * zi[0] + w[1][1] * zi[1] + b[1]) for zi in Z
    ) / len(Z)
    terms = objective(batch_for(objective, z, mean, logvar, auxiliary=linear, weight=torch.tensor(3.0)))
    assert terms.extras["tc_estimate"].item() == pytest.approx(by_hand, rel=1e-6)
    assert tc_estimate(linear(z)).item() == pytest.approx(by_hand, rel=1e-6)
    assert terms.total.item() == pytest.approx(terms.recon.item() + terms.kl.item() + 3.0 * by_hand, rel=1e-5)
    with pytest.raises(ValueError, match="discriminator"):
        objective(batch_for(objective, z, mean, logvar))


def test_permute_dims_shuffles_each_column_within_itself():
    z = torch.arange(64 * 5, dtype=torch.float32).reshape(64, 5)
    shuffled = permute_dims(z, torch.Generator().manual_seed(1))
    assert torch.equal(shuffled.sort(0).values, z.sort(0).values)  # each column keeps its multiset of values
    assert not torch.equal(shuffled, z)
    orders = [tuple(((shuffled[:, d] - d) / 5).long().tolist()) for d in range(5)]
    assert len(set(orders)) == 5  # the columns are shuffled independently (differently)
    again = permute_dims(z, torch.Generator().manual_seed(1))
    assert torch.equal(again, shuffled)


def test_the_permutation_stream_is_seeded_and_travels_in_the_state_dict():
    a = Discriminator(3, hidden_units=4, hidden_layers=1, permutation_seed=42)
    b = Discriminator(3, hidden_units=4, hidden_layers=1, permutation_seed=42)
    z = torch.randn(16, 3)
    first = [permute_dims(z, a.permutation_generator(z.device)) for _ in range(3)]
    assert not torch.equal(first[0], first[1])  # each draw is a new permutation
    assert all(torch.equal(x, permute_dims(z, b.permutation_generator(z.device))) for x in first)
    state = a.state_dict()
    assert state["_extra_state"].tolist() == [42, 3]
    c = Discriminator(3, hidden_units=4, hidden_layers=1, permutation_seed=7)
    c.load_state_dict(state)
    assert torch.equal(
        permute_dims(z, c.permutation_generator(z.device)), permute_dims(z, a.permutation_generator(z.device))
    )


def test_the_discriminator_learns_to_tell_joint_codes_from_permuted_ones():
    """The paper's layers at a tenth of the width (the shape is tested above; this tests the training)."""
    objective = factor_objective(factor_d_lr=1e-3)
    torch.manual_seed(0)
    network = Discriminator(2, hidden_units=100, permutation_seed=5)
    optimizer = objective.auxiliary_optimizer(network, fused=False)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        first = torch.randn((64, 1), generator=generator)
        z = torch.cat([first, first], dim=1)  # joint codes on the diagonal; permuted ones off it
        optimizer.zero_grad(set_to_none=True)
        loss = objective.auxiliary_loss(z, network)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(2), abs=0.05)  # chance at the start
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert network.permutations_drawn == 40


# ----- the registry and validation -------------------------------------------------------------------------


def test_the_new_objectives_are_registered_in_order():
    names = objective_names()
    assert names[3:7] == ("beta-tcvae", "dip-vae-i", "dip-vae-ii", "factor-vae")
    tcvae = objective_spec("beta-tcvae")
    assert tcvae.main == "beta"
    assert [p.name for p in tcvae.params] == ["beta", "tcvae_alpha", "tcvae_gamma", "tcvae_mss"]
    assert tcvae.param("tcvae_mss").integer and tcvae.vmap_stackable
    for name in ("dip-vae-i", "dip-vae-ii"):
        spec = objective_spec(name)
        assert spec.main == "dip_lambda_od" and [p.name for p in spec.params] == ["dip_lambda_od", "dip_lambda_d"]
    assert objective_spec("dip-vae-i").param("dip_lambda_d").default == 100.0
    assert objective_spec("dip-vae-ii").param("dip_lambda_d").default == 1.0
    factor = objective_spec("factor-vae")
    assert factor.main == "factor_gamma" and not factor.vmap_stackable
    assert [p.name for p in factor.params] == ["factor_gamma", "factor_d_lr"]
    assert [objective_spec(n).rank for n in names[3:7]] == [3, 4, 5, 6]


@pytest.mark.parametrize(
    ("objective", "params", "message"),
    [
        ("dip-vae-i", {"dip_lambda_od": -1}, "dip_lambda_od must be between 0 and 1e"),
        ("dip-vae-ii", {"dip_lambda_d": float("nan")}, "dip_lambda_d must be between"),
        ("beta-tcvae", {"tcvae_mss": 2}, "tcvae_mss must be between 0 and 1"),
        ("beta-tcvae", {"tcvae_mss": 0.5}, "tcvae_mss must be an integer"),
        ("beta-tcvae", {"tcvae_alpha": -0.1}, "tcvae_alpha must be between"),
        ("beta-tcvae", {"tcvae_gamma": 2e6}, "tcvae_gamma must be between"),
        ("beta-tcvae", {"beta": 2.0}, "'beta' is not a parameter of beta-tcvae"),  # β lives in its own field
        ("factor-vae", {"factor_d_lr": 0.0}, "factor_d_lr must be between 1e-06 and 1"),
        ("factor-vae", {"factor_gamma": "10"}, "factor_gamma must be a number"),
        ("factor-vae", {"dip_lambda_od": 1.0}, "'dip_lambda_od' is not a parameter of factor-vae"),
    ],
)
def test_objective_params_are_validated(objective, params, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(objective=objective, objective_params=params).validate()


def test_in_range_objective_params_validate():
    TrainConfig(objective="beta-tcvae", beta=6.0, objective_params={"tcvae_mss": 0, "tcvae_alpha": 0.0}).validate()
    TrainConfig(objective="dip-vae-ii", objective_params={"dip_lambda_od": 5.0, "dip_lambda_d": 5.0}).validate()
    TrainConfig(objective="factor-vae", objective_params={"factor_gamma": 35.0, "factor_d_lr": 1e-4}).validate()


# ----- real runs through the Trainer -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "extras"),
    [
        ("beta-tcvae", {"mi", "tc", "dim_kl"}),
        ("dip-vae-i", {"dip_penalty", "dip_off_diagonal", "dip_diagonal"}),
        ("dip-vae-ii", {"dip_penalty", "dip_off_diagonal", "dip_diagonal"}),
    ],
)
def test_a_short_run_learns_and_reports_its_terms(name, extras, tmp_path):
    trainer, events = trained(small_config(objective=name, steps=60, lr=2e-3, checkpoint_every=60), run_dir=tmp_path)
    assert_loss_falls(events)
    assert all(set(e.extras) == extras for e in events)
    assert all(math.isfinite(v) for e in events for v in e.extras.values())
    history = read_runlog(tmp_path / "runlog.h5")  # the run log keeps each term by name, every step
    for extra in extras:
        np.testing.assert_allclose(history.train[extra], [e.extras[extra] for e in events], rtol=1e-6)
    if name == "beta-tcvae":  # MI + TC + dim-KL: the batch estimate of the KL, near the analytic one
        last = events[-1]
        assert sum(last.extras.values()) == pytest.approx(last.kl, abs=2.0)
    assert trainer.auxiliary is None


def test_tcvae_and_dip_stack_under_vmap_as_they_train_alone():
    data = squares()
    for name in ("beta-tcvae", "dip-vae-ii"):
        configs = [
            with_main_weight(small_config(objective=name, steps=4, seed=seed), weight)
            for seed, weight in ((0, 2.0), (1, 6.0))
        ]
        assert [main_weight(c) for c in configs] == [2.0, 6.0]
        stack = StackedTrainer(configs, dataset=data, mode="vmap")
        seen: dict[int, list[float]] = {0: [], 1: []}
        extras: dict[int, dict[str, float]] = {}
        for index, event in stack.steps():
            seen[index].append(event.loss)
            extras[index] = event.extras
        for index, config in enumerate(configs):
            alone = trained(config)[1]
            np.testing.assert_allclose(seen[index], [e.loss for e in alone], rtol=2e-4)
            assert extras[index] == pytest.approx(alone[-1].extras, rel=2e-3, abs=1e-4)


def test_factor_vae_trains_and_keeps_its_discriminator_in_the_checkpoint(tmp_path):
    config = small_config(objective="factor-vae", steps=40, lr=2e-3, checkpoint_every=20)
    trainer, events = trained(config, run_dir=tmp_path / "run")
    assert_loss_falls(events)
    assert all(set(e.extras) == {"tc_estimate", "d_accuracy"} for e in events)
    assert all(0.0 <= e.extras["d_accuracy"] <= 1.0 for e in events)
    path = tmp_path / "run" / "checkpoint.pt"
    checkpoint = load_checkpoint(path)  # weights_only loading
    assert checkpoint.auxiliary_state is not None and checkpoint.auxiliary_optimizer_state is not None
    assert checkpoint.auxiliary_state["logits.weight"].shape == (2, 1000)
    assert checkpoint.auxiliary_state["body.0.weight"].shape == (1000, 4)
    seed, drawn = checkpoint.auxiliary_state["_extra_state"].tolist()
    assert drawn == 40 and seed == trainer.auxiliary.permutation_seed
    for key, value in trainer.auxiliary.state_dict().items():
        assert torch.equal(checkpoint.auxiliary_state[key], value), key
    torch.load(path, map_location="cpu", weights_only=True)  # nothing in it needs unpickling code


def test_factor_vae_resumes_exactly(tmp_path):
    config = small_config(objective="factor-vae", steps=20)
    full = [e.loss for e in trained(config)[1]]
    first = Trainer(config, dataset=squares(), run_dir=tmp_path / "a")
    head = []
    for event in first.steps():
        head.append(event.loss)
        if event.step == 10:
            first.stop()
    assert len(head) == 10
    resumed = Trainer(config, dataset=squares(), run_dir=tmp_path / "a", resume=tmp_path / "a" / "checkpoint.pt")
    assert resumed.step == 10 and resumed.auxiliary.permutations_drawn == 10
    tail = [e.loss for e in resumed.steps()]
    assert head + tail == full


def test_factor_vae_stacks_member_by_member():
    data = squares()
    configs = [small_config(objective="factor-vae", steps=2, seed=seed) for seed in (0, 1)]
    with pytest.raises(ConfigError, match="trains a network of its own"):
        StackedTrainer(configs, dataset=data, mode="vmap")
    stack = StackedTrainer(configs, dataset=data, mode="auto")
    assert stack.mode == "loop"
    seen: dict[int, list[float]] = {0: [], 1: []}
    for index, event in stack.steps():
        seen[index].append(event.loss)
    for index, config in enumerate(configs):
        assert seen[index] == [e.loss for e in trained(config)[1]]
