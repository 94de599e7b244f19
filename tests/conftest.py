"""Shared test setup: headless Qt, and where the optional shared data sets live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # GUI tests must run without a display (CI)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository (may be absent: tests using it should skip)."""
    return SHARED_DATA
