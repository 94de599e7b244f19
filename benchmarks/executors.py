"""The same small sweep with each executor on this machine: wall time, and overhead per run.

Every executor trains the same runs (procedural dSprites, `--runs` β values × 1 seed, `--steps` steps,
batch 16, 3 latents, no metrics, CPU) into a fresh folder:

    local             one run after another in this process (with the threads each worker gets:
                      --local-threads 0 gives it every core, as `bvae sweep` does)
    processes         `--workers` worker processes (spawned per sweep)
    ray (shared)      a Ray task per run, writing into the experiment folder
    ray (unshared)    the same, training in a temporary folder and sending the files back (forced)

Ray is started once, before the Ray rows, as a cluster would already be running (`ray.init(num_cpus=
--workers)`); its start time is reported apart. Reported per executor: wall time of `Experiment.run`,
the runs' own training time (result.json: seconds.train, the training loop only), and the overhead per
run: (wall x runs at once - sum of training time) / runs, i.e. the time a slot spent not training:
process or task start, imports, dataset, connection, checkpoints sent, results and report written.

    python benchmarks/executors.py [--runs 4] [--steps 100] [--workers 2] [--repeat 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, also when not installed

from bvae_desktop.core.config import TrainConfig  # noqa: E402
from bvae_desktop.core.experiment_run import MetricPlan, read_result  # noqa: E402
from bvae_desktop.core.experiments import Experiment, ExperimentSpec  # noqa: E402


def sweep(folder: Path, runs: int, steps: int, executor: str, workers: int, options: dict) -> dict[str, float]:
    base = TrainConfig(
        steps=steps,
        batch_size=16,
        latent_dim=3,
        val_every=steps,
        val_batches=1,
        checkpoint_every=max(1, steps // 2),
        device="cpu",
    )
    betas = [2.0**i for i in range(runs)]
    spec = ExperimentSpec.sweep(
        base,
        betas,
        metrics=MetricPlan(names=[]),
        workers=workers if executor == "processes" else 1,
        stack=1,
        executor=executor,
        executor_options=options,
    )
    experiment = Experiment(folder, spec)
    started = time.perf_counter()
    complete = experiment.run()
    wall = time.perf_counter() - started
    if not complete:
        raise SystemExit(f"{executor}: the sweep did not finish")
    train = sum(read_result(experiment.run_dir(run))["seconds"]["train"] for run in experiment.runs)
    return {"wall_s": wall, "train_s": train}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=4, help="runs in the sweep (β = 1, 2, 4, ...)")
    parser.add_argument("--steps", type=int, default=100, help="training steps per run")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, and the local Ray's CPUs")
    parser.add_argument(
        "--local-threads",
        type=int,
        default=None,
        help="torch threads of the local row (default: cores / --workers, what each worker and task gets, so the "
        "rows differ by executor only; 0: torch's default, all cores, as `bvae sweep` in this process)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each row N times and keep the fastest (noisy machines)"
    )
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray rows")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()

    rows: list[tuple[str, str, dict, int]] = [
        ("local", "local", {}, 1),
        ("processes", "processes", {}, min(args.workers, args.runs)),
    ]
    report: dict[str, dict[str, float]] = {}
    ray_start = None
    if not args.no_ray:
        try:
            import ray
        except ImportError:
            print("(no Ray here: pip install 'bvae-desktop[cluster]' for the Ray rows)", file=sys.stderr)
        else:
            at_once = min(args.workers, args.runs)
            rows += [
                ("ray (shared)", "ray", {"storage": "shared"}, at_once),
                ("ray (unshared)", "ray", {"storage": "unshared"}, at_once),
            ]
    with tempfile.TemporaryDirectory(prefix="bvae-bench-executors-") as tmp:
        import torch

        default_threads = torch.get_num_threads()
        local_threads = args.local_threads
        if local_threads is None:
            local_threads = max(1, (os.cpu_count() or 1) // args.workers)
        for label, executor, options, at_once in rows:
            torch.set_num_threads(local_threads or default_threads if executor == "local" else default_threads)
            if executor == "ray" and ray_start is None:
                started = time.perf_counter()
                ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="ERROR")
                ray_start = time.perf_counter() - started
            tries = [
                sweep(
                    Path(tmp) / f"{label.replace(' ', '_')}-{i}", args.runs, args.steps, executor, args.workers, options
                )
                for i in range(max(1, args.repeat))
            ]
            numbers = min(tries, key=lambda row: row["wall_s"])
            numbers["at_once"] = at_once
            numbers["overhead_per_run_s"] = (numbers["wall_s"] * at_once - numbers["train_s"]) / args.runs
            report[label] = numbers
            print(f"  {label}: {numbers['wall_s']:.1f} s", file=sys.stderr)
    if ray_start is not None:
        ray.shutdown()

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"{args.runs} runs x {args.steps} steps (batch 16, 3 latents, CPU, no metrics); load average {load}")
    print(
        f"torch threads: local {local_threads or default_threads}, each worker or task {max(1, (os.cpu_count() or 1) // args.workers)}"
    )
    print(
        f"{'executor':<16} {'at once':>7} {'wall s':>8} {'train s (sum)':>14} {'overhead/run s':>15} {'wall/run s':>11}"
    )
    for label, row in report.items():
        print(
            f"{label:<16} {row['at_once']:>7} {row['wall_s']:>8.1f} {row['train_s']:>14.1f} "
            f"{row['overhead_per_run_s']:>15.2f} {row['wall_s'] / args.runs:>11.2f}"
        )
    if ray_start is not None:
        print(f"starting the local Ray (once, before the Ray rows; a cluster is already running): {ray_start:.1f} s")
        report["ray_start_s"] = {"wall_s": ray_start}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
