"""Turn a finished run into a bundled model: weights-only `NAME.pt` and its model card `NAME.json`.

`export_model` reads the run's checkpoint (and the run log beside it), measures reconstruction and KL
on the held-out split now (with the trainer's own validation, on the CPU), optionally stores the
weights as float16 when that changes those numbers by less than 0.1%, folds in the metrics of a
`bvae evaluate --json` file and the command that trained the run, and writes both files atomically
(the weights first, so a card never names weights that are not there). `bvae export-model` is the
command line; `models/README.md` describes every field of the card.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bvae_desktop.core.atomic import atomic_write_text
from bvae_desktop.core.checkpoint import (
    Checkpoint,
    check_finite_weights,
    library_versions,
    load_checkpoint,
    save_checkpoint,
)
from bvae_desktop.core.config import WEIGHT_INITS, beta_normalised
from bvae_desktop.core.errors import BvaeError, CheckpointError
from bvae_desktop.core.jsonfile import json_default, read_json_object
from bvae_desktop.core.latent_activity import ACTIVE_KL
from bvae_desktop.core.model_zoo import (
    CARD_FORMAT,
    CARD_VERSION,
    ModelCardError,
    check_name,
    sha256_file,
    validate_card,
)

HALF_TOLERANCE = 1e-3  # float16 weights are kept only if validation recon and KL move by less than 0.1%
DEFAULT_VAL_IMAGES = 2048
OBJECTIVE_LABELS = {
    "vae": "VAE (β = 1)",
    "beta-h": "β-VAE (Higgins et al. 2017)",
    "beta-b": "capacity β-VAE (Burgess et al. 2018)",
}
_CHECKPOINT = "checkpoint.pt"
_RUNLOG = "runlog.h5"

Progress = Callable[[str], None]


@dataclass
class ExportResult:
    weights: Path
    card_path: Path
    card: dict[str, Any]
    float32: dict[str, Any]
    float16: dict[str, Any] | None
    dtype: str
    half_reason: str


def export_model(
    run: str | os.PathLike[str],
    name: str,
    *,
    models_dir: str | os.PathLike[str],
    command: str | None = None,
    metrics_json: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    half: bool = False,
    data: str | None = None,
    note: str | None = None,
    title: str | None = None,
    val_images: int = DEFAULT_VAL_IMAGES,
    force: bool = False,
    progress: Progress | None = None,
) -> ExportResult:
    """Export the run folder (or checkpoint file) `run` as the bundled model `name` in `models_dir`."""
    say = progress or (lambda _text: None)
    check_name(name)
    if val_images < 1:
        raise BvaeError(f"the validation sample needs at least 1 image; got {val_images}")
    checkpoint_path = _checkpoint_of(Path(run))
    folder = Path(models_dir)
    weights_path, card_path = folder / f"{name}.pt", folder / f"{name}.json"
    existing = [p for p in (weights_path, card_path) if p.exists()]
    if existing and not force:
        raise BvaeError(f"{existing[0]}: already exists; choose another name or pass --force to replace it")
    say(f"reading {checkpoint_path}")
    ckpt = load_checkpoint(checkpoint_path)
    check_finite_weights(ckpt.model_state, checkpoint_path)
    if data is not None:
        ckpt.config = dataclasses.replace(ckpt.config, data_path=str(data))
    float_state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in ckpt.model_state.items()}
    metrics_block = _metrics_block(_as_paths(metrics_json), ckpt, float_state) if metrics_json else None

    say(f"measuring reconstruction and KL on {val_images} held-out images (float32 weights)")
    float32 = measure_validation(ckpt, float_state, val_images)
    float16 = None
    state, dtype = float_state, "float32"
    half_reason = "float32 (no --half)"
    if half:
        half_state = {k: (v.half() if v.is_floating_point() else v) for k, v in float_state.items()}
        say("measuring again with the weights rounded to float16")
        float16 = measure_validation(ckpt, {k: v.float() for k, v in half_state.items()}, val_images)
        change = _relative_change(float32, float16)
        if change < HALF_TOLERANCE:
            state, dtype = half_state, "float16"
            half_reason = f"float16: recon and KL moved by {change:.2e} (< {HALF_TOLERANCE:g}) against float32"
        else:
            half_reason = f"float32 kept: float16 moved recon or KL by {change:.2e} (≥ {HALF_TOLERANCE:g})"

    weights = Checkpoint(  # weights only: no optimizer, no RNG state, no objective-side networks
        config=ckpt.config,
        image_shape=ckpt.image_shape,
        step=ckpt.step,
        beta=ckpt.beta,
        model_state=state,
        optimizer_state=None,
        rng_state={},
        metrics=dict(ckpt.metrics),
        dataset=dict(ckpt.dataset),
        versions=dict(ckpt.versions),
    )
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(weights_path, weights)
    reloaded = load_checkpoint(weights_path)  # it must open the way every tool opens it
    if reloaded.optimizer_state is not None:
        raise CheckpointError(f"{weights_path}: written with optimizer state")  # pragma: no cover - a bug guard
    from bvae_desktop.core.model_source import ModelSource

    card = build_card(
        name=name,
        ckpt=ckpt,
        weights_path=weights_path,
        dtype=dtype,
        fingerprint=ModelSource.from_checkpoint(reloaded, load_data=False).fingerprint(),
        float32=float32,
        float16=float16,
        half_reason=half_reason,
        run_info=read_run_info(checkpoint_path.parent / _RUNLOG, ckpt),
        metrics=metrics_block,
        command=command,
        note=note,
        title=title,
    )
    validate_card(card, card_path)
    try:
        atomic_write_text(card_path, json.dumps(card, indent=2, ensure_ascii=False, default=json_default) + "\n")
    except OSError as exc:
        raise ModelCardError(f"{card_path}: cannot write the model card ({exc.strerror or exc})") from exc
    return ExportResult(weights_path, card_path, card, float32, float16, dtype, half_reason)


def _checkpoint_of(run: Path) -> Path:
    if run.is_dir():
        found = run / _CHECKPOINT
        if not found.is_file():
            raise CheckpointError(f"{run}: no {_CHECKPOINT} in this run folder (has the run saved one yet?)")
        return found
    if not run.exists():
        raise CheckpointError(f"{run}: no such run folder or checkpoint file")
    return run


# --- validation ----------------------------------------------------------------------------------


def measure_validation(ckpt: Checkpoint, state: dict[str, torch.Tensor], count: int) -> dict[str, Any]:
    """Reconstruction, KL and loss (nats per image) on `count` held-out images, as the trainer validates
    (same seeded sample of the validation split, same noise), on the CPU; plus KL per dimension and
    active units from the encoder on that sample."""
    from bvae_desktop.core.trainer import Trainer

    config = ckpt.config
    batches = max(1, math.ceil(count / config.batch_size))
    measure_config = dataclasses.replace(
        config, device="cpu", compile="off", bf16=False, sync_every=0, val_batches=min(batches, 10_000)
    )
    copy = dataclasses.replace(ckpt, config=measure_config, model_state=state, optimizer_state=None, rng_state={})
    try:
        trainer = Trainer(measure_config, resume=copy)
    except BvaeError as exc:
        raise BvaeError(
            f"cannot open the run's data to measure validation ({exc}); give its location with --data"
        ) from None
    values = trainer.validate()
    sample = _validation_sample(trainer.val_indices, count, config.seed)
    model = trainer.model.eval()
    kl_sum = np.zeros(config.latent_dim, dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(sample), 256):
            x = trainer.dataset.batch(sample[start : start + 256]).float().div_(255.0)
            mean, logvar = model.encode(x.contiguous())
            kl = 0.5 * (mean.double() ** 2 + logvar.double().exp() - 1.0 - logvar.double())
            kl_sum += kl.sum(dim=0).numpy()
    kl_per_dim = kl_sum / max(len(sample), 1)
    return {
        "images": int(min(len(trainer.val_indices), batches * config.batch_size)),
        "recon": float(values["recon"]),
        "kl": float(values["kl"]),
        "loss": float(values["loss"]),
        "kl_per_dim": [float(v) for v in kl_per_dim],
        "kl_per_dim_images": int(len(sample)),
        "active_units": int((kl_per_dim > ACTIVE_KL).sum()),
    }


def _validation_sample(val_indices: np.ndarray, count: int, seed: int) -> np.ndarray:
    """A seeded sample of the validation split, spread over it (its first images would all be alike)."""
    count = min(len(val_indices), count)
    rng = np.random.default_rng(seed + 1)
    return np.sort(rng.choice(val_indices, count, replace=False))


def _relative_change(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The larger relative change of recon and KL from `a` to `b` (absolute when `a`'s value is ~0)."""
    worst = 0.0
    for key in ("recon", "kl"):
        base = abs(float(a[key]))
        diff = abs(float(b[key]) - float(a[key]))
        worst = max(worst, diff / base if base > 1e-9 else diff)
    return worst


