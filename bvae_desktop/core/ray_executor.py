"""The `ray` executor: an experiment's runs as Ray tasks, on a Ray cluster or on a Ray started here.

Ray is optional (`pip install bvae-desktop[cluster]`): this module imports it only when used, and
without it `import_ray` raises the one line saying how to install it.

How it goes
-----------
- Each run, or each stack of runs (core/stacked.py: 24 in one pass on a GPU, 1 on a CPU), is one
  Ray task asking for `cpus` CPUs and `gpus` GPUs (a fraction shares a GPU). The task runs the
  same `execute_run`/`execute_stack` as the local executors.
- The driver (this process) creates a small actor, the hub (no CPU of its own). Tasks push their
  progress (kind, run, info) into it and read the stop flag from it every `POLL_S`; the driver drains
  it like the local pool's queue, and beats a heartbeat into it. Stop sets the flag: each task stops
  its runs at their next step, each keeping its checkpoint. A driver that is gone (killed, or not
  heard from for `DRIVER_TIMEOUT_S`) stops the tasks too: a task that cannot reach the hub stops.
- Storage. *shared*: the task trains in `<experiment>/runs/<name>/` itself (every node mounts the
  experiment folder at the same path). *unshared*: the task trains in a temporary folder on its
  node, seeded with the run's files from the driver (a resume continues its checkpoint); whenever a
  checkpoint is written it pushes the run's files (checkpoint, run log, config) to the hub, and it
  returns them with the outcome; the driver writes them into the run folder, each file atomically and
  result.json last. *auto* (the default): the driver writes a marker file with a random token into
  the experiment folder; a task that reads that token there, in a folder it may write, uses shared
  storage, any other unshared.
- Retries. A task whose worker dies (killed, out of memory, node lost) is started again by Ray, up
  to `retries` times; every attempt starts from the runs' last checkpoints (shared: the run folder;
  unshared: the last files pushed to the hub, else the driver's), never from step 0. A task that
  still fails marks its runs failed with the reason; the other tasks go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bvae_desktop.core.atomic import atomic_write_bytes, is_temp_file_name
from bvae_desktop.core.errors import BvaeError, ConfigError
from bvae_desktop.core.executors import RAY_INSTALL_HINT, get_executor
from bvae_desktop.core.experiment_run import RESULT_NAME, MetricPlan, RunSpec, RunStopped, execute_run, execute_stack
from bvae_desktop.core.experiments import EventSink, Experiment, ExperimentEvent, ExperimentSpec
from bvae_desktop.core.trainer import CHECKPOINT_NAME

_log = logging.getLogger(__name__)

MIN_RAY = (2, 9)
POLL_S = 0.5  # how often a task sends its progress and reads the stop flag
HEARTBEAT_S = 2.0  # how often the driver tells the hub it is alive
DRIVER_TIMEOUT_S = 60.0  # a driver not heard from for this long is gone: the tasks stop
CONNECT_TIMEOUT_S = 5.0  # the head's port must answer within this before ray.init is tried
MARKER_PREFIX = ".bvae-ray-"
GPU_STACK = 24  # runs in one pass on a GPU when `stack` is 0 (automatic), as core/stacked.py does


# ----- Ray itself ------------------------------------------------------------------------------------
def import_ray() -> Any:
    """The ray module, or ConfigError with the one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_INSTALL_HINT) from None
    version = tuple(int(part) for part in re.findall(r"\d+", ray.__version__)[:2])
    if version < MIN_RAY:
        raise ConfigError(
            f"the ray executor needs Ray {MIN_RAY[0]}.{MIN_RAY[1]} or later; this is Ray {ray.__version__}: "
            "pip install -U 'ray>=2.9'"
        )
    return ray


