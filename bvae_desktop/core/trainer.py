"""Trainer: owns model, optimizer and device; `steps()` yields a StepEvent per step.

Pause, resume, stop and set_beta may be called from any thread; they take effect between steps.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bvae_desktop.core.checkpoint import Checkpoint, library_versions, load_checkpoint, save_checkpoint
from bvae_desktop.core.config import TrainConfig, beta_normalised
from bvae_desktop.core.data import ImageSet, load_dataset, split_indices
from bvae_desktop.core.device import pick_device
from bvae_desktop.core.errors import CheckpointError, DatasetError, TrainingError
from bvae_desktop.core.nets import BetaVAE, to_unit_float
from bvae_desktop.core.objectives import LossTerms, make_objective
from bvae_desktop.core.runlog import RunLog

CHECKPOINT_NAME = "checkpoint.pt"
RUNLOG_NAME = "runlog.h5"
CONFIG_NAME = "config.json"
_RATE_SMOOTHING = 0.9


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

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps


class Trainer:
    """Train one β-VAE. Give `run_dir` to get checkpoints, a run log and the config on disk."""

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
        self.model = BetaVAE(self.image_shape, config.latent_dim).to(self.device)
        # channels_last: ~25% faster on CPU (oneDNN) for these convs, and the layout cuDNN prefers
        self._use_channels_last = self.device.type in ("cuda", "cpu") and config.channels_last
        if self._use_channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._autocast = self.device.type == "cuda" and config.bf16
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.objective = make_objective(config, self.image_shape[0])
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
        self._values: list[float] = []
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.checkpoint_path = self.run_dir / CHECKPOINT_NAME if self.run_dir else None
        if resume is not None:
            self._restore(resume if isinstance(resume, Checkpoint) else load_checkpoint(resume))
        self.log: RunLog | None = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config.save(self.run_dir / CONFIG_NAME)
            self._open_log()

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
        """Train until config.steps or stop(); the run folder always ends with a loadable checkpoint."""
        config = self.config
        rate = 0.0
        last_time = time.perf_counter()
        self._open_log()  # steps() may be called again after a TrainingError: the model is still good
        try:
            while self.step < config.steps and not self._stop.is_set():
                if self._pause.is_set() and not self.wait_while_paused():
                    break
                beta_changed = self._apply_pending_beta()
                terms = self._train_step()
                now = time.perf_counter()
                instant = config.batch_size / max(now - last_time, 1e-9)
                rate = instant if rate == 0.0 else _RATE_SMOOTHING * rate + (1 - _RATE_SMOOTHING) * instant
                last_time = now
                event = self._event(terms, rate, beta_changed)
                yield event
        except GeneratorExit:  # the consumer let go (a window closing): keep what was trained
            self._finish(save=True)
            raise
        except BaseException:  # a non-finite loss or an abort: the last good checkpoint stays as it is
            self._finish(save=False)
            raise
        self._finish(save=True)

    def _finish(self, *, save: bool) -> None:
        if save and self.run_dir is not None and self.step > 0 and self._last_saved_step != self.step:
            self.save_checkpoint()
        if self.log is not None:
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

    def _forward(self, x: torch.Tensor, noise: torch.Tensor, step: int) -> LossTerms:
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self._autocast):
            output, mean, logvar = self.model(x, noise)
        return self.objective(output, x, mean, logvar, step)

    def _train_step(self) -> LossTerms:
        config = self.config
        pick = torch.randint(
            len(self.train_indices), (config.batch_size,), generator=self.generator, device=self.device
        )
        x = self._batch(self.train_indices[pick])
        noise = torch.randn((config.batch_size, config.latent_dim), generator=self.generator, device=self.device)
        self.model.train()
        terms = self._forward(x, noise, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        values = torch.cat(
            [torch.stack([terms.total.detach(), terms.recon.detach(), terms.kl.detach()]), terms.kl_per_dim.detach()]
        ).tolist()
        if not all(math.isfinite(v) for v in values[:3]):
            kept = f"; the last good checkpoint {self.checkpoint_path} is kept" if self.checkpoint_path else ""
            raise TrainingError(
                f"non-finite loss ({values[0]}) at step {self.step + 1}: training stopped{kept}. "
                "Lower the learning rate or β, or check the data."
            )
        self.optimizer.step()
        self.step += 1
        self._values = values
        return terms

    def _event(self, terms: LossTerms, rate: float, beta_changed: bool) -> StepEvent:
        total, recon, kl, *kl_dims = self._values
        lr = float(self.optimizer.param_groups[0]["lr"])
        metrics = {
            "loss": total,
            "recon": recon,
            "kl": kl,
            "beta": terms.beta,
            "beta_norm": self.beta_norm,
            "capacity": terms.capacity if terms.capacity is not None else math.nan,
            "lr": lr,
            "images_per_s": rate,
        }
        self.last_metrics = {k: v for k, v in metrics.items() if not math.isnan(v)}
        if self.log is not None:
            self.log.append_step(self.step, metrics, kl_dims)
        validation = None
        if self.step % self.config.val_every == 0 or self.step == self.config.steps:
            validation = self.validate()
            self.last_metrics.update({f"val_{k}": v for k, v in validation.items()})
            if self.log is not None:
                self.log.append_validation(self.step, validation)
        checkpoint = None
        if self.run_dir is not None and (
            self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps
        ):
            checkpoint = str(self.save_checkpoint())
        return StepEvent(
            step=self.step,
            total_steps=self.config.steps,
            loss=total,
            recon=recon,
            kl=kl,
            kl_per_dim=tuple(kl_dims),
            beta=terms.beta,
            beta_norm=self.beta_norm,
            capacity=terms.capacity,
            lr=lr,
            images_per_s=rate,
            beta_changed=beta_changed,
            validation=validation,
            checkpoint=checkpoint,
        )

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss terms on fixed held-out batches with fixed noise, so values compare across steps."""
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
            terms = self._forward(x, noise, self.step)
            sums += np.array([float(terms.total), float(terms.recon), float(terms.kl)]) * x.shape[0]
        total, recon, kl = sums / max(count, 1)
        return {"loss": total, "recon": recon, "kl": kl}

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
        try:
            self.model.load_state_dict(checkpoint.model_state)
            if checkpoint.optimizer_state is not None:
                self.optimizer.load_state_dict(checkpoint.optimizer_state)
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


def _check_shape(dataset: ImageSet) -> tuple[int, int, int]:
    channels, height, width = dataset.shape
    if height != width or height not in (32, 64):
        raise DatasetError(
            f"{dataset.source or dataset.name}: images are {height}x{width}; the models take 32x32 or 64x64"
        )
    if channels not in (1, 3):
        raise DatasetError(f"{dataset.source or dataset.name}: images have {channels} channels; 1 or 3 are supported")
    return channels, height, width
