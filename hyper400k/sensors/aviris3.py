"""AVIRIS-3: JPL's third-generation imaging spectrometer (2023-), 284 bands at ~7.4 nm, 390-2500 nm.

Names: portal products ``AV320231008t172522_005_L1B_RDN_3f4aef90_RDN_ORT`` (flight line
``AV320231008t172522``, segment ``005``) /
``…_L2A_OE_3f4aef90_RFL_ORT`` (ENVI, or ``.nc`` NetCDF with groups ``radiance`` / ``reflectance``),
and short forms ``AV320250308t200738_rdn`` with ``_loc`` / ``_obs`` companions. Headers may give
wavelengths in micrometres and leave FWHM to a ``wavelengths.txt`` side file.
"""

from __future__ import annotations

import re

from hyper400k.sensors.base import NamePattern, ProductName, SensorSpec, compact_datetime, level_from_kind


def _portal(match: re.Match[str]) -> ProductName:
    """Portal names; NetCDF ones carry no trailing ``_RDN``/``_RFL`` (the product group says what it is)."""
    scene = match.group("scene")
    suffix = (match.group("suffix") or "RDN").upper()
    return ProductName(
        sensor="aviris-3",
        level="L1" if match.group("product").upper() == "L1B_RDN" else "L2",
        flight_line="AV3" + match.group("stamp").lower(),
        datetime=compact_datetime(match.group("stamp")),
        version=match.group("hash"),
        role="data" if suffix in ("RDN", "RFL") else suffix.lower(),
        segment=scene,
    )


def _short(match: re.Match[str]) -> ProductName:
    kind = match.group("kind").lower()
    role = "data" if kind in ("rdn", "rfl") else kind
    return ProductName(
        sensor="aviris-3",
        level=level_from_kind(kind) if role == "data" else "L1",
        flight_line="AV3" + match.group("stamp").lower(),
        datetime=compact_datetime(match.group("stamp")),
        version=match.group("version"),
        role=role,
    )


SPEC = SensorSpec(
    name="aviris-3",
    instrument="aviris-3",
    platform="airborne",
    l1_ceiling=100.0,
    band_grid="aviris-3_bands.csv",
    patterns=(
        NamePattern(
            re.compile(
                r"^AV3(?P<stamp>\d{8}t\d{6})(?:_(?P<scene>\d{3}))?_(?P<product>L1B_RDN|L2A_OE)_"
                r"(?P<hash>[0-9A-Za-z]+)(?:_(?P<suffix>RDN|RFL|LOC|OBS|GLT)(?:_ORT)?)?",
                re.IGNORECASE,
            ),
            _portal,
        ),
        NamePattern(
            re.compile(
                r"^AV3(?P<stamp>\d{8}t\d{6})_(?P<kind>rdn|rfl|loc|obs|glt|igm)(?:_(?P<version>v[0-9a-z]+))?",
                re.IGNORECASE,
            ),
            _short,
        ),
    ),
)