def resolve_address(address: str = "") -> str:
    """The address asked for: the option, else RAY_ADDRESS, else "" (a Ray on this machine)."""
    return (address or os.environ.get("RAY_ADDRESS", "")).strip()


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast on an address nobody answers at: ray.init retries such an address for minutes.

    "host:port" and "ray://host:port" are tried with a TCP connection; "auto", "local" and "" are Ray's own.
    """
    if address in ("", "auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigError(
            f"not a Ray address: {address!r} (use HOST:PORT, e.g. 10.0.0.5:6379, or ray://HOST:10001)"
        ) from None
    if not host or port is None:
        raise ConfigError(f"not a Ray address: {address!r} (use HOST:PORT, e.g. 10.0.0.5:6379, or ray://HOST:10001)")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {reason.lower()} (is the head started? `ray start --head`)"
        ) from None


@contextlib.contextmanager
def ray_session(address: str = "") -> Any:
    """Ray, connected: to `address` (else RAY_ADDRESS, else a Ray started on this machine). Shut down
    afterwards only if this call connected it (a test, or an app, may hold its own connection)."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        target = resolve_address(address)
        check_reachable(target)
        try:
            ray.init(address=target or None, logging_level=logging.WARNING)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds (ConnectionError, RuntimeError, ...)
            where = f"the Ray cluster at {target}" if target else "a local Ray"
            raise ConfigError(f"cannot connect to {where}: {_first_line(exc)}") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


@dataclass(frozen=True)
class NodeInfo:
    host: str
    address: str
    cpus: float
    gpus: float
    alive: bool


@dataclass
class ClusterInfo:
    """What `cluster_info` found: the nodes, and what a task there can run."""

    address: str
    ray_version: str
    nodes: list[NodeInfo] = field(default_factory=list)
    worker: str = ""  # what a probe task reported ("bvae-desktop 0.1.0, torch 2.x ...") or why it failed

    @property
    def cpus(self) -> float:
        return sum(node.cpus for node in self.nodes if node.alive)

    @property
    def gpus(self) -> float:
        return sum(node.gpus for node in self.nodes if node.alive)

    def summary(self) -> str:
        alive = sum(node.alive for node in self.nodes)
        return (
            f"{alive} node{'s' if alive != 1 else ''}, {self.cpus:g} CPUs, {self.gpus:g} GPUs "
            f"(Ray {self.ray_version} at {self.address})"
        )

    def lines(self) -> list[str]:
        lines = [self.summary()]
        for node in self.nodes:
            state = "" if node.alive else " (dead)"
            lines.append(f"  {node.host} {node.address}: {node.cpus:g} CPUs, {node.gpus:g} GPUs{state}")
        if self.worker:
            lines.append(f"  workers: {self.worker}")
        return lines


def cluster_info(address: str = "", *, probe: bool = True, probe_timeout: float = 60.0) -> ClusterInfo:
    """Connect, list the nodes with their CPUs and GPUs, and (probe) run one tiny task that imports
    bvae_desktop and torch on a worker: a cluster whose nodes lack the package fails here, not mid-sweep."""
    with ray_session(address) as ray:
        nodes = [
            NodeInfo(
                host=str(node.get("NodeManagerHostname", "")),
                address=str(node.get("NodeManagerAddress", "")),
                cpus=float(node.get("Resources", {}).get("CPU", 0.0)),
                gpus=float(node.get("Resources", {}).get("GPU", 0.0)),
                alive=bool(node.get("Alive", False)),
            )
            for node in ray.nodes()
        ]
        info = ClusterInfo(_connected_address(ray, address), ray.__version__, nodes)
        if probe:
            try:
                found = ray.get(ray.remote(num_cpus=0)(_probe).remote(), timeout=probe_timeout)
                info.worker = (
                    f"bvae-desktop {found['bvae']}, torch {found['torch']}, {found['cuda']} CUDA device(s) "
                    f"visible, on {found['host']}"
                )
            except Exception as exc:  # noqa: BLE001 - any failure is the answer to show
                info.worker = f"a task could not run bvae_desktop there: {_first_line(exc)}"
        return info


def _probe() -> dict[str, Any]:
    import torch

    import bvae_desktop

    return {
        "host": socket.gethostname(),
        "bvae": getattr(bvae_desktop, "__version__", "?"),
        "torch": torch.__version__,
        "cuda": torch.cuda.device_count(),
    }


def _connected_address(ray: Any, asked: str) -> str:
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # noqa: BLE001 - Ray client has no GCS address to show
        return resolve_address(asked) or "local"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


# ----- settings ------------------------------------------------------------------------------------
def _option(spec: ExperimentSpec, name: str) -> Any:
    return get_executor("ray").value(spec.executor_options, name)


