"""An experiment's numbers: one headline row per run, seed spread per β, and the files that hold them.

results.json is for people and scripts (every result, the spec, the per-β summary); results.h5 is
for analysis (a column per headline number, KL per dimension, and each run's training curves).
Both are rewritten atomically whenever a run finishes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from bvae_desktop.core.atomic import atomic_path, atomic_write_text
from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.runlog import read_runlog
from bvae_desktop.core.trainer import RUNLOG_NAME

if TYPE_CHECKING:
    from bvae_desktop.core.experiments import Experiment

RESULTS_JSON = "results.json"
RESULTS_H5 = "results.h5"
_CURVE_POINTS = 2000  # training curves are thinned to this many points in results.h5


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    pick: Callable[[dict[str, Any]], Any]
    higher_is_better: bool | None = None


def _metric(name: str, score: str) -> Callable[[dict[str, Any]], Any]:
    return lambda result: (result.get("metrics", {}).get(name) or {}).get(score)


def _mean_of(name: str, score: str) -> Callable[[dict[str, Any]], Any]:
    def pick(result: dict[str, Any]) -> Any:
        values = _metric(name, score)(result)
        return float(np.mean(values)) if isinstance(values, list) and values else None

    return pick


COLUMNS: tuple[Column, ...] = (
    Column("recon", "reconstruction (val)", lambda r: r.get("validation", {}).get("recon"), False),
    Column("kl", "KL (val)", lambda r: r.get("validation", {}).get("kl")),
    Column("active_units", "active units", _metric("unsupervised", "active_units")),
    Column("mean_abs_mu", "mean |μ|", _mean_of("unsupervised", "mean_abs_mu")),
    Column("mean_sigma", "mean σ", _mean_of("unsupervised", "mean_sigma")),
    Column("total_correlation", "total correlation", _metric("unsupervised", "gaussian_total_correlation"), False),
    Column("beta_vae", "β-VAE metric", _metric("beta_vae", "eval_accuracy"), True),
    Column("factor_vae", "FactorVAE metric", _metric("factor_vae", "eval_accuracy"), True),
    Column("mig", "MIG", _metric("mig", "mig"), True),
    Column("dci_disentanglement", "DCI disentanglement", _metric("dci", "disentanglement"), True),
    Column("dci_completeness", "DCI completeness", _metric("dci", "completeness"), True),
    Column("dci_informativeness", "DCI informativeness", _metric("dci", "informativeness_test"), True),
    Column("sap", "SAP", _metric("sap", "sap"), True),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
DISENTANGLEMENT_KEYS = ("beta_vae", "factor_vae", "mig", "dci_disentanglement", "sap")


def headline(result: dict[str, Any]) -> dict[str, float]:
    """The run's table row: every column as a float, NaN where the run has no such number."""
    row: dict[str, float] = {}
    for column in COLUMNS:
        try:
            value = column.pick(result)
            row[column.key] = float(value) if value is not None else float("nan")
        except (TypeError, ValueError):
            row[column.key] = float("nan")
    return row


@dataclass
class GroupSummary:
    """One β (or the VAE) over its finished seeds: mean, min and max of every column."""

    group: str
    beta: float
    objective: str
    seeds: list[int]
    mean: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    kl_per_dim: list[float]  # mean over seeds, each sorted largest first

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "beta": self.beta,
            "objective": self.objective,
            "seeds": self.seeds,
            "mean": self.mean,
            "min": self.low,
            "max": self.high,
            "kl_per_dim_sorted": self.kl_per_dim,
        }


