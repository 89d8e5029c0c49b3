"""Shared fixtures: the real products in ../shared/realdata (tests skip with a reason when absent)."""

from __future__ import annotations

import os
import shutil
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


NG = "aviris-ng/ang20170323t202244_rdn_7000-7010"


@pytest.fixture
def ng_copy(realdata: Path, tmp_path: Path) -> Path:
    """A writable copy of the real AVIRIS-NG radiance crop and its header, to damage in a test."""
    src = realdata / NG
    dst = tmp_path / src.name
    shutil.copyfile(src, dst)
    shutil.copyfile(src.with_name(src.name + ".hdr"), dst.with_name(dst.name + ".hdr"))
    return dst