def task_gpus(spec: ExperimentSpec, cluster_gpus: float | None) -> float:
    """GPUs per task: as set, else 1 for a CUDA device (or auto on a cluster that has GPUs), else 0."""
    gpus = _option(spec, "gpus")
    if gpus is not None:
        return float(gpus)
    device = spec.base.device
    if device.startswith("cuda"):
        return 1.0
    if device == "auto" and cluster_gpus:
        return 1.0
    return 0.0


def stack_size(spec: ExperimentSpec, gpus: float) -> int:
    """Runs per task: `stack` as set, else 24 on a GPU and 1 on CPUs (judged by the task's GPUs: the
    driver may have none)."""
    if spec.stack:
        return spec.stack
    return GPU_STACK if gpus > 0 and spec.base.device != "cpu" else 1


def describe_ray(spec: ExperimentSpec) -> str:
    address = _option(spec, "address") or os.environ.get("RAY_ADDRESS", "") or "a Ray started on this machine"
    gpus = _option(spec, "gpus")
    stack = f"{spec.stack} runs" if spec.stack else f"{GPU_STACK} runs with a GPU, 1 without"
    return (
        f"Ray tasks on {address}; per task {_option(spec, 'cpus'):g} CPU, "
        f"{'GPUs auto' if gpus is None else f'{gpus:g} GPU'}, up to {stack}; storage {_option(spec, 'storage')}; "
        f"{_option(spec, 'retries')} retries"
    )


# ----- run folders as bytes (unshared storage) --------------------------------------------------------
def read_run_files(run_dir: Path, *, with_result: bool = True) -> dict[str, bytes]:
    """Every file of a run folder (not its temporary files), by name."""
    files: dict[str, bytes] = {}
    try:
        entries = sorted(os.scandir(run_dir), key=lambda entry: entry.name)
    except FileNotFoundError:
        return files
    for entry in entries:
        if entry.is_file(follow_symlinks=False) and not is_temp_file_name(entry.name):
            if entry.name == RESULT_NAME and not with_result:
                continue
            with open(entry.path, "rb") as fh:
                files[entry.name] = fh.read()
    return files


def write_run_files(run_dir: Path, files: dict[str, bytes]) -> None:
    """Make `run_dir` hold exactly `files` (a task's run folder): each file written atomically, the
    checkpoint after the run log, result.json last; files the task's folder no longer has are removed."""
    for name in files:
        if not name or name in (".", "..") or Path(name).name != name or "/" in name or "\\" in name:
            raise BvaeError(f"{run_dir}: a Ray task sent a file with a bad name: {name!r}")
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in sorted(files, key=lambda n: (n == RESULT_NAME, n == CHECKPOINT_NAME, n)):
        atomic_write_bytes(run_dir / name, files[name])
    for entry in os.scandir(run_dir):
        stale = entry.name not in files and entry.name != RESULT_NAME and not is_temp_file_name(entry.name)
        if stale and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


# ----- the hub: an actor between the driver and its tasks ----------------------------------------------
class Hub:
    """Progress from the tasks, the stop flag and the driver's heartbeat; with unshared storage also
    each run's latest files, so a retried task continues from the last checkpoint pushed."""

    def __init__(self, driver_timeout_s: float = DRIVER_TIMEOUT_S) -> None:
        self._messages: list[tuple[str, str, Any]] = []
        self._stop = False
        self._beat = time.monotonic()
        self._timeout = driver_timeout_s
        self._files: dict[str, dict[str, bytes]] = {}
        self._attempts: dict[str, int] = {}

    def stopping(self) -> bool:
        return self._stop or time.monotonic() - self._beat > self._timeout

    def beat(self) -> None:
        self._beat = time.monotonic()

    def request_stop(self) -> None:
        self._stop = True

    def begin(self, names: list[str]) -> dict[str, Any]:
        """A task (attempt) starts: its attempt number, the stop flag and its runs' latest pushed files."""
        attempt = self._attempts.get(names[0], 0) + 1
        for name in names:
            self._attempts[name] = attempt
        files = {name: self._files[name] for name in names if name in self._files}
        return {"attempt": attempt, "stop": self.stopping(), "files": files}

    def exchange(self, messages: list[tuple[str, str, Any]]) -> bool:
        self._messages.extend(messages)
        return self.stopping()

    def push_files(self, name: str, files: dict[str, bytes]) -> bool:
        self._files[name] = files
        self._messages.append(("files", name, files))
        return self.stopping()

    def drain(self) -> list[tuple[str, str, Any]]:
        self._beat = time.monotonic()
        messages, self._messages = self._messages, []
        return messages

    def attempts(self, name: str) -> int:
        return self._attempts.get(name, 0)

    def forget(self, names: list[str]) -> None:
        for name in names:
            self._files.pop(name, None)


