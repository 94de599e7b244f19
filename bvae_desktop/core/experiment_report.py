"""An experiment's report: one self-contained HTML page (figures inlined as PNG) plus figures/*.png.

Written from the finished runs whenever one finishes, so the page is always current and can be
mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from bvae_desktop.core.atomic import atomic_write_bytes, atomic_write_text
from bvae_desktop.core.charts import LineChart, heatmap
from bvae_desktop.core.errors import BvaeError
from bvae_desktop.core.experiment_results import (
    COLUMNS,
    DISENTANGLEMENT_KEYS,
    GroupSummary,
    finished_results,
    headline,
    read_curves,
    summarise,
)
from bvae_desktop.core.metrics import split_result

if TYPE_CHECKING:
    from bvae_desktop.core.experiments import Experiment

REPORT_NAME = "report.html"
FIGURES_DIR = "figures"
_TITLES = {c.key: c.title for c in COLUMNS}


def build_figures(experiment: Experiment) -> dict[str, Image.Image]:
    """name -> figure, for the runs finished so far (also what the experiments view can show)."""
    results = finished_results(experiment)
    summary = summarise(results)
    figures: dict[str, Image.Image] = {}
    if experiment.spec.kind == "sweep":
        figures.update(_sweep_figures(summary))
    figures["curves"] = _curves_figure(experiment, results)
    if summary:
        figures["kl_per_dimension"] = heatmap(
            "KL per latent dimension (nats, sorted, mean over seeds)",
            _kl_matrix(summary),
            [s.group for s in summary],
            "latent dimension, largest KL first",
        )
    return figures


def _sweep_figures(summary: list[GroupSummary]) -> dict[str, Image.Image]:
    betas = [s.beta for s in summary]
    labels = [f"β={b:g}" for b in betas]

    def spread_chart(
        title: str, ylabel: str, keys: tuple[str, ...], ylim: tuple[float, float] | None = None
    ) -> Image.Image:
        chart = LineChart(title, "β (log scale)", ylabel, logx=True, ylim=ylim)
        for key in keys:
            chart.add(
                _TITLES[key],
                betas,
                [s.mean[key] for s in summary],
                low=[s.low[key] for s in summary],
                high=[s.high[key] for s in summary],
            )
        return chart.render()

    tradeoff = LineChart(
        "Trade-off: disentanglement against reconstruction",
        "reconstruction error (val, nats/image)",
        "score",
        ylim=(0, 1),
    )
    for key in ("beta_vae", "mig"):
        tradeoff.add(
            _TITLES[key],
            [s.mean["recon"] for s in summary],
            [s.mean[key] for s in summary],
            low=[s.low[key] for s in summary],
            high=[s.high[key] for s in summary],
            lines=False,
            point_labels=labels,
        )
    return {
        "disentanglement_vs_beta": spread_chart("Disentanglement against β", "score", DISENTANGLEMENT_KEYS, (0, 1)),
        "reconstruction_vs_beta": spread_chart("Reconstruction error against β", "nats per image (val)", ("recon",)),
        "kl_vs_beta": spread_chart("KL against β", "nats per image (val)", ("kl",)),
        "mean_latent_vs_beta": spread_chart(
            "Mean latent activity against β", "mean over dimensions", ("mean_abs_mu", "mean_sigma")
        ),
        "active_units_vs_beta": spread_chart(
            "Active latent units against β", "dimensions (var of μ > 0.01)", ("active_units",)
        ),
        "tradeoff": tradeoff.render(),
    }


def _curves_figure(experiment: Experiment, results: list[dict[str, Any]]) -> Image.Image:
    """Reconstruction and KL against step for every finished run: training (smoothed) and validation."""
    recon = LineChart("Reconstruction during training", "step", "nats per image")
    kl = LineChart("KL during training", "step", "nats per image")
    for i, result in enumerate(results):
        try:
            curves = read_curves(experiment, result["name"])
        except BvaeError:
            continue
        train, val = curves["train"], curves["validation"]
        from bvae_desktop.core.charts import PALETTE

        color = PALETTE[i % len(PALETTE)]
        label = result.get("label") or result["name"]
        for chart, key in ((recon, "recon"), (kl, "kl")):
            if "step" in train and key in train and len(train["step"]):
                steps, values = _smooth(train["step"], train[key])
                chart.add(f"{label} (train)", steps, values, color=color, markers=False)
            if "step" in val and key in val and len(val["step"]):
                chart.add(f"{label} (val)", val["step"], val[key], color=color, dashed=True, markers=True)
    return _stack([recon.render(640, 460), kl.render(640, 460)])


def _smooth(steps: np.ndarray, values: np.ndarray, points: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Moving average, thinned to about `points`, so a noisy 100k-step curve stays readable."""
    steps = np.asarray(steps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    window = max(1, len(values) // 100)
    if window > 1:
        kernel = np.ones(window) / window
        values = np.convolve(values, kernel, mode="valid")
        steps = steps[window - 1 :]
    keep = np.linspace(0, len(values) - 1, min(points, len(values))).astype(np.int64)
    return steps[keep], values[keep]


def _stack(images: list[Image.Image]) -> Image.Image:
    width = sum(i.width for i in images)
    height = max(i.height for i in images)
    canvas = Image.new("RGB", (width, height), "white")
    x = 0
    for image in images:
        canvas.paste(image, (x, 0))
        x += image.width
    return canvas


def _kl_matrix(summary: list[GroupSummary]) -> np.ndarray:
    width = max((len(s.kl_per_dim) for s in summary), default=0)
    matrix = np.zeros((len(summary), width))
    for i, s in enumerate(summary):
        matrix[i, : len(s.kl_per_dim)] = s.kl_per_dim
    return matrix


def write_report(experiment: Experiment) -> None:
    """figures/*.png and report.html in the experiment folder."""
    figures = build_figures(experiment)
    inline: dict[str, str] = {}
    for name, image in figures.items():
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
        atomic_write_bytes(experiment.folder / FIGURES_DIR / f"{name}.png", data)
        inline[name] = base64.b64encode(data).decode("ascii")
    atomic_write_text(experiment.folder / REPORT_NAME, report_html(experiment, inline))


def report_html(experiment: Experiment, figures: dict[str, str]) -> str:
    spec = experiment.spec
    results = finished_results(experiment)
    summary = summarise(results)
    base = spec.base
    kind = "VAE against β-VAE" if spec.kind == "compare" else "β sweep"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(kind)} · {html.escape(base.dataset)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:1320px;color:#222}"
        "table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:6px 0}"
        ".note{color:#555}</style></head><body>",
        f"<h1>{html.escape(kind)} on {html.escape(base.dataset)}</h1>",
        f"<p>{len(results)} of {len(experiment.runs)} runs finished. "
        f"β: {', '.join(f'{b:g}' for b in spec.betas)}; seeds: {', '.join(map(str, spec.seeds))}; "
        f"{base.steps:,} steps of batch {base.batch_size}, lr {base.lr:g}, {base.latent_dim} latent dimensions, "
        f"objective {html.escape(base.objective if spec.kind == 'sweep' else 'vae vs ' + base.objective)}, "
        f"reconstruction {html.escape(base.reconstruction)}.</p>",
        f"<p class='note'>β is in the summed unit (Higgins et al. 2017: β=4 on dSprites). Reconstruction and KL are "
        f"nats per image on the validation split. Scores are on the encoder means; metric sample counts are "
        f"{'disentanglement_lib defaults' if spec.metrics.divisor == 1 else f'disentanglement_lib defaults / {spec.metrics.divisor} (a quick look, not comparable with published numbers)'}"
        f", metric seed {spec.metrics.seed}.</p>",
    ]
    if summary:
        parts.append("<h2>Summary</h2>")
        parts.append(_summary_table(summary))
        parts.append("<h2>Every run</h2>")
        parts.append(_runs_table(results))
        parts.append(_settings_list(results))
    else:
        parts.append("<p>No run has finished yet.</p>")
    for name, data in figures.items():
        parts.append(
            f"<h3>{html.escape(name.replace('_', ' '))}</h3><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _cell(value: float, low: float | None = None, high: float | None = None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    text = f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high) and high > low:
        text += f" <small>[{low:.3g}, {high:.3g}]</small>"
    return text


def _summary_table(summary: list[GroupSummary]) -> str:
    keys = [c.key for c in COLUMNS if any(math.isfinite(s.mean[c.key]) for s in summary)]
    rows = [
        "<table><tr><th>run</th><th>seeds</th>" + "".join(f"<th>{html.escape(_TITLES[k])}</th>" for k in keys) + "</tr>"
    ]
    for s in summary:
        cells = "".join(f"<td>{_cell(s.mean[k], s.low[k], s.high[k])}</td>" for k in keys)
        rows.append(f"<tr><td>{html.escape(s.group)}</td><td>{len(s.seeds)}</td>{cells}</tr>")
    rows.append("</table><p class='note'>mean over seeds, [min, max] where seeds differ</p>")
    return "\n".join(rows)


def _runs_table(results: list[dict[str, Any]]) -> str:
    keys = [c.key for c in COLUMNS if any(math.isfinite(headline(r)[c.key]) for r in results)]
    head = "<tr><th>run</th><th>β</th><th>seed</th><th>steps</th><th>device</th><th>train s</th><th>metrics s</th>"
    rows = ["<table>" + head + "".join(f"<th>{html.escape(_TITLES[k])}</th>" for k in keys) + "</tr>"]
    for r in results:
        row = headline(r)
        seconds = r.get("seconds", {})
        rows.append(
            f"<tr><td>{html.escape(r['name'])}</td><td>{r.get('beta', float('nan')):g}</td><td>{r.get('seed')}</td>"
            f"<td>{r.get('steps', 0):,}</td><td>{html.escape(str(r.get('device', '')))}</td>"
            f"<td>{seconds.get('train', 0):.0f}</td><td>{seconds.get('metrics', 0):.0f}</td>"
            + "".join(f"<td>{_cell(row[k])}</td>" for k in keys)
            + "</tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _settings_list(results: list[dict[str, Any]]) -> str:
    """Each metric's settings as the first finished run used them (every run uses the same plan)."""
    items = []
    for name, result in (results[0].get("metrics") or {}).items():
        _scores, settings = split_result(result)
        text = ", ".join(f"{k} {v}" for k, v in settings.items() if k != "seconds")
        items.append(f"<li><b>{html.escape(name)}</b>: {html.escape(text)}</li>")
    return "<h3>Metric settings</h3><ul>" + "".join(items) + "</ul>" if items else ""
