"""`bvae evaluate`: disentanglement metrics of a checkpoint's encoder (means) on its training data."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from bvae_desktop.cli_progress import StatusLine
from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.jsonfile import json_default
from bvae_desktop.core.progress import format_duration

# the registry's names, spelled out so building the parser does not import torch (a test keeps them equal)
METRIC_NAMES = ("beta_vae", "factor_vae", "mig", "dci", "sap", "unsupervised")


def add_evaluate_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the `evaluate` sub-command to `commands` (what `add_subparsers` returned)."""
    parser = commands.add_parser(
        "evaluate",
        help="score a checkpoint with disentanglement metrics",
        description="Score a checkpoint's encoder (posterior means) on the data it was trained on. Supervised "
        "metrics (beta_vae, factor_vae, mig, dci, sap) need ground-truth factors (dSprites, 3D Shapes) and are "
        "skipped otherwise; 'unsupervised' (active units, total correlation, posterior statistics, "
        "reconstruction error on the validation split) works on any data. Sample counts follow "
        "disentanglement_lib (DESIGN §5) unless --quick. Before scoring it prints an estimate of the time "
        "(from a short probe on this machine), then each metric's progress with the time left.",
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint file, or a bundled model's name (bvae models)")
    parser.add_argument(
        "--metrics", default="all", help=f"'all' or a comma-separated list of: {', '.join(METRIC_NAMES)} (default all)"
    )
    parser.add_argument("--json", type=Path, help="also write every score and setting to this JSON file")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the metrics' sampling (default 0)")
    parser.add_argument("--data", help="file or folder of the training data, when it has moved")
    parser.add_argument("--quick", action="store_true", help="every sample count / 10: a fast look, not comparable")
    add_settings_argument(parser)
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument(
        "--quiet", action="store_true", help="no estimate and no progress: the table (and any warning) only"
    )
    parser.set_defaults(handler=cmd_evaluate)
    return parser


def add_settings_argument(parser: argparse.ArgumentParser) -> None:
    """`--set [METRIC.]NAME=VALUE`, shared by every command that scores (read by `apply_settings`)."""
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="[METRIC.]NAME=VALUE",
        help="override a metric setting, e.g. num_train=2000 (every metric taking it) or dci.n_estimators=20; "
        "repeatable, wins over --quick",
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from bvae_desktop.core.atomic import atomic_write_text
    from bvae_desktop.core.latent_activity import activity_warning
    from bvae_desktop.core.metrics import SUPERVISED, evaluate, metric_names, scaled_counts
    from bvae_desktop.core.model_source import ModelSource
    from bvae_desktop.core.model_zoo import resolve_checkpoint
    from bvae_desktop.core.traversal import source_kl

    names = metric_names(args.metrics)
    if args.threads is not None:
        if args.threads < 1:
            raise BvaeError(f"--threads must be at least 1; got {args.threads}")
        torch.set_num_threads(args.threads)
    checkpoint = resolve_checkpoint(args.checkpoint)  # a path, or a bundled model's name
    source = ModelSource.from_checkpoint(checkpoint, load_data=args.data is None)
    if args.data is not None:
        source.config = dataclasses.replace(source.config, data_path=str(args.data))
        source.attach_dataset()
    if source.dataset is None:
        raise BvaeError(
            f"cannot open the training data ({source.dataset_error or 'unknown reason'}); give its location with --data"
        )
    data = source.dataset
    overrides: dict[str, Any] = {
        "represent_stats": source.encode,
        "reconstruct": lambda images: source.decode(source.encode(images)[0]),
        "indices": source.val_indices,
    }
    if args.quick:
        for name in names:
            overrides[name] = scaled_counts(name, 10)
    apply_settings(overrides, args.settings, names)
    status = StatusLine(quiet=args.quiet)
    status.note(f"evaluating {args.checkpoint} (step {source.step}) on {data.describe()}")
    warning = activity_warning(source_kl(source))
    if warning is not None:  # said before the wait, and again above the scores
        print(f"bvae evaluate: warning: {warning}; scoring anyway", file=sys.stderr)

    def represent(images: Any) -> Any:
        return source.encode(images)[0]

    printer = _MetricPrinter(status, sum(n not in SUPERVISED or data.factors is not None for n in names))
    if not args.quiet:
        printer.estimate = _print_estimate(status, data, represent, names, args.seed, overrides)
    results = evaluate(
        data,
        represent,
        names,
        seed=args.seed,
        progress=printer.start,
        on_progress=printer.record,
        **overrides,
    )
    printer.finish()
    if warning is not None:
        print(f"warning: {warning}")
    print(format_table(results))
    if args.json is not None:
        report = {
            "checkpoint": str(args.checkpoint),
            "checkpoint_path": str(checkpoint),
            "fingerprint": source.fingerprint(),
            "step": source.step,
            "beta": source.beta,
            "dataset": data.name,
            "data_path": source.config.data_path,
            "seed": args.seed,
            "quick": bool(args.quick),
            "supervised_skipped": sorted(n for n in names if n in SUPERVISED and "skipped" in results[n]),
            "warning": warning,
            "metrics": results,
        }
        try:
            atomic_write_text(args.json, json.dumps(report, indent=2, default=json_default) + "\n")
        except OSError as exc:
            raise BvaeError(f"cannot write {args.json}: {exc}") from exc
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def apply_settings(overrides: dict[str, Any], settings: list[str], names: list[str]) -> None:
    """Fold `--set [METRIC.]NAME=VALUE` items into `overrides` (per-metric dicts for the selected metrics)."""
    import inspect

    from bvae_desktop.core.metrics import METRICS

    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise BvaeError(f"--set wants NAME=VALUE or METRIC.NAME=VALUE; got {item!r}")
        value = _parse_value(text.strip())
        metric, dot, param = key.strip().rpartition(".")
        targets = [metric] if dot else names
        if dot and metric not in METRICS:
            raise BvaeError(f"--set {item}: unknown metric {metric!r}")
        taking = [
            m for m in targets if param in inspect.signature(METRICS[m]).parameters and param not in _NOT_SETTINGS
        ]
        if not taking:
            raise BvaeError(f"--set {item}: no selected metric takes a setting {param!r}")
        for m in taking:
            overrides.setdefault(m, {})[param] = value


_NOT_SETTINGS = ("seed", "progress")  # keyword arguments of the metrics that --set does not reach


def _print_estimate(status: StatusLine, data: Any, represent: Any, names: list[str], seed: int, overrides: dict) -> Any:
    """Time a short probe, print how long the metrics should take here, and return the MetricEstimate."""
    import torch

    from bvae_desktop.core.metrics import estimate

    status.status("estimating the time (a short probe)...", force=True)
    found = estimate(data, represent, names, seed=seed, **overrides)
    if found.seconds:
        status.note(
            f"estimate: about {format_duration(found.total_s)} in all ({found.breakdown()}); an estimate, "
            f"from a {found.costs.probe_s:.1f} s probe on the CPU with {_threads(torch.get_num_threads())}"
        )
    return found


def _threads(count: int) -> str:
    return f"{count} torch thread{'s' if count != 1 else ''}"


class _MetricPrinter:
    """A line as each metric starts and ends; its progress with the time left on the status line in between."""

    def __init__(self, status: StatusLine, total: int) -> None:
        self.status = status
        self.total = total
        self.estimate: Any = None
        self.current: str | None = None
        self.started = 0.0
        self.count = 0
        self._part: tuple[str, int] | None = None

    def start(self, name: str) -> None:
        from bvae_desktop.core.metrics import METRIC_LABELS

        self.finish()
        self.current, self.started = name, time.perf_counter()
        self.count += 1
        expected = self.estimate.seconds.get(name) if self.estimate is not None else None
        about = f" (estimate {format_duration(expected)})" if expected is not None else ""
        self.status.note(f"[{self.count}/{self.total}] {METRIC_LABELS.get(name, name)}{about}")

    def record(self, record: Any) -> None:
        part = (record.label, record.part)
        first, self._part = part != self._part, part
        self.status.status(f"  {record.text()}", force=first or record.done >= record.total)

    def finish(self) -> None:
        from bvae_desktop.core.metrics import METRIC_LABELS

        if self.current is not None:
            took = format_duration(time.perf_counter() - self.started)
            self.status.note(f"  {METRIC_LABELS.get(self.current, self.current)}: done in {took}")
        self.current = None


def _parse_value(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """metric | score | value rows, then the settings of each metric on one line."""
    from bvae_desktop.core.metrics import split_result

    lines = [f"{'metric':<14}{'score':<38}value"]
    for name, result in results.items():
        scores, settings = split_result(result)
        if "skipped" in settings:
            lines.append(f"{name:<14}skipped: {settings['skipped']}")
            continue
        first = True
        for key, value in scores.items():
            lines.append(f"{name if first else '':<14}{key:<38}{_fmt(value)}")
            first = False
        text = ", ".join(f"{k} {_fmt(v)}" for k, v in settings.items())
        lines.append(f"{'':<14}({text})")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    if isinstance(value, list):
        return "[" + " ".join(_fmt(v) for v in value) + "]"
    return str(value)