class _HubLink:
    """A task's side of the hub: messages buffered and sent every `poll_s` by a thread, which also reads
    the stop flag, so `stopping` costs the training loop nothing."""

    def __init__(self, ray: Any, hub: Any, poll_s: float) -> None:
        self.ray, self.hub, self.poll_s = ray, hub, poll_s
        self._buffer: list[tuple[str, str, Any]] = []
        self._lock = threading.Lock()  # the buffer
        self._sending = threading.Lock()  # one call on the hub at a time: messages arrive in order
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def begin(self, names: list[str]) -> dict[str, Any]:
        start = self.ray.get(self.hub.begin.remote(names))
        if start["stop"]:
            self._stop.set()
        self._thread = threading.Thread(target=self._loop, name="bvae-hub-link", daemon=True)
        self._thread.start()
        return start

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def put(self, message: tuple[str, str, Any]) -> None:
        with self._lock:
            if message[0] == "step":  # only the latest step of a run is worth sending
                self._buffer = [m for m in self._buffer if not (m[0] == "step" and m[1] == message[1])]
            self._buffer.append(message)

    def push_files(self, name: str, files: dict[str, bytes]) -> None:
        self.flush()  # what happened before this checkpoint arrives before it
        with self._sending:
            self._answer(lambda: self.hub.push_files.remote(name, files))

    def _loop(self) -> None:
        while not self._closing.wait(self.poll_s):
            self.flush()

    def flush(self) -> None:
        with self._sending:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not self._answer(lambda: self.hub.exchange.remote(batch)):
                with self._lock:  # not delivered: send it with the next batch
                    self._buffer[:0] = batch

    def _answer(self, call: Any) -> bool:
        """Make a call on the hub and read the stop flag from its answer; False when it did not arrive."""
        try:
            if self.ray.get(call(), timeout=30.0):
                self._stop.set()
            return True
        except self.ray.exceptions.GetTimeoutError:
            return False  # a busy hub: try again at the next poll
        except Exception:  # noqa: BLE001 - the hub is gone, so is its driver: stop, keeping checkpoints
            self._stop.set()
            return True

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()


