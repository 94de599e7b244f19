"""Issue 16: the executor registry, the spec's executor settings, the missing-Ray line, and the ray executor's
parts that need no Ray (run files as bytes, the hub, addresses, resources per task)."""

from __future__ import annotations

import json
import socket
import sys

import pytest

from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.errors import BvaeError, ConfigError
from bvae_desktop.core.executors import (
    RAY_INSTALL_HINT,
    default_executor,
    describe,
    executor_names,
    get_executor,
)
from bvae_desktop.core.experiment_run import MetricPlan
from bvae_desktop.core.experiments import SPEC_NAME, Experiment, ExperimentError, ExperimentSpec, load_spec
from bvae_desktop.core.ray_executor import (
    Hub,
    _in_flight,
    check_reachable,
    read_run_files,
    stack_size,
    task_gpus,
    write_run_files,
)


def tiny_spec(**options) -> ExperimentSpec:
    base = TrainConfig(steps=4, batch_size=8, latent_dim=3, val_every=2, val_batches=1, device="cpu")
    return ExperimentSpec.sweep(base, [1.0, 4.0], metrics=MetricPlan(names=[]), **options)


def test_the_registry_names_every_executor_once_with_what_it_needs():
    assert executor_names() == ("local", "processes", "ray")
    assert get_executor("ray").needs == ("ray",) and get_executor("local").needs == ()
    assert [o.flag for o in get_executor("ray").options] == [
        "--ray-address",
        "--ray-storage",
        "--task-cpus",
        "--task-gpus",
        "--task-retries",
    ]
    assert get_executor("ray").probe is not None and get_executor("local").probe is None
    with pytest.raises(ConfigError, match="unknown executor 'slurm'; use one of local, processes, ray"):
        get_executor("slurm")


def test_without_a_setting_the_executor_follows_workers_as_before():
    assert default_executor(1) == "local" and default_executor(3) == "processes"
    assert tiny_spec().executor == "local" and tiny_spec(workers=2).executor == "processes"
    assert "2 at a time in worker processes" in describe(tiny_spec(workers=2))


def test_executor_settings_round_trip_and_old_specs_still_load(tmp_path):
    spec = tiny_spec(executor="ray", executor_options={"address": "10.0.0.5:6379", "gpus": 0.25, "retries": 1})
    data = spec.to_dict()
    assert data["executor"] == "ray"
    assert data["executor_options"] == {"address": "10.0.0.5:6379", "gpus": 0.25, "retries": 1}
    again = ExperimentSpec.from_dict(json.loads(json.dumps(data)))
    assert again.executor == "ray" and again.executor_options == spec.executor_options
    assert again.same_runs_as(tiny_spec(workers=2))  # where runs train is not what they are

    for workers, expected in ((1, "local"), (3, "processes")):  # experiment.json from before executors
        old = tiny_spec(workers=workers).to_dict()
        del old["executor"], old["executor_options"]
        folder = tmp_path / f"old-{workers}"
        folder.mkdir()
        (folder / SPEC_NAME).write_text(json.dumps(old))
        loaded = load_spec(folder)
        assert loaded.executor == expected and loaded.executor_options == {}


@pytest.mark.parametrize(
    ("executor", "options", "message"),
    [
        ("slurm", {}, "unknown executor"),
        ("local", {"address": "x"}, "the local executor has no option 'address'"),
        ("ray", {"storage": "nfs"}, "must be one of auto, shared, unshared"),
        ("ray", {"cpus": -1}, "at least 0"),
        ("ray", {"retries": 1.5}, "whole number"),
        ("ray", {"gpus": "one"}, "must be a number"),
    ],
)
def test_bad_executor_settings_are_refused_naming_the_setting(executor, options, message):
    with pytest.raises(ConfigError, match=message):
        tiny_spec(executor=executor, executor_options=options)


def test_without_ray_choosing_it_says_in_one_line_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as where it is not installed
    assert get_executor("ray").missing() == RAY_INSTALL_HINT
    assert "pip install 'bvae-desktop[cluster]'" in RAY_INSTALL_HINT and "\n" not in RAY_INSTALL_HINT
    experiment = Experiment(tmp_path / "sweep", tiny_spec(executor="ray"))
    with pytest.raises(ConfigError) as caught:
        experiment.run()
    assert str(caught.value) == RAY_INSTALL_HINT
    assert not (tmp_path / "sweep").exists()  # refused before anything was written
    from bvae_desktop.core.ray_executor import import_ray

    with pytest.raises(ConfigError, match="bvae-desktop\\[cluster\\]"):
        import_ray()


