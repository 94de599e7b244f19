"""Which latents carry information, and what to tell the user when none does.

A dimension whose KL (averaged over images) is below ACTIVE_KL nats encodes (almost) nothing: the
decoder ignores it. Early in training, or at a β too large for the data, every dimension is like
that and the model decodes every image to the same blur. The window's KL panel, traversal and
Compress tab, and `bvae evaluate` / `bvae traverse`, all say so with the same words, from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ACTIVE_KL = 0.1  # nats: a dimension below this carries (almost) no information
NO_ACTIVE_LATENT = "no latent carries information yet: train longer or lower β"


def active_dims(kl_per_dim: Sequence[float] | np.ndarray | None) -> list[int]:
    """Indices of the dimensions with KL of at least ACTIVE_KL nats (empty when the KL is unknown)."""
    if kl_per_dim is None:
        return []
    kl = np.asarray(kl_per_dim, dtype=np.float64).reshape(-1)
    return [int(i) for i in np.flatnonzero(np.nan_to_num(kl, nan=0.0) >= ACTIVE_KL)]


def has_no_active_latent(kl_per_dim: Sequence[float] | np.ndarray | None) -> bool:
    """True when the KL is known and no dimension reaches ACTIVE_KL; unknown KL is not a verdict."""
    if kl_per_dim is None:
        return False
    kl = np.asarray(kl_per_dim, dtype=np.float64).reshape(-1)
    return kl.size > 0 and not active_dims(kl)


def activity_warning(kl_per_dim: Sequence[float] | np.ndarray | None) -> str | None:
    """The user-facing warning when no latent is active (max KL shown so the user sees how far off), else None."""
    if not has_no_active_latent(kl_per_dim):
        return None
    kl = np.asarray(kl_per_dim, dtype=np.float64).reshape(-1)
    return f"{NO_ACTIVE_LATENT} (largest KL per latent {float(np.nanmax(kl)):.3g} nats, {ACTIVE_KL:g} needed)"
