"""ENVI ``State Plane (NAD 83/27)`` map info, read as GDAL's ENVI driver reads it and as published values say.

No public header of this family was found, so sparse ENVI products are written here with the map info ENVI
writes (``{State Plane (NAD 83), ref x, ref y, easting, northing, size x, size y, zone, units=Feet}``) and
opened twice: by hyper400k and by rasterio (GDAL's ENVI driver, which reads State Plane map info itself).
The two must agree to the centimetre on the ground for every zone GDAL's ENVI driver knows, and the EPSG
worked example for NAD 27 Texas South Central pins the units independently of both.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from cli_process import error_lines, run_cli
from pyproj import CRS, Transformer

from hyper400k.console import EXIT_INPUT
from hyper400k.envi_header import EnviHeader
from hyper400k.errors import HeaderError
from hyper400k.geo import GeoRef, corner_points, parse_map_info
from hyper400k.product import open_product

LINES, SAMPLES = 3, 4
US_FOOT = 1200 / 3937  # metres per US survey foot (exact by definition)
FOOT = 0.3048  # metres per international foot (exact by definition)
UNIT_M = {"Feet": FOOT, "Meters": 1.0, "Km": 1000.0}  # ENVI's map units, in metres

# The USGS/NOS zone codes of GDAL's ENVI driver (frmts/raw/envidataset.cpp, anUsgsEsriZones), plus
# Kentucky's single NAD 83 zone (1600), adopted later.
GDAL_ENVI_ZONES = [
    101, 102, 201, 202, 203, 301, 302, 401, 402, 403, 404, 405, 406, 407, 501, 502, 503, 600, 700,
    901, 902, 903, 1001, 1002, 1101, 1102, 1103, 1201, 1202, 1301, 1302, 1401, 1402, 1501, 1502, 1600,
    1601, 1602, 1701, 1702, 1703, 1801, 1802, 1900, 2001, 2002, 2101, 2102, 2103, 2111, 2112, 2113,
    2201, 2202, 2203, 2301, 2302, 2401, 2402, 2403, 2500, 2501, 2502, 2503, 2600, 2601, 2602, 2701,
    2702, 2703, 2800, 2900, 3001, 3002, 3003, 3101, 3102, 3103, 3104, 3200, 3301, 3302, 3401, 3402,
    3501, 3502, 3601, 3602, 3701, 3702, 3800, 3900, 3901, 3902, 4001, 4002, 4100, 4201, 4202, 4203,
    4204, 4205, 4301, 4302, 4303, 4400, 4501, 4502, 4601, 4602, 4701, 4702, 4801, 4802, 4803, 4901,
    4902, 4903, 4904, 5001, 5002, 5003, 5004, 5005, 5006, 5007, 5008, 5009, 5010, 5101, 5102, 5103,
    5104, 5105, 5200, 5201, 5202, 5300, 5400,
]  # fmt: skip

# Zones whose CRS in GDAL (its stateplane.csv code, or the replacement GDAL substitutes for a deprecated
# one) is itself deprecated by EPSG for wrong parameters: Michigan North's EPSG:6200 (was 26811) and
# American Samoa's 2155 (central meridian 170 E for 170 W). hyper400k reads the current CRS (the EPSG
# code here), so GDAL is not the reference for these.
SUPERSEDED_IN_GDAL = {("27", 2111): 6966, ("27", 5300): 3102}


def write_product(folder: Path, map_info: str, name: str = "scene") -> Path:
    """A sparse 3-band ENVI product with this ``map info`` (without braces); returns the header path."""
    header = folder / f"{name}.hdr"
    header.write_text(
        "ENVI\n"
        f"samples = {SAMPLES}\nlines = {LINES}\nbands = 3\nheader offset = 0\n"
        "file type = ENVI Standard\ndata type = 4\ninterleave = bsq\nbyte order = 0\n"
        "wavelength units = Nanometers\nwavelength = {450.0, 550.0, 650.0}\nfwhm = {10.0, 10.0, 10.0}\n"
        f"map info = {{{map_info}}}\n"
    )
    with (folder / name).open("wb") as data:
        data.truncate(LINES * SAMPLES * 3 * 4)
    return header


def map_info(nad: str, zone: int | str, east: float, north: float, size: float, units: str | None) -> str:
    fields = [
        f"State Plane (NAD {nad})",
        "1.0",
        "1.0",
        repr(east),
        repr(north),
        repr(size),
        repr(size),
        str(zone),
    ]
    return ", ".join(fields + ([f"units={units}"] if units else []))


def ours(header: Path) -> GeoRef:
    georef = parse_map_info(EnviHeader.read(header))
    assert georef is not None
    return georef


def gdal(header: Path) -> tuple[CRS | None, tuple[float, ...]]:
    with rasterio.open(header.with_suffix("")) as ds:
        crs = CRS.from_wkt(ds.crs.to_wkt()) if ds.crs is not None else None
        return crs, tuple(ds.transform)[:6]


def inside_zone(tmp_path: Path, nad: str, zone: int, units: str | None) -> Path:
    """A product at the middle of the zone's area of use, its position stated in ``units``.

    The position is found with the zone's CRS in its legal unit (as hyper400k reads it), then stated in
    ``units``; only the comparison with GDAL afterwards is the test.
    """
    probe = write_product(tmp_path, map_info(nad, zone, 0.0, 0.0, 1.0, None), "probe")
    crs = CRS.from_user_input(ours(probe).crs)
    area = crs.area_of_use
    lon, lat = (area.west + area.east) / 2, (area.south + area.north) / 2
    east, north = Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True).transform(lon, lat)
    scale = crs.axis_info[0].unit_conversion_factor / UNIT_M.get(
        units, crs.axis_info[0].unit_conversion_factor
    )
    return write_product(
        tmp_path, map_info(nad, zone, round(east * scale, 3), round(north * scale, 3), 10.0, units)
    )


def ground_lonlat(crs: CRS, transform: tuple[float, ...]) -> np.ndarray:
    """The grid's four corners as lon/lat on the CRS's own datum (no datum shift: exact on both sides)."""
    to_lonlat = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    return np.array([to_lonlat.transform(x, y) for x, y in corner_points(transform, LINES, SAMPLES)])


def assert_same_ground(a: np.ndarray, b: np.ndarray, tolerance_m: float = 0.01) -> None:
    lat = math.radians(float(a[0, 1]))
    metres = np.hypot((a[:, 0] - b[:, 0]) * 111_320 * math.cos(lat), (a[:, 1] - b[:, 1]) * 110_574)
    assert metres.max() < tolerance_m, metres


def assert_agrees_with_gdal(header: Path) -> GeoRef:
    georef = ours(header)
    crs = CRS.from_user_input(georef.crs)
    gdal_crs, gdal_transform = gdal(header)
    assert gdal_crs is not None and gdal_crs.is_projected
    np.testing.assert_allclose(georef.transform, gdal_transform, rtol=1e-12, atol=1e-9)
    assert crs.geodetic_crs.equals(gdal_crs.geodetic_crs, ignore_axis_order=True)
    assert crs.axis_info[0].unit_conversion_factor == pytest.approx(
        gdal_crs.axis_info[0].unit_conversion_factor
    )
    assert_same_ground(ground_lonlat(crs, georef.transform), ground_lonlat(gdal_crs, gdal_transform))
    return georef


@pytest.mark.parametrize(
    ("nad", "zone", "units"),
    [
        ("83", 403, "Feet"),  # California III, Lambert conformal conic
        ("83", "0403", "Meters"),  # the zone with its leading zero, as ENVI's zone list shows it
        ("83", 3104, "Feet"),  # New York Long Island
        ("83", 4204, "Feet"),  # Texas South Central
        ("83", 5001, "Meters"),  # Alaska 1: Hotine oblique Mercator
        ("83", 5001, "Feet"),
        ("83", 202, "Feet"),  # Arizona Central: its international-foot CRS is registered (EPSG:2223)
        ("83", 403, None),  # no units: NAD 83 zones are in metres
        ("83", 403, "Km"),
        ("27", 403, "Feet"),
        ("27", 403, None),  # no units: NAD 27 zones are in US survey feet
        ("27", 5001, "Feet"),
        ("27", 5101, "Feet"),  # Hawaii's 1927 system is on Old Hawaiian, not NAD 27
        ("27", 2112, "Feet"),  # Michigan Central: no ESRI FIPS name for its NAD 27 CRS
        ("27", 3104, None),  # New York Long Island: EPSG corrected its NAD 27 CRS (32018 -> 4456)
    ],
)
def test_state_plane_zone_is_read_as_gdal_reads_it(tmp_path, nad, zone, units):
    georef = assert_agrees_with_gdal(inside_zone(tmp_path, nad, int(zone), units))
    unit_m = UNIT_M[units] if units else (1.0 if nad == "83" else US_FOOT)
    assert georef.gsd_m == pytest.approx(10.0 * unit_m, rel=1e-12)


@pytest.mark.slow
def test_every_zone_of_gdals_envi_driver_agrees_with_gdal_or_is_refused(tmp_path):
    """All zone codes on both datums, in their legal units: where GDAL finds a projected CRS, so do we.

    Where GDAL finds none (a code with no zone on that datum) we refuse the header, except Louisiana
    Offshore (1703), which EPSG registers on both datums and GDAL's table lacks.
    """
    read = refused = 0
    for nad in ("83", "27"):
        for zone in GDAL_ENVI_ZONES:
            folder = tmp_path / f"{nad}_{zone}"
            folder.mkdir()
            if (nad, zone) in SUPERSEDED_IN_GDAL:
                continue
            try:
                header = inside_zone(folder, nad, zone, None)
            except HeaderError as exc:
                assert "is not a State Plane zone of that datum" in str(exc)
                gdal_crs, _ = gdal(write_product(folder, map_info(nad, zone, 0.0, 0.0, 1.0, None), "probe"))
                assert gdal_crs is None or not gdal_crs.is_projected, (nad, zone)
                refused += 1
                continue
            if zone != 1703:
                assert_agrees_with_gdal(header)
            read += 1
    assert (read, refused) == (255, 21)


@pytest.mark.parametrize(("nad", "zone"), sorted(SUPERSEDED_IN_GDAL))
def test_zone_whose_gdal_crs_is_deprecated_reads_the_current_epsg_crs(tmp_path, nad, zone):
    header = write_product(tmp_path, map_info(nad, zone, 2000000.0, 100000.0, 10.0, None))
    assert ours(header).crs == f"EPSG:{SUPERSEDED_IN_GDAL[(nad, zone)]}"


# EPSG Guidance Note 7-2, Lambert Conic Conformal (2SP) example, NAD27 / Texas South Central (EPSG:32040,
# FIPS zone 4204): latitude 28°30'00" N, longitude 96°00'00" W is E = 2963503.91, N = 254759.80 US survey feet.
TEXAS_SC_US_FT = (2963503.91, 254759.80)


@pytest.mark.parametrize(
    ("units", "metres_per_unit"), [(None, US_FOOT), ("Meters", 1.0), ("Feet", FOOT)], ids=["usft", "m", "ft"]
)
def test_published_point_of_texas_south_central_nad27(tmp_path, units, metres_per_unit):
    """The map info's reference point, stated in each unit, lands on the published lon/lat to a centimetre."""
    east, north = (v * US_FOOT / metres_per_unit for v in TEXAS_SC_US_FT)
    georef = ours(write_product(tmp_path, map_info("27", 4204, east, north, 30.0, units)))
    crs = CRS.from_user_input(georef.crs)
    assert crs.geodetic_crs.equals(CRS.from_epsg(4267))
    lon, lat = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(
        georef.transform[2], georef.transform[5]
    )
    assert_same_ground(np.array([[lon, lat]]), np.array([[-96.0, 28.5]]), tolerance_m=0.01)
    assert georef.gsd_m == pytest.approx(30.0 * metres_per_unit, rel=1e-12)


