import math

import pytest
import torch

from bvae_desktop.core.config import TrainConfig, beta_from_normalised, beta_normalised
from bvae_desktop.core.objectives import (
    BetaBLoss,
    BetaHLoss,
    VAELoss,
    capacity_at,
    kl_per_dimension,
    make_objective,
    reconstruction_loss,
)


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
    h = BetaHLoss(4.0, "bernoulli")(output, target, mean, logvar, step=0)
    v = VAELoss("bernoulli")(output, target, mean, logvar, step=0)
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
    loss = BetaBLoss(gamma=10.0, c_max=4.0, c_steps=4, reconstruction="bernoulli")
    at_start = loss(output, target, mean, logvar, step=0)
    at_half = loss(output, target, mean, logvar, step=2)
    assert at_start.capacity == 0.0 and at_half.capacity == pytest.approx(2.0)
    assert at_start.total.item() == pytest.approx(at_start.recon.item() + 10.0 * 1.0)
    assert at_half.total.item() == pytest.approx(at_half.recon.item() + 10.0 * 1.0)  # |1 - 2| = 1


def test_make_objective_picks_reconstruction_by_channels():
    assert make_objective(TrainConfig(objective="beta-h"), channels=1).reconstruction == "bernoulli"
    assert make_objective(TrainConfig(objective="beta-h"), channels=3).reconstruction == "gaussian"
    assert isinstance(make_objective(TrainConfig(objective="vae", beta=8.0), 1), VAELoss)
    assert make_objective(TrainConfig(objective="vae", beta=8.0), 1).beta == 1.0


def test_beta_units_round_trip():
    norm = beta_normalised(4.0, 10, (1, 64, 64))
    assert norm == pytest.approx(4.0 * 10 / 4096)
    assert beta_from_normalised(norm, 10, (1, 64, 64)) == pytest.approx(4.0)
