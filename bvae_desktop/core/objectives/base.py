"""What an objective is to the rest of the program: a spec (name, label, parameters, needs, factory)
and an `Objective` whose `loss(ForwardPass) -> LossTerms` is the whole of its maths."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from bvae_desktop.core.objectives.terms import ForwardPass, LossTerms

# Parameters stored as TrainConfig fields of their own (the study's β-VAE and capacity β-VAE, kept so
# every earlier config, checkpoint and experiment still reads); every other parameter lives in
# TrainConfig.objective_params under its name.
CONFIG_FIELDS = ("beta", "gamma", "c_max", "c_steps")


@dataclass(frozen=True)
class Param:
    """One setting of an objective, with what a form, a flag and a validator need to know."""

    name: str  # the key in TrainConfig (a field in CONFIG_FIELDS, else in objective_params)
    label: str  # for people: "β", "γ", "λ_od"
    default: float
    low: float
    high: float
    help: str
    integer: bool = False
    log_scale: bool = False  # a slider on a log scale (weights spanning decades)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: object, where: str = "") -> float | int:
        """The value as this parameter's type, or ValueError naming the parameter and its range."""
        ok_type = isinstance(value, int) if self.integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            kind = "an integer" if self.integer else "a number"
            raise ValueError(f"{where}{self.name} must be {kind}; got {value!r}")
        number = float(value)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            raise ValueError(f"{where}{self.name} must be between {self.low:g} and {self.high:g}; got {value!r}")
        return int(value) if self.integer else number


@dataclass(frozen=True)
class ObjectiveSpec:
    """A registry entry: everything the CLI, the window, validation and the experiments need."""

    name: str
    label: str
    summary: str  # one line: what it optimises, after whom
    params: tuple[Param, ...]
    main: str | None  # the weight a run can change mid-way and a sweep varies (None: nothing to tune)
    factory: Callable[[Mapping[str, Any], str], Objective]
    fixed: Mapping[str, float] = field(default_factory=dict)  # e.g. the VAE's β = 1, whatever the config says
    vmap_stackable: bool = True  # False when it trains its own network (stacks then run member by member)
    reference: str = ""
    rank: int = 100  # place in menus and lists: the study's own objectives first

    def param(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)

    @property
    def main_param(self) -> Param | None:
        return None if self.main is None else self.param(self.main)


class Objective:
    """One objective. `beta` is its main weight now (β, γ or λ), changed between steps by the trainer;
    `loss` must read the weight from `batch.weight` (a tensor when compiled or stacked)."""

    extra_names: tuple[str, ...] = ()  # names of LossTerms.extras, in a fixed order

    def __init__(self, spec: ObjectiveSpec, params: Mapping[str, Any], reconstruction: str) -> None:
        self.spec = spec
        self.params = dict(params)
        self.reconstruction = reconstruction
        main = self.spec.main
        self.beta = float(self.params[main]) if main is not None else 0.0

    @property
    def name(self) -> str:
        return self.spec.name

    def schedule(self, step: int) -> dict[str, float]:
        """Step-dependent values (none by default); logged and passed to `loss` as `batch.schedule`."""
        return {}

    def loss(self, batch: ForwardPass) -> LossTerms:
        raise NotImplementedError

    def __call__(self, batch: ForwardPass) -> LossTerms:
        return self.loss(batch)

    # ----- objectives that train a network of their own (FactorVAE's discriminator) -------------
    def auxiliary_network(self, latent_dim: int) -> torch.nn.Module | None:
        return None

    def auxiliary_optimizer(self, network: torch.nn.Module, *, fused: bool) -> torch.optim.Optimizer:
        raise NotImplementedError

    def auxiliary_loss(self, z: torch.Tensor, network: torch.nn.Module) -> torch.Tensor:
        """The auxiliary network's own loss on detached codes; trained right after the model's step."""
        raise NotImplementedError
