"""Splits go by flight line: every segment and both levels of a line land in one split, on the real list."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from hyper400k.archive.product_list import load_preset
from hyper400k.presets import get_preset
from pipelines.build import BuildConfig, plan_jobs


def test_no_flight_line_of_the_published_list_is_in_two_splits(tmp_path: Path) -> None:
    products = load_preset()
    # plan_jobs reads names only, so the list's identifiers stand in for the downloaded files.
    paths = [tmp_path / p.product_id for p in products]
    jobs, refused = plan_jobs(
        paths, BuildConfig(input=tmp_path, output=tmp_path / "out", preset=get_preset("hyper400k"))
    )
    assert not refused and len(jobs) == 13_040
    splits_of: dict[str, set[str]] = defaultdict(set)
    levels_of: dict[str, set[str]] = defaultdict(set)
    segments_of: dict[str, set[str | None]] = defaultdict(set)
    for job, listed in zip(jobs, products, strict=True):
        assert job.product_id == listed.product_id
        assert (job.flight_line, job.segment) == (listed.name.flight_line, listed.name.segment)
        splits_of[job.flight_line].add(job.split)
        levels_of[job.flight_line].add(listed.name.level)
        segments_of[job.flight_line].add(job.segment)
    assert all(len(s) == 1 for s in splits_of.values())
    # The test has teeth: many lines have several segments, many have both levels, and all splits are used.
    assert sum(len(s) > 1 for s in segments_of.values()) > 500
    assert sum(len(v) == 2 for v in levels_of.values()) > 1000
    assert {s for (s,) in splits_of.values()} == {"train", "validate", "test"}
    segmented = [j for j in jobs if j.flight_line == "AV320230817t210313"]
    assert len(segmented) >= 7 and len({j.split for j in segmented}) == 1
