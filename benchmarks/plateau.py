"""The early KL plateau: steps until a new dSprites β-VAE's validation reconstruction falls below a threshold,
for each weight init (TrainConfig.weight_init) and seed, at the default settings (β = 4, lr 5e-4, batch 64).

On the plateau the decoder draws the mean image (a blob, ~720 nats per image) and KL ≈ 0; a model that
uses its latents falls far below 300 nats. Each run validates every --val-every steps and stops when it
crosses the threshold, or at --max-steps; with --to-the-end it trains on to --max-steps and reports the
final validation reconstruction too (does the faster start cost the end?).

    OMP_NUM_THREADS=1 python benchmarks/plateau.py --seeds 0 1 2 --inits he torch
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from bvae_desktop.core.config import WEIGHT_INITS, TrainConfig
from bvae_desktop.core.trainer import Trainer


def run(init: str, seed: int, threshold: float, max_steps: int, val_every: int, to_the_end: bool) -> dict:
    config = TrainConfig(
        seed=seed, steps=max_steps, val_every=val_every, checkpoint_every=max_steps, device="cpu", weight_init=init
    )
    crossed, last, started = None, None, time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, run_dir=Path(folder) / "run")
        for event in trainer.steps():
            if event.validation is None:
                continue
            last = (event.step, event.validation["recon"], event.validation["kl"])
            if crossed is None and event.validation["recon"] < threshold:
                crossed = event.step
                if not to_the_end:
                    trainer.stop()
    return {
        "init": init,
        "seed": seed,
        "steps_to_threshold": crossed,
        "last_step": last[0] if last else None,
        "last_val_recon": last[1] if last else None,
        "last_val_kl": last[2] if last else None,
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inits", nargs="+", choices=WEIGHT_INITS, default=list(WEIGHT_INITS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threshold", type=float, default=300.0, help="validation recon, nats per image")
    parser.add_argument("--max-steps", type=int, default=2500)
    parser.add_argument("--val-every", type=int, default=50)
    parser.add_argument("--to-the-end", action="store_true", help="train on to --max-steps after crossing")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    print(f"| init | seed | steps to val recon < {args.threshold:g} | last step | its val recon | its KL |")
    print("|---|---:|---:|---:|---:|---:|")
    for seed in args.seeds:
        for init in args.inits:
            row = run(init, seed, args.threshold, args.max_steps, args.val_every, args.to_the_end)
            rows.append(row)
            crossed = row["steps_to_threshold"] if row["steps_to_threshold"] is not None else f"> {args.max_steps}"
            print(
                f"| {init} | {seed} | {crossed} | {row['last_step']} | {row['last_val_recon']:.1f} | "
                f"{row['last_val_kl']:.2f} |",
                flush=True,
            )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
