"""Build generations: added and removed products, damaged shards, and a kill at every stage of a build.

Products are tiny (a few 32 x 32 tiles each) and packed two per window, so a build has several windows and
every fault touches some of them and not others.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hyper400k.presets import get_preset
from hyper400k.shards import read_index, shard_keys
from hyper400k.stac import catalog_generation, read_patch_index, validate_catalog
from hyper400k.synth import generate
from hyper400k.verify import verify_build
from pipelines.build import BuildConfig, build
from specaware.data import open_shards

ROOT = Path(__file__).resolve().parents[1]
TILE = 32


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three AVIRIS-NG flight lines (L1 + L2) and one AVIRIS-Classic L1, 96 x 64 pixels, a folder each."""
    folder = tmp_path_factory.mktemp("products")
    for seed in (1, 2, 3):
        for level in ("L1", "L2"):
            generate("aviris-ng", level, 96, 64, folder / f"ng-{seed}-{level}", seed=seed)
    generate("aviris-classic", "L1", 96, 64, folder / "classic-4-L1", seed=4)
    return folder


def config(inputs: Path, output: Path, **changes: object) -> BuildConfig:
    base = dict(
        input=inputs,
        output=output,
        preset=get_preset("hyper400k", tile=TILE),
        scheduler="synchronous",
        shard_bytes=400_000,
        progress=False,
        window_products=2,
    )
    return BuildConfig(**(base | changes))


def some_inputs(products: Path, destination: Path, skip: int = 0) -> Path:
    """A copy of the products, leaving out the last ``skip`` of them (the last flight line when 2)."""
    folders = sorted(products.iterdir())
    for folder in folders[: len(folders) - skip]:
        shutil.copytree(folder, destination / folder.name)
    return destination


