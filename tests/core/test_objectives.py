import math

import pytest
import torch

from bvae_desktop.core.config import TrainConfig, beta_from_normalised, beta_normalised
from bvae_desktop.core.errors import ConfigError
from bvae_desktop.core.objectives import (
    ForwardPass,
    capacity_at,
    kl_per_dimension,
    main_weight,
    make_objective,
    objective_names,
    objective_spec,
    reconstruction_loss,
    with_main_weight,
)
from bvae_desktop.core.objectives.beta_vae import BetaHLoss, VAELoss


def record(output, target, mean, logvar, objective, step=0) -> ForwardPass:
    z = mean  # these objectives do not read z
    return ForwardPass(target, output, mean, logvar, z, step, 1000, objective.beta, objective.schedule(step))


def test_bernoulli_reconstruction_of_zero_logits_is_ln2_per_pixel():
    target = torch.randint(0, 2, (3, 1, 4, 4)).float()
    value = reconstruction_loss(torch.zeros(3, 1, 4, 4), target, "bernoulli")
    assert value.item() == pytest.approx(16 * math.log(2), rel=1e-6)


def test_gaussian_reconstruction_is_summed_squared_error_of_sigmoid():
    output = torch.zeros(2, 3, 2, 2)  # sigmoid -> 0.5 everywhere
    target = torch.ones(2, 3, 2, 2)
    assert reconstruction_loss(output, target, "gaussian").item() == pytest.approx(12 * 0.25)


def test_kl_per_dimension_matches_closed_form():
    mean = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [0.0, math.log(4.0)]])
    kl = kl_per_dimension(mean, logvar)
    assert kl[0].item() == pytest.approx(0.5)
    assert kl[1].item() == pytest.approx(0.5 * (4.0 - 1.0 - math.log(4.0)))


def test_beta_h_weights_kl_by_beta_and_vae_is_beta_one():
    torch.manual_seed(0)
    output, target = torch.randn(4, 1, 8, 8), torch.rand(4, 1, 8, 8).round()
    mean, logvar = torch.randn(4, 3), torch.randn(4, 3)
    beta_h = make_objective(TrainConfig(objective="beta-h", beta=4.0), 1)
    vae = make_objective(TrainConfig(objective="vae", beta=4.0), 1)
    h = beta_h(record(output, target, mean, logvar, beta_h))
    v = vae(record(output, target, mean, logvar, vae))
    assert h.total.item() == pytest.approx(h.recon.item() + 4.0 * h.kl.item(), rel=1e-6)
    assert v.total.item() == pytest.approx(v.recon.item() + v.kl.item(), rel=1e-6)
    assert h.kl.item() == pytest.approx(h.kl_per_dim.sum().item(), rel=1e-6)


def test_capacity_schedule_rises_linearly_then_holds():
    assert capacity_at(0, 25.0, 100) == 0.0
    assert capacity_at(50, 25.0, 100) == pytest.approx(12.5)
    assert capacity_at(100, 25.0, 100) == pytest.approx(25.0)
    assert capacity_at(1000, 25.0, 100) == pytest.approx(25.0)


def test_beta_b_penalises_distance_from_capacity():
    output, target = torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    mean, logvar = torch.ones(2, 2), torch.zeros(2, 2)  # KL = 0.5 per dim, 1.0 total
    loss = make_objective(TrainConfig(objective="beta-b", gamma=10.0, c_max=4.0, c_steps=4), 1)
    assert loss.beta == 10.0  # the main weight of the capacity objective is γ
    at_start = loss(record(output, target, mean, logvar, loss, step=0))
    at_half = loss(record(output, target, mean, logvar, loss, step=2))
    assert loss.schedule(0) == {"capacity": 0.0} and loss.schedule(2) == {"capacity": pytest.approx(2.0)}
    assert at_start.total.item() == pytest.approx(at_start.recon.item() + 10.0 * 1.0)
    assert at_half.total.item() == pytest.approx(at_half.recon.item() + 10.0 * 1.0)  # |1 - 2| = 1


def test_make_objective_picks_reconstruction_by_channels():
    assert make_objective(TrainConfig(objective="beta-h"), channels=1).reconstruction == "bernoulli"
    assert make_objective(TrainConfig(objective="beta-h"), channels=3).reconstruction == "gaussian"
    assert isinstance(make_objective(TrainConfig(objective="vae", beta=8.0), 1), VAELoss)
    assert make_objective(TrainConfig(objective="vae", beta=8.0), 1).beta == 1.0
    assert isinstance(make_objective(TrainConfig(objective="beta-h"), 1), BetaHLoss)


def test_an_unknown_objective_is_an_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"objective must be one of vae, beta-h, beta-b.*got 'beta-x'"):
        TrainConfig(objective="beta-x").validate()
    with pytest.raises(ConfigError, match="objective must be one of"):
        objective_spec("beta-x")


def test_the_registry_lists_each_objective_with_its_parameters_and_main_weight():
    names = objective_names()
    assert names[:3] == ("vae", "beta-h", "beta-b")
    capacity = objective_spec("beta-b")
    assert [p.name for p in capacity.params] == ["gamma", "c_max", "c_steps"] and capacity.main == "gamma"
    assert capacity.param("c_steps").integer and capacity.param("gamma").flag == "--gamma"
    assert objective_spec("vae").fixed == {"beta": 1.0}


def test_main_weight_is_read_and_written_where_the_objective_keeps_it():
    config = TrainConfig(objective="beta-b", gamma=500.0)
    assert main_weight(config) == 500.0
    assert with_main_weight(config, 20.0).gamma == 20.0
    assert main_weight(TrainConfig(objective="vae", beta=7.0)) == 1.0
    assert with_main_weight(TrainConfig(objective="beta-h"), 2.0).beta == 2.0


def test_objective_params_hold_only_the_objectives_own_parameters():
    with pytest.raises(ConfigError, match="'c_max' is not a parameter of beta-h"):
        TrainConfig(objective="beta-h", objective_params={"c_max": 3}).validate()


def test_beta_units_round_trip():
    norm = beta_normalised(4.0, 10, (1, 64, 64))
    assert norm == pytest.approx(4.0 * 10 / 4096)
    assert beta_from_normalised(norm, 10, (1, 64, 64)) == pytest.approx(4.0)
