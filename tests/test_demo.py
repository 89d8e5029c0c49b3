"""The built-in demo is realistic: its defects occur at realistic rates, so every preset keeps most of its tiles,
and the QA rules still have something to catch."""

from __future__ import annotations

from hyper400k.presets import PRESETS, get_preset
from pipelines.build import BuildConfig, build
from pipelines.demo import generate_demo_input
from pipelines.refilter import filter_build


def test_every_preset_keeps_most_demo_tiles(tmp_path):
    # the demo's flight lines (same seeds) at a quarter of the size with quarter-size tiles: the same tile geometry
    generate_demo_input(tmp_path / "input", lines=128, samples=128)
    config = BuildConfig(
        input=tmp_path / "input",
        output=tmp_path / "build",
        preset=get_preset("hyper400k", tile=64),
        scheduler="synchronous",
        progress=False,
    )
    result = build(config)
    assert result.ok and len(result.records) == 12
    tiles = sum(r["kept"] + r["dropped_tiles"] for r in result.records)
    kept = sum(r["kept"] for r in result.records)
    assert kept / tiles >= 0.9, [(r["product_id"], r["dropped"]) for r in result.records if r["dropped"]]
    # hyper400k-qa = the published rules + QA rules, all on QA stored in each sample: re-filtering the kept
    # samples with its rule set gives what a hyper400k-qa build keeps
    qa = filter_build(tmp_path / "build", PRESETS["hyper400k-qa"].rules, tmp_path / "qa")
    assert qa.kept / tiles >= 0.6, qa.dropped
    assert qa.dropped["dead_detector!=false"] > 0  # two demo flight lines have a dead detector element