@pytest.fixture(scope="module")
def first(products: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Generation 1 of a build of all products but the last two (input folder, build folder)."""
    root = tmp_path_factory.mktemp("first")
    inputs = some_inputs(products, root / "input", skip=2)
    assert build(config(inputs, root / "build")).ok
    return inputs, root / "build"


def copy(first: tuple[Path, Path], destination: Path) -> tuple[Path, Path]:
    inputs, output = first
    shutil.copytree(inputs, destination / "input")
    shutil.copytree(output, destination / "build")
    return destination / "input", destination / "build"


def digests(output: Path) -> dict[str, str]:
    """sha256 of every shard file under ``shards/``, by path relative to it."""
    return {
        path.relative_to(output / "shards").as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((output / "shards").rglob("*.tar"))
    }


def generation(output: Path) -> int | None:
    return catalog_generation(output / "catalog.json")[0]


def patch_keys(output: Path) -> set[str]:
    patches = catalog_generation(output / "catalog.json")[1]
    return set(read_patch_index(patches, columns=["id"]).column("id").to_pylist())


def assert_consistent(output: Path) -> None:
    """Index, patch table, catalog and shards agree, nothing is left behind, the loader streams every key."""
    report = verify_build(output)
    assert report.ok and not report.uncommitted, report.problems + report.uncommitted
    assert not list(output.glob(".stac-staging-*")) and not list((output / "work").rglob("*.tar"))
    assert streamed_keys(output) == patch_keys(output)


def streamed_keys(output: Path) -> set[str]:
    """The keys of every shard the loader opens from the build."""
    return {key for shard in open_shards(output).shards for key in shard_keys(shard.path)}


def test_added_products_get_new_shards_and_leave_the_others_byte_identical(first, products, tmp_path):
    _, output = copy(first, tmp_path)
    before = digests(output)
    inputs = some_inputs(products, tmp_path / "all")
    result = build(config(inputs, output))
    assert result.ok and len(result.records) == 7 and generation(output) == 2
    after = digests(output)
    assert {name: after[name] for name in before} == before  # every earlier shard is still there, unchanged
    assert len(after) > len(before)
    assert_consistent(output)


def test_a_removed_product_rewrites_only_the_shards_that_held_it(first, products, tmp_path):
    inputs, output = copy(first, tmp_path)
    before = digests(output)
    victim = next((inputs / "ng-1-L2").glob("*_rfl_*_img"))
    shutil.rmtree(victim.parent)
    index = read_index(catalog_generation(output / "catalog.json")[2])
    (holder,) = [w for w in index["windows"] if victim.name in w["products"]]
    result = build(config(inputs, output))
    assert result.ok and victim.name not in {r["product_id"] for r in result.records}
    after = digests(output)
    untouched = {name for name in before if name.split("-")[-2] != holder["id"]}
    assert untouched and {name: after[name] for name in untouched} == {n: before[n] for n in untouched}
    assert not set(holder["shards"]) & set(after)  # the window that held it was rewritten under new names
    assert not any(key.startswith(victim.name) for key in patch_keys(output))
    assert len(patch_keys(output)) == sum(r["kept"] for r in result.records)
    assert_consistent(output)


def test_a_deleted_shard_is_rewritten_by_the_next_run(first, tmp_path):
    inputs, output = copy(first, tmp_path)
    before = digests(output)
    victim = sorted(before)[0]
    (output / "shards" / victim).unlink()
    assert any(victim in problem for problem in verify_build(output).problems)
    result = build(config(inputs, output))  # its products' spools are gone: they are tiled again
    assert result.ok and generation(output) == 2
    assert_consistent(output)
    window = victim.split("-")[-2]
    same = {name for name in before if name.split("-")[-2] != window}
    assert {name: digests(output)[name] for name in same} == {name: before[name] for name in same}


def test_a_corrupted_shard_is_found_by_size_or_with_verify_by_sha256(first, tmp_path):
    inputs, output = copy(first, tmp_path)
    names = sorted(digests(output))
    other = next(name for name in names if name.split("-")[-2] != names[0].split("-")[-2])
    flipped, truncated = output / "shards" / names[0], output / "shards" / other
    content = bytearray(flipped.read_bytes())
    content[len(content) // 2] ^= 0xFF  # same size: only a checksum finds it
    flipped.write_bytes(bytes(content))
    truncated.write_bytes(truncated.read_bytes()[:-700])
    assert build(config(inputs, output)).ok
    assert generation(output) == 2 and not truncated.exists()  # the size check caught the truncated one
    problems = verify_build(output).problems
    assert any(names[0] in problem and "sha256" in problem for problem in problems)
    assert build(config(inputs, output, verify=True)).ok and generation(output) == 3
    assert_consistent(output)


def test_verify_names_a_stale_patch_table_and_catalog(first, tmp_path):
    _, output = copy(first, tmp_path)
    patches = catalog_generation(output / "catalog.json")[1]
    table = read_patch_index(patches)
    pq.write_table(table.slice(1), patches)  # one row lost
    problems = verify_build(output, check_samples=False).problems
    lost = table.column("id")[0].as_py()
    assert any(f"no row for {lost}" in p for p in problems)
    assert any("tiles kept" in p for p in problems)


KILLER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import hyper400k.stac
    import pipelines.build
    from hyper400k.presets import get_preset
    from pipelines.build import BuildConfig, build

    inputs, output, point = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    def die(*_args, **_kwargs):
        os._exit(137)  # as a kill: no cleanup, no finally blocks

    if point == "after-first-window":
        pack = pipelines.build.pack_window
        pipelines.build.pack_window = lambda *a, **k: (pack(*a, **k), die())
    if point == "mid-catalog":
        hyper400k.stac._write_patch_index = die

    def on_stage(message):
        if point != "after-first-window" and point != "mid-catalog" and message.startswith(point):
            die()

    config = BuildConfig(
        input=inputs, output=output, preset=get_preset("hyper400k", tile=32), scheduler="synchronous",
        shard_bytes=400_000, progress=False, window_products=2,
    )
    build(config, on_stage=on_stage)
    sys.exit(3)  # the kill point was never reached
    """
)


