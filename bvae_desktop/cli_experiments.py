"""`bvae sweep`, `bvae compare` and `bvae report`: the study's experiments from the command line."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from bvae_desktop.cli_evaluate import METRIC_NAMES, add_settings_argument, apply_settings
from bvae_desktop.cli_executors import add_executor_arguments, apply_executor_overrides, executor_settings
from bvae_desktop.cli_objectives import add_objective_arguments, apply_objective_arguments
from bvae_desktop.cli_progress import StatusLine
from bvae_desktop.cli_speed import add_speed_arguments
from bvae_desktop.cli_weights import add_weight_init_argument
from bvae_desktop.core.config import RECONSTRUCTIONS, TrainConfig
from bvae_desktop.core.data.registry import dataset_names
from bvae_desktop.core.progress import format_duration
from bvae_desktop.core.value_lists import parse_floats, parse_seeds

DEFAULT_BETAS_TEXT = "0.001,0.01,0.1,1,2,4,8,16"
_STACK_HELP = "--stack 1 trains each run on its own"
_VARIED = ("beta",)  # set per run by --betas (sweep) or --beta (compare), whatever the objective's weight is
# flag -> TrainConfig field: what every run of an experiment shares
_SHARED_FLAGS = {
    "dataset": "dataset",
    "data": "data_path",
    "latent_dim": "latent_dim",
    "lr": "lr",
    "batch_size": "batch_size",
    "steps": "steps",
    "val_every": "val_every",
    "checkpoint_every": "checkpoint_every",
    "device": "device",
    "reconstruction": "reconstruction",
    "bf16": "bf16",
    "compile": "compile",
    "sync_every": "sync_every",
    "weight_init": "weight_init",
}


def add_experiment_parsers(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="train and score a β-VAE for each β and seed",
        description="A β sweep: one β-VAE per β × seed, each scored with the metrics; results (HDF5 + JSON) and "
        "an HTML report in --out. Run it again on the same folder to continue: finished runs are kept.",
    )
    sweep.add_argument(
        "--betas",
        "--weights",
        dest="betas",
        default=DEFAULT_BETAS_TEXT,
        help=f"comma-separated values of the objective's main weight: β for the β-VAE (default {DEFAULT_BETAS_TEXT})",
    )
    _add_common(sweep)
    sweep.set_defaults(handler=cmd_experiment, kind="sweep")

    compare = commands.add_parser(
        "compare",
        help="train a VAE and a β-VAE alike and compare them",
        description="A VAE (β = 1) against a β-VAE with the same data, seeds, steps and network; one table "
        "(reconstruction, KL, every metric), overlaid curves and an HTML report in --out.",
    )
    compare.add_argument(
        "--beta",
        "--weight",
        dest="beta",
        type=float,
        default=4.0,
        help="the compared objective's main weight: β of the β-VAE (default 4, Higgins on dSprites)",
    )
    _add_common(compare)
    compare.set_defaults(handler=cmd_experiment, kind="compare")

    resume = commands.add_parser(
        "resume",
        help="continue a stopped sweep or comparison",
        description="Continue the experiment in FOLDER with its saved settings: finished runs are kept, unfinished "
        "ones continue from their checkpoints.",
    )
    resume.add_argument("folder", type=Path)
    resume.add_argument("--workers", type=int, help="runs at once (default: as saved)")
    resume.add_argument(
        "--stack", type=int, metavar="K", help=f"runs trained in one pass (default: as saved); {_STACK_HELP}"
    )
    add_executor_arguments(resume, resume=True)
    resume.add_argument(
        "--quiet", action="store_true", help="only start, finish and failure lines (no estimate, no progress)"
    )
    _add_estimate_flag(resume)
    resume.set_defaults(handler=cmd_resume)

    report = commands.add_parser("report", help="rewrite an experiment folder's results and report")
    report.add_argument("folder", type=Path)
    report.add_argument(
        "--markdown",
        action="store_true",
        help="also print the summary (mean [min, max] over seeds) as a Markdown table",
    )
    report.set_defaults(handler=cmd_report)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="experiment folder (created, or continued)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, or a count like 3x (= 0,1,2); default 0")
    parser.add_argument(
        "--dataset", choices=dataset_names(), help="data source (default dsprites-procedural, built in)"
    )
    parser.add_argument("--data", help="file or folder for file-based sources")
    add_objective_arguments(
        parser,
        objective_help="what the runs train (default beta-h); a sweep varies its main weight (β, γ, λ_od, ...)",
        exclude=_VARIED,
    )
    parser.add_argument("--steps", type=int, help="training steps per run (default 1000)")
    parser.add_argument("--batch-size", type=int, help="images per step (default 64)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default 5e-4)")
    parser.add_argument("--latent-dim", type=int, help="latent dimensions (default 10)")
    parser.add_argument("--val-every", type=int, help="validate every N steps")
    parser.add_argument("--checkpoint-every", type=int, help="write a checkpoint every N steps")
    parser.add_argument("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--reconstruction", choices=RECONSTRUCTIONS, help="auto: Bernoulli for grey, Gaussian for colour"
    )
    add_weight_init_argument(parser)
    parser.add_argument("--no-bf16", dest="bf16", action="store_const", const=False, help="no bf16 autocast on CUDA")
    parser.add_argument(
        "--workers", type=int, default=1, help="runs at once, in worker processes (default 1: in this process)"
    )
    parser.add_argument(
        "--stack",
        type=int,
        default=0,
        metavar="K",
        help=f"train up to K compatible runs in one pass (default 0: 24 on a GPU, 1 on a CPU); {_STACK_HELP}",
    )
    add_speed_arguments(parser)
    add_executor_arguments(parser)
    parser.add_argument(
        "--metrics", default="all", help=f"'all', 'none' or a comma-separated list of: {', '.join(METRIC_NAMES)}"
    )
    parser.add_argument(
        "--metric-scale",
        type=int,
        default=1,
        metavar="N",
        help="every metric sample count / N (default 1: published counts)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the same as --metric-scale 10: a fast look, not comparable"
    )
    parser.add_argument("--metric-seed", type=int, default=0, help="seed of the metrics' sampling (default 0)")
    add_settings_argument(parser)
    parser.add_argument(
        "--quiet", action="store_true", help="only start, finish and failure lines (no estimate, no progress)"
    )
    _add_estimate_flag(parser)


def _add_estimate_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="print the plan and the time estimate (a short probe: a few training steps and the metrics' slow "
        "parts, on this machine), then stop without training or writing anything",
    )


def spec_from_args(args: argparse.Namespace) -> Any:
    from bvae_desktop.core.experiment_run import MetricPlan
    from bvae_desktop.core.experiments import ExperimentSpec
    from bvae_desktop.core.metrics import metric_names

    values = TrainConfig().to_dict()
    for flag, field_name in _SHARED_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            values[field_name] = value
    apply_objective_arguments(args, values, exclude=_VARIED)
    base = TrainConfig.from_dict(values, source="command line")
    names = [] if args.metrics.strip() == "none" else metric_names(args.metrics)
    overrides: dict[str, Any] = {}
    apply_settings(overrides, args.settings, names)
    divisor = 10 if args.quick and args.metric_scale == 1 else args.metric_scale
    plan = MetricPlan(names=names, divisor=divisor, seed=args.metric_seed, overrides=overrides)
    seeds = parse_seeds(args.seeds)
    if args.kind == "compare":
        return ExperimentSpec.compare(
            base,
            args.beta,
            seeds=seeds,
            metrics=plan,
            workers=args.workers,
            stack=args.stack,
            **executor_settings(args),
        )
    return ExperimentSpec.sweep(
        base,
        parse_floats(args.betas, "--betas"),
        seeds=seeds,
        metrics=plan,
        workers=args.workers,
        stack=args.stack,
        **executor_settings(args),
    )


def cmd_experiment(args: argparse.Namespace) -> int:
    from bvae_desktop.core.experiments import Experiment

    return _run(Experiment(args.out, spec_from_args(args)), args.out, quiet=args.quiet, estimate_only=args.estimate)


def cmd_resume(args: argparse.Namespace) -> int:
    from bvae_desktop.core.experiments import Experiment, load_spec

    spec = load_spec(args.folder)
    if args.workers is not None:
        spec.workers = args.workers
    if args.stack is not None:
        spec.stack = args.stack
    apply_executor_overrides(spec, args)
    return _run(Experiment(args.folder, spec.validate()), args.folder, quiet=args.quiet, estimate_only=args.estimate)


def _run(experiment: Any, folder: Path, *, quiet: bool, estimate_only: bool = False) -> int:
    spec = experiment.spec
    from bvae_desktop.core.executors import describe, get_executor
    from bvae_desktop.core.experiments import ExperimentProgress

    get_executor(spec.executor).check()  # a missing extra (ray): its one line, before anything starts
    print(f"{spec.kind}: {len(experiment.runs)} runs in {folder} ({describe(spec)})", file=sys.stderr)
    status = StatusLine(quiet=quiet)
    pending = experiment.pending()
    if estimate_only:
        for run in pending:
            print(f"  to do: {run.name} ({run.config.steps:,} steps)", file=sys.stderr)
    estimate = None
    if pending and (estimate_only or not quiet):
        status.status("estimating the time (a few training steps and the metrics' slow parts)...", force=True)
        estimate = experiment.estimate()
        status.line(estimate.describe())
    if estimate_only:
        return 0
    printer = _EventPrinter(status, ExperimentProgress(experiment.runs, estimate))
    handler = _stop_on_interrupt(experiment, printer.progress)
    previous = {signum: signal.signal(signum, handler) for signum in _STOP_SIGNALS}
    try:
        complete = experiment.run(printer)
    except KeyboardInterrupt:
        print(f"aborted; unfinished runs keep their last checkpoints: bvae resume {folder}", file=sys.stderr)
        return 130
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
    print(f"report: {Path(folder) / 'report.html'}", file=sys.stderr)
    if experiment.stopping:
        print(f"stopped; continue with: bvae resume {folder}", file=sys.stderr)
        return 130
    return 0 if complete else 1


def cmd_report(args: argparse.Namespace) -> int:
    from bvae_desktop.core.experiment_results import finished_results
    from bvae_desktop.core.experiments import Experiment

    experiment = Experiment(args.folder)
    experiment.publish()
    results = finished_results(experiment)
    print(
        f"{len(results)} of {len(experiment.runs)} runs finished; wrote {args.folder / 'report.html'}", file=sys.stderr
    )
    if args.markdown:
        from bvae_desktop.core.experiment_results import markdown_summary, summarise

        print(markdown_summary(summarise(results)))
    return 0


_STOP_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)


def _stop_on_interrupt(experiment: Any, progress: Any = None) -> Any:
    """First Ctrl-C (or SIGTERM) stops the runs at their next step, each saving; a second one aborts."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if experiment.stopping:
            raise KeyboardInterrupt
        print("\nstopping: the runs in progress keep their checkpoints (Ctrl-C again to abort)...", file=sys.stderr)
        experiment.stop()
        if progress is not None:
            progress.stopping()

    return handler


