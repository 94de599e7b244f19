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


# Every field, each kind of wrong: type (a JSON file can hold anything) and range (a value that would
# fail later, deep in numpy, torch or the allocator). (settings, the setting the message must name)
BAD_CONFIGS = [
    ({"dataset": 5}, "dataset"),
    ({"dataset": None}, "dataset"),
    ({"dataset": ["mnist"]}, "dataset"),
    ({"data_path": 5}, "data_path"),
    ({"data_path": ["a", "b"]}, "data_path"),
    ({"data_path": "bad\x00name"}, "data_path"),
    ({"objective": 1}, "objective"),
    ({"objective": "BETA-H"}, "objective"),
    ({"reconstruction": True}, "reconstruction"),
    ({"compile": False}, "compile"),
    ({"beta": 1e30}, "beta"),
    ({"beta": "4"}, "beta"),
    ({"beta": True}, "beta"),
    ({"beta": 10**400}, "beta"),
    ({"beta": float("inf")}, "beta"),
    ({"gamma": -1.0}, "gamma"),
    ({"gamma": 1e12}, "gamma"),
    ({"c_max": float("nan")}, "c_max"),
    ({"c_max": 1e9}, "c_max"),
    ({"lr": 0.0}, "lr"),
    ({"lr": 1e30}, "lr"),
    ({"lr": None}, "lr"),
    ({"c_steps": 0}, "c_steps"),
    ({"c_steps": 10**12}, "c_steps"),
    ({"latent_dim": 10**6}, "latent_dim"),
    ({"latent_dim": 10.0}, "latent_dim"),
    ({"latent_dim": True}, "latent_dim"),
    ({"batch_size": 10**7}, "batch_size"),
    ({"batch_size": "64"}, "batch_size"),
    ({"steps": -5}, "steps"),
    ({"steps": 10**12}, "steps"),
    ({"val_every": 0}, "val_every"),
    ({"val_fraction": "0.1"}, "val_fraction"),
    ({"val_fraction": 0.0}, "val_fraction"),
    ({"val_fraction": True}, "val_fraction"),
    ({"val_batches": 10**6}, "val_batches"),
    ({"checkpoint_every": 2.5}, "checkpoint_every"),
    ({"seed": 2**70}, "seed"),
    ({"seed": 2**32}, "seed"),
    ({"seed": -1}, "seed"),
    ({"seed": "0"}, "seed"),
    ({"seed": True}, "seed"),
    ({"device": 0}, "device"),
    ({"device": "gpu"}, "device"),
    ({"bf16": "yes"}, "bf16"),
    ({"bf16": 1}, "bf16"),
    ({"bf16": "false"}, "bf16"),
    ({"channels_last": None}, "channels_last"),
    ({"sync_every": -1}, "sync_every"),
    ({"sync_every": 10**12}, "sync_every"),
    ({"extra": []}, "extra"),
    ({"extra": {"note": {1, 2}}}, "extra"),
]


@pytest.mark.parametrize(("settings", "name"), BAD_CONFIGS, ids=[f"{n}-{i}" for i, (_, n) in enumerate(BAD_CONFIGS)])
def test_every_field_is_checked_for_type_and_range(settings, name):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(settings)
    message = str(info.value)
    assert message.startswith(f"config: {name} must ") and "\n" not in message and len(message) < 200


def test_limits_are_inclusive_and_real_runs_pass():
    TrainConfig.from_dict(
        {"beta": 1e6, "gamma": 1e6, "c_max": 1e5, "lr": 1.0, "latent_dim": 1024, "batch_size": 16384}
    )
    TrainConfig.from_dict({"seed": 2**32 - 1, "steps": 10**9, "device": "cuda:1", "data_path": None, "beta": 0})
    TrainConfig.from_dict({"objective": "beta-b", "gamma": 1000, "c_max": 25, "c_steps": 100_000, "bf16": False})
    TrainConfig.from_dict({"extra": {"note": "seed sweep", "tags": [1, 2.5, None]}})
