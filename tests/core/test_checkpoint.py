import errno
import io
import os
import pickle

import pytest
import torch

from bvae_desktop.core import atomic
from bvae_desktop.core.checkpoint import Checkpoint, check_finite_weights, load_checkpoint, save_checkpoint
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
    with pytest.raises(CheckpointError, match=r"c\.pt: cannot write the checkpoint: disk full"):
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
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: it holds code that would run on loading"):
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


class _FullDisk(io.RawIOBase):
    """A file that takes `room` bytes, then fails as a full disk does: ENOSPC from write()."""

    def __init__(self, path, room):
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._room = room

    def writable(self):
        return True

    def write(self, data):
        if len(data) > self._room:
            self._file.write(bytes(data[: self._room]))
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._file.write(data)

    def close(self):
        self._file.close()
        super().close()


def test_full_disk_during_save_is_one_clean_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, make_checkpoint())
    before = path.read_bytes()

    def full_open(file, mode="r", *args, **kwargs):
        return _FullDisk(file, room=1000) if mode == "wb" else open(file, mode, *args, **kwargs)

    monkeypatch.setattr(atomic, "open", full_open, raising=False)  # atomic's writes go through it
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, make_checkpoint(latent_dim=3))
    message = str(info.value)
    assert message.startswith(f"{path}: cannot write the checkpoint: no space left on device")
    assert "previous checkpoint there is kept" in message and "\n" not in message
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left behind


def test_torch_writer_failure_is_a_checkpoint_error(tmp_path, monkeypatch):
    """torch's own writer reports a failed write as a RuntimeError; it is told in one line too."""

    def fail(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed writing file data/3: "
            "file write failed\nException raised from ..."
        )

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(CheckpointError, match=r"new\.pt: cannot write the checkpoint: .*file write failed$"):
        save_checkpoint(tmp_path / "new.pt", make_checkpoint())
    assert list(tmp_path.iterdir()) == []


def test_lowercase_unsupported_global_is_refused_as_code(tmp_path):
    """torch says "Unsupported global" in one place and "unsupported GLOBAL" (a blocked module) in another."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "bvae-desktop-checkpoint", "model": _Blocked(str(marker))}, evil)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(evil)
    message = str(info.value)
    assert "refused: it holds code that would run on loading" in message and "corrupted" not in message
    assert "os.system" in message or "posix.system" in message
    assert not marker.exists()


class _Blocked:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unreadable_checkpoint_says_so(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, make_checkpoint())
    real_open = open

    def denied(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(CheckpointError, match=r"c\.pt: cannot read the checkpoint: permission denied"):
        load_checkpoint(path)


def test_non_finite_weights_are_named():
    state = make_checkpoint().model_state
    check_finite_weights(state, "ok.pt")
    for bad in (float("nan"), float("inf")):
        broken = {k: v.clone() for k, v in state.items()}
        name = sorted(broken)[1]
        broken[name].view(-1)[0] = bad
        with pytest.raises(CheckpointError, match=rf"x\.pt: its weights hold NaN or infinite values \(in {name}\)"):
            check_finite_weights(broken, "x.pt")
