"""The `bvae` command: the engine without a window. Bad input: one line on stderr, non-zero exit."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bvae_desktop import __version__
from bvae_desktop.cli_codec import add_codec_parsers
from bvae_desktop.cli_evaluate import add_evaluate_parser
from bvae_desktop.cli_experiments import add_experiment_parsers
from bvae_desktop.cli_models import add_models_parsers
from bvae_desktop.cli_objectives import add_objective_arguments, apply_objective_arguments, describe_objective
from bvae_desktop.cli_speed import add_speed_arguments
from bvae_desktop.cli_traverse import add_traverse_parser
from bvae_desktop.cli_weights import add_weight_init_argument
from bvae_desktop.core.config import (
    RECONSTRUCTIONS,
    TrainConfig,
    beta_from_normalised,
    beta_normalised,
)
from bvae_desktop.core.data.registry import dataset_names
from bvae_desktop.core.errors import BvaeError, ConfigError

# flag -> TrainConfig field, for flags that map one to one
_TRAIN_FLAGS: dict[str, str] = {
    "dataset": "dataset",
    "data": "data_path",
    "latent_dim": "latent_dim",
    "lr": "lr",
    "batch_size": "batch_size",
    "steps": "steps",
    "val_every": "val_every",
    "val_fraction": "val_fraction",
    "checkpoint_every": "checkpoint_every",
    "seed": "seed",
    "device": "device",
    "reconstruction": "reconstruction",
    "bf16": "bf16",
    "sync_every": "sync_every",
    "compile": "compile",
    "weight_init": "weight_init",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bvae", description="Train and inspect β-VAEs (β-VAE Desktop's engine).")
    parser.add_argument("--version", action="version", version=f"bvae {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a VAE or β-VAE",
        description="Train a VAE or β-VAE. "
        "Settings come from the defaults, then --config, then --resume's checkpoint, then flags.",
    )
    train.add_argument("--config", type=Path, help="JSON file of settings (as written to RUN_DIR/config.json)")
    train.add_argument("--dataset", choices=dataset_names(), help="data source (default dsprites-procedural, built in)")
    train.add_argument("--data", help="file or folder for file-based sources")
    add_objective_arguments(train)
    train.add_argument("--beta-norm", type=float, help="β on per-pixel/per-latent means; converted to --beta")
    train.add_argument("--latent-dim", type=int, help="latent dimensions (default 10)")
    train.add_argument("--lr", type=float, help="Adam learning rate (default 5e-4)")
    train.add_argument("--batch-size", type=int, help="images per step (default 64)")
    train.add_argument("--steps", type=int, help="total training steps (default 1000)")
    train.add_argument("--val-every", type=int, help="validate every N steps")
    train.add_argument("--val-fraction", type=float, help="share of images held out for validation")
    train.add_argument("--checkpoint-every", type=int, help="write a checkpoint every N steps")
    train.add_argument("--seed", type=int, help="random seed (data split, init, batches)")
    train.add_argument("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    train.add_argument(
        "--reconstruction", choices=RECONSTRUCTIONS, help="auto: Bernoulli for grey, Gaussian for colour"
    )
    add_weight_init_argument(train)
    train.add_argument("--no-bf16", dest="bf16", action="store_const", const=False, help="no bf16 autocast on CUDA")
    add_speed_arguments(train)
    train.add_argument("--threads", type=int, help="CPU threads for torch")
    train.add_argument(
        "--out", type=Path, help="run folder: checkpoint.pt, runlog.h5, config.json (default runs/<time>)"
    )
    train.add_argument("--resume", type=Path, metavar="CHECKPOINT", help="continue from a checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress line")
    train.set_defaults(handler=cmd_train)

    info = commands.add_parser("info", help="describe a checkpoint")
    info.add_argument("checkpoint", type=Path, help="checkpoint file, or a bundled model's name (bvae models)")
    info.set_defaults(handler=cmd_info)
    add_traverse_parser(commands)
    add_evaluate_parser(commands)
    add_codec_parsers(commands)
    add_experiment_parsers(commands)
    add_models_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    from bvae_desktop.core.errors import os_reason

    try:
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, where it is caught, not at interpreter exit
        return code
    except BvaeError as exc:  # bad input: exit 2, as argparse does for a bad flag
        print(f"bvae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `bvae info ... | head` closed the pipe: nothing more to say, and no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # the system refused (permissions, a full disk): one line naming the path, exit 1
        paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        print(f"bvae {args.command}: error: {paths + ': ' if paths else ''}{os_reason(exc)}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"bvae {args.command}: error: out of memory", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before a command set up its own handling (loading data, start-up)
        print(f"bvae {args.command}: interrupted", file=sys.stderr)
        return 130


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then --config, then the resumed checkpoint's settings, then explicit flags."""
    from bvae_desktop.core.model_zoo import checkpoint_to_resume

    values: dict[str, Any] = TrainConfig().to_dict()
    if args.config is not None:
        values.update(TrainConfig.load(args.config).to_dict())
    if args.resume is not None:
        values.update(checkpoint_to_resume(args.resume).config.to_dict())  # refuses weights-only checkpoints
    for flag, field_name in _TRAIN_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            values[field_name] = value
    apply_objective_arguments(args, values)
    if args.beta_norm is not None:
        if args.beta is not None:
            raise ConfigError("give --beta or --beta-norm, not both")
        values["beta"] = _beta_from_norm(args.beta_norm, values)
    return TrainConfig.from_dict(values, source="command line")


