"""File-name conventions of every sensor era: sensor, level, flight line, time, version and role."""

from __future__ import annotations

import pytest

from hyper400k.sensors import good_band_mask, identify, sensor

CASES = [
    # name, sensor, level, flight line, iso time, version, role
    ("ang20170323t202244_rdn_v2p9_img", "aviris-ng", "L1", "ang20170323t202244", "2017-03-23T20:22:44", "v2p9", "data"),
    ("ang20170323t202244_rdn_v2p9_loc", "aviris-ng", "L1", "ang20170323t202244", "2017-03-23T20:22:44", "v2p9", "loc"),
    ("ang20170323t202244_rdn_v2p9_obs_ort", "aviris-ng", "L1", "ang20170323t202244", "2017-03-23T20:22:44", "v2p9", "obs"),
    ("ang20191027t204454_rdn_v2y1_glt", "aviris-ng", "L1", "ang20191027t204454", "2019-10-27T20:44:54", "v2y1", "glt"),
    ("ang20170323t202244_loc_7000-7010", "aviris-ng", "L1", "ang20170323t202244", "2017-03-23T20:22:44", None, "loc"),
    ("ang20140912t192359_corr_v1c_img", "aviris-ng", "L2", "ang20140912t192359", "2014-09-12T19:23:59", "v1c", "data"),
    ("ang20200712t205011_rfl_v2y1_img", "aviris-ng", "L2", "ang20200712t205011", "2020-07-12T20:50:11", "v2y1", "data"),
    ("ang20230723t195108_012_L1B_RDN_8c4e3f2a_RDN_ORT", "aviris-ng", "L1", "ang20230723t195108", "2023-07-23T19:51:08", "8c4e3f2a", "data"),
    ("ang20230723t195108_012_L2A_OE_8c4e3f2a_RFL_ORT", "aviris-ng", "L2", "ang20230723t195108", "2023-07-23T19:51:08", "8c4e3f2a", "data"),
    ("f080702t01p00r08rdn_c_sc01_ort_img", "aviris-classic", "L1", "f080702t01p00r08", "2008-07-02T00:00:00", "c", "data"),
    ("f080702t01p00r08rdn_c_obs_ort", "aviris-classic", "L1", "f080702t01p00r08", "2008-07-02T00:00:00", "c", "obs"),
    ("f950620t01p02r05_refl", "aviris-classic", "L2", "f950620t01p02r05", "1995-06-20T00:00:00", None, "data"),
    ("AV320250308t200738_rdn", "aviris-3", "L1", "AV320250308t200738", "2025-03-08T20:07:38", None, "data"),
    ("AV320250308t200738_obs", "aviris-3", "L1", "AV320250308t200738", "2025-03-08T20:07:38", None, "obs"),
    ("AV320231008t172522_005_L1B_RDN_3f4aef90_RDN_ORT", "aviris-3", "L1", "AV320231008t172522", "2023-10-08T17:25:22", "3f4aef90", "data"),
    ("AV320231008t172522_005_L2A_OE_3f4aef90_RFL_ORT", "aviris-3", "L2", "AV320231008t172522", "2023-10-08T17:25:22", "3f4aef90", "data"),
    ("AV320231008t172522_005_L1B_RDN_3f4aef90.nc", "aviris-3", "L1", "AV320231008t172522", "2023-10-08T17:25:22", "3f4aef90", "data"),
]  # fmt: skip


@pytest.mark.parametrize("name, sensor_name, level, flight_line, when, version, role", CASES)
def test_names(name, sensor_name, level, flight_line, when, version, role):
    found = identify(name)
    assert found is not None
    assert (found.sensor, found.level, found.flight_line, found.version, found.role) == (
        sensor_name, level, flight_line, version, role
    )  # fmt: skip
    assert found.datetime.isoformat() == when + "+00:00"


def test_unknown_names_and_sensors():
    assert identify("enmap_potsdam_tile_128_0.tif") is None
    with pytest.raises(ValueError, match="unknown sensor 'hymap'"):
        sensor("hymap")


def test_good_bands_by_wavelength_not_index():
    wl = [350.0, 400.0, 1000.0, 1400.0, 1800.0, 2000.0, 2505.0]
    assert good_band_mask(wl).tolist() == [False, True, True, False, False, True, False]
    assert good_band_mask(wl, bbl=[1, 1, 0, 1, 1, 1, 1]).tolist() == [
        False,
        True,
        False,
        False,
        False,
        True,
        False,
    ]


def test_ceilings_follow_the_published_rules():
    assert sensor("aviris-ng").ceiling("L1") == 100 and sensor("aviris-3").ceiling("L1") == 100
    assert sensor("aviris-classic").ceiling("L1") == 30 and sensor("aviris-ng").ceiling("L2") == 2.5
