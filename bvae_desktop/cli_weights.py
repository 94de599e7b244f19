"""The --weight-init flag, shared by `bvae train` and the experiment commands (one help text, one set of choices)."""

from __future__ import annotations

import argparse

from bvae_desktop.core.config import WEIGHT_INITS


def add_weight_init_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weight-init",
        choices=WEIGHT_INITS,
        help="first weights: he (default; Kaiming for ReLU nets, leaves the early KL plateau sooner) or torch "
        "(PyTorch's layer defaults, what runs made before this setting used)",
    )
