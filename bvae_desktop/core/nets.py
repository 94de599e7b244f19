"""Encoder/decoder families: the Burgess et al. (2018) conv net for 64x64 and a 32x32 variant (MNIST)."""

from __future__ import annotations

import torch
from torch import nn

from bvae_desktop.core.config import WEIGHT_INITS

HIDDEN_CHANNELS = 32
HIDDEN_UNITS = 256
KERNEL = 4


def _conv_count(size: int) -> int:
    """Stride-2 convs that take `size` down to 4x4 (4 for 64x64, 3 for 32x32)."""
    if size not in (32, 64):
        raise ValueError(f"the Burgess nets take 32x32 or 64x64 images; got {size}x{size}")
    return {64: 4, 32: 3}[size]


class Encoder(nn.Module):
    """Image in [0, 1] -> (mean, log-variance) of a diagonal Gaussian posterior."""

    def __init__(self, channels: int, size: int, latent_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = channels
        for _ in range(_conv_count(size)):
            layers += [nn.Conv2d(in_ch, HIDDEN_CHANNELS, KERNEL, stride=2, padding=1), nn.ReLU(inplace=True)]
            in_ch = HIDDEN_CHANNELS
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(HIDDEN_CHANNELS * 4 * 4, HIDDEN_UNITS),
            nn.ReLU(inplace=True),
            nn.Linear(HIDDEN_UNITS, HIDDEN_UNITS),
            nn.ReLU(inplace=True),
            nn.Linear(HIDDEN_UNITS, 2 * latent_dim),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stats = self.fc(self.convs(x))
        mean, logvar = stats.chunk(2, dim=1)
        return mean, logvar


class Decoder(nn.Module):
    """Latent code -> pixel logits (Bernoulli) or pre-sigmoid means (Gaussian)."""

    def __init__(self, channels: int, size: int, latent_dim: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, HIDDEN_UNITS),
            nn.ReLU(inplace=True),
            nn.Linear(HIDDEN_UNITS, HIDDEN_UNITS),
            nn.ReLU(inplace=True),
            nn.Linear(HIDDEN_UNITS, HIDDEN_CHANNELS * 4 * 4),
            nn.ReLU(inplace=True),
        )
        count = _conv_count(size)
        layers: list[nn.Module] = []
        for i in range(count):
            last = i == count - 1
            out_ch = channels if last else HIDDEN_CHANNELS
            layers.append(nn.ConvTranspose2d(HIDDEN_CHANNELS, out_ch, KERNEL, stride=2, padding=1))
            if not last:
                layers.append(nn.ReLU(inplace=True))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        hidden = self.fc(z).view(-1, HIDDEN_CHANNELS, 4, 4)
        return self.deconvs(hidden)


def initialise_weights(model: nn.Module, scheme: str, seed: int) -> None:
    """Re-draw every conv and linear layer's weights by `scheme` from a generator of `seed` alone (the first
    weights then depend on nothing else that drew from torch's global generator).

    "he": Kaiming-uniform weights for ReLU nets and zero biases, as disentangling-vae initialises these
    nets. "torch": PyTorch's layer defaults, kept as built (Kaiming-uniform with a = √5, a sixth of He's
    variance), which every run before this setting used. Under PyTorch's defaults each layer shrinks
    its input's scale, and a dSprites β-VAE sat 1,000-1,500 steps on the blob plateau (KL ≈ 0) before
    it used a latent; with He's it leaves it within a few hundred (README, "The first minutes of training").
    """
    if scheme == "torch":
        return
    if scheme != "he":
        raise ValueError(f"unknown weight init {scheme!r}; expected one of {', '.join(WEIGHT_INITS)}")
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu", generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


class BetaVAE(nn.Module):
    """The model every objective trains; `image_shape` is (C, H, W) with H == W in {32, 64}."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int) -> None:
        super().__init__()
        channels, height, width = image_shape
        if height != width:
            raise ValueError(f"images must be square; got {height}x{width}")
        self.image_shape = (int(channels), int(height), int(width))
        self.latent_dim = int(latent_dim)
        self.encoder = Encoder(channels, height, latent_dim)
        self.decoder = Decoder(channels, height, latent_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor, *, with_z: bool = False) -> tuple[torch.Tensor, ...]:
        """Reparameterised pass: (output, mean, logvar), and the sampled z when asked (objectives that
        estimate the aggregate posterior need it). `noise` ~ N(0, I) is passed in so the caller owns the RNG."""
        mean, logvar = self.encode(x)
        z = mean + noise * torch.exp(0.5 * logvar)
        output = self.decode(z)
        return (output, mean, logvar, z) if with_z else (output, mean, logvar)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 0..1, keeping the memory format of the input."""
    return images.float().div_(255.0)
