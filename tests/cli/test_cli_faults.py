"""Faults and hostile files on the command line: one line `bvae CMD: error: ...`, a non-zero exit, no traceback,
and nothing half-written left behind."""

from __future__ import annotations

import errno
import json
import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

from bvae_desktop.cli import main
from bvae_desktop.core import codec, machine
from bvae_desktop.core.checkpoint import Checkpoint, save_checkpoint
from bvae_desktop.core.codec import BitAllocation
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.model_source import ModelSource
from bvae_desktop.core.nets import BetaVAE

SHAPE = (1, 64, 64)
LATENTS = 10


def one_error_line(capsys, command: str) -> str:
    """stderr is exactly one `bvae COMMAND: error: ...` line; returns it."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"bvae {command}: error: "), err
    return err


def _checkpoint(path: pathlib.Path, *, poison: float | None = None) -> pathlib.Path:
    torch.manual_seed(0)
    state = BetaVAE(SHAPE, LATENTS).state_dict()
    if poison is not None:
        state["decoder.deconvs.0.weight"].view(-1)[7] = poison
    save_checkpoint(path, Checkpoint(TrainConfig(latent_dim=LATENTS), SHAPE, 10, 4.0, state))
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> pathlib.Path:
    """An untrained 64x64 model with 10 latents, written directly (no training needed)."""
    return _checkpoint(tmp_path_factory.mktemp("faults_model") / "checkpoint.pt")


@pytest.fixture(scope="module")
def fingerprint(checkpoint) -> str:
    return ModelSource.from_checkpoint(checkpoint, load_data=False).fingerprint()


def _bvz(path: pathlib.Path, fingerprint: str, count: int) -> pathlib.Path:
    zero = BitAllocation([0] * LATENTS, [0] * LATENTS, [0] * LATENTS)
    path.write_bytes(codec.build_file(fingerprint, SHAPE, count, 50, zero, b"", method=codec.METHOD_RAW, version=1))
    return path


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"seed": 2**70}, "seed must be an integer from 0 to 4,294,967,295"),
        ({"data_path": 5}, "data_path must be a file or folder path"),
        ({"batch_size": 10**7}, "batch_size must be a positive integer up to 16,384"),
        ({"latent_dim": 10**6}, "latent_dim must be a positive integer up to 1,024"),
        ({"beta": 1e30}, "beta must be a finite number >= 0 and at most 1e+06"),
        ({"bf16": "yes"}, "bf16 must be true or false; got 'yes'"),
    ],
)
def test_train_with_a_bad_config_file_is_one_line(tmp_path, capsys, settings, words):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps(settings))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert words in one_error_line(capsys, "train")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- permissions


def test_train_into_a_folder_without_write_permission_is_one_line(tmp_path, capsys, monkeypatch):
    """As root, chmod does not stop a write: the refusal is simulated where the run folder is made."""
    out = tmp_path / "locked" / "run"
    real_mkdir = pathlib.Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self in (out, out.parent):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    code = main(["train", "--steps", "1", "--batch-size", "4", "--latent-dim", "2", "--device", "cpu",
                 "--quiet", "--out", str(out)])  # fmt: skip
    err = one_error_line(capsys, "train")
    assert code == 1 and "locked" in err and err.endswith(": permission denied")


def test_unreadable_checkpoint_is_one_line(checkpoint, capsys, monkeypatch):
    import builtins

    real_open = builtins.open

    def denied(file, *args, **kwargs):
        if isinstance(file, (str, pathlib.Path)) and pathlib.Path(file) == checkpoint:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    assert main(["info", str(checkpoint)]) == 2
    assert one_error_line(capsys, "info").endswith(f"{checkpoint}: cannot read the checkpoint: permission denied")


# ---------------------------------------------------------------- checkpoints with NaN weights


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_nan_weights_are_refused_by_traverse_and_compress(tmp_path, capsys, poison):
    bad = _checkpoint(tmp_path / "diverged.pt", poison=poison)
    assert main(["traverse", str(bad), "--out", str(tmp_path / "grid.png")]) == 2
    assert "diverged.pt: its weights hold NaN or infinite values" in one_error_line(capsys, "traverse")
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(image)
    assert main(["compress", str(bad), str(image), "-o", str(tmp_path / "x.bvz")]) == 2
    assert "diverged.pt: its weights hold NaN or infinite values" in one_error_line(capsys, "compress")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diverged.pt", "in.png"]


# ---------------------------------------------------------------- decompress


def test_decompress_a_file_of_zero_images(tmp_path, capsys, checkpoint, fingerprint):
    empty = _bvz(tmp_path / "empty.bvz", fingerprint, 0)
    assert main(["decompress", str(checkpoint), str(empty), "-o", str(tmp_path / "out")]) == 2
    assert "empty.bvz: malformed .bvz file: it declares 0 images" in one_error_line(capsys, "decompress")
    assert not (tmp_path / "out").exists()


def test_decompress_the_149_byte_bomb_needs_allow_large_and_the_disk_space(
    tmp_path, capsys, checkpoint, fingerprint, monkeypatch
):
    bomb = _bvz(tmp_path / "bomb.bvz", fingerprint, 2**21)
    assert bomb.stat().st_size == 149
    out = tmp_path / "out"
    assert main(["decompress", str(checkpoint), str(bomb), "-o", str(out)]) == 2
    err = one_error_line(capsys, "decompress")
    assert "bomb.bvz: it declares 2,097,152 images" in err and "pass --allow-large" in err

    # allowed, it must still fit on the disk (checked before anything is decoded or written)
    monkeypatch.setattr(machine, "free_disk_bytes", lambda path: 1 << 30)
    assert main(["decompress", str(checkpoint), str(bomb), "-o", str(out), "--allow-large"]) == 2
    assert "2,097,152 PNGs need up to 16.0 GiB; only 1.0 GiB is free there" in one_error_line(capsys, "decompress")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.bvz"]


def test_decompress_onto_a_full_disk_leaves_nothing(tmp_path, capsys, checkpoint, fingerprint, monkeypatch):
    data = _bvz(tmp_path / "five.bvz", fingerprint, 5)
    real_save = Image.Image.save
    saved = []

    def save(self, fp, *args, **kwargs):
        if len(saved) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(fp)
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "decoded"
    assert main(["decompress", str(checkpoint), str(data), "-o", str(out)]) == 2
    err = one_error_line(capsys, "decompress")
    assert err.endswith("decoded: cannot write PNGs: no space left on device; none were written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["five.bvz"]  # no folder, no staging, no PNGs

    monkeypatch.setattr(Image.Image, "save", real_save)
    assert main(["decompress", str(checkpoint), str(data), "-o", str(out)]) == 0
    assert len(list(out.iterdir())) == 5
