"""The first weights (core/nets.py initialise_weights, TrainConfig.weight_init): He's init keeps the signal's
scale through the nets, so a new model's latents reach its output; runs saved before the setting keep theirs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bvae_desktop.core.checkpoint import load_checkpoint
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data import load_dataset
from bvae_desktop.core.errors import CheckpointError, ConfigError
from bvae_desktop.core.nets import BetaVAE, initialise_weights, to_unit_float
from bvae_desktop.core.trainer import Trainer
from tests.core.training_fixtures import small_config, squares


def _model(scheme: str, seed: int = 0) -> BetaVAE:
    torch.manual_seed(seed)
    model = BetaVAE((1, 64, 64), 10)
    initialise_weights(model, scheme, seed)
    return model


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]


@pytest.fixture(scope="module")
def sprites() -> torch.Tensor:
    data = load_dataset("dsprites-procedural", None)
    return to_unit_float(data.batch(np.arange(0, len(data), len(data) // 64)[:64]))


def test_he_weights_have_he_variance_and_zero_biases():
    for layer in _layers(_model("he")):
        fan_in = nn.init._calculate_fan_in_and_fan_out(layer.weight)[0]
        assert float(layer.weight.detach().std()) == pytest.approx((2.0 / fan_in) ** 0.5, rel=0.15)
        assert not layer.bias.any()


def test_torch_keeps_the_weights_the_layers_were_built_with():
    torch.manual_seed(3)
    built = BetaVAE((1, 64, 64), 10)
    before = {k: v.clone() for k, v in built.state_dict().items()}
    initialise_weights(built, "torch", 3)
    assert all(torch.equal(before[k], v) for k, v in built.state_dict().items())


def test_he_weights_depend_on_the_seed_alone():
    torch.manual_seed(0)
    torch.rand(1000)  # someone drew from the global generator first
    first = BetaVAE((1, 64, 64), 10)
    initialise_weights(first, "he", 7)
    second = BetaVAE((1, 64, 64), 10)
    initialise_weights(second, "he", 7)
    other = BetaVAE((1, 64, 64), 10)
    initialise_weights(other, "he", 8)
    assert all(
        torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    )
    assert not torch.equal(first.encoder.convs[0].weight, other.encoder.convs[0].weight)


def test_unknown_scheme_is_an_error():
    with pytest.raises(ValueError, match="unknown weight init 'xavier'"):
        initialise_weights(BetaVAE((1, 32, 32), 4), "xavier", 0)


def test_with_he_a_new_model_sees_its_images_and_its_latents_move_its_output(sprites):
    """Why PyTorch's defaults sat on the KL plateau: each layer shrank its input (a sixth of He's variance),
    so the encoder's means hardly differed between images and the decoder's output hardly moved with z,
    and the loss had almost no gradient towards using a latent."""
    z = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    for seed in range(3):
        spread = {}
        for scheme in ("he", "torch"):
            model = _model(scheme, seed)
            with torch.no_grad():
                mean, _logvar = model.encode(sprites)
                spread[scheme] = (float(mean.std(0).mean()), float(model.decode(z).std(0).mean()))
        assert spread["he"][0] > 0.05 and spread["he"][1] > 0.05
        assert spread["torch"][0] < 0.005 and spread["torch"][1] < 0.005


def test_the_setting_defaults_to_he_and_is_checked():
    assert TrainConfig().weight_init == "he"
    assert TrainConfig.from_dict({"steps": 5}).weight_init == "he"  # a partial file of the user's: the default
    with pytest.raises(ConfigError, match="weight_init"):
        TrainConfig.from_dict({"weight_init": "xavier"})


def test_a_run_saved_before_the_setting_keeps_pytorchs_init(tmp_path):
    """A checkpoint written before weight_init existed was trained with PyTorch's init: it says so, resuming
    it as it is goes on, and resuming it under today's default is refused, naming the setting."""
    trainer = Trainer(small_config(steps=6, weight_init="torch"), dataset=squares(), run_dir=tmp_path / "old")
    for event in trainer.steps():
        if event.step == 3:
            trainer.stop()
    path = tmp_path / "old" / "checkpoint.pt"
    payload = torch.load(path, weights_only=True)
    del payload["config"]["weight_init"]  # as an older version wrote it
    torch.save(payload, path)
    assert load_checkpoint(path).config.weight_init == "torch"
    with pytest.raises(CheckpointError, match="weight_init: 'torch' in the checkpoint, 'he' now"):
        Trainer(small_config(steps=6), dataset=squares(), run_dir=tmp_path / "old", resume=path)
    resumed = Trainer(
        small_config(steps=6, weight_init="torch"), dataset=squares(), run_dir=tmp_path / "old", resume=path
    )
    assert resumed.step == 3 and [e.step for e in resumed.steps()] == [4, 5, 6]


def test_the_trainer_starts_from_the_chosen_init():
    he = Trainer(small_config(steps=1, weight_init="he"), dataset=squares())
    default = Trainer(small_config(steps=1, weight_init="torch"), dataset=squares())
    assert not any(layer.bias.any() for layer in _layers(he.model))
    assert any(layer.bias.any() for layer in _layers(default.model))
