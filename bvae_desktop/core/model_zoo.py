"""The bundled models: the one registry of the pretrained checkpoints shipped with the app.

Each model is `NAME.pt` (a weights-only checkpoint: weights, settings, step; no optimizer or RNG
state) beside its model card `NAME.json` (what it was trained on, how, and what it scores; see
`models/README.md`). The folder `models/` at the top of the repository is installed as the package
`bvae_desktop.bundled_models` (setup.py maps it), so importlib.resources finds it in an editable
install, in a wheel and (as data under `bvae_desktop/bundled_models`) in the frozen app.
`BVAE_DESKTOP_MODELS=DIR` points the registry at another folder: tests use it, and it lets one try
exported models before bundling them.

Everything that takes a checkpoint takes a bundled model's name too, through `resolve_checkpoint`:
an existing path wins, then a bundled name (its weights checked against the card's SHA-256), else a
CheckpointError listing the bundled names. This module imports neither torch nor Qt, so listing the
models costs only reading a few small JSON files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bvae_desktop.core.errors import CheckpointError

if TYPE_CHECKING:
    from bvae_desktop.core.checkpoint import Checkpoint
    from bvae_desktop.core.model_source import ModelSource

MODELS_ENV = "BVAE_DESKTOP_MODELS"
PACKAGE = "bvae_desktop.bundled_models"
CARD_FORMAT = "bvae-desktop-model-card"
CARD_VERSION = 1
DEFAULT_MODEL = "beta4-dsprites"  # what the window shows at first launch
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class ModelCardError(CheckpointError):
    """A model card is missing, unreadable or malformed, or its weights do not match it."""


def check_name(name: str) -> str:
    """A model name is a file stem: letters, digits, '.', '_' and '-' (no path separators), at most 64."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or name.endswith((".pt", ".json")):
        raise ModelCardError(
            f"bad model name {name!r}: use letters, digits, '.', '_' and '-' (up to 64, no extension), "
            "e.g. beta4-dsprites"
        )
    return name


@dataclass(frozen=True)
class BundledModel:
    """One bundled model: its weights file and its (validated) card."""

    name: str
    weights: Path
    card_path: Path
    card: Mapping[str, Any] = field(repr=False)

    # --- what the card says, for lists, menus and status lines ---------------------------------
    @property
    def dataset(self) -> str:
        data = self.card["dataset"]
        return str(data.get("name") or data["kind"])

    @property
    def objective(self) -> str:
        return str(self.card["objective"]["name"])

    @property
    def beta(self) -> float:
        return float(self.card["objective"]["beta"])

    @property
    def beta_norm(self) -> float | None:
        value = self.card["objective"].get("beta_norm")
        return None if value is None else float(value)

    @property
    def weight_symbol(self) -> str:
        """β, or γ for a capacity β-VAE (whose weight is on |KL − C|)."""
        return "γ" if self.objective == "beta-b" else "β"

    @property
    def steps(self) -> int:
        return int(self.card["training"]["steps"])

    @property
    def sha256(self) -> str:
        return str(self.card["weights"]["sha256"])

    @property
    def title(self) -> str:
        return str(self.card.get("title") or f"{self.objective} on {self.dataset}")

    def validation(self, key: str) -> float | None:
        value = (self.card.get("validation") or {}).get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def headline(self) -> dict[str, float]:
        """The card's headline numbers (reconstruction, KL, active units, metrics), finite ones only."""
        found = self.card.get("headline") or {}
        return {
            str(k): float(v)
            for k, v in found.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }

    def short(self) -> str:
        """'β = 4, 30,000 steps': what a status line adds after the name."""
        return f"{self.weight_symbol} = {self.beta:g}, {self.steps:,} steps"

    def describe(self) -> str:
        """Several lines for a tooltip or a dialog: what it is, how it was trained, what it scores."""
        card = self.card
        objective = card["objective"]
        training = card["training"]
        lines = [f"{self.name}: {self.title}", f"dataset: {self.dataset}"]
        if note := card["dataset"].get("note"):
            lines.append(f"  {note}")
        beta_norm = f" (normalised {self.beta_norm:.4g})" if self.beta_norm is not None else ""
        lines.append(f"objective: {self.objective}, {self.weight_symbol} = {self.beta:g}{beta_norm}")
        if self.objective == "beta-b" and objective.get("c_max") is not None:
            lines.append(
                f"  capacity C_max {objective['c_max']:g} nats over {int(objective.get('c_steps', 0)):,} steps"
            )
        parts = [f"{self.steps:,} steps"]
        for key, label in (("batch_size", "batch"), ("seed", "seed"), ("device", "on")):
            if training.get(key) is not None:
                parts.append(f"{label} {training[key]}")
        if isinstance(training.get("seconds"), (int, float)):
            parts.append(
                f"{training['seconds'] / 3600:.1f} h" if training["seconds"] >= 3600 else f"{training['seconds']:.0f} s"
            )
        lines.append("training: " + ", ".join(parts))
        numbers = self.headline()
        if numbers:
            lines.append("scores: " + ", ".join(f"{k} {_fmt(v)}" for k, v in numbers.items()))
        if training.get("command"):
            lines.append(f"command: {training['command']}")
        lines.append(
            f"weights: {self.weights.name} ({card['weights'].get('dtype', 'float32')}), sha256 {self.sha256[:16]}…"
        )
        return "\n".join(lines)

    def to_row(self) -> dict[str, Any]:
        """What `bvae models --json` prints per model."""
        return {
            "name": self.name,
            "title": self.title,
            "dataset": self.dataset,
            "objective": self.objective,
            "beta": self.beta,
            "beta_norm": self.beta_norm,
            "steps": self.steps,
            "headline": self.headline(),
            "path": str(self.weights),
            "card": str(self.card_path),
            "sha256": self.sha256,
        }


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