def _beta_from_norm(beta_norm: float, values: dict[str, Any]) -> float:
    from bvae_desktop.core.data import load_dataset

    shape = load_dataset(values["dataset"], values.get("data_path")).shape
    return beta_from_normalised(beta_norm, int(values["latent_dim"]), shape)


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from bvae_desktop.core.trainer import Trainer

    config = train_config_from_args(args)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be at least 1; got {args.threads}")
        torch.set_num_threads(args.threads)
    out = args.out
    if out is None:
        out = args.resume.parent if args.resume is not None else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    trainer = Trainer(config, run_dir=out, resume=args.resume)
    print(f"training on {trainer.device}: {trainer.dataset.describe()}", file=sys.stderr)
    print(
        f"objective {config.objective}, β {trainer.beta:g} (normalised {trainer.beta_norm:.3g}), "
        f"latent {config.latent_dim}, {config.steps} steps from step {trainer.step}; run folder {out}",
        file=sys.stderr,
    )
    compile_status = trainer.compile_status
    if compile_status == "compiling":
        print("compiling the training step (torch.compile): the first step takes longer", file=sys.stderr)
    progress = _Progress(enabled=not args.quiet, start_step=trainer.step)
    handler = _stop_on_interrupt(trainer)
    previous = {signum: signal.signal(signum, handler) for signum in _STOP_SIGNALS}
    event = None
    try:
        for event in trainer.steps():
            if trainer.compile_status != compile_status:
                compile_status = trainer.compile_status
                print(f"training step: {compile_status}", file=sys.stderr)
            progress.update(event)
    except KeyboardInterrupt:
        progress.finish()
        kept = load_step(trainer.checkpoint_path)
        print(f"aborted; the checkpoint of step {kept} is kept in {trainer.checkpoint_path}", file=sys.stderr)
        return 130
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        progress.finish()
    if trainer.stopped:
        print(f"stopped at step {trainer.step}; checkpoint kept in {trainer.checkpoint_path}", file=sys.stderr)
        return 130
    if event is not None:
        print(
            f"done: step {event.step}, loss {event.loss:.2f}, recon {event.recon:.2f}, KL {event.kl:.2f}; "
            f"checkpoint {trainer.checkpoint_path}",
            file=sys.stderr,
        )
    return 0


_STOP_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)


