"""The build report's figures read without the code: labelled axes with units, the rules drawn, and quicklooks
of a random sample of kept and dropped tiles per product, each with its position and, if dropped, why."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hyper400k.presets import get_preset
from hyper400k.quicklook import QuicklookSampler
from hyper400k.synth import generate
from pipelines.build import BuildConfig, build
from pipelines.report import HISTOGRAM_FIELDS, qa_histogram_figure, write_report


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    generate("aviris-ng", "L1", 96, 96, folder / "input", seed=7)
    config = BuildConfig(
        input=folder / "input",
        output=folder / "build",
        preset=get_preset("hyper400k-qa", tile=32),
        scheduler="synchronous",
        progress=False,
    )
    return folder / "build", build(config)


def test_qa_histograms_have_units_fixed_ranges_and_the_preset_rules(built):
    _, result = built
    fig = qa_histogram_figure(result.records)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(panels) == set(HISTOGRAM_FIELDS)
    for name, ax in panels.items():
        assert ax.get_xlabel() and ax.get_ylabel() == "tiles", name
    assert panels["cloud_score"].get_xlim() == (0.0, 1.0)  # its real range, never below 0
    rule_lines = {
        name: sorted(round(line.get_xdata()[0], 6) for line in ax.get_lines()) for name, ax in panels.items()
    }
    assert rule_lines["invalid_value_fraction"] == [0.2]
    assert rule_lines["valid_fraction"] == [0.8]
    assert rule_lines["cloud_score"] == [0.3]
    assert rule_lines["snr_median"] == []
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["aviris-ng-L1"]


def test_report_shows_kept_and_dropped_quicklooks_with_their_reasons(built):
    output, result = built
    (record,) = result.records
    assert 0 < len(record["quicklooks"]) <= 3 and 0 < len(record["dropped_quicklooks"]) <= 2
    report = (output / "report" / "report.md").read_text()
    for dropped in record["dropped_quicklooks"]:
        assert (output / "report" / "quicklooks" / dropped["name"]).is_file()
        assert f"dropped: {', '.join(dropped['reasons'])} | ![{dropped['name']}]" in report
    for name in record["quicklooks"]:
        assert (output / "report" / "quicklooks" / name).is_file()
        assert f"| kept | ![{name}]" in report
    assert json.loads((output / "report" / "report.json").read_text())["samples"] == record["kept"]


def test_quicklook_sample_is_uniform_over_the_product_and_seeded():
    def picks(seed: str) -> list[int]:
        sampler = QuicklookSampler(seed, kept=3, dropped=0)
        for index in range(100):
            sampler.offer(f"k{index}", index, 0, lambda: np.zeros((2, 2, 3), np.uint8))
        return [look.row for look in sampler._picked[False]]

    assert picks("a") == picks("a")
    assert max(picks("a")) >= 3  # not simply the first tiles
    counts = np.zeros(100)
    for seed in range(300):
        counts[picks(str(seed))] += 1
    assert counts[:50].sum() == pytest.approx(counts[50:].sum(), rel=0.25)


def test_quicklooks_are_rendered_only_when_picked():
    rendered = []
    sampler = QuicklookSampler("p", kept=1, dropped=1)
    for index in range(50):
        sampler.offer(
            f"k{index}", index, 0, lambda i=index: rendered.append(i) or np.zeros((1, 1, 3), np.uint8)
        )
    assert 1 <= len(rendered) < 50


def test_report_quicklooks_are_links_that_follow_a_product_tiled_again(built, tmp_path):
    """A re-run's report copies no quicklook bytes (at Hyper-400K size, ~65,000 PNGs per run): each is a hard
    link to the product's own, and a product tiled again (new quicklook files) gets its new pictures."""
    output, result = built
    (record,) = result.records
    name = record["quicklooks"][0]
    source = output / "work" / "products" / record["product_id"] / name
    shown = output / "report" / "quicklooks" / name
    assert os.path.samefile(source, shown)
    retiled = source.with_name(name + ".new")
    retiled.write_bytes(source.read_bytes() + b"\0")  # what a new tiling run writes: a new file, renamed
    os.replace(retiled, source)
    write_report(output, result.records, result.failures, {})
    assert shown.read_bytes() == source.read_bytes() and os.path.samefile(source, shown)