# ----- the task -------------------------------------------------------------------------------------
def run_task(
    run_data: list[dict[str, Any]],
    plan_data: dict[str, Any],
    hub: Any,
    context: dict[str, Any],
    seed: dict[str, dict[str, bytes]] | None,
) -> dict[str, dict[str, Any]]:
    """One run or one stack of runs, in a Ray worker; per run plain data: status, message or result, and
    (unshared storage) the run folder's files."""
    import ray

    runs = [RunSpec.from_dict(data) for data in run_data]
    names = [run.name for run in runs]
    link = _HubLink(ray, hub, context["poll_s"])
    scratch: Path | None = None
    try:
        start = link.begin(names)
        if link.stopping:
            return {
                name: {"status": "stopped", "message": f"{name} not started: the experiment was stopped"}
                for name in names
            }
        folder = Path(context["folder"])
        shared = _storage_is_shared(folder, context)
        if shared is None:
            message = (
                f"the experiment folder {folder} is not reachable from the Ray node {socket.gethostname()}: "
                "no shared filesystem there (use --ray-storage unshared, or auto)"
            )
            return {name: {"status": "failed", "message": message} for name in names}
        if shared:
            run_dirs = [folder / "runs" / name for name in names]
        else:
            scratch = Path(tempfile.gettempdir()) / "bvae-ray" / f"{context['token']}-{names[0]}"
            shutil.rmtree(scratch, ignore_errors=True)  # what an earlier attempt on this node left
            run_dirs = [scratch / name for name in names]
            for name, run_dir in zip(names, run_dirs, strict=True):
                files = start["files"].get(name) or (seed or {}).get(name) or {}
                run_dir.mkdir(parents=True, exist_ok=True)
                for file_name, data in files.items():
                    (run_dir / Path(file_name).name).write_bytes(data)
        gpus = float(context["gpus"])
        if gpus == 0:  # a task that asked for no GPU must not take one Ray gave another task
            runs = [
                dataclasses.replace(run, config=dataclasses.replace(run.config, device="cpu"))
                if run.config.device == "auto"
                else run
                for run in runs
            ]
        import torch

        torch.set_num_threads(max(1, round(float(context["cpus"]))))
        where = f"Ray task on {socket.gethostname()}, pid {os.getpid()}"
        if start["attempt"] > 1:
            where += f", attempt {start['attempt']} of {context['retries'] + 1}"
        for run in runs:
            info = {"label": run.label, "total": run.config.steps, "where": where}
            info.update(attempt=start["attempt"], pid=os.getpid(), node=socket.gethostname(), shared=shared)
            link.put(("started", run.name, info))
        link.flush()  # the table shows "training" now, not at the first poll
        pusher = None if shared else _CheckpointPusher(link, names, run_dirs, context["poll_s"])

        def should_stop() -> bool:
            if pusher is not None:
                pusher.check()
            return link.stopping

        outcomes = _train(runs, run_dirs, MetricPlan.from_dict(plan_data), should_stop, link.put)
        plain = {name: _plain_outcome(outcome) for name, outcome in outcomes.items()}
        if not shared:
            for name, run_dir in zip(names, run_dirs, strict=True):
                plain[name]["files"] = read_run_files(run_dir)
        return plain
    finally:
        link.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _storage_is_shared(folder: Path, context: dict[str, Any]) -> bool | None:
    """True: train in the experiment folder; False: in a temporary one; None: shared asked for, not there."""
    mode = context["storage"]
    if mode == "unshared":
        return False
    try:
        reachable = (folder / f"{MARKER_PREFIX}{context['token']}").read_text() == context["token"]
    except (OSError, UnicodeDecodeError):
        reachable = False
    reachable = reachable and os.access(folder, os.W_OK)
    if mode == "shared":
        return True if reachable else None
    return reachable