@pytest.mark.parametrize(
    "point, committed",
    [
        ("tiling and packing", 1),
        ("after-first-window", 1),
        ("writing the STAC catalog", 1),  # the new index is written, the catalog not
        ("mid-catalog", 1),  # the catalog's staging folder is half written
        ("committed generation", 2),  # just after the swap: old files not yet removed
        ("writing the report", 2),
    ],
)
def test_a_kill_at_any_stage_leaves_a_readable_generation_and_the_next_run_completes(
    first, products, tmp_path, point, committed
):
    _, output = copy(first, tmp_path)
    before = patch_keys(output)
    inputs = some_inputs(products, tmp_path / "all")
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(inputs), str(output), point],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert killed.returncode == 137, killed.stderr
    assert generation(output) == committed
    report = verify_build(output, check_samples=False)
    assert report.ok, report.problems  # the committed generation reads whole
    streamed = streamed_keys(output)
    assert streamed == patch_keys(output) and (streamed == before) == (committed == 1)
    result = build(config(inputs, output))
    assert result.ok and len(result.records) == 7 and generation(output) == 2
    assert_consistent(output)


def test_a_build_that_keeps_no_tile_commits_an_empty_generation(products, tmp_path):
    inputs = some_inputs(products, tmp_path / "input", skip=5)
    output = tmp_path / "build"
    result = build(
        config(inputs, output, preset=get_preset("hyper400k", tile=256))
    )  # every tile mostly padding
    assert result.ok and result.records and not any(r["kept"] for r in result.records)
    assert generation(output) == 1 and verify_build(output).ok


def test_a_moved_build_validates_offline_and_loads_and_lists_its_shards_as_assets(first, tmp_path):
    schemas = ROOT.parent / "shared" / "stac-schemas"
    if not schemas.is_dir():
        pytest.skip(f"offline STAC schemas not found at {schemas}")
    _, output = first
    moved = tmp_path / "elsewhere" / "corpus"
    shutil.copytree(output, moved, ignore=shutil.ignore_patterns("work"))
    assert validate_catalog(moved / "catalog.json", schemas) == []
    assert verify_build(moved).ok
    index = read_index(catalog_generation(moved / "catalog.json")[2])
    assets = {}
    for collection in moved.glob("generations/*/*/collection.json"):
        for asset in json.loads(collection.read_text())["assets"].values():
            assets[(collection.parent / asset["href"]).resolve()] = asset
    assert len(assets) == len(index["shards"])
    for entry in index["shards"]:
        asset = assets[(moved / "shards" / entry["name"]).resolve()]
        assert asset["file:size"] == entry["bytes"] and asset["file:checksum"] == "1220" + entry["sha256"]
        assert asset["hyper400k:split"] == entry["name"].split("/")[1]
    shards = open_shards(moved)
    assert all(moved in shard.path.parents for shard in shards.shards)
    assert streamed_keys(moved) == patch_keys(moved)


def test_a_rerun_with_other_settings_is_refused_with_one_line_and_exit_2(first, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    inputs, output = copy(first, tmp_path)
    shards = sorted(p.relative_to(output) for p in (output / "shards").rglob("*.tar"))
    before = patch_keys(output)
    result = CliRunner().invoke(
        app,
        [
            "build",
            str(inputs),
            str(output),
            "--scheduler",
            "synchronous",
            "--tile",
            "64",
            "--seed",
            "5",
            "--shard-mb",
            "0.4",
            "--window",
            "2",
            "--no-progress",
        ],
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(output) in lines[0] and "--force" in lines[0]
    assert "seed 0 -> 5" in lines[0] and "tile 32 -> 64" in lines[0] and "stride 32 -> 64" in lines[0]
    assert "shard_bytes" not in lines[0] and "preset" not in lines[0]  # only what differs is named
    # nothing was touched: same generation, same shards, same patch table
    assert generation(output) == 1 and patch_keys(output) == before
    assert sorted(p.relative_to(output) for p in (output / "shards").rglob("*.tar")) == shards


def test_force_rebuilds_under_the_new_settings_as_a_new_generation(first, tmp_path):
    inputs, output = copy(first, tmp_path)
    old = {p.relative_to(output) for p in (output / "shards").rglob("*.tar")}
    result = build(config(inputs, output, seed=5, force=True))
    assert result.ok and generation(output) == 2
    index = read_index(catalog_generation(output / "catalog.json")[2])
    assert index["settings"]["seed"] == 5
    new = {p.relative_to(output) for p in (output / "shards").rglob("*.tar")}
    assert new and not new & old  # every window rewritten under the new settings, the old shards removed
    assert_consistent(output)
