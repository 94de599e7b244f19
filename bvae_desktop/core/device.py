"""Which device to train on: CUDA, then MPS, then CPU, unless the user names one."""

from __future__ import annotations

import torch

from bvae_desktop.core.errors import ConfigError


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(name: str = "auto") -> torch.device:
    """Resolve 'auto' to the fastest device here; refuse a named device this machine lacks."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} asked for, but this machine has no CUDA GPU (torch {torch.__version__})"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type == "mps" and not mps_available():
        raise ConfigError("device 'mps' asked for, but Apple's MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def available_devices() -> list[tuple[str, str]]:
    """(device id, label for people) for every device this machine offers, best first."""
    devices: list[tuple[str, str]] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            devices.append((f"cuda:{index}", f"CUDA {index}: {torch.cuda.get_device_name(index)}"))
    if mps_available():
        devices.append(("mps", "Apple MPS"))
    devices.append(("cpu", "CPU"))
    return devices


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"CUDA {index}: {torch.cuda.get_device_name(index)}"
    return {"mps": "Apple MPS", "cpu": "CPU"}.get(device.type, str(device))
