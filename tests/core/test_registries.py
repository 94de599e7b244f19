"""Issue 13: one registry per extension point, the single source of truth for flags, fields and checks."""

from __future__ import annotations

import pytest

from bvae_desktop.cli import build_parser
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data import dataset_names, dataset_spec, load_dataset
from bvae_desktop.core.errors import ConfigError, DatasetError
from bvae_desktop.core.objectives import _REGISTRY as OBJECTIVE_REGISTRY
from bvae_desktop.core.objectives import (
    Objective,
    ObjectiveSpec,
    Param,
    all_params,
    objective_names,
    objective_spec,
    objective_specs,
    register,
)
from bvae_desktop.core.objectives.terms import ForwardPass, LossTerms, loss_terms


def test_datasets_come_from_their_own_modules_with_what_they_need():
    assert dataset_names() == ("dsprites-procedural", "dsprites", "shapes3d", "mnist", "folder")
    assert not dataset_spec("dsprites-procedural").needs_path and dataset_spec("dsprites-procedural").factors
    assert dataset_spec("mnist").shape == (1, 32, 32) and not dataset_spec("mnist").factors
    assert dataset_spec("shapes3d").file_filter.startswith("3D Shapes")


def test_an_unknown_dataset_is_an_error_never_a_fallback():
    with pytest.raises(DatasetError, match="dataset must be one of dsprites-procedural, .*got 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(ConfigError, match="dataset must be one of .*got 'cifar'"):
        TrainConfig(dataset="cifar").validate()
    with pytest.raises(ConfigError, match="dataset 'mnist' needs a file or folder"):
        TrainConfig(dataset="mnist").validate()


def test_cli_flags_are_generated_from_the_objective_registry():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {option for action in train._actions for option in action.option_strings}
    for param in all_params().values():
        assert param.flag in flags
    objective = next(a for a in train._actions if a.dest == "objective")
    assert tuple(objective.choices) == objective_names()


class _Halved(Objective):
    extra_names = ("half_kl",)

    def loss(self, batch: ForwardPass) -> LossTerms:
        recon, kl_dims, kl = loss_terms(batch.output, batch.x, batch.mean, batch.logvar, self.reconstruction)
        return LossTerms(recon + batch.weight * kl / 2, recon, kl, kl_dims, {"half_kl": kl / 2})


def _halved(params, reconstruction):
    return _Halved(HALVED, params, reconstruction)


HALVED = ObjectiveSpec(
    name="test-halved",
    label="Halved",
    summary="recon + w·KL/2 (a test objective)",
    params=(Param("halved_weight", "w", 2.0, 0.0, 10.0, "weight on half the KL"),),
    main="halved_weight",
    factory=_halved,
    rank=999,
)


@pytest.fixture
def halved_objective():
    register(HALVED)
    yield HALVED
    del OBJECTIVE_REGISTRY[HALVED.name]


def test_a_registered_objective_is_everywhere_with_no_other_code(halved_objective, qtbot, tmp_path):
    """What 'one new file' means: register a spec and the CLI, validation, the panel and training know it."""
    from training_fixtures import squares

    from bvae_desktop.core.trainer import Trainer
    from bvae_desktop.gui.training_panel import TrainingPanel

    assert objective_spec("test-halved") is HALVED and HALVED in objective_specs()
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert "--halved-weight" in {o for a in train._actions for o in a.option_strings}
    with pytest.raises(ConfigError, match="halved_weight must be between 0 and 10"):
        TrainConfig(objective="test-halved", objective_params={"halved_weight": 11.0}).validate()
    config = TrainConfig(
        objective="test-halved", objective_params={"halved_weight": 3.0}, latent_dim=3, batch_size=8, steps=3
    )
    config = TrainConfig(**{**config.to_dict(), "device": "cpu"})
    events = list(Trainer(config, dataset=squares(), run_dir=tmp_path).steps())
    assert events[-1].beta == 3.0 and set(events[-1].extras) == {"half_kl"}
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.set_config(config)
    assert panel.betaLabel.text() == "w" and panel.betaSpin.value() == 3.0
    assert panel.config().objective_params == {"halved_weight": 3.0}