class _EventPrinter:
    """A line per run start/finish/failure and per metric started; steps and metric progress, each with the time
    left for the run and for all runs, on the status line (a line every few seconds in a log); quiet: no progress."""

    def __init__(self, status: StatusLine, progress: Any) -> None:
        self.status = status
        self.progress = progress  # ExperimentProgress

    def __call__(self, event: Any) -> None:
        from bvae_desktop.core.experiment_results import headline

        kind, name = event.kind, event.run
        self.progress.add(event)
        if kind == "step":
            info = event.info
            eta = self.progress.run_eta(name)
            run_left = f" · {format_duration(eta)} left" if eta is not None else ""
            self.status.status(
                f"  {name}: step {info['step']:,}/{info['total']:,}  recon {info['recon']:.1f}  KL {info['kl']:.2f}  "
                f"{info['images_per_s']:.0f} img/s{run_left} · {self.progress.overall_text()}",
                key=name,
                force=info["step"] >= info["total"],
            )
        elif kind == "metric":
            if "done" not in event.info:
                self.status.note(f"  {name}: scoring {event.info['name']}")
            else:
                done = event.info["done"] >= event.info["total"]
                text = f"  {self.progress.run_text(name)} · {self.progress.overall_text()}"
                self.status.status(text, key=name, force=done and event.info.get("part") == event.info.get("parts"))
        elif kind in ("skipped", "finished"):
            row = headline(event.result or {})
            verb = "already finished" if kind == "skipped" else "finished"
            self.status.line(
                f"{name}: {verb}; recon {row['recon']:.2f}, KL {row['kl']:.2f}, β-VAE metric {row['beta_vae']:.3f}, "
                f"MIG {row['mig']:.3f}"
            )
        elif kind == "started":
            where = event.info.get("where")  # the ray executor: which node, which attempt
            self.status.line(f"{name}: started" + (f" ({where})" if where else ""))
        elif kind == "note":
            self.status.line(event.info.get("message", ""))
        elif kind in ("failed", "stopped"):
            self.status.line(f"{name}: {kind}: {event.info.get('message', '')}")
        elif kind == "done":
            info = event.info
            self.status.line(f"{info['finished']} of {info['total']} runs finished")
