"""Shared fixtures: the real products in ../shared/realdata (tests skip with a reason when absent)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("HYPER400K_REALDATA", ROOT.parent / "shared" / "realdata"))

os.environ.setdefault("DS_ACCELERATOR", "cpu")

FAILED_MODULES = pytest.StashKey[set[str]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Remember which modules had a failing test, so that their temporary folders are kept to look at."""
    report = yield
    if report.failed:
        item.config.stash.setdefault(FAILED_MODULES, set()).add(item.module.__name__)
    return report


@pytest.fixture(scope="module", autouse=True)
def module_temporaries_removed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Delete the folders a module's fixtures made once the module ends, unless one of its tests failed.

    pytest keeps ``tmp_path_factory`` folders to the end of the run, and the generated products and builds of
    all modules together come to several GB; removing them per module bounds the suite's disk to its largest
    module's, on CI machines whose disk is shared. Passing tests' own folders go by the retention policy."""
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    yield
    if request.module.__name__ in request.config.stash.get(FAILED_MODULES, set()):
        return
    for path in set(base.iterdir()) - before:
        shutil.rmtree(path, ignore_errors=True)


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


def training_build(
    tmp_path_factory: pytest.TempPathFactory, products: list[tuple[str, str, int, int, int]]
) -> Path:
    """A small build to pretrain or fine-tune on: generated ``(sensor, level, lines, samples, seed)`` products on
    their real band grids, 64-pixel tiles, every flight line in the training split."""
    from hyper400k.presets import get_preset
    from hyper400k.synth import generate
    from pipelines.build import BuildConfig, build

    inputs = tmp_path_factory.mktemp("in")
    for sensor, level, lines, samples, seed in products:
        generate(sensor, level, lines, samples, inputs, seed=seed)
    output = tmp_path_factory.mktemp("build")
    config = BuildConfig(
        input=inputs,
        output=output,
        preset=get_preset("hyper400k", tile=64),
        scheduler="synchronous",
        split_fractions={"train": 1.0},
        progress=False,
    )
    assert build(config).ok
    return output
