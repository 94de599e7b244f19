"""The layer contracts (.importlinter, run by `make test` as lint-imports) must name every CLI module."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_cli_module_is_forbidden_to_core_and_gui():
    contracts = configparser.ConfigParser()
    contracts.read(ROOT / ".importlinter")
    cli_modules = {f"bvae_desktop.{path.stem}" for path in (ROOT / "bvae_desktop").glob("cli*.py")}
    assert "bvae_desktop.cli" in cli_modules
    for section in ("importlinter:contract:core-is-headless", "importlinter:contract:gui-without-cli"):
        forbidden = set(contracts[section]["forbidden_modules"].split())
        assert cli_modules <= forbidden, f"{section} misses {sorted(cli_modules - forbidden)}"
    headless = set(contracts["importlinter:contract:core-is-headless"]["forbidden_modules"].split())
    assert {"PySide6", "pyqtgraph", "bvae_desktop.gui"} <= headless