def test_international_feet_are_not_read_as_us_survey_feet(tmp_path):
    """California III in ENVI's Feet: the same numbers in US survey feet (EPSG:2227) would sit ~1.8 m away."""
    lon, lat = -121.5, 37.5
    east_m, north_m = Transformer.from_crs("EPSG:4269", "EPSG:26943", always_xy=True).transform(lon, lat)
    header = write_product(tmp_path, map_info("83", 403, east_m / FOOT, north_m / FOOT, 2.0, "Feet"))
    georef = ours(header)
    got = Transformer.from_crs(CRS.from_user_input(georef.crs), "EPSG:4269", always_xy=True).transform(
        georef.transform[2], georef.transform[5]
    )
    assert_same_ground(np.array([got]), np.array([[lon, lat]]))
    as_us_feet = Transformer.from_crs("EPSG:2227", "EPSG:4269", always_xy=True).transform(
        georef.transform[2], georef.transform[5]
    )
    with pytest.raises(AssertionError):
        assert_same_ground(np.array([as_us_feet]), np.array([[lon, lat]]), tolerance_m=1.0)


def test_state_plane_product_opens_with_crs_gsd_and_footprint(tmp_path):
    lon, lat = -121.5, 37.5
    east_m, north_m = Transformer.from_crs("EPSG:4269", "EPSG:26943", always_xy=True).transform(lon, lat)
    header = write_product(tmp_path, map_info("83", "0403", east_m / FOOT, north_m / FOOT, 5.0, "Feet"))
    with open_product(header, level="L2", when=datetime(2020, 1, 1, tzinfo=UTC)) as scene:
        meta = scene.meta
    assert CRS.from_user_input(meta.crs).equals(gdal(header)[0], ignore_axis_order=True)
    assert meta.gsd_m == pytest.approx(5.0 * FOOT, rel=1e-12)
    first = meta.footprint["coordinates"][0]
    wgs84 = Transformer.from_crs("EPSG:4269", "EPSG:4326", always_xy=True).transform(lon, lat)
    assert min(math.dist(p, wgs84) for p in first) < 1e-7  # the reference corner, within a centimetre


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("State Plane (NAD 83), 1, 1, 6000000.0, 2000000.0, 1, 1, 9999, units=Feet", "zone 9999 is not a State Plane zone"),
        ("State Plane (NAD 83), 1, 1, 6000000.0, 2000000.0, 1, 1, 3326, units=Feet", "not an obsolete ESRI zone number"),
        ("State Plane (NAD 27), 1, 1, 6000000.0, 2000000.0, 1, 1, 1600, units=Feet", "zone 1600 is not a State Plane zone of that datum"),
        ("State Plane (NAD 83), 1, 1, 6000000.0, 2000000.0, 1, 1, CA3, units=Feet", "zone 'CA3' is not a zone number"),
        ("State Plane (NAD 83), 1, 1, 6000000.0, 2000000.0, 1, 1, units=Feet", "lacks the zone"),
        ("State Plane (NAD 83), 1, 1, 6000000.0, 2000000.0, 1, 1, 403, North America 1927, units=Feet", "names datum 'North America 1927'"),
        ("State Plane (NAD 83), 1, 1, 6000000.0, 2000000.0, 1, 1, 403, units=Furlongs", "units 'Furlongs'"),
    ],
)  # fmt: skip
def test_bad_state_plane_map_info_is_refused_naming_the_header(tmp_path, fields, message):
    header = write_product(tmp_path, fields)
    with pytest.raises(HeaderError, match=message) as info:
        parse_map_info(EnviHeader.read(header))
    assert str(info.value).startswith(f"{header}: ") and "\n" not in str(info.value)


def test_datum_named_after_the_zone_is_accepted_when_it_matches(tmp_path):
    plain = ours(write_product(tmp_path, map_info("83", 403, 6000000.0, 2000000.0, 1.0, "Feet"), "plain"))
    named = write_product(
        tmp_path,
        "State Plane (NAD 83), 1, 1, 6000000.0, 2000000.0, 1, 1, 403, North America 1983, units=Feet",
    )
    assert ours(named) == plain


def test_inspect_refuses_an_unknown_zone_in_one_line(tmp_path):
    header = write_product(tmp_path, map_info("83", 9999, 6000000.0, 2000000.0, 1.0, "Feet"))
    process = run_cli(
        "pipelines.cli", "inspect", "--level", "L2", "--datetime", "2020-01-01T00:00:00", header
    )
    assert process.returncode == EXIT_INPUT, process.stderr
    assert "Traceback" not in process.stderr
    (line,) = error_lines(process)
    assert line.startswith(f"error: {header}: State Plane (NAD 83) zone 9999 is not a State Plane zone")
