"""Issue 16: experiments as Ray tasks, against a Ray started here (2 CPUs, once for the module).

A worker killed mid-run is retried from its last checkpoint; one that keeps dying fails its run while the
others go on; Stop keeps checkpoints and a resume continues them; unshared storage (forced) sends the runs'
files back; `bvae sweep --executor ray` stops on Ctrl-C and `bvae resume` finishes it; a killed driver
leaves no task training. Every wait is on a condition, with a bound. No test reaches another machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray executor's tests need Ray: pip install 'bvae-desktop[cluster]'")

from bvae_desktop.cli import main  # noqa: E402
from bvae_desktop.core.checkpoint import load_checkpoint  # noqa: E402
from bvae_desktop.core.config import TrainConfig  # noqa: E402
from bvae_desktop.core.experiment_run import MetricPlan, read_result  # noqa: E402
from bvae_desktop.core.experiments import Experiment, ExperimentSpec  # noqa: E402

pytestmark = pytest.mark.slow
POSIX = pytest.mark.skipif(os.name != "posix", reason="sends Ctrl-C to a process group")
LINUX = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")
BOUND_S = 240.0  # the most any wait below may take on a busy 2-core machine (it normally takes seconds)


@pytest.fixture(scope="module")
def cluster() -> str:
    """A Ray on this machine for the module's tests: its GCS address (for drivers in other processes)."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def tiny_spec(steps: int, betas=(1.0, 4.0), **options) -> ExperimentSpec:
    base = TrainConfig(
        steps=steps, batch_size=8, latent_dim=3, val_every=10, val_batches=1, checkpoint_every=5, device="cpu"
    )
    return ExperimentSpec.sweep(base, list(betas), metrics=MetricPlan(names=[]), executor="ray", **options)


