"""ENVI ``State Plane (NAD 83)`` / ``State Plane (NAD 27)`` map info -> a pyproj CRS.

ENVI writes ``{State Plane (NAD 83), ref x, ref y, easting, northing, size x, size y, zone[, datum],
units=...}`` with no ``coordinate system string`` (ENVI before 5.0; ENVI 5 adds the ESRI WKT, which
:mod:`hyper400k.geo` reads first). The reading follows GDAL's ENVI driver (``frmts/raw/envidataset.cpp``,
``ENVIDataset::ProcessMapinfo``, GDAL 3.x), which ``rasterio`` uses and the tests compare against:

- the zone is the USGS/NOS (FIPS-style) zone code, ``403`` or ``0403`` for California III, and names the
  zone's registered EPSG CRS for that datum (GDAL: ``SetStatePlane(zone, bNAD83)`` via its
  ``stateplane.csv``). The codes are looked up in PROJ's database through the ESRI names it records,
  which carry the FIPS code (``NAD_1983_StatePlane_California_III_FIPS_0403`` = EPSG:26943), so the
  table is PROJ's, not a copy here. Where EPSG deprecated a zone's CRS for wrong parameters the current
  one is used, as GDAL substitutes it too; GDAL still reads two zones differently, through a
  replacement EPSG since deprecated in turn: NAD 27 Michigan North (2111; EPSG:6966 here, GDAL 6200)
  and American Samoa (5300; EPSG:3102 here, GDAL 2155, with the central meridian at 170 E for 170 W).
- ``units=Feet`` is the **international** foot (0.3048 m), which the projection's parameters are kept
  in metres for (GDAL: ``SetLinearUnitsAndUpdateParameters(SRS_UL_FOOT, 0.3048)``). ENVI before 4.8
  used the international foot for "Feet" (NV5 support note "U.S. Survey Feet vs. International Feet in
  ENVI"); ENVI 5 writes US survey feet through a coordinate system string instead. ``units=Meters``
  (and ENVI's other linear units) likewise; with no ``units`` the zone keeps its legal unit, the metre
  for NAD 83 and the US survey foot for NAD 27, as in GDAL.
- GDAL also takes the obsolete ITTVIS/ESRI zone numbers (3101-6426); they collide with valid NOS codes
  (3101 is New York East as a NOS code, Alabama East as an old one), so they are refused here rather
  than read as a different zone.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyproj
from pyproj import CRS

from hyper400k.envi_header import EnviHeader
from hyper400k.errors import HeaderError

_PROJECTION = re.compile(r"state\s*plane\s*\(\s*nad\s*-?\s*(27|83)\s*\)")

# ENVI's map units (the names GDAL's ENVI driver accepts) -> (PROJJSON unit, EPSG suffix for the name).
_UNITS: dict[str, tuple[dict[str, Any], str]] = {
    "meters": ({"type": "LinearUnit", "name": "metre", "conversion_factor": 1.0}, "m"),
    "feet": ({"type": "LinearUnit", "name": "foot", "conversion_factor": 0.3048}, "ft"),
    "km": ({"type": "LinearUnit", "name": "kilometre", "conversion_factor": 1000.0}, "km"),
    "yards": ({"type": "LinearUnit", "name": "yard", "conversion_factor": 0.9144}, "yd"),
    "miles": ({"type": "LinearUnit", "name": "Statute mile", "conversion_factor": 1609.344}, "mi"),
    "nautical miles": ({"type": "LinearUnit", "name": "nautical mile", "conversion_factor": 1852.0}, "nmi"),
}

# The datum names ENVI may write after the zone, for the datum each projection name implies.
_DATUM_NAMES = {
    "83": {"north america 1983", "nad83", "nad 83"},
    "27": {"north america 1927", "nad27", "nad 27"},
}

# Zones of the 1927 plane coordinate systems that were not on NAD 27 (Old Hawaiian, Puerto Rico 1927,
# American Samoa 1962) or that EPSG records under NAD 27 without an ESRI name carrying the FIPS code
# (Michigan's 1964 conic zones). GDAL's table gives the deprecated EPSG:2155 for American Samoa, whose
# central meridian EPSG corrected (170 E -> 170 W) in EPSG:3102.
_NAD27_OTHER = {
    2111: 6966,  # NAD27 / Michigan North
    2112: 6201,  # NAD27 / Michigan Central
    2113: 6202,  # NAD27 / Michigan South
    5101: 3561,  # Old Hawaiian / Hawaii zone 1
    5102: 3562,
    5103: 3563,
    5104: 3564,
    5105: 3565,  # Old Hawaiian / Hawaii zone 5
    5201: 3991,  # Puerto Rico State Plane CS of 1927
    5202: 3992,  # Puerto Rico / St. Croix
    5300: 3102,  # American Samoa 1962 / American Samoa Lambert
}

_ESRI_NAME = re.compile(r"NAD_(1983|1927)_StatePlane_.+_FIPS_(\d{4})")


def state_plane_datum(projection: str) -> str | None:
    """``"83"`` or ``"27"`` for ENVI's State Plane projection names (lower case), else None."""
    match = _PROJECTION.fullmatch(projection)
    return match.group(1) if match else None


