"""`bvae traverse`: a latent traversal grid (PNG) and animation (GIF) from a checkpoint, no window needed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bvae_desktop.core.errors import BvaeError


def add_traverse_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the `traverse` sub-command to `commands` (what `add_subparsers` returned)."""
    parser = commands.add_parser(
        "traverse",
        help="render a latent traversal grid (PNG) and animation (GIF)",
        description="Sweep each latent dimension from -RANGE to +RANGE around a reference code and decode. "
        "Rows are sorted by KL measured on the training data's validation split when that data can be "
        "opened; otherwise they keep index order.",
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint file, or a bundled model's name (bvae models)")
    parser.add_argument("--out", type=Path, required=True, help="PNG file for the grid")
    parser.add_argument("--gif", type=Path, help="also write an animated GIF, one frame per step")
    parser.add_argument("--image", type=Path, help="reference image file (default: the prior mean, all zeros)")
    parser.add_argument("--range", dest="range_", type=float, default=3.0, help="sweep -RANGE..+RANGE (default 3)")
    parser.add_argument("--steps", type=int, default=9, help="values per row, 2..31 (default 9)")
    parser.add_argument("--frame-ms", type=int, default=120, help="GIF frame time in ms (default 120)")
    parser.add_argument(
        "--points",
        type=int,
        default=2000,
        help="validation images encoded for the KL order and the factor labels (default 2000)",
    )
    parser.add_argument("--no-labels", action="store_true", help="no row labels in the PNG")
    parser.set_defaults(handler=cmd_traverse)
    return parser


def cmd_traverse(args: argparse.Namespace) -> int:
    from bvae_desktop.core.image_input import load_image
    from bvae_desktop.core.latent_activity import activity_warning
    from bvae_desktop.core.model_source import ModelSource
    from bvae_desktop.core.model_zoo import resolve_checkpoint
    from bvae_desktop.core.traversal import render_gif, render_grid_png, traversal_values, traverse

    try:
        traversal_values(args.range_, args.steps)
    except ValueError as exc:
        raise BvaeError(str(exc)) from exc
    source = ModelSource.from_checkpoint(resolve_checkpoint(args.checkpoint))
    if source.dataset is None:
        reason = f" ({source.dataset_error})" if source.dataset_error else ""
        print(f"training data not available{reason}: rows keep index order, no KL or factor labels", file=sys.stderr)
    if args.points < 1:
        raise BvaeError(f"--points must be at least 1; got {args.points}")
    image = None
    if args.image is not None:  # prepared as the model's own data was: an MNIST digit padded, not stretched
        fitted = load_image(args.image, source.image_shape, source.config.dataset)
        image = fitted.image
        if fitted.note:
            print(f"reference image {args.image}: {fitted.note}", file=sys.stderr)
    result = traverse(source, image, range_=args.range_, steps=args.steps, points=args.points)
    warning = activity_warning(result.kl)
    if warning:  # the grid is the same blur in every cell: say why rather than leave it to be puzzled over
        print(f"warning: {warning}", file=sys.stderr)
    labels = None if args.no_labels else result.row_labels()
    try:
        render_grid_png(result.grid, args.out, row_labels=labels)
        if args.gif is not None:
            render_gif(result.grid, args.gif, frame_ms=args.frame_ms)
    except (OSError, ValueError) as exc:
        raise BvaeError(f"cannot write the traversal: {exc}") from exc
    order = "KL order" if result.kl is not None else "index order"
    print(
        f"wrote {args.out}"
        + (f" and {args.gif}" if args.gif is not None else "")
        + f": {result.grid.shape[0]} dimensions ({order}) x {result.grid.shape[1]} steps, "
        f"-{args.range_:g}..+{args.range_:g} around {'the image ' + str(args.image) if image is not None else 'the prior mean'}",
        file=sys.stderr,
    )
    return 0