def wait_until(condition, timeout: float = BOUND_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class Running:
    """An experiment running in a thread, its events collected: the test waits on what they say."""

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self.events: list = []
        self.outcome: list[bool] = []
        self.thread = threading.Thread(target=lambda: self.outcome.append(experiment.run(self.events.append)))
        self.thread.start()

    def of(self, kind: str, run: str | None = None) -> list:
        return [e for e in list(self.events) if e.kind == kind and (run is None or e.run == run)]

    def finish(self) -> bool:
        self.thread.join(BOUND_S)
        assert not self.thread.is_alive(), "the experiment did not end in time"
        return self.outcome[0]


@pytest.fixture
def start():
    """start(experiment) -> Running; a failing test's experiment is still stopped and joined before Ray goes."""
    started: list[Running] = []
    yield lambda experiment: started.append(Running(experiment)) or started[-1]
    for running in started:
        running.experiment.stop()
        running.thread.join(BOUND_S)


def test_a_worker_killed_mid_run_is_retried_from_its_last_checkpoint_unshared_storage(cluster, start, tmp_path):
    victim = "beta-1_seed-0"
    steps = 200  # long enough that the kill lands mid-run on a fast machine too (it comes ~1 s after step 5)
    spec = tiny_spec(steps, betas=[1.0], executor_options={"storage": "unshared", "retries": 2})
    running = start(Experiment(tmp_path / "sweep", spec))
    checkpoint = tmp_path / "sweep/runs" / victim / "checkpoint.pt"
    # the task trains in a temporary folder; the driver holds a checkpoint once the task has pushed one
    assert wait_until(lambda: running.of("started", victim) and checkpoint.exists())
    first = running.of("started", victim)[0].info
    assert first["attempt"] == 1 and first["shared"] is False
    os.kill(first["pid"], signal.SIGKILL)
    killed_at = load_checkpoint(checkpoint).step
    assert killed_at > 0

    assert running.finish()
    retry = running.of("started", victim)[-1].info
    assert retry["attempt"] == 2 and retry["pid"] != first["pid"] and "attempt 2 of 3" in retry["where"]
    result = read_result(checkpoint.parent)
    assert result["steps"] == steps
    resumed_from = steps - result["seconds"]["trained_steps_this_session"]
    assert resumed_from >= killed_at > 0  # from the checkpoint the driver held (or a later one), not from step 0
    after = running.events[running.events.index(running.of("started", victim)[-1]) :]
    steps_after = [e.info["step"] for e in after if e.kind == "step" and e.run == victim]
    assert steps_after and steps_after[0] > resumed_from  # the retry's progress reached the driver
    files = {p.name for p in checkpoint.parent.iterdir()}  # the task's folder came back whole
    assert {"checkpoint.pt", "runlog.h5", "config.json", "result.json"} <= files
    assert not [f for f in files if f.endswith(".tmp")]
    assert not list((tmp_path / "sweep").glob(".bvae-ray-*"))  # the storage marker is cleared


def test_a_task_that_keeps_dying_fails_its_run_with_the_reason_and_the_others_go_on(cluster, start, tmp_path):
    victim, other = "beta-1_seed-0", "beta-4_seed-0"
    running = start(Experiment(tmp_path / "sweep", tiny_spec(40, executor_options={"retries": 0})))
    assert wait_until(lambda: running.of("started", victim))
    os.kill(running.of("started", victim)[0].info["pid"], signal.SIGKILL)
    assert running.finish() is False
    failed = running.of("failed", victim)
    assert len(failed) == 1 and "the Ray task failed after 1 attempt" in failed[0].info["message"]
    assert "died" in failed[0].info["message"]  # Ray's reason: the worker died
    assert running.of("finished", other) and read_result(tmp_path / "sweep/runs" / other)["steps"] == 40
    done = running.of("done")[0].info
    assert done["failed"] == [victim] and done["finished"] == 1


def test_stop_keeps_each_checkpoint_and_a_resume_continues_from_them(cluster, start, tmp_path):
    folder = tmp_path / "sweep"
    running = start(Experiment(folder, tiny_spec(60)))
    checkpoints = [folder / "runs" / name / "checkpoint.pt" for name in ("beta-1_seed-0", "beta-4_seed-0")]
    assert wait_until(lambda: len(running.of("started")) == 2 and running.of("step"))
    assert running.of("started")[0].info["shared"] is True  # this machine's folder: shared storage (auto)
    running.experiment.stop()  # what the window's Stop and the CLI's Ctrl-C do
    assert running.finish() is False
    stopped = {e.run for e in running.of("stopped")}
    assert stopped == {"beta-1_seed-0", "beta-4_seed-0"}
    assert running.of("done")[0].info["stopped"]
    saved = {c.parent.name: load_checkpoint(c).step for c in checkpoints if c.exists()}
    assert saved and all(0 < step < 60 for step in saved.values())  # each saved where it stopped

    again = Experiment(folder)  # experiment.json says ray: `bvae resume` needs nothing else
    assert again.spec.executor == "ray"
    events: list = []
    assert again.run(events.append)
    for name, step in saved.items():
        result = read_result(folder / "runs" / name)
        assert result["steps"] == 60 and result["seconds"]["trained_steps_this_session"] == 60 - step
        first = next(e.info["step"] for e in events if e.kind == "step" and e.run == name)
        assert first > step  # progress of remote runs arrives, and it goes on from the checkpoint


@POSIX
def test_bvae_sweep_on_ray_stops_on_ctrl_c_and_bvae_resume_finishes_it(cluster, tmp_path, capsys):
    folder = tmp_path / "sweep"
    command = [sys.executable, "-m", "bvae_desktop.cli", "sweep", "--out", str(folder), "--betas", "1,4"]
    command += ["--steps", "60", "--batch-size", "8", "--latent-dim", "3", "--device", "cpu", "--val-every", "10"]
    command += ["--checkpoint-every", "5", "--metrics", "none", "--executor", "ray", "--ray-address", cluster]
    command += ["--ray-storage", "unshared", "--task-retries", "1"]
    driver = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        for line in driver.stderr:  # bounded by the run itself: 60 steps
            lines.append(line)
            if re.search(r"step \d+/60", line):
                os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's process group
                break
        lines += driver.stderr.readlines()
        assert driver.wait(BOUND_S) == 130, "".join(lines)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    text = "".join(lines)
    assert "Ray tasks on" in text and "storage unshared" in text and "(Ray task on" in text
    assert "stopped; continue with: bvae resume" in text
    saved = json.loads((folder / "experiment.json").read_text())
    assert saved["executor"] == "ray"
    assert saved["executor_options"] == {"address": cluster, "storage": "unshared", "retries": 1}

    assert main(["resume", str(folder), "--quiet"]) == 0  # in this process: it uses the Ray it is connected to
    err = capsys.readouterr().err
    assert "2 of 2 runs finished" in err
    assert all(read_result(folder / "runs" / name)["steps"] == 60 for name in ("beta-1_seed-0", "beta-4_seed-0"))


@LINUX
def test_a_killed_driver_leaves_no_task_training(cluster, tmp_path):
    folder = tmp_path / "sweep"
    command = [sys.executable, "-m", "bvae_desktop.cli", "sweep", "--out", str(folder), "--betas", "1"]
    command += ["--steps", "100000", "--batch-size", "8", "--latent-dim", "3", "--device", "cpu"]
    command += ["--checkpoint-every", "5", "--metrics", "none", "--executor", "ray", "--ray-address", cluster]
    driver = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    worker = None
    try:
        for line in driver.stderr:
            found = re.search(r"Ray task on .*, pid (\d+)", line)
            worker = int(found.group(1)) if found else worker
            if worker and re.search(r"step \d+/", line):
                break
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # no cleanup runs
        driver.wait(BOUND_S)
    assert worker is not None

    def gone() -> bool:
        try:
            return Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    assert wait_until(gone, timeout=60.0), "the task's worker went on training without its driver"
    checkpoint = folder / "runs/beta-1_seed-0/checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
    time.sleep(1.0)  # nothing may write after the worker is gone: a check over a moment, not a wait on it
    assert (checkpoint.stat().st_mtime_ns if checkpoint.exists() else None) == before
