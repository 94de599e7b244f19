"""`bvae models` (the bundled models and their cards) and `bvae export-model` (a run → a bundled model).

Hook into cli.build_parser with `add_models_parsers(commands)`. Every command that takes a checkpoint
also takes a bundled model's name (core.model_zoo.resolve_checkpoint).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bvae_desktop.core.errors import BvaeError

# the card's headline numbers `bvae models` shows, in this order, with short titles
_COLUMNS = (
    ("recon", "recon"),
    ("kl", "KL"),
    ("active_units", "active"),
    ("beta_vae", "β-VAE"),
    ("factor_vae", "FactorVAE"),
    ("mig", "MIG"),
    ("dci_disentanglement", "DCI D"),
    ("sap", "SAP"),
)


def add_models_parsers(commands: Any) -> None:
    """Register `models` and `export-model` on an argparse sub-parsers object."""
    models = commands.add_parser(
        "models",
        help="list the bundled pretrained models",
        description="List the models bundled with the app: name, data, objective, β, steps, headline numbers "
        "(validation reconstruction and KL in nats per image, active units, disentanglement metrics) and "
        "the weights' path. Any command that takes a checkpoint takes one of these names instead, e.g. "
        "`bvae traverse beta4-dsprites --out grid.png`.",
    )
    models.add_argument("name", nargs="?", help="show this model's whole card")
    models.add_argument("--json", action="store_true", help="print JSON (a list, or the card of NAME)")
    models.add_argument(
        "--verify", action="store_true", help="also check each model's weights against its card's SHA-256"
    )
    models.set_defaults(handler=cmd_models)

    export = commands.add_parser(
        "export-model",
        help="turn a finished run into a bundled model (weights + model card)",
        description="Write MODELS_DIR/NAME.pt (weights only: no optimizer or RNG state) and MODELS_DIR/NAME.json "
        "(the model card: data, objective, β in both units, steps, batch, seed, device and training time from "
        "the run log, reconstruction and KL measured now on the held-out split, active units, KL per dimension, "
        "the metrics of a `bvae evaluate --json` file, the training command and the weights' SHA-256).",
    )
    export.add_argument("run", type=Path, metavar="RUN_DIR", help="a run folder (or its checkpoint.pt)")
    export.add_argument("--name", required=True, help="model name, e.g. beta4-dsprites (letters, digits, . _ -)")
    export.add_argument("--models-dir", type=Path, default=Path("models"), help="where to write (default models)")
    export.add_argument("--command", dest="train_command", help="the exact command that trained the run, for the card")
    export.add_argument(
        "--metrics-json",
        type=Path,
        action="append",
        help="a `bvae evaluate --json` file of this run's checkpoint; repeat it to fold in metrics measured "
        "separately (each metric once)",
    )
    export.add_argument(
        "--half",
        action="store_true",
        help="store float16 weights if validation reconstruction and KL move by < 0.1%% (both are reported)",
    )
    export.add_argument("--data", help="the run's training data file or folder, when it has moved")
    export.add_argument("--note", help="a line about the data for the card (default: says what data it was)")
    export.add_argument("--title", help="the card's title (default e.g. 'β-VAE (β = 4) on dSprites (procedural)')")
    export.add_argument(
        "--val-images", type=int, default=2048, help="held-out images to measure recon and KL on (default 2048)"
    )
    export.add_argument("--force", action="store_true", help="replace a model of that name")
    export.set_defaults(handler=cmd_export_model)


def cmd_models(args: argparse.Namespace) -> int:
    from bvae_desktop.core import model_zoo

    if args.name is not None:
        model = model_zoo.get_model(args.name)
        if args.verify:
            model_zoo.verify_weights(model)
        if args.json:
            print(json.dumps(model.card, indent=2, ensure_ascii=False))
        else:
            print(model.describe())
            print(f"path: {model.weights}\ncard: {model.card_path}")
        return 0
    problems: list[str] = []
    models = model_zoo.list_models(problems=problems)
    for problem in problems:
        print(f"bvae models: warning: {problem}", file=sys.stderr)
    bad: list[str] = []
    if args.verify:
        for model in models:
            try:
                model_zoo.verify_weights(model)
            except BvaeError as exc:
                bad.append(str(exc))
                print(f"bvae models: error: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps([m.to_row() for m in models], indent=2, ensure_ascii=False))
    elif not models:
        where = model_zoo.models_dir()
        print(f"no bundled models (looked in {where if where is not None else 'the installed package'})")
    else:
        print(format_models_table(models))
    return 2 if bad else 0


def format_models_table(models: list[Any]) -> str:
    shown = [(key, title) for key, title in _COLUMNS if any(key in m.headline() for m in models)]
    header = ["name", "dataset", "objective", "β", "steps", *(title for _key, title in shown), "path"]
    rows = []
    for m in models:
        numbers = m.headline()
        rows.append(
            [
                m.name,
                m.dataset,
                m.objective,
                f"{m.weight_symbol}={m.beta:g}",
                f"{m.steps:,}",
                *(_number(numbers.get(key)) for key, _title in shown),
                str(m.weights),
            ]
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1000:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"


def cmd_export_model(args: argparse.Namespace) -> int:
    from bvae_desktop.core.model_export import export_model

    def progress(text: str) -> None:
        print(f"  {text}", file=sys.stderr)

    result = export_model(
        args.run,
        args.name,
        models_dir=args.models_dir,
        command=args.train_command,
        metrics_json=args.metrics_json,
        half=args.half,
        data=args.data,
        note=args.note,
        title=args.title,
        val_images=args.val_images,
        force=args.force,
        progress=progress,
    )
    f32 = result.float32
    print(
        f"wrote {result.weights} ({result.weights.stat().st_size / 1e6:.2f} MB, {result.dtype}) and {result.card_path}"
    )
    print(
        f"validation ({f32['images']} held-out images, nats per image): float32 recon {f32['recon']:.4f}, "
        f"KL {f32['kl']:.4f}, active units {f32['active_units']}"
    )
    if result.float16 is not None:
        f16 = result.float16
        print(f"                                               float16 recon {f16['recon']:.4f}, KL {f16['kl']:.4f}")
    print(f"weights kept as {result.half_reason}")
    print(f"sha256 {result.card['weights']['sha256']}")
    if result.card.get("metrics") is None:
        print("no --metrics-json: the card has no disentanglement metrics", file=sys.stderr)
    return 0
