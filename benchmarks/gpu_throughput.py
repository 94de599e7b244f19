"""Training throughput on procedural dSprites, every way we train, against the anchor libraries' pipeline, in one run.

Pipelines (same Burgess net, 10 latents, β-VAE loss, Adam, lr 5e-4):
- anchor: what disentangling-vae and 1Konny/Beta-VAE do: a per-item torch Dataset over the images
  (rendered once into an array), a DataLoader, eager float32 NCHW, `.item()` of the loss every step;
- today: our Trainer reading every step's numbers on the host (sync_every 1), eager;
- no-sync: the Trainer reading in blocks of 50 steps, the finite check and Adam's skip on the device;
- compiled: no-sync plus torch.compile of the step (compile time excluded, reported apart);
- stacked K: K models in one pass (`core/stacked.py`; vmap on a GPU, members in turn on a CPU).

For each, at each batch size: images/s per model and in total, the ratio of the total to the anchor's
in this same run, and peak memory (CUDA: max allocated; CPU: the process's peak RSS, reset before each
pipeline through /proc/self/clear_refs on Linux).

    python benchmarks/gpu_throughput.py                     # CUDA if present, else a short CPU run
    python benchmarks/gpu_throughput.py --device cpu --steps 10 --stacks 8
    python benchmarks/gpu_throughput.py --profile           # + top kernels and launches per step

`--profile` adds the torch profiler's view of the no-sync and compiled steps: the top kernels by
device time and the kernel launches per training step (what a missed target is explained by).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bvae_desktop.core.config import TrainConfig  # noqa: E402
from bvae_desktop.core.data import load_dataset  # noqa: E402
from bvae_desktop.core.device import device_label, pick_device  # noqa: E402
from bvae_desktop.core.nets import BetaVAE  # noqa: E402
from bvae_desktop.core.objectives import loss_terms  # noqa: E402
from bvae_desktop.core.stacked import StackedTrainer  # noqa: E402
from bvae_desktop.core.trainer import Trainer  # noqa: E402

ANCHOR_IMAGES = 16_384
LATENTS = 10


def beta_vae_loss(out: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """recon + 4·KL, Bernoulli: the β-VAE loss every pipeline here computes."""
    recon, _kl_dims, kl = loss_terms(out, x, mean, logvar, "bernoulli")
    return recon + 4.0 * kl


@dataclass
class Measure:
    name: str
    batch: int
    models: int
    images_per_s: float  # all models together
    peak_bytes: int
    compile_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def per_model(self) -> float:
        return self.images_per_s / self.models


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak RSS (Linux)


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ----- the anchor libraries' pipeline --------------------------------------------------------------
class PerItemDataset(Dataset):
    """One image per __getitem__, converted in Python, collated by the DataLoader."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.images[index].astype(np.float32) / 255.0)


def anchor(images: np.ndarray, batch: int, warmup: int, steps: int, device: torch.device) -> Measure:
    torch.manual_seed(0)
    model = BetaVAE((1, 64, 64), LATENTS).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    loader = DataLoader(PerItemDataset(images), batch_size=batch, shuffle=True, drop_last=True)
    reset_peak(device)
    done, start = 0, time.perf_counter()
    while done < warmup + steps:
        for x in loader:
            if done == warmup:
                sync(device)
                start = time.perf_counter()
            x = x.to(device)
            out, mean, logvar = model(x, torch.randn(x.shape[0], LATENTS, device=device))
            total = beta_vae_loss(out, x, mean, logvar)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            total.item()  # the per-step host read the anchors do for logging
            done += 1
            if done >= warmup + steps:
                break
    sync(device)
    return Measure(
        "anchor (Dataset + DataLoader, fp32, .item())",
        batch,
        1,
        steps * batch / (time.perf_counter() - start),
        peak_bytes(device),
    )


# ----- ours ----------------------------------------------------------------------------------------
def config_for(batch: int, total_steps: int, device: torch.device, **changes) -> TrainConfig:
    values = dict(
        batch_size=batch,
        steps=total_steps,
        val_every=10**9,  # no validation inside the timed window
        checkpoint_every=10**9,
        device=str(device),
        latent_dim=LATENTS,
        compile="off",
    )
    values.update(changes)
    return TrainConfig(**values)


def trainer_rate(name: str, batch: int, warmup: int, steps: int, device: torch.device, **changes) -> Measure:
    dataset = load_dataset("dsprites-procedural")
    # one step more than timed: a run validates at its last step, which is not training
    trainer = Trainer(config_for(batch, warmup + steps + 1, device, **changes), dataset=dataset)
    reset_peak(device)
    start_step, start = None, 0.0
    end_step, end = 0, 0.0
    for event in trainer.steps():
        if start_step is None and event.step >= warmup:
            sync(device)
            start_step, start = event.step, time.perf_counter()
        if event.step <= warmup + steps:
            end_step, end = event.step, time.perf_counter()
    sync(device)
    rate = (end_step - start_step) * batch / max(end - start, 1e-9) if start_step is not None else float("nan")
    measure = Measure(name, batch, 1, rate, peak_bytes(device), trainer.compile_seconds)
    if trainer.compile_status.startswith("failed"):
        measure.notes.append(trainer.compile_status)
    return measure


