"""Lists of values typed by people ("0.1, 1, 4", "3x"): one parser for the CLI and the window."""

from __future__ import annotations

from bvae_desktop.core.errors import ConfigError


def parse_floats(text: str, what: str) -> list[float]:
    """Comma-separated numbers; an empty list or a non-number is a ConfigError naming `what`."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers; got {text!r}") from None
    if not values:
        raise ConfigError(f"give at least one value for {what}")
    return values


def parse_seeds(text: str) -> list[int]:
    """Comma-separated seeds, or a count like 3x (= 0, 1, 2)."""
    text = text.strip()
    if text.endswith("x") and text[:-1].isdigit():
        return list(range(int(text[:-1])))
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers or a count like 3x; got {text!r}") from None
