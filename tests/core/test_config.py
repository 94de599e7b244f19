import json

import pytest

from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import ConfigError


def test_json_round_trip(tmp_path):
    config = TrainConfig(objective="beta-b", gamma=100.0, latent_dim=6, steps=42, seed=3)
    path = tmp_path / "config.json"
    config.save(path)
    assert TrainConfig.load(path) == config


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("objective", "gan", "objective must be one of"),
        ("beta", -1.0, "beta must be a finite number"),
        ("beta", float("nan"), "beta must be a finite number"),
        ("latent_dim", 0, "latent_dim must be a positive integer"),
        ("val_fraction", 1.0, "val_fraction must be between 0 and 1"),
        ("dataset", "cifar", "dataset must be one of"),
    ],
)
def test_bad_values_are_named(field, value, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**{field: value}).validate()


def test_file_sources_need_a_path():
    with pytest.raises(ConfigError, match="needs a file or folder"):
        TrainConfig(dataset="mnist").validate()


def test_unknown_keys_and_bad_json_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"betta": 4}))
    with pytest.raises(ConfigError, match=r"bad\.json: unknown setting\(s\) betta"):
        TrainConfig.load(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken\.json: not a readable JSON config"):
        TrainConfig.load(broken)


def test_vae_uses_beta_one():
    assert TrainConfig(objective="vae", beta=4.0).effective_beta == 1.0
    assert TrainConfig(objective="beta-h", beta=4.0).effective_beta == 4.0