class _CheckpointPusher:
    """Unshared storage: whenever a run's checkpoint changes, send the run's files to the hub (from the
    training thread, between steps, so the run log is never caught mid-write)."""

    def __init__(self, link: _HubLink, names: list[str], run_dirs: list[Path], every_s: float) -> None:
        self.link, self.names, self.run_dirs, self.every_s = link, names, run_dirs, every_s
        self._seen: dict[str, tuple[int, int]] = {}
        self._next = 0.0
        for name, run_dir in zip(names, run_dirs, strict=True):  # the seeded checkpoint is the driver's already
            signature = self._signature(run_dir)
            if signature is not None:
                self._seen[name] = signature

    @staticmethod
    def _signature(run_dir: Path) -> tuple[int, int] | None:
        try:
            stat = (run_dir / CHECKPOINT_NAME).stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def check(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every_s
        for name, run_dir in zip(self.names, self.run_dirs, strict=True):
            signature = self._signature(run_dir)
            if signature is not None and signature != self._seen.get(name):
                self._seen[name] = signature
                self.link.push_files(name, read_run_files(run_dir, with_result=False))


def _train(runs: list[RunSpec], run_dirs: list[Path], plan: MetricPlan, should_stop: Any, put: Any) -> dict[str, Any]:
    if len(runs) == 1:
        run = runs[0]
        try:
            return {
                run.name: execute_run(
                    run,
                    run_dirs[0],
                    plan,
                    should_stop=should_stop,
                    progress=lambda kind, info: put((kind, run.name, info)),
                )
            }
        except Exception as exc:  # noqa: BLE001 - a run's failure is its outcome
            return {run.name: exc}
    try:
        return execute_stack(
            runs, run_dirs, plan, should_stop=should_stop, progress=lambda kind, name, info: put((kind, name, info))
        )
    except Exception as exc:  # noqa: BLE001
        return {run.name: exc for run in runs}


def _plain_outcome(outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, RunStopped):
        return {"status": "stopped", "message": str(outcome)}
    if isinstance(outcome, BaseException):
        return {"status": "failed", "message": f"{type(outcome).__name__}: {outcome}"}
    return {"status": "finished", "result": outcome}


# ----- the driver -----------------------------------------------------------------------------------
class RayExecutor:
    """Runs an experiment's pending runs as Ray tasks and reports them like the local executors."""

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self.spec = experiment.spec
        self._ray: Any = None
        self._hub: Any = None

    def run(self, pending: list[RunSpec], sink: EventSink, failed: list[str]) -> None:
        spec = self.spec
        with ray_session(_option(spec, "address")) as ray:
            self._ray = ray
            resources = ray.cluster_resources()
            gpus = task_gpus(spec, resources.get("GPU", 0.0))
            cpus = float(_option(spec, "cpus"))
            self._check_fits(ray, cpus, gpus, resources)
            storage = _option(spec, "storage")
            retries = int(_option(spec, "retries"))
            from bvae_desktop.core.stacked import group_stackable

            stacks = [
                [pending[i] for i in group]
                for group in group_stackable([run.config for run in pending], stack_size(spec, gpus))
            ]
            folder = self.experiment.folder.resolve()
            token = secrets.token_hex(8)
            marker = self._write_marker(folder, token)
            sink(
                ExperimentEvent(
                    "note",
                    info={
                        "message": f"Ray {ray.__version__} at {_connected_address(ray, _option(spec, 'address'))}: "
                        f"{len(stacks)} task(s), {cpus:g} CPU and {gpus:g} GPU each, storage {storage}"
                    },
                )
            )
            self._hub = hub = ray.remote(num_cpus=0, max_restarts=0)(Hub).options(**_near_here(ray)).remote()
            beating = threading.Event()
            beat = threading.Thread(target=self._heartbeat, args=(beating,), name="bvae-ray-heartbeat", daemon=True)
            beat.start()
            context = {
                "folder": str(folder),
                "token": token,
                "storage": storage,
                "cpus": cpus,
                "gpus": gpus,
                "retries": retries,
                "poll_s": POLL_S,
            }
            task = ray.remote(run_task)
            options = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": retries, "retry_exceptions": False}
            plan = spec.metrics.to_dict()

            def submit(stack: list[RunSpec]) -> Any:
                seed = None if storage == "shared" else self._seed(stack)
                name = f"bvae {stack[0].name}" + (f" +{len(stack) - 1}" if len(stack) > 1 else "")
                return task.options(name=name, **options).remote([r.to_dict() for r in stack], plan, hub, context, seed)

            try:
                self._wait(stacks, submit, _in_flight(resources, cpus, gpus), sink, failed)
            finally:
                beating.set()
                beat.join()
                if ray.is_initialized():  # (any other call on a Ray shut down under us would start a new one)
                    with contextlib.suppress(Exception):
                        ray.kill(hub)
                with contextlib.suppress(OSError):
                    marker.unlink()
                self._hub = None

    def _check_fits(self, ray: Any, cpus: float, gpus: float, resources: dict[str, float]) -> None:
        where = _connected_address(ray, _option(self.spec, "address"))
        if gpus > 0 and not resources.get("GPU"):
            raise ConfigError(
                f"each task asks for {gpus:g} GPU but the Ray cluster at {where} has none: "
                "give --task-gpus 0 (and --device cpu or auto)"
            )
        biggest = max((float(n.get("Resources", {}).get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")), default=0)
        if cpus > biggest:
            raise ConfigError(
                f"each task asks for {cpus:g} CPUs but no node of the Ray cluster at {where} has more than {biggest:g}"
            )

    @staticmethod
    def _write_marker(folder: Path, token: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(f"{MARKER_PREFIX}*"):  # a killed driver's
            with contextlib.suppress(OSError):
                stale.unlink()
        marker = folder / f"{MARKER_PREFIX}{token}"
        atomic_write_bytes(marker, token.encode("ascii"))
        return marker

    def _seed(self, stack: list[RunSpec]) -> dict[str, dict[str, bytes]] | None:
        """The files of runs that have some (a resume), for tasks that train away from the folder."""
        seed = {run.name: read_run_files(self.experiment.run_dir(run), with_result=False) for run in stack}
        seed = {name: files for name, files in seed.items() if files}
        return seed or None

    def _heartbeat(self, done: threading.Event) -> None:
        while not done.wait(HEARTBEAT_S) and self._ray.is_initialized():
            with contextlib.suppress(Exception):
                self._hub.beat.remote()

    def _wait(self, stacks: list[list[RunSpec]], submit: Any, window: int, sink: EventSink, failed: list[str]) -> None:
        """Keep up to `window` tasks submitted (a sweep of thousands does not hand Ray thousands of tasks,
        nor read every resumed run's files, at once), relay their progress, settle each as it ends."""
        ray, hub = self._ray, self._hub
        waiting = list(stacks)
        refs: dict[Any, list[RunSpec]] = {}
        stop_sent = False
        while refs or (waiting and not self.experiment.stopping):
            while waiting and len(refs) < window and not self.experiment.stopping:
                stack = waiting.pop(0)
                refs[submit(stack)] = stack
            if self.experiment.stopping and not stop_sent:
                hub.request_stop.remote()  # runs not submitted yet stay waiting, as in the other executors
                stop_sent = True
            if not refs:
                break
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0.25)
            self._drain(sink)
            for ref in ready:
                self._settle(ref, refs.pop(ref), sink, failed)
        self._drain(sink)

    def _drain(self, sink: EventSink) -> None:
        for kind, name, info in self._ray.get(self._hub.drain.remote()):
            if kind == "files":
                try:
                    write_run_files(self.experiment.folder / "runs" / name, info)
                except (OSError, BvaeError) as exc:  # the outcome's files will be tried again
                    _log.warning("%s: could not write the checkpoint a Ray task sent: %s", name, exc)
            else:
                sink(ExperimentEvent(kind, name, info))

    def _settle(self, ref: Any, stack: list[RunSpec], sink: EventSink, failed: list[str]) -> None:
        ray = self._ray
        names = [run.name for run in stack]
        try:
            outcomes = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - a task that failed for good fails its runs, not the sweep
            attempts = max(1, ray.get(self._hub.attempts.remote(names[0])))
            message = f"the Ray task failed after {attempts} attempt{'s' if attempts != 1 else ''}: {_first_line(exc)}"
            outcomes = {name: {"status": "failed", "message": message} for name in names}
        self._hub.forget.remote(names)
        for run in stack:
            outcome = outcomes.get(run.name) or {"status": "failed", "message": "the Ray task returned nothing for it"}
            files = outcome.pop("files", None)
            if files is not None:
                try:
                    write_run_files(self.experiment.run_dir(run), files)
                except (OSError, BvaeError) as exc:
                    outcome = {"status": "failed", "message": f"could not write the run's files: {exc}"}
            if outcome["status"] == "finished":
                self.experiment.publish()
                sink(ExperimentEvent("finished", run.name, {"label": run.label}, outcome["result"]))
            elif outcome["status"] == "stopped":
                sink(ExperimentEvent("stopped", run.name, {"message": outcome["message"]}))
            else:
                failed.append(run.name)
                sink(ExperimentEvent("failed", run.name, {"message": outcome["message"]}))


def _in_flight(resources: dict[str, float], cpus: float, gpus: float) -> int:
    """Tasks to keep submitted: four rounds of what the cluster can run at once (Ray queues the rest, and an
    autoscaler sees them as demand), at least 32."""
    slots = resources.get("CPU", 0.0) / cpus if cpus > 0 else float("inf")
    if gpus > 0:
        slots = min(slots, resources.get("GPU", 0.0) / gpus)
    return max(32, int(4 * slots)) if slots != float("inf") else 1_000_000


def _near_here(ray: Any) -> dict[str, Any]:
    """Place the hub on the driver's node when Ray can say which it is (its traffic is the driver's)."""
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = ray.get_runtime_context().get_node_id()
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=True)}
    except Exception:  # noqa: BLE001 - Ray client, older Ray: anywhere will do
        return {}


__all__ = [
    "ClusterInfo",
    "Hub",
    "NodeInfo",
    "RayExecutor",
    "describe_ray",
    "import_ray",
    "ray_session",
    "read_run_files",
    "run_task",
    "cluster_info",
    "write_run_files",
]
