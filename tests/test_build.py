"""The dataset build end to end on generated products: shards, index, STAC, splits, resume, failures."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hyper400k.presets import get_preset
from hyper400k.sample import Sample
from hyper400k.shards import index_root, iter_encoded, read_index
from hyper400k.splits import SPLITS
from hyper400k.stac import catalog_generation, read_patch_index, validate_catalog
from hyper400k.synth import generate
from hyper400k.verify import verify_build
from pipelines.build import BuildConfig, build
from pipelines.cli import app
from specaware.data import open_shards

LINES, SAMPLES, TILE = 200, 144, 64


@pytest.fixture(scope="module")
def products(tmp_path_factory) -> Path:
    """Two flight lines of AVIRIS-NG (L1 + L2), one AVIRIS-Classic L1, one AVIRIS-3 L1 (ENVI) and L2 (NetCDF)."""
    folder = tmp_path_factory.mktemp("input")
    for seed in (11, 12):
        for level in ("L1", "L2"):
            generate("aviris-ng", level, LINES, SAMPLES, folder / "ng", seed=seed)
    generate("aviris-classic", "L1", LINES, SAMPLES, folder / "classic", seed=21)
    generate("aviris-3", "L1", LINES, SAMPLES, folder / "av3", seed=31)
    generate("aviris-3", "L2", LINES, SAMPLES, folder / "av3", seed=31, fmt="netcdf")
    return folder


def config(input_dir: Path, output: Path, **changes) -> BuildConfig:
    base = dict(
        input=input_dir,
        output=output,
        preset=get_preset("hyper400k", tile=TILE),
        scheduler="synchronous",
        shard_bytes=20_000_000,
        progress=False,
    )
    return BuildConfig(**(base | changes))


@pytest.fixture(scope="module")
def built(products, tmp_path_factory):
    # a dot in the folder name, as in a user's "corpus.v1": pystac takes such a name for a file unless told
    output = tmp_path_factory.mktemp("build") / "corpus.v1"
    return output, build(config(products, output))


def committed(output: Path) -> tuple[Path, Path]:
    """The patch table and shard index that the build's ``catalog.json`` commits."""
    _, patches, index = catalog_generation(output / "catalog.json")
    assert patches is not None and index is not None
    return patches, index


def all_samples(folder: Path):
    """(shard name, sample) of every shard of a build's committed generation, or of a shard folder."""
    index_path = committed(folder)[1] if (folder / "catalog.json").is_file() else folder / "index.json"
    index = read_index(index_path)
    for entry in index["shards"]:
        for key, members in iter_encoded(index_root(index_path, index) / entry["name"]):
            yield entry["name"], Sample.decode(key, members)


def test_build_writes_valid_shards_grouped_by_sensor_and_level(built):
    output, result = built
    assert result.ok and len(result.records) == 7
    report = verify_build(output)
    assert report.ok, report.problems
    samples = list(all_samples(output))
    assert len(samples) == sum(r["kept"] for r in result.records) > 20
    for shard, sample in samples:
        group = f"{sample.meta['sensor']}-{sample.meta['level']}"
        # one band count and one split per shard: shards/<group>/<split>/
        assert shard.startswith(f"{group}/{sample.meta['split']}/")
        assert sample.data.shape == (len(sample.meta["wavelength_nm"]), TILE, TILE)
        assert sample.meta["preset"] == "hyper400k" and sample.meta["gsd_m"] > 0
    assert not list((output / "work").rglob("*.tar"))  # spools are gone once their shards are durable


def test_a_window_mixes_its_flight_lines_within_a_split(products, tmp_path):
    inputs = tmp_path / "input"
    inputs.mkdir()
    for path in sorted((products / "ng").glob("*_rdn_*")):
        shutil.copyfile(path, inputs / path.name)
    output = tmp_path / "out"
    assert build(config(inputs, output, split_fractions={"train": 1.0})).ok
    lines = defaultdict(set)
    for shard, sample in all_samples(output):
        lines[shard].add(sample.meta["flight_line"])
    assert len(set().union(*lines.values())) == 2 and any(len(found) == 2 for found in lines.values())


def test_splits_are_by_flight_line(built):
    output, _ = built
    split_of: dict[str, set[str]] = defaultdict(set)
    for _, sample in all_samples(output):
        split_of[sample.meta["flight_line"]].add(sample.meta["split"])
    assert all(len(splits) == 1 for splits in split_of.values())  # L1 and L2 of a flight line share it


def test_the_split_is_one_word_everywhere(built):
    """meta.json, the shard folder, the patch table, the STAC Item and the loader filter agree."""
    output, _ = built
    patches, _ = committed(output)
    table = read_patch_index(patches, columns=["id", "ml-aoi:split", "hyper400k:product"]).to_pydict()
    in_table = dict(zip(table["id"], table["ml-aoi:split"], strict=True))
    item_split = {
        json.loads(path.read_text())["id"]: json.loads(path.read_text())["properties"]["ml-aoi:split"]
        for path in output.glob("generations/*/*/*/*.json")
    }
    product_of = dict(zip(table["id"], table["hyper400k:product"], strict=True))
    seen = set()
    for shard, sample in all_samples(output):
        split = sample.meta["split"]
        seen.add(split)
        assert split in SPLITS and shard.split("/")[1] == split == in_table[sample.key]
        assert item_split[product_of[sample.key]] == split
    assert seen == set(SPLITS)
    for split in SPLITS:
        wanted = {key for key, value in in_table.items() if value == split}
        selected = open_shards(output, split=split)
        assert sum(shard.samples for shard in selected.shards) == len(wanted)
        assert all(f"/{split}/" in shard.path.as_posix() for shard in selected.shards)


