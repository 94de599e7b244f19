import subprocess
import sys

import numpy as np
import pytest

from bvae_desktop.cli import main
from bvae_desktop.core.checkpoint import load_checkpoint
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.runlog import read_runlog


def test_train_then_info_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        [
            "train",
            "--dataset",
            "dsprites-procedural",
            "--objective",
            "beta-h",
            "--beta",
            "4",
            "--latent-dim",
            "10",
            "--steps",
            "6",
            "--batch-size",
            "8",
            "--val-every",
            "3",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "step 6/6" in err and "img/s" in err and "ETA" in err
    assert {p.name for p in out.iterdir()} >= {"checkpoint.pt", "runlog.h5", "config.json"}
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    assert checkpoint.step == 6 and checkpoint.beta == 4.0 and checkpoint.config.latent_dim == 10
    assert TrainConfig.load(out / "config.json") == checkpoint.config
    assert len(read_runlog(out / "runlog.h5").train["step"]) == 6

    assert main(["info", str(out / "checkpoint.pt")]) == 0
    info = capsys.readouterr().out
    assert "dsprites-procedural" in info and "beta-h" in info
    assert "beta         4 (summed KL; normalised 0.009766" in info  # 4 * 10 / 4096
    assert "step         6 of 6" in info and "loss" in info


def test_resume_continues_to_more_steps(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--steps",
                "4",
                "--batch-size",
                "8",
                "--latent-dim",
                "3",
                "--device",
                "cpu",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert main(["train", "--resume", str(out / "checkpoint.pt"), "--steps", "7", "--quiet"]) == 0
    assert load_checkpoint(out / "checkpoint.pt").step == 7
    assert list(read_runlog(out / "runlog.h5").train["step"]) == list(range(1, 8))


def test_config_file_and_flags_combine(tmp_path):
    config = tmp_path / "c.json"
    TrainConfig(latent_dim=3, batch_size=8, steps=3, beta=9.0, device="cpu").save(config)
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--beta-norm",
                str(2 * 3 / 4096),
                "--out",
                str(tmp_path / "r"),
                "--quiet",
            ]
        )
        == 0
    )
    checkpoint = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert checkpoint.config.latent_dim == 3 and checkpoint.beta == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["train", "--dataset", "mnist", "--data", "/nonexistent/mnist"], "/nonexistent/mnist"),
        (["train", "--dataset", "mnist"], "needs a file or folder"),
        (["train", "--steps", "0"], "steps must be a positive integer"),
        (["info", "/nonexistent/c.pt"], "/nonexistent/c.pt: no such checkpoint file"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args, words, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_console_entry_point_runs_as_a_process(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    result = subprocess.run(
        [sys.executable, "-m", "bvae_desktop.cli", "info", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "bad.pt: not a readable checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_stops_cleanly_and_leaves_a_checkpoint(tmp_path):
    import signal

    out = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bvae_desktop.cli",
            "train",
            "--steps",
            "100000",
            "--batch-size",
            "8",
            "--latent-dim",
            "3",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in process.stderr:  # the first progress line comes right after step 1
            if line.startswith("step "):
                break
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 130, rest
    assert "stopped at step" in rest and "Traceback" not in rest
    assert load_checkpoint(out / "checkpoint.pt").step >= 1


def test_info_into_a_closed_pipe_prints_no_traceback(tmp_path):
    """`bvae info CKPT | head -1`: the reader goes away early; that is not an error."""
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--steps",
                "2",
                "--batch-size",
                "8",
                "--latent-dim",
                "3",
                "--device",
                "cpu",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bvae_desktop.cli", "info", str(out / "checkpoint.pt")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # like `head` exiting before reading anything
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