def summarise(results: list[dict[str, Any]]) -> list[GroupSummary]:
    """Finished results grouped as the spec grouped them (by β; the VAE apart), in first-seen order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(result.get("group") or result["name"], []).append(result)
    summaries = []
    for group, members in groups.items():
        rows = np.array([[headline(m)[k] for k in COLUMN_KEYS] for m in members], dtype=np.float64)
        with np.errstate(all="ignore"):
            finite = np.isfinite(rows)
            count = finite.sum(axis=0)
            mean = np.where(count > 0, np.nansum(rows, axis=0) / np.maximum(count, 1), np.nan)
            low = np.array([np.nanmin(c) if np.isfinite(c).any() else np.nan for c in rows.T])
            high = np.array([np.nanmax(c) if np.isfinite(c).any() else np.nan for c in rows.T])
        kls = [sorted(m.get("kl_per_dim") or [], reverse=True) for m in members]
        width = min((len(k) for k in kls), default=0)
        kl_mean = np.mean([k[:width] for k in kls], axis=0).tolist() if width else []
        summaries.append(
            GroupSummary(
                group=group,
                beta=float(members[0].get("beta", float("nan"))),
                objective=str(members[0].get("objective", "")),
                seeds=[int(m.get("seed", 0)) for m in members],
                mean=dict(zip(COLUMN_KEYS, mean.tolist(), strict=True)),
                low=dict(zip(COLUMN_KEYS, low.tolist(), strict=True)),
                high=dict(zip(COLUMN_KEYS, high.tolist(), strict=True)),
                kl_per_dim=[float(v) for v in kl_mean],
            )
        )
    return summaries


def markdown_summary(summary: list[GroupSummary]) -> str:
    """The per-β summary as a Markdown table (columns with no number anywhere left out), for READMEs and papers."""
    keys = [c.key for c in COLUMNS if any(np.isfinite(s.mean[c.key]) for s in summary)]
    titles = {c.key: c.title.replace("|", "\\|") for c in COLUMNS}  # "mean |μ|" would split its cell
    lines = [
        "| run | seeds | " + " | ".join(titles[k] for k in keys) + " |",
        "|---|---:|" + "---:|" * len(keys),
    ]
    for s in summary:
        cells = []
        for k in keys:
            mean, low, high = s.mean[k], s.low[k], s.high[k]
            text = "–" if not np.isfinite(mean) else f"{mean:.3g}" if abs(mean) < 100 else f"{mean:.1f}"
            if np.isfinite(low) and np.isfinite(high) and high > low:
                text += f" [{low:.3g}, {high:.3g}]"
            cells.append(text)
        lines.append(f"| {s.group} | {len(s.seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finished_results(experiment: Experiment) -> list[dict[str, Any]]:
    return [r for r in experiment.results().values() if r is not None]


def write_results(experiment: Experiment) -> None:
    """results.json and results.h5 in the experiment folder, from the runs finished so far."""
    results = finished_results(experiment)
    summary = summarise(results)
    document = {
        "spec": experiment.spec.to_dict(),
        "runs_total": len(experiment.runs),
        "runs_finished": len(results),
        "columns": {c.key: c.title for c in COLUMNS},
        "rows": [{"name": r["name"], "group": r.get("group"), "seed": r.get("seed"), **headline(r)} for r in results],
        "summary": [s.to_dict() for s in summary],
        "results": results,
    }
    text = json.dumps(document, indent=2, allow_nan=True)
    atomic_write_text(experiment.folder / RESULTS_JSON, text + "\n")
    with atomic_path(experiment.folder / RESULTS_H5) as tmp, h5py.File(tmp, "w") as fh:
        fh.attrs["spec_json"] = json.dumps(experiment.spec.to_dict())
        fh.attrs["format"] = 1
        _write_table(fh.create_group("runs"), results)
        curves = fh.create_group("curves")
        for result in results:
            _write_curves(curves, experiment.folder / "runs" / result["name"] / RUNLOG_NAME, result["name"])


def _write_table(group: h5py.Group, results: list[dict[str, Any]]) -> None:
    strings = h5py.string_dtype()
    group.create_dataset("name", data=np.array([r["name"] for r in results], dtype=object), dtype=strings)
    group.create_dataset("group", data=np.array([r.get("group", "") for r in results], dtype=object), dtype=strings)
    group.create_dataset("beta", data=np.array([r.get("beta", np.nan) for r in results], dtype=np.float64))
    group.create_dataset("seed", data=np.array([r.get("seed", -1) for r in results], dtype=np.int64))
    rows = [headline(r) for r in results]
    for column in COLUMNS:
        ds = group.create_dataset(column.key, data=np.array([row[column.key] for row in rows], dtype=np.float64))
        ds.attrs["title"] = column.title
    width = max((len(r.get("kl_per_dim") or []) for r in results), default=0)
    kl = np.full((len(results), width), np.nan)
    for i, r in enumerate(results):
        values = r.get("kl_per_dim") or []
        kl[i, : len(values)] = values
    group.create_dataset("kl_per_dim", data=kl)


def _write_curves(parent: h5py.Group, log_path: Any, name: str) -> None:
    try:
        history = read_runlog(log_path, timeout=2.0)
    except BvaeError:
        return  # a run whose log is gone still has its row in the table
    run = parent.create_group(name)
    for part, columns in (("train", history.train), ("validation", history.validation)):
        group = run.create_group(part)
        for key in ("step", "loss", "recon", "kl"):
            if key in columns:
                values = np.asarray(columns[key])
                if part == "train" and len(values) > _CURVE_POINTS:
                    values = values[np.linspace(0, len(values) - 1, _CURVE_POINTS).astype(np.int64)]
                group.create_dataset(key, data=values)


def read_curves(experiment: Experiment, name: str) -> dict[str, dict[str, np.ndarray]]:
    """A run's train and validation curves (step, loss, recon, kl), straight from its run log."""
    history = read_runlog(experiment.folder / "runs" / name / RUNLOG_NAME, timeout=2.0)
    return {
        "train": {k: np.asarray(v) for k, v in history.train.items() if k in ("step", "loss", "recon", "kl")},
        "validation": {k: np.asarray(v) for k, v in history.validation.items() if k in ("step", "loss", "recon", "kl")},
    }