def _stop_on_interrupt(trainer: Any) -> Callable[[int, FrameType | None], None]:
    """First Ctrl-C (or SIGTERM) stops after the current step and saves; a second one aborts at once,
    keeping the last checkpoint and cutting the run log back to it."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if trainer.stopped:
            raise KeyboardInterrupt
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{name}: stopping after this step (Ctrl-C again to abort)...", file=sys.stderr)
        trainer.stop()

    return handler


def load_step(path: Path | None) -> str:
    """The step of the checkpoint at `path`, for a message; 'none' when there is none."""
    from bvae_desktop.core.checkpoint import load_checkpoint

    if path is None or not path.exists():
        return "none"
    try:
        return f"{load_checkpoint(path).step:,}"
    except BvaeError:
        return "(unreadable)"


class _Progress:
    """A progress line at most ~4 times a second: rewritten in place on a terminal, appended otherwise."""

    def __init__(self, *, enabled: bool, start_step: int) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.interval = 0.25 if self.tty else 5.0
        self.last = 0.0
        self.started = time.perf_counter()
        self.start_step = start_step
        self.shown = False

    def update(self, event: Any) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.last < self.interval and not event.done):
            return
        self.last = now
        done = event.step - self.start_step
        eta = (event.total_steps - event.step) * (now - self.started) / max(done, 1)
        line = (
            f"step {event.step}/{event.total_steps}  loss {event.loss:.2f}  recon {event.recon:.2f}  "
            f"KL {event.kl:.2f}  β {event.beta:g}  {event.images_per_s:,.0f} img/s  ETA {_clock(eta)}"
        )
        if self.tty:
            sys.stderr.write("\r" + line.ljust(100))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
        self.shown = True

    def finish(self) -> None:
        if self.enabled and self.tty and self.shown:
            sys.stderr.write("\n")


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _weight_line(config: TrainConfig, weight: float, beta_norm: float) -> str:
    """The main weight as it was saved: β in both units, or γ / λ as it is."""
    from bvae_desktop.core.objectives import objective_spec

    name = objective_spec(config.objective).main or "weight"
    if name == "beta":
        return f"beta         {weight:g} (summed KL; normalised {beta_norm:.4g}, = β·z/(H·W·C))"
    return f"{name:<12} {weight:g}"


def cmd_info(args: argparse.Namespace) -> int:
    from bvae_desktop.core.checkpoint import load_checkpoint
    from bvae_desktop.core.model_zoo import bundled_name_for, resolve_checkpoint

    path = resolve_checkpoint(args.checkpoint)  # a path, or a bundled model's name
    ckpt = load_checkpoint(path)
    config = ckpt.config
    beta_norm = beta_normalised(ckpt.beta, config.latent_dim, ckpt.image_shape)
    channels, height, width = ckpt.image_shape
    lines = [
        f"checkpoint   {args.checkpoint}",
        f"dataset      {config.dataset}"
        + (f" ({config.data_path})" if config.data_path else "")
        + (f": {ckpt.dataset.get('name')}" if ckpt.dataset.get("name") else ""),
        f"images       {height}x{width}, {channels} channel(s)",
        f"objective    {describe_objective(config)}",
        _weight_line(config, ckpt.beta, beta_norm),
    ]
    lines += [
        f"latent dim   {config.latent_dim}",
        f"step         {ckpt.step} of {config.steps}",
    ]
    for key in ("loss", "recon", "kl", "val_loss", "val_recon", "val_kl"):
        if key in ckpt.metrics:
            lines.append(f"{key:<12} {ckpt.metrics[key]:.4f}")
    if ckpt.optimizer_state is None:
        bundled = bundled_name_for(path)
        what = f"bundled model {bundled}, " if bundled else ""
        lines.append(f"contents     {what}weights only (no optimizer state): opens everywhere, cannot be resumed")
    if ckpt.versions:
        lines.append("versions     " + ", ".join(f"{k} {v}" for k, v in sorted(ckpt.versions.items())))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