# --- the run log ---------------------------------------------------------------------------------


def read_run_info(runlog: Path, ckpt: Checkpoint) -> dict[str, Any]:
    """Device, start time and training time from the run log beside the checkpoint (what it can tell)."""
    info: dict[str, Any] = {"runlog": None}
    if not runlog.is_file():
        info["note"] = f"no {_RUNLOG} beside the checkpoint: device and training time unknown"
        return info
    from bvae_desktop.core.runlog import read_runlog

    try:
        history = read_runlog(runlog)
    except BvaeError as exc:
        info["note"] = f"run log unreadable ({exc})"
        return info
    info["runlog"] = runlog.name
    info["device"] = history.config.get("device")
    info["dataset_name"] = history.config.get("dataset_name")
    info["reconstruction"] = history.config.get("reconstruction_used")
    info["reduction"] = history.config.get("reduction")
    steps = np.asarray(history.train.get("step", []), dtype=np.int64)
    rates = np.asarray(history.train.get("images_per_s", []), dtype=np.float64)
    keep = (steps <= ckpt.step) & np.isfinite(rates) & (rates > 0) if len(steps) == len(rates) else None
    if keep is not None and keep.any():
        batch = ckpt.config.batch_size
        info["seconds"] = round(float(np.sum(batch / rates[keep])), 1)
        info["seconds_source"] = (
            f"sum over the {int(keep.sum()):,} logged steps of batch size / images per second "
            "(the trainer's smoothed rate): time spent training, without start-up and validation pauses"
        )
        info["images_per_s_median"] = round(float(np.median(rates[keep])), 1)
    info.update(_runlog_attrs(runlog))
    return info


