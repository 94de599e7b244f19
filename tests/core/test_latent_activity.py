"""The shared verdict on whether any latent carries information."""

import numpy as np

from bvae_desktop.core.latent_activity import (
    ACTIVE_KL,
    NO_ACTIVE_LATENT,
    active_dims,
    activity_warning,
    has_no_active_latent,
)


def test_collapsed_model_is_named_and_the_largest_kl_is_shown():
    kl = np.array([0.001, 0.03, 0.0])
    assert has_no_active_latent(kl)
    assert active_dims(kl) == []
    warning = activity_warning(kl)
    assert warning is not None and warning.startswith(NO_ACTIVE_LATENT)
    assert "0.03" in warning and f"{ACTIVE_KL:g}" in warning


def test_one_active_latent_is_enough_and_unknown_kl_is_no_verdict():
    assert active_dims([0.0, 2.5, 0.1, 0.09]) == [1, 2]
    assert activity_warning([0.0, 2.5]) is None
    assert not has_no_active_latent(None)
    assert activity_warning(None) is None
    assert not has_no_active_latent([])
