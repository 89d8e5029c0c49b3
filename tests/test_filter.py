"""``hyper400k filter`` writes a complete build that every reader accepts, and keeps exactly what its rules keep.

The expected keys are computed here from the source build's patch table, independently of the filter code.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from hyper400k.console import EXIT_INPUT
from hyper400k.quality import Rule, RuleSet
from hyper400k.shards import index_root, read_index, shard_keys
from hyper400k.stac import catalog_generation, read_patch_index, validate_catalog
from hyper400k.synth import generate
from hyper400k.verify import verify_build
from pipelines import refilter
from pipelines.build import BuildConfig, SettingsChangedError, build
from pipelines.cli import app
from pipelines.refilter import FILTER_FIELD, filter_build
from pipelines.report import qa_histogram_figure
from specaware.data import open_shards

RULES = "name: clear-and-valid\nrules:\n  - {field: valid_fraction, min: 0.85}\n  - {field: cloud_score, max: 0.3}\n"
SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "stac-schemas"


def config(input_dir: Path, output: Path) -> BuildConfig:
    from hyper400k.presets import get_preset

    return BuildConfig(
        input=input_dir,
        output=output,
        preset=get_preset("hyper400k", tile=32),
        scheduler="synchronous",
        shard_bytes=2_000_000,  # two samples a shard: windows span several shards per split
        progress=False,
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Two AVIRIS-NG flight lines (L1 + L2 each; one in train, one in validate), 6 tiles a product."""
    folder = tmp_path_factory.mktemp("filter")
    for seed in (5, 6):
        for level in ("L1", "L2"):
            generate("aviris-ng", level, 96, 64, folder / "input", seed=seed)
    result = build(config(folder / "input", folder / "build"))
    assert result.ok and len(result.records) == 4
    return folder / "build"