# --- where the models are ------------------------------------------------------------------------


def models_dir() -> Path | None:
    """The folder holding the bundled models, or None when there is none.

    `BVAE_DESKTOP_MODELS` wins; then the installed package `bvae_desktop.bundled_models` (editable or
    wheel); then `bvae_desktop/bundled_models` inside the package (the frozen app's data); then the
    source tree's `models/` (running from a checkout that was not installed).
    """
    override = os.environ.get(MODELS_ENV)
    if override:
        return Path(override)
    for candidate in _package_candidates():
        try:
            if candidate.is_dir():
                return candidate
        except OSError:
            continue
    return None


def _package_candidates() -> list[Path]:
    from importlib import resources

    found: list[Path] = []
    with contextlib.suppress(ModuleNotFoundError, TypeError, ValueError):  # not installed as a package
        found.append(_as_path(resources.files(PACKAGE)))
    with contextlib.suppress(ModuleNotFoundError, TypeError, ValueError):  # the frozen app's data
        found.append(_as_path(resources.files("bvae_desktop") / "bundled_models"))
    if not getattr(sys, "frozen", False):
        found.append(Path(__file__).resolve().parents[2] / "models")
    return [p for p in found if p is not None]


def _as_path(traversable: Any) -> Path:
    """A Traversable on the file system as a Path (installed packages are unzipped)."""
    if isinstance(traversable, Path):
        return traversable
    paths = getattr(traversable, "_paths", None)  # a namespace package's MultiplexedPath
    if paths:
        return Path(paths[0])
    return Path(str(traversable))


