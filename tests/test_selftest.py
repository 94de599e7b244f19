"""`--self-test` as a user or an installer test runs it: a real process, its exit code, its output, its files."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from bvae_desktop import __version__
from bvae_desktop.selftest import FAIL_ENV, STEPS, run_self_test

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "QT_")) and k != FAIL_ENV}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1", **extra)
    proc = subprocess.run(
        [sys.executable, "-m", "bvae_desktop", "--self-test"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, home, tmp


def _contents(*folders: Path) -> list[str]:
    return sorted(str(p) for folder in folders for p in folder.rglob("*"))


def test_self_test_passes_prints_the_summary_and_writes_nothing_outside_its_temp_folder(tmp_path):
    proc, home, tmp = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"β-VAE Desktop {__version__} self-test" in out
    for step in STEPS:
        assert f"  {step} " in out and f"{step:<9} ok" in out
    assert "About shows " + __version__ in out
    assert "self-test passed" in out
    assert _contents(home, tmp) == []  # its settings, run folder, Qt and torch caches all went and were removed


def test_a_failing_step_exits_non_zero_naming_the_step_and_the_reason(tmp_path):
    proc, home, tmp = _run(tmp_path, **{FAIL_ENV: "train"})
    assert proc.returncode == 1
    assert "window    ok" in proc.stdout and "train     ok" not in proc.stdout
    assert "self-test FAILED at step 'train': forced failure" in proc.stderr
    assert "self-test passed" not in proc.stdout
    assert _contents(home, tmp) == []  # the temp folder goes on failure too


def test_an_unknown_step_to_fail_is_itself_a_failure(monkeypatch):
    monkeypatch.setenv(FAIL_ENV, "nosuchstep")
    before = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    assert run_self_test(out, err) == 1
    assert "names no step" in err.getvalue() and "window" in err.getvalue()
    assert dict(os.environ) == before  # the isolation puts the environment back


def test_version_flag_prints_the_package_version():
    proc = subprocess.run(
        [sys.executable, "-m", "bvae_desktop", "--version"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"β-VAE Desktop {__version__}"