def test_run_files_travel_as_bytes_and_land_atomically_result_last(tmp_path):
    task = tmp_path / "task"
    task.mkdir()
    for name, data in {"checkpoint.pt": b"weights", "runlog.h5": b"log", "config.json": b"{}"}.items():
        (task / name).write_bytes(data)
    (task / ".checkpoint.pt.abcd1234.tmp").write_bytes(b"half")  # a write in progress: not sent
    (task / "sub").mkdir()
    files = read_run_files(task)
    assert files == {"checkpoint.pt": b"weights", "config.json": b"{}", "runlog.h5": b"log"}

    driver = tmp_path / "driver"
    driver.mkdir()
    (driver / ".runlog.h5.journal").write_bytes(b"old journal")  # the task's folder no longer has it
    order = []
    import bvae_desktop.core.ray_executor as ray_executor

    real = ray_executor.atomic_write_bytes
    monkey = pytest.MonkeyPatch()
    monkey.setattr(ray_executor, "atomic_write_bytes", lambda path, data: (order.append(path.name), real(path, data)))
    try:
        write_run_files(driver, {**files, "result.json": b"{}"})
    finally:
        monkey.undo()
    assert order[-2:] == ["checkpoint.pt", "result.json"]  # the checkpoint after the log, the result last
    assert sorted(p.name for p in driver.iterdir()) == ["checkpoint.pt", "config.json", "result.json", "runlog.h5"]
    for bad in ("../escape", "/etc/passwd", "..", ""):
        with pytest.raises(BvaeError, match="bad name"):
            write_run_files(driver, {bad: b"x"})


def test_the_hub_counts_attempts_keeps_the_latest_files_and_stops_without_its_driver():
    hub = Hub(driver_timeout_s=60.0)
    first = hub.begin(["a", "b"])
    assert first == {"attempt": 1, "stop": False, "files": {}}
    assert hub.exchange([("step", "a", {"step": 3})]) is False
    assert hub.push_files("a", {"checkpoint.pt": b"step 5"}) is False
    assert hub.drain() == [("step", "a", {"step": 3}), ("files", "a", {"checkpoint.pt": b"step 5"})]
    retry = hub.begin(["a", "b"])  # a worker died: Ray starts the task again
    assert retry["attempt"] == 2 and retry["files"] == {"a": {"checkpoint.pt": b"step 5"}}
    assert hub.attempts("b") == 2
    hub.forget(["a"])
    assert hub.begin(["a"])["files"] == {}
    hub.request_stop()
    assert hub.exchange([]) is True

    orphan = Hub(driver_timeout_s=0.0)  # the driver has not drained or beaten since: gone
    assert orphan.exchange([]) is True


def test_an_address_nobody_answers_at_fails_fast_in_one_line():
    with socket.socket() as sock:  # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConfigError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        check_reachable(f"127.0.0.1:{port}", timeout=2.0)
    with pytest.raises(ConfigError, match="not a Ray address"):
        check_reachable("no-port-here")
    check_reachable("")  # a Ray on this machine, and Ray's own words, are Ray's to resolve
    check_reachable("auto")


def test_gpus_and_runs_per_task_follow_the_device_and_the_cluster():
    assert task_gpus(tiny_spec(executor="ray"), cluster_gpus=8) == 0.0  # device cpu
    auto = tiny_spec(executor="ray")
    auto.base.device = "auto"
    assert task_gpus(auto, cluster_gpus=8) == 1.0 and task_gpus(auto, cluster_gpus=0) == 0.0
    shared = tiny_spec(executor="ray", executor_options={"gpus": 0.25})
    assert task_gpus(shared, cluster_gpus=0) == 0.25
    assert stack_size(auto, 1.0) == 24 and stack_size(auto, 0.0) == 1
    assert stack_size(tiny_spec(executor="ray", stack=3), 1.0) == 3
    # tasks kept submitted: four rounds of what the cluster runs at once, at least 32
    assert _in_flight({"CPU": 2.0}, 1.0, 0.0) == 32
    assert _in_flight({"CPU": 400.0}, 1.0, 0.0) == 1600
    assert _in_flight({"CPU": 400.0, "GPU": 16.0}, 1.0, 0.5) == 128


def test_an_unknown_executor_in_a_saved_experiment_names_the_file(tmp_path):
    data = tiny_spec().to_dict()
    data["executor"] = "slurm"
    (tmp_path / SPEC_NAME).write_text(json.dumps(data))
    with pytest.raises((ConfigError, ExperimentError), match="unknown executor 'slurm'"):
        load_spec(tmp_path)
