"""Training objectives: one registry, one module per objective (after disentangling-vae's small loss
classes). Each module in this package registers its `ObjectiveSpec`s when imported; the CLI's flags,
the Training panel's fields, validation, `bvae info` and the experiments are built from the registry,
so adding an objective is one new file here plus its tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bvae_desktop.core.errors import ConfigError
from bvae_desktop.core.objectives.base import CONFIG_FIELDS, Objective, ObjectiveSpec, Param
from bvae_desktop.core.objectives.terms import (
    ForwardPass,
    LossTerms,
    Weight,
    capacity_at,
    kl_per_dimension,
    log_normal,
    loss_terms,
    reconstruction_loss,
)
from bvae_desktop.core.plugins import import_submodules

_REGISTRY: dict[str, ObjectiveSpec] = {}
_INFRASTRUCTURE = {"base", "terms"}
_loaded = False


def register(spec: ObjectiveSpec) -> ObjectiveSpec:
    """Add an objective; a second, different entry under the same name is a programming error."""
    known = _REGISTRY.get(spec.name)
    if known is not None and known is not spec:
        raise ValueError(f"objective {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load() -> None:
    """Import every objective module of this package once (each registers itself)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import_submodules(__name__, _INFRASTRUCTURE)


def objective_specs() -> list[ObjectiveSpec]:
    _load()
    return sorted(_REGISTRY.values(), key=lambda spec: (spec.rank, spec.name))


def objective_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in objective_specs())


def objective_spec(name: str) -> ObjectiveSpec:
    """The spec of `name`; an unknown name is an error naming the known ones, never a fallback."""
    _load()
    spec = _REGISTRY.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ConfigError(f"objective must be one of {', '.join(objective_names())}; got {name!r}")
    return spec


def all_params() -> dict[str, Param]:
    """Every parameter of every objective by name (a name means the same thing wherever it appears)."""
    params: dict[str, Param] = {}
    for spec in objective_specs():
        for param in spec.params:
            params.setdefault(param.name, param)
    return params


def param_value(config: Any, param: Param) -> float | int:
    """A parameter's value in `config`: its own field, its objective_params entry, or its default."""
    if param.name in CONFIG_FIELDS:
        return getattr(config, param.name)
    return config.objective_params.get(param.name, param.default)


def objective_values(config: Any) -> dict[str, float | int]:
    """Every parameter of the config's objective, with the spec's fixed values applied (VAE: β = 1)."""
    spec = objective_spec(config.objective)
    values = {param.name: param_value(config, param) for param in spec.params}
    values.update(spec.fixed)
    return values


def check_objective_params(config: Any) -> None:
    """objective_params may only hold parameters of the chosen objective, each within its range."""
    spec = objective_spec(config.objective)
    own = {p.name: p for p in spec.params if p.name not in CONFIG_FIELDS}
    for name, value in config.objective_params.items():
        if name not in own:
            allowed = ", ".join(own) or "none"
            raise ConfigError(
                f"objective_params: {name!r} is not a parameter of {spec.name} (its parameters: {allowed})"
            )
        try:
            own[name].check(value, "objective_params.")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def main_weight(config: Any) -> float:
    """The value of the objective's main weight (β for the β-VAE; 1 for the VAE)."""
    spec = objective_spec(config.objective)
    if spec.main is None:
        return 0.0
    return float(objective_values(config)[spec.main])


def with_param(config: Any, name: str, value: float | int) -> Any:
    """A copy of `config` with one objective parameter set, wherever that parameter is stored."""
    if name in CONFIG_FIELDS:
        return dataclasses.replace(config, **{name: value})
    return dataclasses.replace(config, objective_params={**config.objective_params, name: value})


def with_main_weight(config: Any, value: float) -> Any:
    spec = objective_spec(config.objective)
    if spec.main is None:
        raise ConfigError(f"objective {spec.name} has no weight to set")
    return with_param(config, spec.main, value)


def resolve_reconstruction(config: Any, channels: int) -> str:
    """'auto' picks Bernoulli for grey/binary images and Gaussian for colour."""
    if config.reconstruction != "auto":
        return config.reconstruction
    return "bernoulli" if channels == 1 else "gaussian"


def make_objective(config: Any, channels: int) -> Objective:
    spec = objective_spec(config.objective)
    return spec.factory(objective_values(config), resolve_reconstruction(config, channels))


__all__ = [
    "CONFIG_FIELDS",
    "ForwardPass",
    "LossTerms",
    "Objective",
    "ObjectiveSpec",
    "Param",
    "Weight",
    "all_params",
    "capacity_at",
    "check_objective_params",
    "kl_per_dimension",
    "log_normal",
    "loss_terms",
    "main_weight",
    "make_objective",
    "objective_names",
    "objective_spec",
    "objective_specs",
    "objective_values",
    "param_value",
    "reconstruction_loss",
    "register",
    "resolve_reconstruction",
    "with_main_weight",
    "with_param",
]