def stacked_rate(count: int, batch: int, warmup: int, steps: int, device: torch.device, **changes) -> Measure:
    dataset = load_dataset("dsprites-procedural")
    configs = [
        config_for(batch, warmup + steps + 1, device, seed=index, beta=float(2 ** (index % 5)), **changes)
        for index in range(count)
    ]
    stack = StackedTrainer(configs, dataset=dataset)
    reset_peak(device)
    first = stack.members[0]
    start_step, start, end_step, end = None, 0.0, 0, 0.0
    for index, event in stack.steps():
        if index != 0:
            continue
        if start_step is None and event.step >= warmup:
            sync(device)
            start_step, start = event.step, time.perf_counter()
        if event.step <= warmup + steps:
            end_step, end = event.step, time.perf_counter()
    sync(device)
    rate = (end_step - start_step) * batch * count / max(end - start, 1e-9) if start_step is not None else float("nan")
    measure = Measure(
        f"stacked K={count} ({stack.mode})", batch, count, rate, peak_bytes(device), first.compile_seconds
    )
    return measure


def profile(device: torch.device, batch: int, changes: dict, label: str, steps: int = 20) -> list[str]:
    """Top kernels by device (or CPU) time and kernel launches per step, for `steps` steady steps."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    dataset = load_dataset("dsprites-procedural")
    trainer = Trainer(config_for(batch, 10 + steps + 1, device, **changes), dataset=dataset)
    events = trainer.steps()
    for event in events:
        if event.step >= 10:
            break
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for event in events:
            if event.step >= 10 + steps:
                break
        sync(device)
    events.close()
    averages = prof.key_averages()
    sort_key = "cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = averages.table(sort_by=sort_key, row_limit=12)
    lines = [f"profile of {label}, batch {batch}, {steps} steps:"]
    if device.type == "cuda":
        launches = sum(item.count for item in averages if item.key.startswith(("cudaLaunchKernel", "cuLaunchKernel")))
        lines.append(f"kernel launches per step: {launches / steps:.0f}")
    lines.append(table)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--stacks", type=int, nargs="+", default=[8, 24])
    parser.add_argument("--steps", type=int, help="timed steps (default 300 on a GPU, 12 on a CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 30 on a GPU, 3 on a CPU)")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled pipeline")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; each pipeline's best is kept")
    parser.add_argument("--profile", action="store_true", help="also profile the no-sync and compiled steps")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()
    device = pick_device(args.device)
    gpu = device.type != "cpu"
    steps = args.steps or (300 if gpu else 12)
    warmup = args.warmup or (30 if gpu else 3)
    sync_every = 50 if gpu else 8
    source = load_dataset("dsprites-procedural")
    images = source.batch(np.random.default_rng(0).choice(len(source), ANCHOR_IMAGES, replace=False)).numpy()
    print(
        f"device: {device_label(device)}; torch {torch.__version__}; CPU threads {torch.get_num_threads()}; "
        f"{steps} timed steps after {warmup} warm-up steps; procedural dSprites 64x64"
    )
    measures: list[Measure] = []
    for batch in args.batches:
        stack_steps = max(2, steps // 4) if not gpu else steps
        pipelines = [
            partial(anchor, images, batch, warmup, steps, device),
            partial(trainer_rate, "today (read every step, eager)", batch, warmup, steps, device, sync_every=1),
            partial(
                trainer_rate, f"no-sync (read every {sync_every})", batch, warmup, steps, device, sync_every=sync_every
            ),
        ]
        if not args.no_compile:
            pipelines.append(
                partial(
                    trainer_rate,
                    "compiled + no-sync",
                    batch,
                    warmup,
                    steps,
                    device,
                    sync_every=sync_every,
                    compile="on",
                )
            )
        for count in args.stacks:
            pipelines.append(partial(stacked_rate, count, batch, warmup, stack_steps, device, sync_every=sync_every))
        # rounds interleave the pipelines and keep each one's best: a machine busy with other work slows
        # single measurements at random, and the best of a few is the least disturbed
        rows: list[Measure] = []
        for _ in range(args.rounds):
            measured = [run() for run in pipelines]
            rows = (
                measured
                if not rows
                else [max(a, b, key=lambda m: m.images_per_s) for a, b in zip(rows, measured, strict=True)]
            )
        base = rows[0]
        print()
        print(f"batch {batch}")
        print("| pipeline | models | img/s per model | img/s total | × anchor | peak memory | compile |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            compiled = f"{row.compile_seconds:.1f} s" if row.compile_seconds else ""
            notes = f" ({'; '.join(row.notes)})" if row.notes else ""
            print(
                f"| {row.name}{notes} | {row.models} | {row.per_model:,.0f} | {row.images_per_s:,.0f} | "
                f"{row.images_per_s / base.images_per_s:.2f}x | {row.peak_bytes / 2**20:,.0f} MiB | {compiled} |"
            )
        measures += rows
    if args.profile:
        for label, changes in (
            ("no-sync", {"sync_every": sync_every}),
            ("compiled", {"sync_every": sync_every, "compile": "on"}),
        ):
            print()
            print("\n".join(profile(device, args.batches[0], changes, label)))
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                [dict(vars(m), per_model=m.per_model) for m in measures],
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
