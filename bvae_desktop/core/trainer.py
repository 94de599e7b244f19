"""Trainer: owns model, optimizer and device; `steps()` yields a StepEvent per step.

Pause, resume, stop and set_beta may be called from any thread; they take effect between steps.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bvae_desktop.core.atomic import remove_stale_temp_files
from bvae_desktop.core.checkpoint import (
    Checkpoint,
    check_finite_weights,
    library_versions,
    load_checkpoint,
    save_checkpoint,
)
from bvae_desktop.core.config import TrainConfig, beta_normalised
from bvae_desktop.core.data import ImageSet, load_dataset, split_indices
from bvae_desktop.core.device import pick_device
from bvae_desktop.core.errors import CheckpointError, ConfigError, DatasetError, TrainingError
from bvae_desktop.core.nets import BetaVAE, initialise_weights, to_unit_float
from bvae_desktop.core.objectives import ForwardPass, LossTerms, Weight, make_objective
from bvae_desktop.core.runlog import RunLog

CHECKPOINT_NAME = "checkpoint.pt"
RUNLOG_NAME = "runlog.h5"
CONFIG_NAME = "config.json"
_RATE_SMOOTHING = 0.9
DEVICE_SYNC_EVERY = 50  # steps between host reads on a GPU when config.sync_every is 0 (automatic)
READ_INTERVAL_S = 0.1  # and at least this often, so a window still sees ~10 updates a second
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepEvent:
    """Numbers only (no tensors), so it can cross threads and outlive the step."""

    step: int
    total_steps: int
    loss: float
    recon: float
    kl: float
    kl_per_dim: tuple[float, ...]
    beta: float
    beta_norm: float
    capacity: float | None
    lr: float
    images_per_s: float
    beta_changed: bool = False
    validation: dict[str, float] | None = None
    checkpoint: str | None = None
    extras: dict[str, float] = field(default_factory=dict)  # the objective's own terms (TC, ...), by name

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps


@dataclass
class _PendingStep:
    """A trained step whose numbers may still sit on the device (read in blocks, see `Trainer.steps`)."""

    step: int
    values: torch.Tensor | list[float]  # total, recon, KL, KL per dimension, the objective's extras
    beta: float
    schedule: dict[str, float]
    beta_changed: bool


LossFunction = Callable[
    [torch.Tensor, torch.Tensor, Weight, dict[str, Weight]], tuple[torch.Tensor, torch.Tensor, torch.Tensor]
]


class Trainer:
    """Train one β-VAE. Give `run_dir` to get checkpoints, a run log and the config on disk.

    On the CPU every step's numbers are read at once and a non-finite loss stops before the update,
    as it always did. On a GPU the host never waits on a step: the losses stay on the device and are
    read in blocks (`config.sync_every`, and at every validation, checkpoint, pause and stop), the
    finite check runs on the device and gates the (fused) Adam update, so a bad step and every step
    after it in its block leave the weights as they were; the halt names the first bad step.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        dataset: ImageSet | None = None,
        run_dir: str | Path | None = None,
        resume: str | Path | Checkpoint | None = None,
    ) -> None:
        self.config = config.validate()
        self.device = pick_device(config.device)
        self.dataset = dataset if dataset is not None else load_dataset(config.dataset, config.data_path)
        self.image_shape = _check_shape(self.dataset)
        self.dataset.to(self.device)
        torch.manual_seed(config.seed)
        model = BetaVAE(self.image_shape, config.latent_dim)
        # channels_last: ~25% faster on CPU (oneDNN) for these convs, and the layout cuDNN prefers
        self._use_channels_last = self.device.type in ("cuda", "cpu") and config.channels_last
        if self._use_channels_last:
            model = model.to(memory_format=torch.channels_last)
        initialise_weights(model, config.weight_init, config.seed)  # on the CPU: the same weights on any device
        self.model = model.to(self.device)
        self._autocast = self.device.type == "cuda" and config.bf16
        self.sync_every = config.sync_every or (1 if self.device.type == "cpu" else DEVICE_SYNC_EVERY)
        self.objective = make_objective(config, self.image_shape[0])
        self.auxiliary = self.objective.auxiliary_network(config.latent_dim)  # e.g. FactorVAE's discriminator
        if self.auxiliary is not None:
            self.auxiliary = self.auxiliary.to(self.device)
        self.optimizer, self._device_guard = self._make_optimizer()
        self.auxiliary_optimizer = (
            self.objective.auxiliary_optimizer(self.auxiliary, fused=self._device_guard)
            if self.auxiliary is not None
            else None
        )
        self._healthy = torch.ones((), dtype=torch.bool, device=self.device)
        train_idx, val_idx = split_indices(len(self.dataset), config.val_fraction, config.seed)
        self.train_indices = torch.as_tensor(train_idx, device=self.device)
        self.val_indices = val_idx
        self._val_sample: np.ndarray | None = None
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)
        self.step = 0
        self.last_metrics: dict[str, float] = {}
        self._pause = threading.Event()
        self._stop = threading.Event()
        self._held = threading.Event()
        self._beta_lock = threading.Lock()
        self._pending_beta: float | None = None
        self._last_saved_step = -1
        self._pending: list[_PendingStep] = []
        self._rate = 0.0
        self._read_clock = time.perf_counter()
        self.before_model_read: Callable[[], None] | None = None  # a stacked trainer writes its weights back here
        self.compile_status = "off"
        self.compile_seconds: float | None = None
        self._compile_pending_log = False
        self._compiled: LossFunction | None = self._make_compiled()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.checkpoint_path = self.run_dir / CHECKPOINT_NAME if self.run_dir else None
        if resume is not None:
            self._restore(resume if isinstance(resume, Checkpoint) else load_checkpoint(resume))
        self.log: RunLog | None = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.run_dir)  # what a kill mid-write left behind
            config.save(self.run_dir / CONFIG_NAME)
            self._open_log()

    def _make_optimizer(self) -> tuple[torch.optim.Adam, bool]:
        """Adam; fused with a device-side skip (`found_inf`) when steps are not read one by one."""
        params = list(self.model.parameters())
        if self.sync_every > 1:
            try:
                return torch.optim.Adam(params, lr=self.config.lr, fused=True), True
            except (RuntimeError, ValueError) as exc:  # a device without fused Adam: read every step instead
                _log.warning("fused Adam unavailable on %s (%s): reading every step", self.device, exc)
                self.sync_every = 1
        return torch.optim.Adam(params, lr=self.config.lr), False

    def _make_compiled(self) -> LossFunction | None:
        """torch.compile'd loss (forward and, through AOTAutograd, backward); None when eager is asked for."""
        mode = self.config.compile
        if mode == "off" or (mode == "auto" and self.device.type != "cuda"):
            return None
        compiler = getattr(torch, "compile", None)
        if compiler is None:
            self._compile_failed("this torch has no torch.compile")
            return None
        try:
            compiled = compiler(self._loss, dynamic=False)
        except Exception as exc:  # noqa: BLE001 - any failure falls back to eager, never a crash
            self._compile_failed(f"{type(exc).__name__}: {exc}")
            return None
        self.compile_status = "compiling"
        self._weight_t = torch.zeros((), device=self.device)
        self._step_t = torch.zeros((), dtype=torch.int64, device=self.device)  # a Python int would recompile
        self._schedule_t: dict[str, torch.Tensor] = {}
        return compiled

    def _compile_failed(self, reason: str) -> None:
        self.compile_status = f"failed, eager ({reason.splitlines()[0][:200]})"
        _log.warning("torch.compile unavailable or failed: %s; training continues eagerly", reason)

    def _open_log(self) -> None:
        """Open (or reopen, after a halt) the run log, dropping rows past the current step."""
        if self.run_dir is None or self.log is not None:
            return
        self.log = RunLog(self.run_dir / RUNLOG_NAME, config=self._log_attrs(), latent_dim=self.config.latent_dim)
        self.log.truncate_after(self.step)

    # ----- commands from any thread -------------------------------------------------------
    def pause(self) -> None:
        self._pause.set()

    def resume(self) -> None:
        self._pause.clear()

    def stop(self) -> None:
        self._stop.set()

    def set_beta(self, value: float) -> None:
        """Ask for a new β (γ for capacity β-VAE); applied before the next step and logged."""
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"β must be a finite number >= 0; got {value!r}")
        with self._beta_lock:
            self._pending_beta = float(value)

    @property
    def paused(self) -> bool:
        return self._pause.is_set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def beta(self) -> float:
        return self.objective.beta

    @property
    def beta_norm(self) -> float:
        return beta_normalised(self.objective.beta, self.config.latent_dim, self.image_shape)

    # ----- the loop ------------------------------------------------------------------------
    def steps(self) -> Iterator[StepEvent]:
        """Train until config.steps or stop(); the run folder always ends with a loadable checkpoint.

        Events come in blocks when steps are read in blocks (on a GPU); every step gets its event
        and its run-log row. A non-finite loss raises TrainingError once the steps before it are out.
        """
        config = self.config
        self._read_clock = time.perf_counter()
        self._open_log()  # steps() may be called again after a TrainingError: the model is still good
        try:
            while self.step < config.steps and not self._stop.is_set():
                if self._pause.is_set():
                    yield from self._read_pending()
                    if not self.wait_while_paused():
                        break
                    self._read_clock = time.perf_counter()  # a pause is not training time
                beta_changed = self._apply_pending_beta()
                self._pending.append(self._train_step(beta_changed))
                if self._read_due():
                    yield from self._read_pending()
            yield from self._read_pending()
        except GeneratorExit:  # the consumer let go (a window closing): keep what was trained
            self._finish(save=True)
            raise
        except TrainingError:  # a non-finite loss: the model in memory is still good, steps() may go on
            self._finish(save=False)
            raise
        except BaseException:  # an abort (a second Ctrl-C): the last checkpoint stays, the log is cut back to it
            self._finish(save=False, keep_rows_after_checkpoint=False)
            raise
        self._finish(save=True)

    def _read_due(self) -> bool:
        """Read at every validation and checkpoint step, at the end, on pause or stop, and every block."""
        step, config = self.step, self.config
        return (
            len(self._pending) >= self.sync_every
            or step % config.val_every == 0
            or (self.run_dir is not None and step % config.checkpoint_every == 0)
            or step >= config.steps
            or self._stop.is_set()
            or self._pause.is_set()
            or time.perf_counter() - self._read_clock >= READ_INTERVAL_S
        )

    def _read_pending(self) -> Iterator[StepEvent]:
        """Read the pending steps in one transfer, log and validate them, then hand out their events.

        Everything is written before the first event goes out, so a consumer that lets go mid-block
        loses nothing.
        """
        events, error = self._record_pending()
        yield from events
        if error is not None:
            raise error

    def _record_pending(self) -> tuple[list[StepEvent], TrainingError | None]:
        pending, self._pending = self._pending, []
        if not pending:
            return [], None
        rows = _host_rows([p.values for p in pending])
        now = time.perf_counter()
        instant = len(pending) * self.config.batch_size / max(now - self._read_clock, 1e-9)
        self._rate = instant if self._rate == 0.0 else _RATE_SMOOTHING * self._rate + (1 - _RATE_SMOOTHING) * instant
        self._read_clock = now
        events: list[StepEvent] = []
        for item, row in zip(pending, rows, strict=True):
            if not all(math.isfinite(v) for v in row[:3]):
                return events, self._halt(item, row[0])
            events.append(self.record_step(item.step, row, item.beta, item.schedule, self._rate, item.beta_changed))
        return events, None

    def _halt(self, bad: _PendingStep, loss: float) -> TrainingError:
        """The device skipped the bad step's update and every one after it: the weights are those of the
        step before; count from there."""
        self.step = bad.step - 1
        self._healthy.fill_(True)
        kept = f"; the last good checkpoint {self.checkpoint_path} is kept" if self.checkpoint_path else ""
        return TrainingError(
            f"non-finite loss ({loss}) at step {bad.step}: training stopped{kept}. "
            "Lower the learning rate or β, or check the data."
        )

    def _finish(self, *, save: bool, keep_rows_after_checkpoint: bool = True) -> None:
        if save:
            events, _error = self._record_pending()  # steps trained but not read yet still get their rows
            del events
        else:
            self._pending = []
        if save and self.run_dir is not None and self.step > 0 and self._last_saved_step != self.step:
            self.save_checkpoint()
        if self.log is not None:
            if not keep_rows_after_checkpoint:
                self.log.truncate_after(max(self._last_saved_step, 0))
            self.log.close()
            self.log = None

    def wait_while_paused(self) -> bool:
        """Block until resume (True) or stop (False); checks stop every 50 ms."""
        if self.log is not None:
            self.log.flush()  # readers see every row up to the pause
        self._held.set()
        try:
            while self._pause.is_set():
                if self._stop.wait(0.05):
                    return False
            return True
        finally:
            self._held.clear()

    @property
    def held(self) -> bool:
        """True while the loop sits paused between steps (no step can run)."""
        return self._held.is_set()

    def _apply_pending_beta(self) -> bool:
        with self._beta_lock:
            value, self._pending_beta = self._pending_beta, None
        if value is None or value == self.objective.beta:
            return False
        self.objective.beta = value
        if self.log is not None:
            self.log.record_beta_change(self.step, value, self.beta_norm)
        return True

    def _batch(self, indices: torch.Tensor) -> torch.Tensor:
        images = self.dataset.batch(indices, self.device)
        x = to_unit_float(images)
        if self._use_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def draw_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next training batch and its reparameterisation noise, from this run's own generator."""
        config = self.config
        pick = torch.randint(
            len(self.train_indices), (config.batch_size,), generator=self.generator, device=self.device
        )
        x = self._batch(self.train_indices[pick])
        noise = torch.randn((config.batch_size, config.latent_dim), generator=self.generator, device=self.device)
        return x, noise

    def forward_pass(
        self, x: torch.Tensor, noise: torch.Tensor, weight: Weight, schedule: dict[str, Weight]
    ) -> ForwardPass:
        """The model's pass over a batch, as the record every objective's loss reads."""
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self._autocast):
            output, mean, logvar, z = self.model(x, noise, with_z=True)
        return ForwardPass(
            x=x,
            output=output,
            mean=mean,
            logvar=logvar,
            z=z,
            step=self._step_t if self._compiled is not None else self.step,
            dataset_size=len(self.train_indices),
            weight=weight,
            schedule=schedule,
            auxiliary=self.auxiliary,
        )

    def _forward(self, x: torch.Tensor, noise: torch.Tensor) -> LossTerms:
        batch = self.forward_pass(x, noise, self.objective.beta, self.objective.schedule(self.step))
        return self.objective(batch)

    def _loss(
        self, x: torch.Tensor, noise: torch.Tensor, weight: Weight, schedule: dict[str, Weight]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total loss, detached [total, recon, KL, KL per dim, extras], detached z): the step's computation,
        compilable."""
        batch = self.forward_pass(x, noise, weight, schedule)
        terms = self.objective(batch)
        values = terms_vector(terms, self.objective.extra_names)
        return terms.total, values, batch.z.detach()

    def _train_step(self, beta_changed: bool) -> _PendingStep:
        beta = self.objective.beta
        schedule = self.objective.schedule(self.step)
        try:
            x, noise = self.draw_batch()
            self.model.train()
            self.optimizer.zero_grad(set_to_none=True)
            values, z = self._backward(x, noise, beta, schedule)
        except (torch.OutOfMemoryError, RuntimeError, MemoryError) as exc:
            if not _is_out_of_memory(exc):
                raise
            self.optimizer.zero_grad(set_to_none=True)
            channels, height, width = self.image_shape
            raise ConfigError(
                f"out of memory on {self.device} at batch size {self.config.batch_size} "
                f"({height}x{width}x{channels} images, latent size {self.config.latent_dim}): "
                "lower batch_size (--batch-size) or latent_dim"
            ) from None
        if self._device_guard:
            self._healthy &= torch.isfinite(values[:3]).all()
            found_inf = (~self._healthy).float()
            self.optimizer.found_inf = found_inf  # fused Adam leaves the weights as they are
            if self.auxiliary_optimizer is not None:
                self.auxiliary_optimizer.found_inf = found_inf
        else:
            host = values.tolist()
            if not all(math.isfinite(v) for v in host[:3]):
                raise self._halt(_PendingStep(self.step + 1, host, beta, schedule, beta_changed), host[0])
            values = host
        self.optimizer.step()
        self._auxiliary_step(z)
        self.step += 1
        return _PendingStep(self.step, values, beta, schedule, beta_changed)

    def _auxiliary_step(self, z: torch.Tensor) -> None:
        """Train the objective's own network (FactorVAE's discriminator) on this step's detached codes."""
        if self.auxiliary is None or self.auxiliary_optimizer is None:
            return
        self.auxiliary_optimizer.zero_grad(set_to_none=True)  # drop what the model's loss put there
        self.auxiliary.train()
        self.objective.auxiliary_loss(z, self.auxiliary).backward()
        self.auxiliary_optimizer.step()

    def _backward(
        self, x: torch.Tensor, noise: torch.Tensor, beta: float, schedule: dict[str, float]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward, compiled when asked and possible; the first failure falls back to eager."""
        if self._compiled is not None:
            try:
                return self._compiled_backward(x, noise, beta, schedule)
            except Exception as exc:  # noqa: BLE001 - compilation can fail in many ways; eager always works
                self._compiled = None
                self._compile_failed(f"{type(exc).__name__}: {exc}")
                self.optimizer.zero_grad(set_to_none=True)
        total, values, z = self._loss(x, noise, beta, schedule)
        total.backward()
        return values, z

    def _compiled_backward(
        self, x: torch.Tensor, noise: torch.Tensor, beta: float, schedule: dict[str, float]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._compiled is not None
        first = self.compile_status == "compiling"
        started = time.perf_counter()
        self._weight_t.fill_(beta)
        self._step_t.fill_(self.step)
        for key, value in schedule.items():
            self._schedule_t.setdefault(key, torch.zeros((), device=self.device)).fill_(value)
        total, values, z = self._compiled(x, noise, self._weight_t, {k: self._schedule_t[k] for k in schedule})
        total.backward()
        if first:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.compile_seconds = time.perf_counter() - started
            self.compile_status = f"compiled in {self.compile_seconds:.1f} s"
            self._compile_pending_log = True
        return values, z

    def record_step(
        self,
        step: int,
        row: list[float],
        beta: float,
        schedule: dict[str, float],
        rate: float,
        beta_changed: bool,
    ) -> StepEvent:
        """Log one trained step's numbers; validate and checkpoint when due; return its event."""
        latent_dim = self.config.latent_dim
        total, recon, kl = row[:3]
        kl_dims = row[3 : 3 + latent_dim]
        extras = dict(zip(self.objective.extra_names, row[3 + latent_dim :], strict=True))
        capacity = schedule.get("capacity")
        lr = float(self.optimizer.param_groups[0]["lr"])
        metrics = {
            "loss": total,
            "recon": recon,
            "kl": kl,
            "beta": beta,
            "beta_norm": beta_normalised(beta, self.config.latent_dim, self.image_shape),
            "capacity": capacity if capacity is not None else math.nan,
            "lr": lr,
            "images_per_s": rate,
            **{k: v for k, v in schedule.items() if k != "capacity"},
            **extras,
        }
        if self._compile_pending_log and self.compile_seconds is not None:
            metrics["compile_seconds"] = self.compile_seconds  # once, on the first compiled step's row
            self._compile_pending_log = False
        self.last_metrics = {k: v for k, v in metrics.items() if not math.isnan(v) and k != "compile_seconds"}
        if self.log is not None:
            self.log.append_step(step, metrics, kl_dims)
        validation = None
        if step % self.config.val_every == 0 or step == self.config.steps:
            validation = self.validate()
            self.last_metrics.update({f"val_{k}": v for k, v in validation.items()})
            if self.log is not None:
                self.log.append_validation(step, validation)
        checkpoint = None
        if self.run_dir is not None and (step % self.config.checkpoint_every == 0 or step == self.config.steps):
            checkpoint = str(self.save_checkpoint())
        return StepEvent(
            step=step,
            total_steps=self.config.steps,
            loss=total,
            recon=recon,
            kl=kl,
            kl_per_dim=tuple(kl_dims),
            beta=beta,
            beta_norm=metrics["beta_norm"],
            capacity=capacity,
            lr=lr,
            images_per_s=rate,
            beta_changed=beta_changed,
            validation=validation,
            checkpoint=checkpoint,
            extras=extras,
        )

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss terms on fixed held-out batches with fixed noise, so values compare across steps."""
        self.sync_model()
        config = self.config
        indices = torch.as_tensor(self._validation_sample())
        count = len(indices)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(config.seed + 1)
        sums = np.zeros(3)
        self.model.eval()
        for start in range(0, count, config.batch_size):
            x = self._batch(indices[start : start + config.batch_size])
            noise = torch.randn((x.shape[0], config.latent_dim), generator=generator, device=self.device)
            terms = self._forward(x, noise)
            sums += np.array([float(terms.total), float(terms.recon), float(terms.kl)]) * x.shape[0]
        total, recon, kl = sums / max(count, 1)
        return {"loss": total, "recon": recon, "kl": kl}

    def sync_model(self) -> None:
        if self.before_model_read is not None:
            self.before_model_read()

    def _validation_sample(self) -> np.ndarray:
        """A fixed, seeded random subset of the validation split.

        Not its first images: the split is sorted, and on a factor grid (dSprites) the first
        indices are all small squares, which would make every validation number look too good.
        """
        if self._val_sample is None:
            count = min(len(self.val_indices), self.config.val_batches * self.config.batch_size)
            rng = np.random.default_rng(self.config.seed + 1)
            self._val_sample = np.sort(rng.choice(self.val_indices, count, replace=False))
        return self._val_sample

    # ----- checkpoints ---------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        self.sync_model()
        return Checkpoint(
            config=self.config,
            image_shape=self.image_shape,
            step=self.step,
            beta=self.objective.beta,
            model_state=self.model.state_dict(),
            optimizer_state=self.optimizer.state_dict(),
            rng_state={"generator": self.generator.get_state(), "torch": torch.get_rng_state()},
            metrics=dict(self.last_metrics),
            dataset={"name": self.dataset.name, "source": str(self.dataset.source), "kind": self.config.dataset},
            versions=library_versions(),
            auxiliary_state=self.auxiliary.state_dict() if self.auxiliary is not None else None,
            auxiliary_optimizer_state=(
                self.auxiliary_optimizer.state_dict() if self.auxiliary_optimizer is not None else None
            ),
        )

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write a checkpoint (atomically) to `path` or the run folder; flush the log first."""
        target = Path(path) if path is not None else self.checkpoint_path
        if target is None:
            raise CheckpointError("no checkpoint path: give one or train with a run folder")
        if self.log is not None:
            self.log.flush()
        saved = save_checkpoint(target, self.checkpoint())
        if path is None:
            self._last_saved_step = self.step
        return saved

    @torch.no_grad()
    def reconstruct(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(originals, reconstructions of their posterior means) as uint8 NCHW numpy arrays.

        Call between steps (from the training thread): it reads the live model.
        """
        self.sync_model()
        x = self._batch(torch.as_tensor(np.asarray(indices, dtype=np.int64)))
        self.model.eval()
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self._autocast):
            mean, _logvar = self.model.encode(x)
            output = self.model.decode(mean)
        recon = torch.sigmoid(output.float()).mul(255).round().to(torch.uint8)
        originals = x.mul(255).round().to(torch.uint8)
        return originals.cpu().contiguous().numpy(), recon.cpu().contiguous().numpy()

    def model_snapshot(self) -> dict[str, torch.Tensor]:
        """CPU copy of the weights, for views that decode while training goes on."""
        self.sync_model()
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def _restore(self, checkpoint: Checkpoint) -> None:
        where = checkpoint.path or "checkpoint"
        if checkpoint.image_shape != self.image_shape:
            raise CheckpointError(
                f"{where}: made for {checkpoint.image_shape} images, this dataset has {self.image_shape}"
            )
        if checkpoint.config.latent_dim != self.config.latent_dim:
            raise CheckpointError(
                f"{where}: latent size {checkpoint.config.latent_dim} does not fit "
                f"the configured {self.config.latent_dim}"
            )
        changed = resume_conflicts(checkpoint.config, self.config)
        if changed:
            details = "; ".join(f"{name}: {old!r} in the checkpoint, {new!r} now" for name, old, new in changed)
            raise CheckpointError(
                f"{where}: cannot continue it under other settings ({details}). A run continues with its own "
                "settings (only steps, the weight, device, compile, sync_every, val_every and checkpoint_every may "
                "change); start a new run to train with these"
            )
        check_finite_weights(checkpoint.model_state, where)
        try:
            self.model.load_state_dict(checkpoint.model_state)
            if checkpoint.optimizer_state is not None:
                self.optimizer.load_state_dict(checkpoint.optimizer_state)
                _adopt_optimizer_kind(self.optimizer, fused=self._device_guard)
            if self.auxiliary is not None and checkpoint.auxiliary_state is not None:
                self.auxiliary.load_state_dict(checkpoint.auxiliary_state)
                if checkpoint.auxiliary_optimizer_state is not None and self.auxiliary_optimizer is not None:
                    self.auxiliary_optimizer.load_state_dict(checkpoint.auxiliary_optimizer_state)
                    _adopt_optimizer_kind(self.auxiliary_optimizer, fused=self._device_guard)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{where}: does not fit this model ({str(exc).splitlines()[0]})") from None
        if "generator" in checkpoint.rng_state:
            try:
                self.generator.set_state(checkpoint.rng_state["generator"].to(torch.uint8))
            except RuntimeError:
                # saved on another kind of device (a CUDA generator's state does not fit the CPU's):
                # continue with a stream seeded from the run's seed and step, still reproducible
                self.generator.manual_seed(self.config.seed * 1_000_003 + checkpoint.step)
        self.objective.beta = checkpoint.beta
        self.step = checkpoint.step
        self._last_saved_step = checkpoint.step
        self.last_metrics = dict(checkpoint.metrics)

    def _log_attrs(self) -> dict:
        attrs = self.config.to_dict()
        attrs.update(
            image_shape=list(self.image_shape),
            reconstruction_used=self.objective.reconstruction,
            beta_norm=self.beta_norm,
            reduction="sum",
            device=str(self.device),
            dataset_name=self.dataset.name,
        )
        return attrs


# what may differ when a run continues: how long and how fast it runs, the tunable weight, where the data
# file now lives; everything else would silently make it another run (another split, loss or model)
RESUMABLE_CHANGES = frozenset(
    {"steps", "device", "compile", "sync_every", "val_every", "checkpoint_every", "data_path", "extra"}
)


def resume_conflicts(saved: TrainConfig, wanted: TrainConfig) -> list[tuple[str, object, object]]:
    """(setting, saved value, wanted value) for every setting a continued run may not change."""
    from bvae_desktop.core.objectives import objective_spec

    old, new = saved.to_dict(), wanted.to_dict()
    main = objective_spec(saved.objective).main if saved.objective == wanted.objective else None
    conflicts = []
    for name in old:
        if name in RESUMABLE_CHANGES or name == main or old[name] == new.get(name):
            continue
        if name == "objective_params":
            for key in sorted(set(old[name]) | set(new[name])):
                if key != main and old[name].get(key) != new[name].get(key):
                    conflicts.append((f"objective_params.{key}", old[name].get(key), new[name].get(key)))
            continue
        conflicts.append((name, old[name], new.get(name)))
    return conflicts


def _adopt_optimizer_kind(optimizer: torch.optim.Optimizer, *, fused: bool) -> None:
    """A loaded optimizer state carries the saving trainer's kind of Adam (fused or not): use ours."""
    for group in optimizer.param_groups:
        group.update(fused=True if fused else None, foreach=None, capturable=False)


def terms_vector(terms: LossTerms, extra_names: tuple[str, ...]) -> torch.Tensor:
    """[total, recon, KL, KL per dim, extras in `extra_names` order], detached: one transfer per step."""
    head = torch.stack([terms.total.float(), terms.recon.float(), terms.kl.float()])
    parts = [head, terms.kl_per_dim.float()]
    if extra_names:
        parts.append(torch.stack([terms.extras[name].float() for name in extra_names]))
    return torch.cat(parts).detach()


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (
        isinstance(exc, (torch.OutOfMemoryError, MemoryError))
        or "out of memory" in text
        or ("can't allocate memory" in text)
    )


def _host_rows(values: list[torch.Tensor | list[float]]) -> list[list[float]]:
    """Every pending step's numbers on the host, with one device transfer for all of them."""
    if all(isinstance(v, list) for v in values):
        return values  # type: ignore[return-value]
    tensors = [v if isinstance(v, torch.Tensor) else torch.tensor(v) for v in values]
    device = tensors[0].device
    return torch.stack([t.to(device, torch.float32) for t in tensors]).tolist()


def _check_shape(dataset: ImageSet) -> tuple[int, int, int]:
    channels, height, width = dataset.shape
    if height != width or height not in (32, 64):
        raise DatasetError(
            f"{dataset.source or dataset.name}: images are {height}x{width}; the models take 32x32 or 64x64"
        )
    if channels not in (1, 3):
        raise DatasetError(f"{dataset.source or dataset.name}: images have {channels} channels; 1 or 3 are supported")
    return channels, height, width
