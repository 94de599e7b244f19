"""`--executor` and its settings for `bvae sweep`, `compare` and `resume`, generated from the executor registry
(core/executors.py): a new executor's options become flags here without an edit."""

from __future__ import annotations

import argparse
from typing import Any

from bvae_desktop.core.errors import ConfigError
from bvae_desktop.core.executors import default_executor, executor_names, executors


def _dest(executor: str, option: str) -> str:
    return f"executor_{executor}_{option}"


def add_executor_arguments(parser: argparse.ArgumentParser, *, resume: bool = False) -> None:
    group = parser.add_argument_group("where the runs train")
    choices = ", ".join(f"{entry.name} ({entry.description})" for entry in executors())
    default = "as saved" if resume else "processes with --workers above 1, else local"
    group.add_argument("--executor", choices=executor_names(), help=f"{choices}; default: {default}")
    for entry in executors():
        for option in entry.options:
            extra = f" (default {option.default:g})" if isinstance(option.default, (int, float)) else ""
            if option.choices:
                extra = f" (default {option.default})"
            group.add_argument(
                option.flag,
                dest=_dest(entry.name, option.name),
                type=option.kind,
                choices=option.choices or None,
                metavar=None if option.choices else option.kind.__name__.upper().replace("STR", "TEXT"),
                help=f"--executor {entry.name}: {option.help}{extra}",
            )


def _given_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """{executor: {option: value}} for every executor flag on the command line."""
    given: dict[str, dict[str, Any]] = {}
    for entry in executors():
        for option in entry.options:
            value = getattr(args, _dest(entry.name, option.name), None)
            if value is not None:
                given.setdefault(entry.name, {})[option.name] = value
    return given


def _options_for(executor: str, args: argparse.Namespace) -> dict[str, Any]:
    given = _given_options(args)
    for other, options in given.items():
        if other != executor:
            flags = ", ".join(
                o.flag for o in next(e for e in executors() if e.name == other).options if o.name in options
            )
            raise ConfigError(f"{flags}: a setting of --executor {other}, and this experiment runs with {executor}")
    return given.get(executor, {})


def executor_settings(args: argparse.Namespace) -> dict[str, Any]:
    """`executor` and `executor_options` for a new experiment's spec."""
    workers = getattr(args, "workers", 1) or 1
    executor = args.executor or default_executor(workers)
    if executor == "local" and workers > 1:
        raise ConfigError(
            f"--workers {workers} runs that many worker processes: use --executor processes "
            "(--executor local trains one run after another in this process)"
        )
    return {"executor": executor, "executor_options": _options_for(executor, args)}


def apply_executor_overrides(spec: Any, args: argparse.Namespace) -> None:
    """`bvae resume`: --executor and its settings replace the saved ones; --workers alone on a local or
    processes experiment picks between the two, as it did before executors existed."""
    if args.executor and args.executor != spec.executor:
        spec.executor, spec.executor_options = args.executor, {}
    elif not args.executor and args.workers is not None and spec.executor in ("local", "processes"):
        spec.executor = default_executor(args.workers)
    spec.executor_options = {**spec.executor_options, **_options_for(spec.executor, args)}


__all__ = ["add_executor_arguments", "apply_executor_overrides", "executor_settings"]