# --- cards ---------------------------------------------------------------------------------------


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The card in `path`, checked; ModelCardError naming the file when it is missing or malformed."""
    file = Path(path)
    try:
        card = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelCardError(f"{file}: no such model card") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelCardError(f"{file}: not a readable model card ({exc})") from None
    return validate_card(card, file)


def validate_card(card: Any, where: str | os.PathLike[str]) -> dict[str, Any]:
    """Check the fields every tool relies on; the rest of a card is free-form information."""

    def fail(reason: str) -> ModelCardError:
        return ModelCardError(f"{where}: {reason}")

    if not isinstance(card, dict):
        raise fail("a model card must be a JSON object")
    if card.get("format") != CARD_FORMAT:
        raise fail(f'not a model card (no "format": "{CARD_FORMAT}")')
    version = card.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= CARD_VERSION:
        raise fail(
            f"model card version {version!r} is not one this app reads (1..{CARD_VERSION}); update β-VAE Desktop"
        )
    name = card.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise fail(f'bad or missing "name" {name!r}')
    stem = Path(where).stem
    if Path(where).suffix == ".json" and name != stem:
        raise fail(f"the card names the model {name!r} but the file is {stem}.json")
    sections = {
        "weights": ("file", "sha256"),
        "dataset": ("kind",),
        "objective": ("name", "beta"),
        "training": ("steps",),
    }
    for section, keys in sections.items():
        value = card.get(section)
        if not isinstance(value, dict):
            raise fail(f'missing section "{section}"')
        for key in keys:
            if key not in value:
                raise fail(f'missing "{section}.{key}"')
    weights = card["weights"]
    file = weights["file"]
    if not isinstance(file, str) or Path(file).name != file or file in ("", ".", "..") or "\\" in file:
        raise fail(f'"weights.file" must be a file name beside the card; got {file!r}')
    if not isinstance(weights["sha256"], str) or not _SHA256.match(weights["sha256"]):
        raise fail('"weights.sha256" must be 64 lower-case hex digits')
    if not isinstance(card["dataset"]["kind"], str) or not isinstance(card["objective"]["name"], str):
        raise fail('"dataset.kind" and "objective.name" must be strings')
    beta = card["objective"]["beta"]
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not math.isfinite(beta):
        raise fail(f'"objective.beta" must be a number; got {beta!r}')
    steps = card["training"]["steps"]
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise fail(f'"training.steps" must be a non-negative integer; got {steps!r}')
    for section in ("validation", "metrics", "headline"):
        if card.get(section) is not None and not isinstance(card[section], dict):
            raise fail(f'"{section}" must be an object or null')
    return card


def _load_entry(card_path: Path) -> BundledModel:
    card = read_card(card_path)
    weights = card_path.with_name(card["weights"]["file"])
    if not weights.is_file():
        raise ModelCardError(f"{card_path}: its weights file {weights.name} is missing")
    return BundledModel(name=card["name"], weights=weights, card_path=card_path, card=card)


def list_models(
    folder: str | os.PathLike[str] | None = None, *, problems: list[str] | None = None
) -> list[BundledModel]:
    """Every bundled model with a good card, sorted by name.

    A card that cannot be used, or weights with no card, raises ModelCardError; with `problems` given
    the message is appended there instead and the model is left out (a window or a listing goes on).
    """
    where = Path(folder) if folder is not None else models_dir()
    if where is None or not where.is_dir():
        return []
    models: list[BundledModel] = []
    try:
        entries = sorted(where.iterdir())
    except OSError as exc:
        _report(problems, ModelCardError(f"{where}: cannot list the models folder ({exc.strerror or exc})"))
        return []
    carded = {p.stem + ".pt" for p in entries if p.suffix == ".json"}  # a broken card is reported as such
    for path in entries:
        if path.suffix != ".json" or path.name.startswith("."):
            continue
        try:
            model = _load_entry(path)
        except ModelCardError as exc:
            _report(problems, exc)
            continue
        carded.add(model.weights.name)
        models.append(model)
    for path in entries:
        if path.suffix == ".pt" and path.name not in carded and not path.name.startswith("."):
            _report(problems, ModelCardError(f"{path}: bundled weights without a model card {path.stem}.json"))
    return sorted(models, key=lambda m: m.name)


def _report(problems: list[str] | None, exc: ModelCardError) -> None:
    if problems is None:
        raise exc
    problems.append(str(exc))


def model_names(folder: str | os.PathLike[str] | None = None) -> list[str]:
    return [m.name for m in list_models(folder, problems=[])]


def find_model(name: str, folder: str | os.PathLike[str] | None = None) -> BundledModel | None:
    """The bundled model called `name` (its card checked), None when there is none by that name."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        return None
    where = Path(folder) if folder is not None else models_dir()
    if where is None:
        return None
    card_path = where / f"{name}.json"
    if not card_path.is_file():
        return None
    return _load_entry(card_path)


