"""Stacked training: K models of one architecture and data trained in one process.

Each member is a full `Trainer` (its own seed, generator, batches, noise, β, Adam state, run
folder, run log and checkpoint), so what it writes is exactly what a run trained alone writes,
and `bvae info`, `traverse`, `evaluate` and a later solo resume read it as such.

Two ways to compute a step, same results within float rounding:
- ``vmap``: the K models' weights stacked into one set of (K, ...) tensors and the step run as one
  batched computation (`torch.func.functional_call` under `torch.vmap`: convolutions become one
  grouped convolution), with one Adam over the stacked weights that keeps each member's own step
  count and skips a member whose loss went non-finite. Fewer, larger kernels: what a GPU wants.
- ``loop``: the members step in turn, each as it would alone (bit-identical to K separate runs).
  On a CPU the grouped convolutions of ``vmap`` measured ~1.7x slower than K plain ones (2 cores,
  batch 64, K = 4), so ``auto`` picks ``loop`` there and ``vmap`` on a GPU.

A member whose loss goes non-finite halts alone (its last good checkpoint kept, its error in
`failures`); the others go on.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call

from bvae_desktop.core.checkpoint import Checkpoint
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.data import ImageSet, load_dataset
from bvae_desktop.core.device import pick_device
from bvae_desktop.core.errors import ConfigError, TrainingError
from bvae_desktop.core.objectives import ForwardPass, objective_spec
from bvae_desktop.core.trainer import StepEvent, Trainer, _PendingStep, terms_vector

STACK_MODES = ("auto", "vmap", "loop")
_BETA_H_FAMILY = ("vae", "beta-h")  # the same loss, β fixed at 1 for the VAE


def stack_key(config: TrainConfig) -> str:
    """Configs with equal keys can train in one stack: everything but the seed and the objective's main
    weight (β, γ, λ) agrees; the VAE stacks with β-VAEs (the same loss at β = 1)."""
    data = config.to_dict()
    main = objective_spec(config.objective).main
    data.pop("seed")
    if main is not None:
        data.pop(main, None)
        data["objective_params"] = {k: v for k, v in data["objective_params"].items() if k != main}
    if data["objective"] in _BETA_H_FAMILY:
        data["objective"] = "beta-h"
        data.pop("beta", None)
    return repr(sorted((k, repr(v)) for k, v in data.items()))


def group_stackable(configs: Sequence[TrainConfig], size: int) -> list[list[int]]:
    """Indices of `configs` in stacks of at most `size` compatible configs, in their original order."""
    if size < 1:
        raise ConfigError(f"a stack holds at least one run; got {size}")
    groups: dict[str, list[list[int]]] = {}
    order: list[list[int]] = []
    for index, config in enumerate(configs):
        stacks = groups.setdefault(stack_key(config), [])
        if not stacks or len(stacks[-1]) >= size:
            stacks.append([])
            order.append(stacks[-1])
        stacks[-1].append(index)
    return order


class StackedAdam:
    """Adam over (K, ...) stacked weights: torch's Adam per member, with a step count per member and a
    mask that leaves a member's weights and moments untouched (finished, halted, or a non-finite step)."""

    def __init__(
        self,
        params: list[torch.Tensor],
        lr: float,
        steps: torch.Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = params
        self.lr = float(lr)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.steps = steps.to(torch.float64)  # (K,) on the weights' device
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """One update of every member where `active` (K bools, on the device) holds; no host sync."""
        self.steps += active.to(self.steps.dtype)
        safe_steps = self.steps.clamp(min=1.0)
        step_size = (self.lr / (1.0 - self.beta1**safe_steps)).to(self.params[0].dtype)
        bias2_sqrt = (1.0 - self.beta2**safe_steps).sqrt().to(self.params[0].dtype)
        for param, exp_avg, exp_avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            grad = param.grad
            if grad is None:
                continue
            shape = (-1,) + (1,) * (param.dim() - 1)
            mask = active.view(shape)
            exp_avg.copy_(torch.where(mask, exp_avg.lerp(grad, 1.0 - self.beta1), exp_avg))
            exp_avg_sq.copy_(torch.where(mask, exp_avg_sq * self.beta2 + (1.0 - self.beta2) * grad * grad, exp_avg_sq))
            denom = (exp_avg_sq.sqrt() / bias2_sqrt.view(shape)).add_(self.eps)
            update = step_size.view(shape) * exp_avg / denom
            param.sub_(torch.where(mask, update, torch.zeros_like(update)))

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None


class StackedTrainer:
    """Train K compatible configs together; `steps()` yields (member index, StepEvent)."""

    def __init__(
        self,
        configs: Sequence[TrainConfig],
        *,
        run_dirs: Sequence[str | Path | None] | None = None,
        dataset: ImageSet | None = None,
        resumes: Sequence[str | Path | Checkpoint | None] | None = None,
        mode: str = "auto",
    ) -> None:
        if not configs:
            raise ConfigError("a stack needs at least one run")
        if mode not in STACK_MODES:
            raise ConfigError(f"stack mode must be one of {', '.join(STACK_MODES)}; got {mode!r}")
        keys = {stack_key(c.validate()) for c in configs}
        if len(keys) > 1:
            raise ConfigError("runs in one stack may differ only in seed and β (or γ); these differ in more")
        batched = objective_spec(configs[0].objective).vmap_stackable
        if mode == "vmap" and not batched:
            raise ConfigError(f"{configs[0].objective} trains a network of its own: its stacks run member by member")
        count = len(configs)
        run_dirs = list(run_dirs) if run_dirs is not None else [None] * count
        resumes = list(resumes) if resumes is not None else [None] * count
        if len(run_dirs) != count or len(resumes) != count:
            raise ConfigError("give one run folder and one resume checkpoint (or None) per config")
        first = configs[0]
        if dataset is None:
            dataset = load_dataset(first.dataset, first.data_path)
        self.members = [
            Trainer(config, dataset=dataset, run_dir=run_dir, resume=resume)
            for config, run_dir, resume in zip(configs, run_dirs, resumes, strict=True)
        ]
        self.device = self.members[0].device
        if mode == "auto":
            mode = "loop" if self.device.type == "cpu" or count == 1 or not batched else "vmap"
        self.mode = mode
        self.failures: dict[int, TrainingError] = {}
        self._stop = threading.Event()
        self._finished: set[int] = set()
        if self.mode == "vmap":
            self._build_stack()

    # ----- commands ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop every member after the current step; each keeps a loadable checkpoint."""
        self._stop.set()
        for member in self.members:
            member.stop()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def set_beta(self, index: int, value: float) -> None:
        """A new β for one member, applied before its next step and logged in its run log."""
        self.members[index].set_beta(value)

    # ----- the loop ---------------------------------------------------------------------------
    def steps(self) -> Iterator[tuple[int, StepEvent]]:
        """Train every member to its config.steps (or stop()); yield (member index, event) as they are read."""
        if self.mode == "loop":
            yield from self._loop_steps()
        else:
            yield from self._vmap_steps()

    def _loop_steps(self) -> Iterator[tuple[int, StepEvent]]:
        runs = {index: member.steps() for index, member in enumerate(self.members)}
        try:
            while runs:
                for index in list(runs):
                    try:
                        event = next(runs[index])
                    except StopIteration:
                        del runs[index]
                        continue
                    except TrainingError as exc:
                        self.failures[index] = exc
                        del runs[index]
                        continue
                    yield index, event
        finally:
            for run in runs.values():
                run.close()  # a member closed early saves its checkpoint (Trainer.steps' GeneratorExit)

    def _vmap_steps(self) -> Iterator[tuple[int, StepEvent]]:
        members = self.members
        for member in members:
            member._open_log()
            member._read_clock = time.perf_counter()
        try:
            while not self._stop.is_set():
                active = [
                    index
                    for index, member in enumerate(members)
                    if index not in self.failures and index not in self._finished and member.step < member.config.steps
                ]
                if not active:
                    break
                self._stacked_step(active)
                if any(members[index]._read_due() for index in active):
                    yield from self._read(active)
            yield from self._read(range(len(members)))
        except GeneratorExit:
            self._finish_all(save=True)
            raise
        except BaseException:
            self._finish_all(save=False)
            raise
        self._finish_all(save=True)

    def _read(self, indices: Any) -> Iterator[tuple[int, StepEvent]]:
        collected: list[tuple[int, StepEvent]] = []
        for index in indices:
            member = self.members[index]
            events, error = member._record_pending()
            collected += [(index, event) for event in events]
            if error is not None:
                self.failures[index] = error
                member._finish(save=False)
        yield from collected

    def _finish_all(self, *, save: bool) -> None:
        for index, member in enumerate(self.members):
            if index in self.failures:
                continue
            member._finish(save=save)

    # ----- the batched (vmap) step --------------------------------------------------------------
    def _build_stack(self) -> None:
        members = self.members
        first = members[0]
        self._names = [name for name, _ in first.model.named_parameters()]
        with torch.no_grad():
            self._params = {
                name: torch.stack([dict(m.model.named_parameters())[name].detach().contiguous() for m in members])
                .contiguous()
                .requires_grad_(True)
                for name in self._names
            }
        self._base = copy.deepcopy(first.model).to("meta")
        steps = torch.tensor([_adam_step(m) for m in members], device=self.device)
        self._adam = StackedAdam([self._params[n] for n in self._names], first.config.lr, steps)
        with torch.no_grad():
            for slot, name in enumerate(self._names):
                for index, member in enumerate(members):
                    state = _adam_state(member, name)
                    if state:
                        self._adam.exp_avg[slot][index].copy_(state["exp_avg"])
                        self._adam.exp_avg_sq[slot][index].copy_(state["exp_avg_sq"])
        self._weights = torch.tensor([m.objective.beta for m in members], device=self.device)
        self._schedules = {key: torch.zeros(len(members), device=self.device) for key in first.objective.schedule(0)}
        self._healthy = torch.ones(len(members), dtype=torch.bool, device=self.device)
        self._objective = first.objective  # the same loss for all (stack_key); weights and schedules vary
        self._dataset_size = len(first.train_indices)
        self._autocast = first._autocast
        for index, member in enumerate(members):
            member.before_model_read = lambda index=index: self._write_back(index)
        self._batched = torch.vmap(self._member_loss, in_dims=(0, 0, 0, 0, 0))
        self._compiled = None
        if first.config.compile == "on" or (first.config.compile == "auto" and self.device.type == "cuda"):
            try:
                self._compiled = torch.compile(self._batched, dynamic=False)
            except Exception as exc:  # noqa: BLE001 - eager always works
                first._compile_failed(f"{type(exc).__name__}: {exc}")

    def _member_loss(
        self,
        params: dict[str, torch.Tensor],
        x: torch.Tensor,
        noise: torch.Tensor,
        weight: torch.Tensor,
        schedule: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One member's loss and [total, recon, KL, KL per dim, extras], written for one model; vmap stacks it."""
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self._autocast):
            output, mean, logvar, z = functional_call(self._base, params, (x, noise), {"with_z": True})
        batch = ForwardPass(
            x=x,
            output=output,
            mean=mean,
            logvar=logvar,
            z=z,
            step=0,  # step-dependent values come through `schedule`
            dataset_size=self._dataset_size,
            weight=weight,
            schedule=schedule,
        )
        terms = self._objective(batch)
        return terms.total, terms_vector(terms, self._objective.extra_names)

    def _stacked_step(self, active: list[int]) -> None:
        members = self.members
        active_mask = torch.zeros(len(members), dtype=torch.bool)
        active_mask[active] = True
        active_mask = active_mask.to(self.device)
        images, noises, betas = [], [], []
        for index, member in enumerate(members):
            if index in active:
                changed = member._apply_pending_beta()
                if changed:
                    self._weights[index] = member.objective.beta
                schedule = member.objective.schedule(member.step)
                for key, value in schedule.items():
                    self._schedules[key][index] = value
                x, noise = member.draw_batch()
                betas.append((member.objective.beta, schedule, changed))
            else:
                x = torch.zeros((member.config.batch_size, *member.image_shape), device=self.device)
                noise = torch.zeros((member.config.batch_size, member.config.latent_dim), device=self.device)
                betas.append((member.objective.beta, {}, False))
            images.append(x.contiguous())
            noises.append(noise)
        batch = torch.stack(images)
        noise = torch.stack(noises)
        self._adam.zero_grad()
        totals, values = self._run(batch, noise)
        totals.sum().backward()
        self._healthy &= torch.isfinite(values[:, :3]).all(dim=1) | ~active_mask
        self._adam.step(active_mask & self._healthy)
        for index in active:
            member = members[index]
            member.step += 1
            beta, schedule, changed = betas[index]
            member._pending.append(_PendingStep(member.step, values[index], beta, schedule, changed))

    def _run(self, batch: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._compiled is not None:
            try:
                return self._compiled(self._params, batch, noise, self._weights, self._schedules)
            except Exception as exc:  # noqa: BLE001 - compilation can fail in many ways; eager always works
                self._compiled = None
                self.members[0]._compile_failed(f"{type(exc).__name__}: {exc}")
                self._adam.zero_grad()
        return self._batched(self._params, batch, noise, self._weights, self._schedules)

    @torch.no_grad()
    def _write_back(self, index: int) -> None:
        """Copy member `index`'s slice of the stack into its own model and Adam, for a checkpoint or a view."""
        member = self.members[index]
        step = float(self._adam.steps[index])
        for slot, (name, param) in enumerate(member.model.named_parameters()):
            param.copy_(self._params[name][index])
            if step > 0:
                member.optimizer.state[param] = {
                    "step": torch.tensor(step, dtype=torch.float32),
                    "exp_avg": self._adam.exp_avg[slot][index].clone(),
                    "exp_avg_sq": self._adam.exp_avg_sq[slot][index].clone(),
                }


def _adam_step(member: Trainer) -> float:
    for state in member.optimizer.state.values():
        if "step" in state:
            return float(state["step"])
    return 0.0


def _adam_state(member: Trainer, name: str) -> dict[str, torch.Tensor]:
    param = dict(member.model.named_parameters())[name]
    return member.optimizer.state.get(param, {})


def stack_configs(base: TrainConfig, seeds: Sequence[int], betas: Sequence[float]) -> list[TrainConfig]:
    """Configs for every (β, seed) pair: a convenience for scripts and benchmarks."""
    return [dataclasses.replace(base, beta=float(b), seed=int(s)) for b in betas for s in seeds]


def resolve_stack_size(stack: int, device: str) -> int:
    """`stack` 0 means automatic: up to 24 runs in one pass on a GPU, one at a time on a CPU."""
    if stack < 0 or not isinstance(stack, int) or isinstance(stack, bool):
        raise ConfigError(f"stack must be a non-negative integer (0: automatic); got {stack!r}")
    if stack:
        return stack
    return 1 if pick_device(device).type == "cpu" else 24


__all__ = [
    "STACK_MODES",
    "StackedAdam",
    "StackedTrainer",
    "group_stackable",
    "resolve_stack_size",
    "stack_configs",
    "stack_key",
]
