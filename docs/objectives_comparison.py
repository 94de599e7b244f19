"""The README's comparison of the objectives: one `bvae sweep` folder per objective → a table and a figure.

Usage: python docs/objectives_comparison.py RUNS_DIR [--figure docs/objectives-comparison.png]
RUNS_DIR holds one sweep folder per objective (as docs/run_gpu_session.sh MODE=objectives writes them);
each folder's results.json gives one row per seed. Prints the markdown table (mean ± standard deviation
over seeds, and the seed count) and draws disentanglement (MIG) against reconstruction, one point per
objective with its spread.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from bvae_desktop.core.charts import LineChart
from bvae_desktop.core.objectives import objective_spec

COLUMNS = (  # results.json column, table heading, digits
    ("recon", "recon (nats)", 1),
    ("kl", "KL (nats)", 1),
    ("active_units", "active units", 1),
    ("mig", "MIG", 3),
    ("dci_disentanglement", "DCI D", 3),
    ("factor_vae", "FactorVAE score", 3),
)


def read_sweep(folder: Path) -> tuple[str, float, list[dict]]:
    """(objective, its main weight, one row per finished seed) of one sweep folder."""
    results = json.loads((folder / "results.json").read_text())
    base = results["spec"]["base"]
    weights = results["spec"].get("betas") or [base.get("beta")]
    return base["objective"], float(weights[0]), list(results["rows"])


def spread(rows: list[dict], key: str) -> tuple[float, float, int]:
    """Mean, standard deviation (ddof 1; 0 for one seed) and count of the finite values."""
    values = np.array([float(r[key]) for r in rows if r.get(key) is not None and math.isfinite(float(r[key]))])
    if values.size == 0:
        return math.nan, math.nan, 0
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0, int(values.size)


def markdown(sweeps: list[tuple[str, float, list[dict]]]) -> str:
    head = "| objective | main weight | seeds | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * 3 + "---:|" * len(COLUMNS)]
    for objective, weight, rows in sweeps:
        spec = objective_spec(objective)
        cells = []
        for key, _title, digits in COLUMNS:
            mean, sd, n = spread(rows, key)
            cells.append("–" if n == 0 else f"{mean:.{digits}f} ± {sd:.{digits}f}")
        lines.append(f"| {spec.label} (`{objective}`) | {weight:g} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(sweeps: list[tuple[str, float, list[dict]]], path: Path, leave_out: tuple[str, ...] = ()) -> None:
    sweeps = [sweep for sweep in sweeps if sweep[0] not in leave_out]
    chart = LineChart(
        title="Objectives at equal steps: disentanglement against reconstruction (mean, ± 1 sd over seeds)",
        xlabel="validation reconstruction, nats per image (lower is better)",
        ylabel="MIG",
    )
    recons = [spread(rows, "recon")[0] for _, _, rows in sweeps]
    low, high = np.nanmin(recons), np.nanmax(recons)
    chart.xlim = (low - 0.08 * (high - low or 1.0), high + 0.2 * (high - low or 1.0))  # room for the labels
    for objective, _weight, rows in sweeps:
        recon, _, _ = spread(rows, "recon")
        mig, sd, n = spread(rows, "mig")
        if n == 0:
            continue
        label = objective_spec(objective).label
        chart.add(label, [recon], [mig], low=[mig - sd], high=[mig + sd], lines=False, point_labels=[label])
    chart.render(900, 560).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="folder with one sweep folder per objective")
    parser.add_argument("--figure", type=Path, help="PNG to draw (MIG against reconstruction)")
    parser.add_argument(
        "--leave-out",
        nargs="*",
        default=[],
        metavar="OBJECTIVE",
        help="objectives the figure leaves out (the table keeps them)",
    )
    args = parser.parse_args(argv)
    folders = sorted(p.parent for p in args.runs.glob("*/results.json"))
    if not folders:
        print(f"no sweep folder with a results.json in {args.runs}", file=sys.stderr)
        return 1
    sweeps = [read_sweep(folder) for folder in folders]
    print(markdown(sweeps))
    if args.figure is not None:
        figure(sweeps, args.figure, tuple(args.leave_out))
        print(f"figure: {args.figure}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
