"""Objective flags for `bvae train`, `sweep` and `compare`, generated from the objective registry:
a new objective's parameters get their flags here without a line of CLI code."""

from __future__ import annotations

import argparse
from typing import Any

from bvae_desktop.core.errors import ConfigError
from bvae_desktop.core.objectives import (
    CONFIG_FIELDS,
    all_params,
    objective_names,
    objective_spec,
    objective_specs,
    objective_values,
)


def add_objective_arguments(
    parser: argparse.ArgumentParser, *, objective_help: str | None = None, exclude: tuple[str, ...] = ()
) -> None:
    """--objective and one flag per objective parameter (the union over objectives, each once), but for
    `exclude` (what an experiment varies itself)."""
    summary = "; ".join(f"{spec.name}: {spec.summary}" for spec in objective_specs())
    parser.add_argument("--objective", choices=objective_names(), help=objective_help or summary)
    owners: dict[str, list[str]] = {}
    for spec in objective_specs():
        for param in spec.params:
            if param.name not in spec.fixed:
                owners.setdefault(param.name, []).append(f"{spec.name} (default {param.default:g})")
    for name, param in all_params().items():
        if name in exclude:
            continue
        parser.add_argument(
            param.flag,
            dest=name,
            type=int if param.integer else float,
            metavar="N" if param.integer else "X",
            help=f"{param.help}; for {', '.join(owners.get(name, []))}",
        )


def apply_objective_arguments(
    args: argparse.Namespace, values: dict[str, Any], *, exclude: tuple[str, ...] = ()
) -> None:
    """Put the objective and its parameter flags into `values` (a TrainConfig dict) where each is kept;
    a flag of a parameter the chosen objective does not have is an error naming both."""
    if getattr(args, "objective", None) is not None:
        values["objective"] = args.objective
    spec = objective_spec(values["objective"])
    own = {param.name for param in spec.params}
    params = dict(values.get("objective_params") or {})
    for name, param in all_params().items():
        value = None if name in exclude else getattr(args, name, None)
        if value is None:
            continue
        if name not in own:
            raise ConfigError(f"{param.flag} is not a setting of the {spec.name} objective ({spec.label})")
        if name in CONFIG_FIELDS:
            values[name] = value
        else:
            params[name] = value
    values["objective_params"] = params


def describe_objective(config: Any) -> str:
    """'beta-b (Capacity β-VAE): γ 1000, C_max 25, C steps 100000' for `bvae info` and progress lines."""
    spec = objective_spec(config.objective)
    values = objective_values(config)
    settings = ", ".join(f"{param.label} {values[param.name]:g}" for param in spec.params)
    return f"{spec.name} ({spec.label}): {settings}"