def _runlog_attrs(runlog: Path) -> dict[str, Any]:
    """The run log's creation time and the times it was resumed (HDF5 attributes; best effort)."""
    try:
        import h5py

        with h5py.File(runlog, "r") as fh:
            attrs = dict(fh.attrs)
    except Exception:  # noqa: BLE001 -- information only: a log being rewritten right now is fine to skip
        return {}
    out: dict[str, Any] = {}
    if "created" in attrs:
        out["started"] = str(attrs["created"])
    try:
        resumed = json.loads(str(attrs.get("resumed", "[]")))
        out["resumed"] = [str(r) for r in resumed] if isinstance(resumed, list) else []
    except ValueError:
        pass
    return out


# --- metrics -------------------------------------------------------------------------------------


def _as_paths(files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(files, (str, os.PathLike)):
        return [Path(files)]
    return [Path(f) for f in files]


def _metrics_block(paths: list[Path], ckpt: Checkpoint, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The metrics of one or more `bvae evaluate --json` files of this model, with each metric's sample counts.

    Several files let the slow full-count metrics be measured in separate processes (one core each) and
    folded into one card; a metric found in two files is an error, since the card could show only one.
    """
    from bvae_desktop.core.model_source import ModelSource

    source = ModelSource.from_checkpoint(dataclasses.replace(ckpt, model_state=state), load_data=False)
    expected = source.fingerprint()
    results: dict[str, Any] = {}
    counts: dict[str, str] = {}
    sources: dict[str, str] = {}
    seeds: dict[str, Any] = {}
    quick = False
    for path in paths:
        report = _read_metrics_file(path, expected)
        for metric, result in report["metrics"].items():
            if metric in results:
                raise ModelCardError(f"{path}: metric {metric!r} is also in {sources[metric]}; pass each metric once")
            counts[metric], below_full = _counts_of(path, metric, result)
            results[metric], sources[metric], seeds[metric] = result, path.name, report.get("seed")
            quick = quick or below_full
    distinct_seeds = set(map(str, seeds.values()))
    return {
        "source": paths[0].name if len(paths) == 1 else ", ".join(p.name for p in paths),
        "sources": sources,
        "seed": next(iter(seeds.values())) if len(distinct_seeds) == 1 else seeds,
        "quick": quick,
        "counts": counts,
        "fingerprint": expected,
        "results": results,
    }


def _read_metrics_file(path: Path, expected_fingerprint: str) -> dict[str, Any]:
    report = read_json_object(
        path,
        ModelCardError,
        missing="no such metrics file",
        unreadable="not a readable metrics file",
        not_object="not a `bvae evaluate --json` file (not a JSON object)",
    )
    results = report.get("metrics")
    if not isinstance(results, dict) or not results:
        raise ModelCardError(f'{path}: not a `bvae evaluate --json` file (no "metrics")')
    fingerprint = report.get("fingerprint")
    if fingerprint is not None and fingerprint != expected_fingerprint:
        raise ModelCardError(
            f"{path}: these metrics were computed for another model (fingerprint {str(fingerprint)[:16]}…, "
            f"this run's weights are {expected_fingerprint[:16]}…)"
        )
    return report


def _counts_of(path: Path, metric: str, result: Any) -> tuple[str, bool]:
    """(the card's words for the sample counts a metric used, whether any was below the default)."""
    from bvae_desktop.core.metrics import METRICS, count_defaults, split_result

    if not isinstance(result, dict):
        raise ModelCardError(f"{path}: metric {metric!r} is not an object")
    if "skipped" in result:
        return f"skipped: {result['skipped']}", False
    if metric not in METRICS:
        return "unknown metric", False
    _scores, settings = split_result(result)
    defaults = count_defaults(metric)
    below_full = any(int(v) < int(defaults[k]) for k, v in _used_counts(defaults, settings).items())
    return describe_counts(defaults, settings), below_full


def _used_counts(defaults: dict[str, int], settings: dict[str, Any]) -> dict[str, Any]:
    return {k: settings[k] for k in defaults if isinstance(settings.get(k), (int, float))}


def describe_counts(defaults: dict[str, int], settings: dict[str, Any]) -> str:
    """'full (disentanglement_lib's defaults)', 'divided by 10', or the counts used."""
    used = _used_counts(defaults, settings)
    if not used:
        return "no sample counts (the metric takes none)"
    if all(int(used[k]) == int(v) for k, v in defaults.items() if k in used):
        return "full (disentanglement_lib's defaults: " + ", ".join(f"{k} {int(v):,}" for k, v in used.items()) + ")"
    ratios = {round(defaults[k] / used[k]) for k in used if used[k]}
    text = ", ".join(f"{k} {int(v):,} of {int(defaults[k]):,}" for k, v in used.items())
    if len(ratios) == 1:
        return f"divided by {ratios.pop()} ({text})"
    return f"custom ({text})"


# --- the card ------------------------------------------------------------------------------------


def build_card(
    *,
    name: str,
    ckpt: Checkpoint,
    weights_path: Path,
    dtype: str,
    fingerprint: str,
    float32: dict[str, Any],
    float16: dict[str, Any] | None,
    half_reason: str,
    run_info: dict[str, Any],
    metrics: dict[str, Any] | None,
    command: str | None,
    note: str | None,
    title: str | None,
) -> dict[str, Any]:
    config = ckpt.config
    objective = config.objective
    beta = 1.0 if objective == "vae" else float(ckpt.beta)
    dataset_name = ckpt.dataset.get("name") or run_info.get("dataset_name") or config.dataset
    parameters = sum(int(v.numel()) for v in ckpt.model_state.values())
    objective_block: dict[str, Any] = {
        "name": objective,
        "label": OBJECTIVE_LABELS.get(objective, objective),
        "beta": beta,
        "beta_norm": beta_normalised(beta, config.latent_dim, ckpt.image_shape),
        "beta_units": "beta multiplies the KL summed over latents against a reconstruction summed over pixels "
        "(Higgins et al.: 4 on dSprites); beta_norm = beta * latent_dim / (H * W * C), for losses that "
        "average instead",
        "reduction": run_info.get("reduction") or "sum",
        "reconstruction": run_info.get("reconstruction") or config.reconstruction,
    }
    if objective == "beta-b":
        objective_block["beta_units"] += "; for the capacity β-VAE this weight is γ, on |KL − C(t)|"
        objective_block.update(gamma=float(ckpt.beta), c_max=config.c_max, c_steps=config.c_steps)
    validation = {k: float32[k] for k in ("images", "recon", "kl", "loss", "active_units", "kl_per_dim")}
    validation.update(
        unit="nats per image",
        measured_with="the trainer's validation (reconstruction and KL of the objective, fixed noise) on a seeded "
        "sample of the held-out split, CPU, float32 weights, at export time",
        active_threshold_nats=ACTIVE_KL,
        kl_per_dim_images=float32["kl_per_dim_images"],
        float32={k: float32[k] for k in ("recon", "kl", "loss")},
    )
    if float16 is not None:
        validation["float16"] = {k: float16[k] for k in ("recon", "kl", "loss")}
    training = {
        "steps": int(ckpt.step),
        "steps_planned": int(config.steps),
        "batch_size": int(config.batch_size),
        "lr": float(config.lr),
        "seed": int(config.seed),
        "latent_dim": int(config.latent_dim),
        "device": run_info.get("device") or config.device,
        "seconds": run_info.get("seconds"),
        "seconds_source": run_info.get("seconds_source") or run_info.get("note"),
        "images_per_s_median": run_info.get("images_per_s_median"),
        "started": run_info.get("started"),
        "resumed": run_info.get("resumed", []),
        "command": command,
        "config": config.to_dict(),
    }
    if config.weight_init != WEIGHT_INITS[0]:  # a reader comparing cards must see the start differed
        training["weight_init_note"] = (
            f"trained from {config.weight_init!r} weight init (--weight-init {config.weight_init}); "
            f"today's default is {WEIGHT_INITS[0]!r}"
        )
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        "name": name,
        "title": title or _title(objective, beta, dataset_name),
        "weights": {
            "file": weights_path.name,
            "sha256": sha256_file(weights_path),
            "bytes": weights_path.stat().st_size,
            "dtype": dtype,
            "dtype_choice": half_reason,
            "contents": "model weights, settings, step and the last training numbers; no optimizer or RNG state "
            "(it opens everywhere a checkpoint does, but training cannot be resumed from it)",
            "fingerprint": fingerprint,
            "parameters": parameters,
        },
        "model": {
            "network": "Burgess et al. (2018) convolutional encoder/decoder",
            "image_shape": list(ckpt.image_shape),
            "latent_dim": int(config.latent_dim),
        },
        "dataset": {
            "kind": config.dataset,
            "name": dataset_name,
            "data_path": config.data_path,
            "image_shape": list(ckpt.image_shape),
            "val_fraction": config.val_fraction,
            "split_seed": int(config.seed),
            "note": note or _data_note(config.dataset, config.data_path),
        },
        "objective": objective_block,
        "training": training,
        "validation": validation,
        "metrics": metrics,
        "headline": _headline(validation, metrics),
        "versions": {"trained_with": dict(ckpt.versions), "exported_with": library_versions()},
        "exported": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
    }
    return card


def _title(objective: str, beta: float, dataset: str) -> str:
    if objective == "vae":
        return f"VAE (β = 1) on {dataset}"
    if objective == "beta-b":
        return f"capacity β-VAE (γ = {beta:g}) on {dataset}"
    return f"β-VAE (β = {beta:g}) on {dataset}"


def _data_note(kind: str, path: str | None) -> str:
    if kind == "dsprites-procedural":
        return "dSprites rendered by the app's own code (the full factor grid, no file needed)"
    where = f" in {path}" if path else ""
    what = {"mnist": "the MNIST digits", "dsprites": "the dSprites file", "shapes3d": "the 3D Shapes file"}
    return f"trained on {what.get(kind, 'the images')}{where}; open it with --data where those files are elsewhere"


def _headline(validation: dict[str, Any], metrics: dict[str, Any] | None) -> dict[str, float]:
    from bvae_desktop.core.experiment_results import headline

    row = headline({"validation": validation, "metrics": (metrics or {}).get("results") or {}})
    out = {k: round(v, 6) for k, v in row.items() if math.isfinite(v)}
    out.setdefault("active_units", float(validation["active_units"]))
    return out