def snapshot(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def expected_keys(build_dir: Path, split: str | None = None) -> set[str]:
    """The keys the rules of RULES keep, from the source patch table alone."""
    keep = (pc.field("qa:valid_fraction") >= 0.85) & (pc.field("qa:cloud_score") <= 0.3)
    return set(read_patch_index(build_dir, split=split, expression=keep, columns=["id"])["id"].to_pylist())


def test_filter_writes_a_complete_build_every_reader_accepts(source, tmp_path):
    before = snapshot(source)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    new = tmp_path / "filtered"
    runner = CliRunner()
    result = runner.invoke(app, ["filter", str(source), "--rules", str(rules), "--out", str(new), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert snapshot(source) == before  # the source build is only read

    source_rows = read_patch_index(source).to_pydict()
    kept = expected_keys(source)
    assert 0 < len(kept) < len(source_rows["id"])  # the rules drop some samples, not all
    assert printed["kept"] == len(kept) and printed["dropped_samples"] == len(source_rows["id"]) - len(kept)

    # verify: shards, index, patch table and catalog agree
    report = verify_build(new)
    assert report.ok, report.problems
    verified = runner.invoke(app, ["verify", str(new), "--json"])
    assert verified.exit_code == 0 and json.loads(verified.stdout)["samples_checked"] == len(kept)

    # the patch table holds exactly the kept samples, each in the split (and shard folder) it had
    rows = read_patch_index(new).to_pydict()
    assert set(rows["id"]) == kept and len(rows["id"]) == len(kept)
    split_of = dict(zip(source_rows["id"], source_rows["ml-aoi:split"], strict=True))
    for key, split, shard in zip(rows["id"], rows["ml-aoi:split"], rows["hyper400k:shard"], strict=True):
        assert split == split_of[key] and f"/{split}/" in shard
        assert key in shard_keys(new / shard)

    # the loader: a split selection streams exactly that split's kept samples
    for split in ("train", "validate"):
        wanted = expected_keys(source, split)
        shards = open_shards(new, split=split)
        assert sum(shard.samples for shard in shards.shards) == len(wanted) > 0
        streamed = {
            key
            for shard in shards.shards
            for key in shard_keys(shard.path)
            if shard.keys is None or key in shard.keys
        }
        assert streamed == wanted

    # stats reads it, as text and as JSON
    stats = runner.invoke(app, ["stats", str(new), "--json"])
    assert stats.exit_code == 0, stats.output
    summary = json.loads(stats.stdout)
    assert summary["samples"] == len(kept)
    assert summary["samples_per_split"]["train"] == len(expected_keys(source, "train"))
    text = runner.invoke(app, ["stats", str(new)])
    assert text.exit_code == 0 and f"{len(kept)} samples" in text.stdout

    # provenance in the catalog and the report; per-product drops per rule
    catalog = json.loads((new / "catalog.json").read_text())
    recorded = catalog[FILTER_FIELD]
    assert recorded["source"] == str(source.resolve()) and recorded["source_generation"] == 1
    assert recorded["rules"]["sha256"] == hashlib.sha256(RULES.encode()).hexdigest()
    section = json.loads((new / "report" / "report.json").read_text())["filter"]
    assert section["rules"]["text"] == RULES and section["kept"] == len(kept)
    for product, counts in section["products"].items():
        product_rows = [
            (vf, cs)
            for pid, vf, cs in zip(
                source_rows["hyper400k:product"],
                source_rows["qa:valid_fraction"],
                source_rows["qa:cloud_score"],
                strict=True,
            )
            if pid == product
        ]
        assert counts["kept_before"] == len(product_rows)
        assert counts["dropped"].get("valid_fraction<0.85", 0) == sum(vf < 0.85 for vf, _ in product_rows)
        assert counts["dropped"].get("cloud_score>0.3", 0) == sum(cs > 0.3 for _, cs in product_rows)
    records = [json.loads(path.read_text()) for path in (new / "work" / "products").glob("*/record.json")]
    drawn = {text.get_text() for ax in qa_histogram_figure(records).axes for text in ax.texts}
    assert {"rule: min 0.85", "rule: max 0.3"} <= drawn  # the QA histograms draw the filter's thresholds
    markdown = (new / "report" / "report.md").read_text()
    assert "## Filter: rule set clear-and-valid" in markdown and str(source.resolve()) in markdown


def test_filter_keeping_everything_reproduces_the_source(source, tmp_path):
    """A rule every sample passes: the same samples, per-band statistics and counts, and a valid STAC catalog."""
    rules = tmp_path / "all.yaml"
    rules.write_text("name: all\nrules:\n  - {field: valid_fraction, min: 0}\n")
    new = tmp_path / "all"
    result = filter_build(source, RuleSet.from_yaml(rules), new, rules_file=rules)
    assert result.dropped_samples == 0
    old_index = read_index(catalog_generation(source / "catalog.json")[2])
    new_index_path = catalog_generation(new / "catalog.json")[2]
    new_index = read_index(new_index_path)
    assert (
        index_root(new_index_path, new_index) == (new / "shards").resolve()
    )  # its own shards, not the source's
    assert new_index["band_stats"] == old_index["band_stats"]
    assert new_index["total_samples"] == old_index["total_samples"]
    assert new_index["total_bytes"] == old_index["total_bytes"]  # raw members copied, byte for byte
    assert set(read_patch_index(new)["id"].to_pylist()) == set(read_patch_index(source)["id"].to_pylist())
    if SCHEMAS.is_dir():
        assert validate_catalog(new / "catalog.json", SCHEMAS) == []


def test_a_filtered_build_can_be_filtered_again_and_rebuilt(source, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    first = filter_build(source, RuleSet.from_yaml(rules), tmp_path / "first", rules_file=rules)
    strict = tmp_path / "strict.yaml"
    strict.write_text("name: strict\nrules:\n  - {field: valid_fraction, min: 0.9}\n")
    second = filter_build(tmp_path / "first", RuleSet.from_yaml(strict), tmp_path / "second")
    assert second.kept + second.dropped_samples == first.kept
    keep = (
        (pc.field("qa:valid_fraction") >= 0.9)
        & (pc.field("qa:cloud_score") <= 0.3)
        & (pc.field("qa:valid_fraction") >= 0.85)
    )
    wanted = set(read_patch_index(source, expression=keep, columns=["id"])["id"].to_pylist())
    assert set(read_patch_index(tmp_path / "second")["id"].to_pylist()) == wanted
    assert verify_build(tmp_path / "second").ok
    # a build run into a filtered build would undo the filter: refused, naming the filter, unless forced; then
    # it re-tiles its products with the preset alone (no spools there)
    first_ids = read_patch_index(tmp_path / "first")["id"].to_pylist()
    with pytest.raises(SettingsChangedError, match="filter"):
        build(config(source.parent / "input", tmp_path / "first"))
    assert set(read_patch_index(tmp_path / "first")["id"].to_pylist()) == set(first_ids)
    rebuilt = build(replace(config(source.parent / "input", tmp_path / "first"), force=True))
    assert rebuilt.ok and verify_build(tmp_path / "first").ok
    assert set(read_patch_index(tmp_path / "first")["id"].to_pylist()) == set(
        read_patch_index(source)["id"].to_pylist()
    )


def test_a_failure_midway_leaves_no_output(source, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(refilter, "write_catalog", broken)
    rules = RuleSet("all", (Rule("valid_fraction", min=0.0),))
    with pytest.raises(OSError):
        filter_build(source, rules, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the output nor its staging folder


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing build", "catalog.json: no build here"),
        ("bad yaml", "rules.yaml: cannot read rule set"),
        ("unknown field", "rule 0 names the QA field 'cloudiness'"),
        ("bad bound", "rule 0: min/max take numbers"),
        ("output exists", "already exists"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(source, tmp_path, case, fragment):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        {
            "bad yaml": "name: x\nrules: [\n",
            "unknown field": "rules:\n  - {field: cloudiness, max: 0.3}\n",
            "bad bound": "rules:\n  - {field: valid_fraction, min: high}\n",
        }.get(case, RULES)
    )
    build_dir = tmp_path / "nowhere" if case == "missing build" else source
    out = tmp_path / "out"
    if case == "output exists":
        out.mkdir()
    done = CliRunner().invoke(app, ["filter", str(build_dir), "--rules", str(rules), "--out", str(out)])
    assert done.exit_code == EXIT_INPUT, done.output
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["rules.yaml"] + (["out"] if out.exists() else [])
    )
    if case == "output exists":
        assert list(out.iterdir()) == []


def test_a_build_without_its_product_records_is_refused_by_name(source, tmp_path):
    """A build copied without ``work/`` cannot be filtered into a complete build: the error names the record."""
    bare = tmp_path / "bare"
    shutil.copytree(source, bare, ignore=shutil.ignore_patterns("work"))
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    done = CliRunner().invoke(
        app, ["filter", str(bare), "--rules", str(rules), "--out", str(tmp_path / "out")]
    )
    assert done.exit_code == EXIT_INPUT, done.output
    assert done.stderr.startswith(f"error: {bare / 'work' / 'products'}") and "record.json" in done.stderr
    assert not (tmp_path / "out").exists()
