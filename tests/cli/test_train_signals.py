"""Issue 15: SIGTERM is handled like Ctrl-C, a second Ctrl-C aborts without a traceback and leaves the run
log no further than the checkpoint, and Ctrl-C during start-up is one line."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from bvae_desktop.cli import main
from bvae_desktop.core.checkpoint import load_checkpoint
from bvae_desktop.core.runlog import read_runlog


def start_training(out) -> subprocess.Popen:
    command = [sys.executable, "-m", "bvae_desktop.cli", "train", "--steps", "100000", "--batch-size", "8"]
    command += ["--latent-dim", "3", "--device", "cpu", "--checkpoint-every", "1000", "--out", str(out)]
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True)


def signal_after_first_step(process: subprocess.Popen, *signals: int) -> tuple[int, str]:
    try:
        for line in process.stderr:  # the first progress line comes right after step 1
            if line.startswith("step "):
                break
        for signum in signals:
            process.send_signal(signum)
        rest = process.stderr.read()
        return process.wait(timeout=120), rest
    finally:
        if process.poll() is None:
            process.kill()


def test_sigterm_stops_after_the_step_and_saves(tmp_path):
    code, output = signal_after_first_step(start_training(tmp_path / "run"), signal.SIGTERM)
    assert code == 130, output
    assert "SIGTERM: stopping after this step" in output and "stopped at step" in output
    assert "Traceback" not in output
    step = load_checkpoint(tmp_path / "run" / "checkpoint.pt").step
    assert step >= 1
    assert read_runlog(tmp_path / "run" / "runlog.h5").train["step"][-1] == step  # log and checkpoint agree


def test_a_second_ctrl_c_aborts_without_a_traceback_and_the_log_never_runs_ahead(tmp_path):
    """Both signals at once: the run either stopped cleanly or aborted; either way one line, no traceback,
    a loadable checkpoint and no run-log row past it."""
    code, output = signal_after_first_step(start_training(tmp_path / "run"), signal.SIGINT, signal.SIGINT)
    assert code == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    step = load_checkpoint(checkpoint).step if checkpoint.exists() else 0
    steps = read_runlog(tmp_path / "run" / "runlog.h5").train.get("step", [])
    assert len(steps) == 0 or steps[-1] <= step


def test_ctrl_c_while_starting_up_is_one_line(tmp_path, monkeypatch, capsys):
    import bvae_desktop.core.trainer as trainer_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module.Trainer, "__init__", interrupted)
    assert main(["train", "--steps", "2", "--device", "cpu", "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "bvae train: interrupted"


@pytest.mark.parametrize("flags", [["--sync-every", "4", "--no-compile"], ["--compile", "--sync-every", "1"]])
def test_speed_flags_reach_the_config(tmp_path, flags, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "compile", lambda function, **kwargs: function)  # compiling itself is tested elsewhere
    out = tmp_path / "run"
    args = ["train", "--steps", "8", "--batch-size", "8", "--latent-dim", "3", "--device", "cpu", "--quiet"]
    assert main([*args, "--out", str(out), *flags]) == 0
    config = load_checkpoint(out / "checkpoint.pt").config
    assert config.sync_every == int(flags[flags.index("--sync-every") + 1])
    assert config.compile == ("off" if "--no-compile" in flags else "on")
