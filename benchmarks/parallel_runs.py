"""Sweep throughput: N runs at once in worker processes against one run alone, in the same session.

What a β sweep gains from `--workers`: each worker trains its own model (procedural dSprites,
batch 64 by default) for `--steps` steps; the rate counts the steps after `--warmup`. Reported:
steps/s of one run alone (the baseline), per run and in total with N at once, and the ratio of
the totals. On a GPU the small Burgess net leaves the device mostly idle, so runs side by side
fill it; on a CPU they share the cores.

    python benchmarks/parallel_runs.py [--workers 1 4] [--steps 300] [--warmup 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, also when not installed


def _init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _train(args: tuple[int, int, int, str]) -> float:
    """Steps per second of one run after its warm-up steps."""
    steps, warmup, batch, device = args
    from bvae_desktop.core.config import TrainConfig
    from bvae_desktop.core.trainer import Trainer

    config = TrainConfig(steps=steps, batch_size=batch, val_every=10**9, checkpoint_every=10**9, device=device)
    trainer = Trainer(config)
    started = 0.0
    for event in trainer.steps():
        if event.step == warmup:
            if trainer.device.type == "cuda":
                import torch

                torch.cuda.synchronize()
            started = time.perf_counter()
    if trainer.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    return (steps - warmup) / (time.perf_counter() - started)


def measure(workers: int, steps: int, warmup: int, batch: int, device: str) -> list[float]:
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init, initargs=(threads,)) as pool:
        return pool.map(_train, [(steps, warmup, batch, device)] * workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    counts = sorted(set([1, *args.workers]))
    report: dict[str, dict[str, float]] = {}
    for workers in counts:
        rates = measure(workers, args.steps, args.warmup, args.batch_size, args.device)
        report[str(workers)] = {"per_run": min(rates), "mean_per_run": sum(rates) / len(rates), "total": sum(rates)}
    base = report["1"]["total"]
    print(f"{'workers':>8} {'steps/s per run (slowest)':>26} {'steps/s total':>14} {'vs one run':>11}")
    for workers, row in report.items():
        row["ratio"] = row["total"] / base
        print(f"{workers:>8} {row['per_run']:>26.1f} {row['total']:>14.1f} {row['ratio']:>10.2f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {"batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "workers": report},
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
