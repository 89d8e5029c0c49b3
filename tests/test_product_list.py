"""The shipped Hyper-400K list: every one of its 13,040 names identifies correctly, segment apart from flight line."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from hyper400k.archive.product_list import (
    ProductListError,
    identify_id,
    load_preset,
    parse_years,
    read_ids,
    select,
)
from hyper400k.sensors import identify


@pytest.fixture(scope="module")
def preset():
    return load_preset()


# Per-file totals and distinct flight lines, from the list's provenance README.
COUNTS = {
    ("aviris-3", "L1"): (5216, 685),
    ("aviris-3", "L2"): (1386, 220),
    ("aviris-classic", "L1"): (556, 556),
    ("aviris-classic", "L2"): (167, 167),
    ("aviris-ng", "L1"): (2845, 2845),
    ("aviris-ng", "L2"): (2870, 1236),
}


def test_counts_per_file_and_distinct_flight_lines(preset) -> None:
    products: dict[tuple[str, str], int] = defaultdict(int)
    lines: dict[tuple[str, str], set[str]] = defaultdict(set)
    for p in preset:
        products[p.name.sensor, p.name.level] += 1
        lines[p.name.sensor, p.name.level].add(p.name.flight_line)
    assert {key: (products[key], len(lines[key])) for key in products} == COUNTS
    assert len(preset) == 13_040 == len({p.product_id for p in preset})


def _expected(product_id: str) -> tuple[str, str, str, str | None, datetime, str | None]:
    """An independent reading of a name, by fixed positions and tokens rather than the library's patterns:
    sensor, level, flight line, segment, acquisition time, processing version."""
    if product_id.startswith(("AV3", "ang")):
        sensor = "aviris-3" if product_id.startswith("AV3") else "aviris-ng"
        line = product_id[:18]  # prefix (3) + yyyymmddThhmmss (15)
        when = datetime.strptime(line[3:], "%Y%m%dt%H%M%S").replace(tzinfo=UTC)
        rest = product_id[19:].split("_")
        if rest[0].isdigit():  # segment era: NNN_L1B_RDN_<hash>_RDN[_ORT] / NNN_L2A_OE_[main_]<hash>_RFL_ORT
            level = "L1" if rest[1] == "L1B" else "L2"
            tail = 2 if rest[-1] == "ORT" else 1
            return sensor, level, line, rest[0], when, "_".join(rest[3:-tail])
        level = "L1" if rest[0] == "rdn" else "L2"  # rdn|corr|rfl _ <version> _ img
        return sensor, level, line, None, when, rest[1]
    assert product_id.startswith("f")
    line = product_id[:16]
    when = datetime.strptime(product_id[1:7], "%y%m%d").replace(tzinfo=UTC)
    rest = product_id[16:].lstrip("_").split("_")
    scene = next((t[2:] for t in rest if re.fullmatch(r"sc\d\d", t)), None)
    if rest[0] == "rdn" and rest[1] != "refl":
        return "aviris-classic", "L1", line, scene, when, rest[1]
    version = rest[1] if len(rest) > 1 and rest[1] not in ("img", "refl") else None
    return "aviris-classic", "L2", line, scene, when, version


def test_every_listed_name_identifies_as_an_independent_reading_says(preset) -> None:
    wrong = []
    for p in preset:
        n = p.name
        got = (n.sensor, n.level, n.flight_line, n.segment, n.datetime, n.version)
        if got != _expected(p.product_id) or n.role != "data":
            wrong.append((p.product_id, got, _expected(p.product_id)))
    assert not wrong, f"{len(wrong)} names misread, first: {wrong[:3]}"


# One hand-checked name per naming era: sensor, level, flight line, segment, time, version.
ERAS = [
    ("AV320230705t195254_000_L1B_RDN_cbeae6f8_RDN", "aviris-3", "L1", "AV320230705t195254", "000", "2023-07-05T19:52:54", "cbeae6f8"),
    ("AV320240722t224536_009_L2A_OE_4ccb167d_RFL_ORT", "aviris-3", "L2", "AV320240722t224536", "009", "2024-07-22T22:45:36", "4ccb167d"),
    ("f080709t01p00r11rdn_c_sc01_ort_img", "aviris-classic", "L1", "f080709t01p00r11", "01", "2008-07-09T00:00:00", "c"),
    ("f060531t01p00r05rdn_c_sc02_ort_img", "aviris-classic", "L1", "f060531t01p00r05", "02", "2006-05-31T00:00:00", "c"),
    ("f090427t01p00r06rdn_b_ort_img", "aviris-classic", "L1", "f090427t01p00r06", None, "2009-04-27T00:00:00", "b"),
    ("f110812t01p00r08rdn_c_sc01_img", "aviris-classic", "L1", "f110812t01p00r08", "01", "2011-08-12T00:00:00", "c"),
    ("f060514t01p00r09rdn_c_sc01_geo_img", "aviris-classic", "L1", "f060514t01p00r09", "01", "2006-05-14T00:00:00", "c"),
    ("f130410t01p00r12rdn_refl_img_corr", "aviris-classic", "L2", "f130410t01p00r12", None, "2013-04-10T00:00:00", None),
    ("f130821t01p00r02_corr_v1", "aviris-classic", "L2", "f130821t01p00r02", None, "2013-08-21T00:00:00", "v1"),
    ("f170127t01p00r08_corr_v1f4_img", "aviris-classic", "L2", "f170127t01p00r08", None, "2017-01-27T00:00:00", "v1f4"),
    ("f160622t01p00r03_refl_v1d_img", "aviris-classic", "L2", "f160622t01p00r03", None, "2016-06-22T00:00:00", "v1d"),
    ("f230412t01p00r07_rfl", "aviris-classic", "L2", "f230412t01p00r07", None, "2023-04-12T00:00:00", None),
    ("ang20170827t200007_rdn_v2p10_img", "aviris-ng", "L1", "ang20170827t200007", None, "2017-08-27T20:00:07", "v2p10"),
    ("ang20230626t171426_000_L1B_RDN_dcc53b04_RDN_ORT", "aviris-ng", "L1", "ang20230626t171426", "000", "2023-06-26T17:14:26", "dcc53b04"),
    ("ang20151218t105122_corr_v2m2_img", "aviris-ng", "L2", "ang20151218t105122", None, "2015-12-18T10:51:22", "v2m2"),
    ("ang20210401t165511_rfl_v2z1_img", "aviris-ng", "L2", "ang20210401t165511", None, "2021-04-01T16:55:11", "v2z1"),
    ("ang20220612t204902_000_L2A_OE_c79b62e9_RFL_ORT", "aviris-ng", "L2", "ang20220612t204902", "000", "2022-06-12T20:49:02", "c79b62e9"),
    ("ang20231022t094938_021_L2A_OE_main_27577724_RFL_ORT", "aviris-ng", "L2", "ang20231022t094938", "021", "2023-10-22T09:49:38", "main_27577724"),
]  # fmt: skip


@pytest.mark.parametrize("product_id, sensor, level, line, segment, when, version", ERAS)
def test_each_naming_era_by_hand(preset, product_id, sensor, level, line, segment, when, version) -> None:
    assert product_id in {p.product_id for p in preset}
    n = identify(product_id)
    assert (n.sensor, n.level, n.flight_line, n.segment, n.version, n.role) == (
        sensor, level, line, segment, version, "data"
    )  # fmt: skip
    assert n.datetime.isoformat() == when + "+00:00"


def test_segments_of_one_line_are_one_flight_line_and_companions_stay_with_their_segment() -> None:
    a, b = (
        identify("AV320230817t210313_000_L1B_RDN_cbeae6f8_RDN"),
        identify("AV320230817t210313_006_L1B_RDN_cbeae6f8_RDN"),
    )
    assert a.flight_line == b.flight_line and a.segment != b.segment
    assert not a.same_piece(b)
    assert a.same_piece(identify("AV320230817t210313_000_L1B_RDN_cbeae6f8_OBS"))
    assert identify("f080709t01p00r11rdn_c_obs_ort").same_piece(
        identify("f080709t01p00r11rdn_c_sc01_ort_img")
    )


def test_select_by_sensor_level_and_years(preset) -> None:
    chosen = select(preset, sensors=["aviris-classic"], levels=["L2"], years=parse_years("2013,2016-2017"))
    assert len(chosen) == 40 + 18 + 22
    assert {p.year for p in chosen} == {2013, 2016, 2017}
    assert select(preset) == preset


def test_user_lists_and_their_errors(tmp_path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("# my lines\nang20170827t200007_rdn_v2p10_img\n\nf230412t01p00r07_rfl  # one more\n")
    assert [p.product_id for p in read_ids(path)] == [
        "ang20170827t200007_rdn_v2p10_img",
        "f230412t01p00r07_rfl",
    ]
    path.write_text("ang20170827t200007_rdn_v2p10_img\nenmap_tile_3\n")
    with pytest.raises(ProductListError, match=r"mine\.txt:2: 'enmap_tile_3' is not"):
        read_ids(path)
    with pytest.raises(ProductListError, match="companion"):
        identify_id("ang20170323t202244_rdn_v2p9_loc")
    with pytest.raises(ProductListError, match="2019-2017"):
        parse_years("2019-2017")
