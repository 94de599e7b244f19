"""β-VAE Desktop: train β-VAEs, tune β and watch the latent space, on your own machine."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("bvae-desktop")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.1.0"

APP_NAME = "β-VAE Desktop"
