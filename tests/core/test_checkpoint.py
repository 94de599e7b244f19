import pickle

import pytest
import torch

from bvae_desktop.core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import CheckpointError
from bvae_desktop.core.nets import BetaVAE


def make_checkpoint(latent_dim: int = 3) -> Checkpoint:
    torch.manual_seed(0)
    model = BetaVAE((1, 32, 32), latent_dim)
    return Checkpoint(
        config=TrainConfig(latent_dim=latent_dim),
        image_shape=(1, 32, 32),
        step=7,
        beta=2.5,
        model_state=model.state_dict(),
        metrics={"loss": 1.5},
        rng_state={"generator": torch.Generator().get_state()},
    )


def test_round_trip_keeps_weights_settings_and_metrics(tmp_path):
    original = make_checkpoint()
    save_checkpoint(tmp_path / "c.pt", original)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.step == 7 and loaded.beta == 2.5 and loaded.metrics == {"loss": 1.5}
    assert loaded.config == original.config and loaded.image_shape == (1, 32, 32)
    for key, value in original.model_state.items():
        assert torch.equal(loaded.model_state[key], value)
    assert set(loaded.versions) >= {"torch", "bvae_desktop", "numpy", "python"}
    model = loaded.build_model()
    assert model.encode(torch.zeros(1, 1, 32, 32))[0].shape == (1, 3)


def test_write_is_atomic_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, make_checkpoint())
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, make_checkpoint())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


class _Payload:
    """Unpickling this would create a marker file: the attack weights_only must stop."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "bvae-desktop-checkpoint", "model": _Payload(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused"):
        load_checkpoint(evil)
    assert not marker.exists()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match=r"plain\.pkl"):
        load_checkpoint(plain)
    assert not marker.exists()


def test_truncated_file_is_reported(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, make_checkpoint())
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 5):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"c\.pt: "):
            load_checkpoint(path)


def test_other_files_are_not_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt: not a β-VAE Desktop checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"text\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    checkpoint = make_checkpoint(latent_dim=3)
    checkpoint.config = TrainConfig(latent_dim=5)
    save_checkpoint(tmp_path / "c.pt", checkpoint)
    with pytest.raises(CheckpointError, match=r"c\.pt: weights do not fit a latent size 5 model"):
        load_checkpoint(tmp_path / "c.pt")