def get_model(name: str, folder: str | os.PathLike[str] | None = None) -> BundledModel:
    """Like `find_model`, but an unknown name is a CheckpointError listing the bundled names."""
    model = find_model(name, folder)
    if model is None:
        raise CheckpointError(f"no bundled model {name!r} ({available_text(folder)})")
    return model


def available_text(folder: str | os.PathLike[str] | None = None) -> str:
    names = model_names(folder)
    if not names:
        return "no models are bundled"
    return f"bundled models: {', '.join(names)}; `bvae models` describes them"


# --- weights -------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(model: BundledModel) -> Path:
    """The weights' path after checking their SHA-256 against the card: a changed or damaged file is refused."""
    try:
        found = sha256_file(model.weights)
    except OSError as exc:
        raise ModelCardError(f"{model.weights}: cannot read the bundled weights ({exc.strerror or exc})") from None
    if found != model.sha256:
        raise ModelCardError(
            f"{model.weights}: its SHA-256 {found[:16]}… does not match the card {model.card_path.name} "
            f"({model.sha256[:16]}…): the file was changed or damaged; reinstall, or re-export the model"
        )
    return model.weights


def resolve_checkpoint(text: str | os.PathLike[str]) -> Path:
    """A checkpoint path from what a user typed: an existing path wins; else a bundled model's name (its
    weights verified against the card); else a CheckpointError saying so and listing the bundled names."""
    path = Path(text)
    if path.exists():
        return path
    model = find_model(str(text))
    if model is not None:
        return verify_weights(model)
    raise CheckpointError(f"{text}: no such checkpoint file, and no bundled model of that name ({available_text()})")


def checkpoint_to_resume(path: str | os.PathLike[str]) -> Checkpoint:
    """The checkpoint at `path`, if a run can be resumed from it. Resuming needs the optimizer's state:
    a bundled model's name, or any weights-only checkpoint, is refused with the reason."""
    from bvae_desktop.core.checkpoint import load_checkpoint

    file = Path(path)
    if not file.exists() and find_model(str(path)) is not None:
        raise CheckpointError(
            f"{path} is a bundled model, not a run's checkpoint: it holds weights only (no optimizer state), so "
            "no run can be resumed from it; --resume takes a run's checkpoint.pt (open the bundled model with "
            "`bvae info`, `traverse`, `evaluate`, `compress` or the window instead)"
        )
    ckpt = load_checkpoint(file)
    if ckpt.optimizer_state is None:
        bundled = bundled_name_for(file)
        what = f"the bundled model {bundled}" if bundled else "an exported model"
        raise CheckpointError(
            f"{file}: holds weights only (no optimizer state, like {what}): a run cannot be resumed from it; "
            "--resume takes a run's checkpoint.pt"
        )
    return ckpt


def bundled_name_for(path: str | os.PathLike[str] | None) -> str | None:
    """The bundled model whose weights are at `path`, or None (a user's own checkpoint)."""
    if path is None:
        return None
    try:
        target = Path(path).resolve()
        for model in list_models(problems=[]):
            if model.weights.resolve() == target:
                return model.name
    except OSError:
        return None
    return None


def model_source(model: BundledModel | str, *, load_data: bool = True) -> ModelSource:
    """A ModelSource of a bundled model (weights verified first), labelled "bundled model NAME"."""
    from bvae_desktop.core.model_source import ModelSource

    entry = get_model(model) if isinstance(model, str) else model
    source = ModelSource.from_checkpoint(verify_weights(entry), load_data=load_data)
    source.label = f"bundled model {entry.name}"
    return source
