"""Issue 15: after a sweep's parent is killed with SIGKILL (no cleanup runs), its worker processes, busy
or idle, and multiprocessing's resource tracker must not live on; a worker in a run keeps its checkpoint."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bvae_desktop.core.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait() is missing


def wait_until(condition, timeout: float) -> bool:
    """Poll a condition until it holds or the deadline passes (a bound, never a fixed wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_workers_and_the_resource_tracker_exit_when_the_sweep_is_killed(tmp_path):
    folder = tmp_path / "sweep"
    command = [sys.executable, "-m", "bvae_desktop.cli", "sweep", "--out", str(folder), "--betas", "1,4"]
    command += ["--steps", "100000", "--batch-size", "8", "--latent-dim", "3", "--device", "cpu"]
    command += ["--checkpoint-every", "5", "--metrics", "none", "--workers", "3", "--stack", "1"]
    parent = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    family: list[int] = []
    try:
        started = 0
        for line in parent.stderr:
            started += line.rstrip().endswith(": started")
            if started == 2:
                break
        checkpoints = [folder / "runs" / name / "checkpoint.pt" for name in ("beta-1_seed-0", "beta-4_seed-0")]
        assert wait_until(lambda: all(c.exists() for c in checkpoints), 120), "the runs never reached a checkpoint"
        family = children_of(parent.pid)
        assert len(family) >= 3  # three workers (two busy, one idle) and the resource tracker
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        assert wait_until(lambda: not any(alive(pid) for pid in family), 90), [p for p in family if alive(p)]
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in family:  # never leave a process behind, whatever failed
            if alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
    for checkpoint in checkpoints:
        assert load_checkpoint(checkpoint).step >= 5