def test_catalog_validates_and_patch_index_is_queryable(built):
    output, result = built
    schemas = Path(__file__).resolve().parents[2] / "shared" / "stac-schemas"
    if not schemas.is_dir():
        pytest.skip(f"offline STAC schemas not found at {schemas}")
    assert (output / "catalog.json").is_file()
    assert validate_catalog(output / "catalog.json", schemas) == []
    patches, _ = committed(output)
    table = read_patch_index(patches)
    assert table.num_rows == sum(r["kept"] for r in result.records)
    ng = read_patch_index(patches, sensor="aviris-ng", level="L1", min_valid_fraction=0.9)
    assert 0 < ng.num_rows < table.num_rows


def test_report_counts_and_figures(built):
    output, result = built
    summary = json.loads((output / "report" / "report.json").read_text())
    assert summary["samples"] == sum(r["kept"] for r in result.records)
    assert summary["tiles_dropped"] > 0  # swath corners and padded edges are dropped with their reason
    assert "invalid_value_fraction>0.2" in summary["groups"]["aviris-ng-L1"]["dropped"]
    assert (output / "report" / "qa_histograms.png").stat().st_size > 1000
    assert list((output / "report" / "quicklooks").glob("*.png"))


def test_rerun_redoes_nothing_and_keeps_shards(products, built):
    output, first = built
    records = sorted((output / "work" / "products").glob("*/record.json"))
    stamps = [p.stat().st_mtime_ns for p in records]
    shard_stamps = {p: p.stat().st_mtime_ns for p in (output / "shards").rglob("*.tar")}
    again = build(config(products, output))
    assert again.ok and len(again.records) == len(first.records)
    assert [p.stat().st_mtime_ns for p in records] == stamps
    assert {p: p.stat().st_mtime_ns for p in (output / "shards").rglob("*.tar")} == shard_stamps


def test_bad_and_duplicate_products_are_recorded_and_retried(products, tmp_path):
    inputs = tmp_path / "input"
    shutil.copytree(products / "ng", inputs / "ng")
    broken = sorted((inputs / "ng").glob("*_rdn_v2p9_img"))[0]
    good_bytes = broken.read_bytes()
    broken.write_bytes(good_bytes[: len(good_bytes) // 2])  # truncated download
    dup = inputs / "copy"
    dup.mkdir()
    second = sorted((inputs / "ng").glob("*_rfl_v2p9_img"))[-1]
    for path in (second, second.with_name(second.name + ".hdr")):
        shutil.copyfile(path, dup / path.name)
    output = tmp_path / "out"
    result = build(config(inputs, output))
    reasons = {f["product_id"]: f["reason"] for f in result.failures}
    assert len(result.records) == 3 and not result.ok
    assert "truncated" in reasons[broken.name] and "duplicate" in next(
        r for k, r in reasons.items() if k == second.name
    )
    assert json.loads((output / "failures.json").read_text())
    assert "Failed products" in (output / "report" / "report.md").read_text()
    done = {p: p.stat().st_mtime_ns for p in (output / "work" / "products").glob("*/record.json")}
    broken.write_bytes(good_bytes)  # fixed: the re-run retries only what failed
    shutil.rmtree(dup)
    rerun = build(config(inputs, output))
    assert rerun.ok and len(rerun.records) == 4
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in done.items())


def test_all_fill_product_fails_with_reason(realdata, tmp_path):
    inputs = tmp_path / "input"
    inputs.mkdir()
    for name in (
        "ang20140912t192359_corr_v1c_img_400-410_10-20.img",
        "ang20140912t192359_corr_v1c_img_400-410_10-20.hdr",
    ):
        shutil.copyfile(realdata / "aviris-ng" / name, inputs / name)
    result = build(config(inputs, tmp_path / "out", preset=get_preset("hyper400k", tile=8)))
    assert not result.records and "no valid pixel" in result.failures[0]["reason"]


def test_filter_and_verify_cli(built, tmp_path):
    output, _ = built
    rules = tmp_path / "rules.yaml"
    rules.write_text("name: mostly-valid\nrules:\n  - {field: valid_fraction, min: 0.999}\n")
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["filter", str(output), "--rules", str(rules), "--out", str(tmp_path / "filtered")],
    )
    assert result.exit_code == 0, result.output
    kept = sum(1 for _ in all_samples(tmp_path / "filtered"))
    total = sum(1 for _ in all_samples(output))
    assert 0 < kept < total and "valid_fraction<0.999" in result.output
    for _, sample in all_samples(tmp_path / "filtered"):
        assert sample.meta["qa"]["valid_fraction"] >= 0.999
    assert runner.invoke(app, ["verify", str(output)]).exit_code == 0
    shard = next((output / "shards").rglob("*.tar"))
    corrupted = tmp_path / "corrupt"
    shutil.copytree(output, corrupted, ignore=shutil.ignore_patterns("work"))
    target = corrupted / shard.relative_to(output)
    data = bytearray(target.read_bytes())
    data[5000] ^= 0xFF
    target.write_bytes(bytes(data))
    failed = runner.invoke(app, ["verify", str(corrupted)])
    assert failed.exit_code == 1 and "sha256" in failed.output


def test_samples_carry_physical_units(built):
    output, _ = built
    for _, sample in all_samples(output):
        data = sample.data.astype(np.float32)
        if sample.meta["level"] == "L1":
            assert 0 <= data.max() <= 100 and sample.meta["units"] == "uW cm-2 sr-1 nm-1"
        else:
            assert 0 <= data.max() <= 2.5 and sample.meta["units"] == "reflectance"
        assert (data[:, ~sample.valid] == 0).all() or not (~sample.valid).any()
