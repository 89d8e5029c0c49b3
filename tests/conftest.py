"""Shared fixtures: the real products in ../shared/realdata (tests skip with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("HYPER400K_REALDATA", ROOT.parent / "shared" / "realdata"))

os.environ.setdefault("DS_ACCELERATOR", "cpu")


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real products not found at {REALDATA} (set HYPER400K_REALDATA)")
    return REALDATA
