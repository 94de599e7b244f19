"""Issue 16: `--executor` and its flags on `bvae sweep`, `compare` and `resume` (no Ray needed: nothing here
starts one; tests/core/test_ray_executor.py runs the flags against a local Ray)."""

from __future__ import annotations

import json
import sys

import pytest

from bvae_desktop.cli import build_parser, main
from bvae_desktop.cli_executors import apply_executor_overrides
from bvae_desktop.cli_experiments import spec_from_args
from bvae_desktop.core.errors import ConfigError
from bvae_desktop.core.executors import RAY_INSTALL_HINT
from bvae_desktop.core.experiments import load_spec

TINY = ["--steps", "4", "--batch-size", "8", "--latent-dim", "3", "--device", "cpu", "--metrics", "none"]


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_executor_flags_become_the_specs_settings(tmp_path):
    spec = spec_from_args(parse("sweep", "--out", str(tmp_path), *TINY))
    assert spec.executor == "local" and spec.executor_options == {}
    assert spec_from_args(parse("sweep", "--out", str(tmp_path), "--workers", "2", *TINY)).executor == "processes"
    spec = spec_from_args(
        parse(
            "compare",
            "--out",
            str(tmp_path),
            "--executor",
            "ray",
            "--ray-address",
            "10.0.0.5:6379",
            "--ray-storage",
            "shared",
            "--task-cpus",
            "4",
            "--task-gpus",
            "0.25",
            "--task-retries",
            "5",
            *TINY,
        )
    )
    assert spec.executor == "ray"
    assert spec.executor_options == {
        "address": "10.0.0.5:6379",
        "storage": "shared",
        "cpus": 4.0,
        "gpus": 0.25,
        "retries": 5,
    }
    with pytest.raises(SystemExit):
        parse("sweep", "--out", str(tmp_path), "--executor", "slurm")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--executor", "processes", "--task-gpus", "1"], "--task-gpus: a setting of --executor ray"),
        (["--executor", "local", "--workers", "3"], "use --executor processes"),
        (["--executor", "ray", "--task-cpus", "-1"], "at least 0"),
    ],
)
def test_settings_that_do_not_fit_the_executor_are_one_line(tmp_path, capsys, flags, message):
    assert main(["sweep", "--out", str(tmp_path / "x"), *TINY, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_without_ray_executor_ray_is_one_line_saying_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["sweep", "--out", str(tmp_path / "x"), *TINY, "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"bvae sweep: error: {RAY_INSTALL_HINT}"
    assert not (tmp_path / "x").exists()


def test_resume_can_move_an_experiment_between_executors(tmp_path):
    folder = tmp_path / "exp"
    spec = spec_from_args(parse("sweep", "--out", str(folder), "--executor", "ray", "--task-gpus", "1", *TINY))
    folder.mkdir()
    (folder / "experiment.json").write_text(json.dumps(spec.to_dict()))

    def resumed(*flags: str):
        spec = load_spec(folder)
        apply_executor_overrides(spec, parse("resume", str(folder), *flags))
        return spec.validate()

    kept = resumed()
    assert kept.executor == "ray" and kept.executor_options == {"gpus": 1.0}
    merged = resumed("--ray-address", "10.0.0.5:6379")
    assert merged.executor_options == {"gpus": 1.0, "address": "10.0.0.5:6379"}
    local = resumed("--executor", "local")
    assert local.executor == "local" and local.executor_options == {}
    with pytest.raises(ConfigError, match="a setting of --executor ray"):
        resumed("--executor", "processes", "--ray-address", "x:1")

    spec.executor, spec.executor_options = "local", {}
    (folder / "experiment.json").write_text(json.dumps(spec.to_dict()))
    assert resumed("--workers", "3").executor == "processes"  # --workers alone, as before executors existed
