"""Flags shared by `bvae train`, `sweep` and `compare` that choose how a step runs, not what it computes."""

from __future__ import annotations

import argparse


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    """--compile/--no-compile and --sync-every: how a step runs, not what it computes."""
    compiled = parser.add_mutually_exclusive_group()
    compiled.add_argument(
        "--compile",
        dest="compile",
        action="store_const",
        const="on",
        help="compile the training step with torch.compile (default: on CUDA only); falls back to eager if it fails",
    )
    compiled.add_argument("--no-compile", dest="compile", action="store_const", const="off", help="always eager")
    parser.add_argument(
        "--sync-every",
        type=int,
        metavar="N",
        help="read the losses to the host every N steps (default 0: every step on a CPU, blocks of 50 on a GPU)",
    )
