"""Fill the plots from a run log, so an opened checkpoint shows its curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bvae_desktop.core.runlog import read_runlog

# what every run logs; any other training column is an objective's own term (TC, ...), drawn as it is
STANDARD_COLUMNS = frozenset(
    {
        "step",
        "loss",
        "recon",
        "kl",
        "kl_per_dim",
        "beta",
        "beta_norm",
        "capacity",
        "lr",
        "images_per_s",
        "compile_seconds",
    }
)


def load_history_into(log_path: Path, loss_plot, kl_bars, *, up_to_step: int | None = None) -> int:
    """Draw a run's curves (rows up to `up_to_step`); returns the number of training points."""
    history = read_runlog(log_path)
    train, val, betas = history.train, history.validation, history.beta_changes

    def keep(group: dict[str, np.ndarray]) -> np.ndarray:
        steps = group.get("step", np.zeros(0, dtype=np.int64))
        return steps <= up_to_step if up_to_step is not None else np.ones(len(steps), dtype=bool)

    t, v, b = keep(train), keep(val), keep(betas)
    empty = np.zeros(0)
    loss_plot.set_history(
        train.get("step", empty)[t],
        train.get("loss", empty)[t],
        train.get("recon", empty)[t],
        train.get("kl", empty)[t],
        val.get("step", empty)[v],
        val.get("loss", empty)[v],
        val.get("recon", empty)[v],
        val.get("kl", empty)[v],
        betas.get("step", empty)[b],
        betas.get("beta", empty)[b],
    )
    extras = {name: values[t] for name, values in train.items() if name not in STANDARD_COLUMNS and values.ndim == 1}
    if extras and t.any():
        loss_plot.add_extras(train["step"][t], extras)
    kl = train.get("kl_per_dim")
    if kl is not None and t.any():
        capacity = train.get("capacity", empty)[t]
        last_capacity = float(capacity[-1]) if len(capacity) and np.isfinite(capacity[-1]) else None
        kl_bars.set_kl(np.asarray(kl)[t][-1], last_capacity)
    return int(t.sum())
