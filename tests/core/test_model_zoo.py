"""The bundled-model registry and the exporter: cards, SHA-256 checks, name resolution, weights-only checkpoints."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from zoo_fixtures import bundled_pair, copy_models, export, train_run

from bvae_desktop.core import model_export, model_zoo
from bvae_desktop.core.checkpoint import load_checkpoint, save_checkpoint
from bvae_desktop.core.errors import BvaeError, CheckpointError
from bvae_desktop.core.metrics import count_defaults
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.model_zoo import ModelCardError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("zoo-run") / "run", steps=4)


@pytest.fixture
def models(tmp_path_factory, tmp_path, monkeypatch):
    folder = copy_models(bundled_pair(tmp_path_factory), tmp_path / "models")
    monkeypatch.setenv(model_zoo.MODELS_ENV, str(folder))
    return folder


def test_export_round_trip_keeps_the_weights_and_drops_optimizer_and_rng(run_dir, tmp_path):
    result = model_export.export_model(run_dir, "tiny", models_dir=tmp_path, val_images=32, command="bvae train …")
    original = load_checkpoint(run_dir / "checkpoint.pt")
    exported = load_checkpoint(result.weights)  # the loader every tool uses
    assert original.optimizer_state is not None and exported.optimizer_state is None
    assert exported.rng_state == {} and exported.step == original.step and exported.beta == original.beta
    assert exported.config == original.config and exported.image_shape == original.image_shape
    assert set(exported.model_state) == set(original.model_state)
    for key, value in original.model_state.items():
        assert exported.model_state[key].dtype == torch.float32
        assert torch.equal(exported.model_state[key], value.float())
    # every tool opens it: ModelSource (window, traverse, evaluate, codec) and the trainer's restore
    source = ModelSource.from_checkpoint(result.weights)
    assert source.decode(torch.zeros(1, source.latent_dim)).shape == (1, 1, 64, 64)
    assert result.card_path == tmp_path / "tiny.json" and result.dtype == "float32"


def test_the_card_holds_what_the_issue_asks_for(run_dir, tmp_path):
    result = model_export.export_model(run_dir, "tiny", models_dir=tmp_path, val_images=32, command="bvae train X")
    card = model_zoo.read_card(result.card_path)  # validated
    assert card["name"] == "tiny" and card["weights"]["file"] == "tiny.pt"
    assert card["weights"]["sha256"] == model_zoo.sha256_file(result.weights)
    assert card["weights"]["fingerprint"] == ModelSource.from_checkpoint(result.weights, load_data=False).fingerprint()
    assert card["dataset"]["kind"] == "dsprites-procedural" and card["dataset"]["note"]
    objective = card["objective"]
    assert objective["name"] == "beta-h" and objective["beta"] == 4.0
    assert objective["beta_norm"] == pytest.approx(4.0 * 3 / (64 * 64))  # both units
    training = card["training"]
    assert training["steps"] == 4 and training["batch_size"] == 8 and training["seed"] == 0
    assert training["device"] == "cpu" and training["command"] == "bvae train X"
    assert training["seconds"] > 0 and "images per second" in training["seconds_source"]  # from the run log
    assert training["started"]
    validation = card["validation"]
    assert validation["images"] == 32 and validation["recon"] > 0 and validation["kl"] >= 0
    assert len(validation["kl_per_dim"]) == 3 and 0 <= validation["active_units"] <= 3
    assert card["headline"]["recon"] == pytest.approx(validation["recon"])
    assert card["metrics"] is None


def test_half_weights_are_kept_only_within_the_tolerance_and_both_numbers_are_reported(run_dir, tmp_path, monkeypatch):
    result = model_export.export_model(run_dir, "half", models_dir=tmp_path, val_images=32, half=True)
    assert result.float16 is not None
    change = max(
        abs(result.float16[k] - result.float32[k]) / abs(result.float32[k])
        for k in ("recon", "kl")
        if result.float32[k]
    )
    stored = load_checkpoint(result.weights).model_state
    if change < model_export.HALF_TOLERANCE:
        assert result.dtype == "float16" and all(v.dtype == torch.float16 for v in stored.values())
    else:
        assert result.dtype == "float32"
    card = json.loads(result.card_path.read_text())
    assert set(card["validation"]["float16"]) == {"recon", "kl", "loss"} and card["validation"]["float32"]
    assert card["weights"]["dtype"] == result.dtype
    # no tolerance at all: float32 is kept, and the card says why
    monkeypatch.setattr(model_export, "HALF_TOLERANCE", 0.0)
    strict = model_export.export_model(run_dir, "strict", models_dir=tmp_path, val_images=32, half=True)
    assert strict.dtype == "float32" and "float32 kept" in strict.half_reason


def test_export_refuses_to_replace_a_model_unless_forced_and_checks_the_name(run_dir, tmp_path):
    export(run_dir, tmp_path, "same")
    with pytest.raises(BvaeError, match="already exists"):
        export(run_dir, tmp_path, "same")
    export(run_dir, tmp_path, "same", force=True)
    with pytest.raises(ModelCardError, match="bad model name"):
        export(run_dir, tmp_path, "../escape")
    with pytest.raises(CheckpointError, match="no checkpoint.pt"):
        export(tmp_path, tmp_path, "empty")


def test_metrics_file_is_folded_in_with_its_counts_and_must_be_of_this_model(run_dir, tmp_path):
    source = ModelSource.from_checkpoint(run_dir / "checkpoint.pt", load_data=False)
    full = {"eval_accuracy": 0.8, "train_accuracy": 0.9, **count_defaults("beta_vae"), "seed": 0}
    tenth = {"mig": 0.2, **{k: v // 10 for k, v in count_defaults("mig").items()}, "seed": 0}
    report = {
        "fingerprint": source.fingerprint(),
        "seed": 0,
        "quick": False,
        "metrics": {"beta_vae": full, "mig": tenth},
    }
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(report))
    card = model_export.export_model(run_dir, "m", models_dir=tmp_path, val_images=32, metrics_json=path).card
    assert card["metrics"]["results"]["beta_vae"]["eval_accuracy"] == 0.8
    assert card["metrics"]["counts"]["beta_vae"].startswith("full (disentanglement_lib's defaults")
    assert card["metrics"]["counts"]["mig"].startswith("divided by 10")
    assert card["metrics"]["quick"] is True  # any metric below full counts makes the card a quick look
    assert card["headline"]["beta_vae"] == 0.8 and card["headline"]["mig"] == 0.2
    report["fingerprint"] = "0" * 64
    path.write_text(json.dumps(report))
    with pytest.raises(ModelCardError, match="another model"):
        model_export.export_model(run_dir, "m2", models_dir=tmp_path, val_images=32, metrics_json=path)
    path.write_text("[1, 2]")
    with pytest.raises(ModelCardError, match=str(path.name)):
        model_export.export_model(run_dir, "m3", models_dir=tmp_path, val_images=32, metrics_json=path)


def test_list_find_and_resolve_bundled_models(models, tmp_path, monkeypatch):
    listed = model_zoo.list_models()
    assert [m.name for m in listed] == ["beta4-dsprites", "vae-dsprites"]
    beta4 = model_zoo.get_model("beta4-dsprites")
    assert beta4.objective == "beta-h" and beta4.beta == 4.0 and beta4.steps == 4
    assert model_zoo.get_model("vae-dsprites").beta == 1.0
    assert "beta4-dsprites" in beta4.describe() and "β = 4" in beta4.short()
    assert model_zoo.resolve_checkpoint("beta4-dsprites") == models / "beta4-dsprites.pt"
    assert model_zoo.bundled_name_for(models / "vae-dsprites.pt") == "vae-dsprites"
    # an existing path wins over a bundled name
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(models / "vae-dsprites.pt", tmp_path / "beta4-dsprites")
    assert model_zoo.resolve_checkpoint("beta4-dsprites").resolve() == tmp_path / "beta4-dsprites"
    assert model_zoo.bundled_name_for(tmp_path / "beta4-dsprites") is None


def test_an_unknown_name_lists_the_bundled_ones(models, monkeypatch, tmp_path):
    with pytest.raises(CheckpointError) as info:
        model_zoo.resolve_checkpoint("beta9-nothing")
    message = str(info.value)
    assert "beta9-nothing: no such checkpoint file" in message
    assert "beta4-dsprites, vae-dsprites" in message
    monkeypatch.setenv(model_zoo.MODELS_ENV, str(tmp_path / "none"))
    with pytest.raises(CheckpointError, match="no models are bundled"):
        model_zoo.resolve_checkpoint("beta4-dsprites")
    assert model_zoo.list_models() == []


def test_changed_weights_are_refused_naming_the_file(models):
    weights = models / "beta4-dsprites.pt"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelCardError) as info:
        model_zoo.resolve_checkpoint("beta4-dsprites")
    assert str(weights) in str(info.value) and "does not match the card" in str(info.value)
    with pytest.raises(ModelCardError, match="does not match"):
        model_zoo.model_source("beta4-dsprites")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda c: c.update(format="something-else"), "not a model card"),
        (lambda c: c.update(format_version=99), "version 99"),
        (lambda c: c.update(name="other"), "the file is beta4-dsprites.json"),
        (lambda c: c["weights"].update(file="../beta4-dsprites.pt"), "file name beside the card"),
        (lambda c: c["weights"].update(sha256="abc"), "64 lower-case hex"),
        (lambda c: c.pop("training"), 'missing section "training"'),
        (lambda c: c["objective"].update(beta="four"), "must be a number"),
        (lambda c: c["training"].update(steps=-1), "non-negative integer"),
    ],
)
def test_malformed_cards_are_refused_naming_the_file(models, change, reason):
    path = models / "beta4-dsprites.json"
    card = json.loads(path.read_text())
    change(card)
    path.write_text(json.dumps(card))
    with pytest.raises(ModelCardError) as info:
        model_zoo.read_card(path)
    assert str(path) in str(info.value) and reason in str(info.value)
    problems: list[str] = []
    assert [m.name for m in model_zoo.list_models(problems=problems)] == ["vae-dsprites"]  # the rest still lists
    assert len(problems) == 1 and str(path) in problems[0]
    with pytest.raises(ModelCardError):
        model_zoo.list_models()  # strict: the first problem is raised


def test_unreadable_card_missing_weights_and_weights_without_card(models):
    (models / "beta4-dsprites.json").write_text("{not json")
    (models / "vae-dsprites.pt").unlink()
    (models / "orphan.pt").write_bytes(b"x")
    problems: list[str] = []
    assert model_zoo.list_models(problems=problems) == []
    text = "\n".join(problems)
    assert "not a readable model card" in text and "vae-dsprites.pt is missing" in text
    assert "orphan.pt: bundled weights without a model card orphan.json" in text


def test_resuming_needs_optimizer_state(models, run_dir, tmp_path):
    with pytest.raises(CheckpointError, match="is a bundled model, not a run's checkpoint"):
        model_zoo.checkpoint_to_resume("beta4-dsprites")
    with pytest.raises(CheckpointError, match="weights only .* bundled model beta4-dsprites"):
        model_zoo.checkpoint_to_resume(models / "beta4-dsprites.pt")
    assert model_zoo.checkpoint_to_resume(run_dir / "checkpoint.pt").optimizer_state is not None


def test_models_dir_override_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv(model_zoo.MODELS_ENV, str(tmp_path))
    assert model_zoo.models_dir() == tmp_path
    monkeypatch.delenv(model_zoo.MODELS_ENV)
    found = model_zoo.models_dir()
    assert found is not None and (found / "README.md").is_file()  # the repository's models/ (installed package)


def test_a_weights_only_checkpoint_saved_by_hand_loads(run_dir, tmp_path):
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    ckpt.optimizer_state = None
    ckpt.rng_state = {}
    save_checkpoint(tmp_path / "w.pt", ckpt)
    assert load_checkpoint(tmp_path / "w.pt").optimizer_state is None


def test_metrics_measured_in_separate_files_are_merged_and_a_metric_given_twice_is_refused(run_dir, tmp_path):
    fingerprint = ModelSource.from_checkpoint(run_dir / "checkpoint.pt", load_data=False).fingerprint()
    slow = {"eval_accuracy": 0.8, "train_accuracy": 0.9, **count_defaults("beta_vae"), "seed": 0}
    fast = {"mig": 0.2, **count_defaults("mig"), "seed": 0}
    first, second = tmp_path / "slow.json", tmp_path / "fast.json"
    first.write_text(json.dumps({"fingerprint": fingerprint, "seed": 0, "metrics": {"beta_vae": slow}}))
    second.write_text(json.dumps({"fingerprint": fingerprint, "seed": 0, "metrics": {"mig": fast}}))
    card = model_export.export_model(
        run_dir, "m", models_dir=tmp_path, val_images=32, metrics_json=[first, second]
    ).card
    block = card["metrics"]
    assert block["sources"] == {"beta_vae": "slow.json", "mig": "fast.json"}
    assert block["quick"] is False and block["seed"] == 0
    assert all(text.startswith("full") for text in block["counts"].values())
    assert card["headline"]["beta_vae"] == 0.8 and card["headline"]["mig"] == 0.2
    first.write_text(json.dumps({"fingerprint": fingerprint, "seed": 0, "metrics": {"mig": fast}}))
    with pytest.raises(ModelCardError, match=r"fast\.json: metric 'mig' is also in slow\.json"):
        model_export.export_model(run_dir, "m2", models_dir=tmp_path, val_images=32, metrics_json=[first, second])


def test_a_card_says_when_the_model_started_from_other_than_the_default_init(run_dir, tmp_path):
    default = model_export.export_model(run_dir, "he", models_dir=tmp_path, val_images=8).card
    assert "weight_init_note" not in default["training"]
    torch_run = train_run(tmp_path / "torch-run", steps=2, weight_init="torch")
    card = model_export.export_model(torch_run, "torch", models_dir=tmp_path, val_images=8).card
    assert card["training"]["config"]["weight_init"] == "torch"
    assert "--weight-init torch" in card["training"]["weight_init_note"]