def state_plane_crs(header: EnviHeader, nad: str, values: list[str], options: dict[str, str]) -> CRS:
    """The CRS a State Plane ``map info`` on NAD ``nad`` names: its zone's EPSG CRS, in its ``units``.

    ``values`` are the map info fields without ``key=value`` options (zone at index 7, an optional
    datum name after it); ``options`` the ``key=value`` ones, lower-case keys.
    """
    name = values[0].strip()
    if len(values) < 8:
        raise HeaderError(
            header.path, f"{name} 'map info' lacks the zone (e.g. 403 or 0403 for California III)"
        )
    zone_text = values[7].strip()
    try:
        zone = int(zone_text)
    except ValueError as exc:
        raise HeaderError(header.path, f"{name} zone {zone_text!r} is not a zone number") from exc
    if len(values) > 8 and values[8].strip().lower() not in _DATUM_NAMES[nad]:
        raise HeaderError(
            header.path,
            f"{name} 'map info' names datum {values[8].strip()!r}; expected North America 19{nad}",
        )
    code = _zone_epsg(nad == "83").get(zone)
    if code is None:
        raise HeaderError(
            header.path,
            f"{name} zone {zone_text} is not a State Plane zone of that datum; expected its USGS/FIPS zone "
            "code (e.g. 403 or 0403 for California III), not an obsolete ESRI zone number",
        )
    crs = CRS.from_epsg(code)
    units = options.get("units")
    if units is None:
        return crs
    unit = _UNITS.get(units.strip().lower())
    if unit is None:
        raise HeaderError(
            header.path,
            f"{name} 'map info' units {units!r} are not a length unit ENVI writes (Meters, Feet, ...)",
        )
    return _in_unit(crs, *unit)


def _in_unit(crs: CRS, unit: dict[str, Any], suffix: str) -> CRS:
    """``crs`` with its axes in ``unit``; its conversion keeps its parameters (false origin) as they are."""
    axes = crs.axis_info
    if all(a.unit_conversion_factor == unit["conversion_factor"] for a in axes):
        return crs
    doc = crs.to_json_dict()
    for axis in doc["coordinate_system"]["axis"]:
        axis["unit"] = unit
    doc.pop("id", None)  # no longer the registered CRS
    doc["name"] = re.sub(r"\s*\((ft|ftUS|m)\)$", "", doc["name"]) + f" ({suffix})"
    return CRS.from_json_dict(doc)


@lru_cache(maxsize=2)
def _zone_epsg(nad83: bool) -> dict[int, int]:
    """USGS/FIPS State Plane zone code -> EPSG code of the zone's CRS on NAD 83 or on NAD 27.

    Read from PROJ's database (``proj.db``, shipped with pyproj): its ESRI aliases name each zone's
    EPSG CRS with the FIPS code. A current (non-deprecated) CRS wins over a superseded one.
    """
    database = Path(pyproj.datadir.get_data_dir()) / "proj.db"
    with closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as con:
        rows = con.execute(
            "SELECT a.alt_name, a.code FROM alias_name a JOIN projected_crs c "
            "ON c.auth_name = a.auth_name AND c.code = a.code WHERE a.table_name = 'projected_crs' "
            "AND a.auth_name = 'EPSG' AND a.source = 'ESRI' AND a.alt_name GLOB ? "
            "ORDER BY c.deprecated DESC",
            (f"NAD_{1983 if nad83 else 1927}_StatePlane_*_FIPS_[0-9][0-9][0-9][0-9]",),
        ).fetchall()
    codes = {}
    for alt_name, code in rows:  # deprecated first, so a current CRS of the same zone overwrites it
        match = _ESRI_NAME.fullmatch(alt_name)
        if match is not None:
            codes[int(match.group(2))] = int(code)
    return codes if nad83 else codes | _NAD27_OTHER
