"""Georeferencing: ENVI ``map info`` -> CRS + full rotated affine, GSD and WGS-84 footprints.

Parsed by hand to keep the header's full precision and the rotation term; the convention matches
GDAL's ENVI driver (checked against rasterio in the tests): for ``rotation=θ`` degrees,
``a = cosθ·xs, b = sinθ·xs, d = sinθ·ys, e = -cosθ·ys``, origin shifted from the 1-based
reference pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from hyper400k.envi_header import EnviHeader, split_list
from hyper400k.errors import HeaderError
from hyper400k.state_plane import state_plane_crs, state_plane_datum

Affine6 = tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class GeoRef:
    """A product's CRS (as ``EPSG:n`` or WKT), its 6-term affine in rasterio order, and its GSD in metres."""

    crs: str
    transform: Affine6
    gsd_m: float


# ENVI's names for the datums of UTM ``map info`` (after the zone and hemisphere) -> PROJ datum names.
_UTM_DATUMS = {
    "wgs-84": "WGS84",
    "wgs84": "WGS84",
    "north america 1983": "NAD83",
    "north america 1927": "NAD27",
}


def parse_map_info(header: EnviHeader) -> GeoRef | None:
    """The georeference in ``map info`` (and ``coordinate system string``), or None when there is none.

    ``map info`` forms: UTM (zone, hemisphere, datum), Geographic Lat/Lon, State Plane (NAD 27 or
    NAD 83, by USGS/FIPS zone code; :mod:`hyper400k.state_plane`), and any other projection (Albers,
    Transverse Mercator, ...) whose ``coordinate system string`` holds its WKT (OGC or ESRI); an
    ``Arbitrary`` projection has pixel coordinates in no map, so the product counts as unprojected.
    """
    raw = header.get("map info")
    if raw is None:
        return None
    items = split_list(raw)
    if len(items) < 7:
        raise HeaderError(header.path, f"'map info' has {len(items)} fields, expected at least 7: {raw!r}")
    options = {k.strip().lower(): v.strip() for k, _, v in (i.partition("=") for i in items if "=" in i)}
    values = [i for i in items if "=" not in i]
    projection = values[0].strip().lower()
    if projection == "arbitrary":
        return None
    try:
        ref_x, ref_y, east, north, size_x, size_y = (float(v) for v in values[1:7])
        theta = math.radians(float(options.get("rotation", 0.0)))
    except ValueError as exc:
        raise HeaderError(
            header.path, f"'map info' has a non-numeric position, pixel size or rotation: {raw!r}"
        ) from exc
    if not (size_x > 0 and size_y > 0):
        raise HeaderError(header.path, f"'map info' pixel size must be positive: {size_x!r}, {size_y!r}")
    crs = _crs_from_map_info(header, projection, values, options)
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    a, b = cos_t * size_x, sin_t * size_x
    d, e = sin_t * size_y, -cos_t * size_y
    c = east - (ref_x - 1.0) * a - (ref_y - 1.0) * b
    f = north - (ref_x - 1.0) * d - (ref_y - 1.0) * e
    return GeoRef(crs=_crs_text(crs), transform=(a, b, c, d, e, f), gsd_m=_gsd_m(crs, size_x, north))


def _crs_from_map_info(
    header: EnviHeader, projection: str, values: list[str], options: dict[str, str]
) -> CRS:
    wkt = header.get("coordinate system string")
    if wkt:
        text = wkt.strip()
        if text.startswith("{") and text.endswith("}"):  # a braced value, not a list: WKT holds commas
            text = text[1:-1].strip()
        try:
            return CRS.from_wkt(text)
        except CRSError as exc:
            raise HeaderError(header.path, f"'coordinate system string' is not a WKT CRS: {exc}") from exc
    if projection == "utm":
        if len(values) < 9:
            raise HeaderError(header.path, "UTM 'map info' lacks zone and hemisphere")
        try:
            zone = int(values[7])
        except ValueError as exc:
            raise HeaderError(header.path, f"UTM zone {values[7]!r} is not an integer") from exc
        if not 1 <= zone <= 60:
            raise HeaderError(header.path, f"UTM zone {zone} is outside 1-60")
        south = _utm_south(header, values[8])
        datum_name = values[9].strip() if len(values) > 9 else "WGS-84"
        datum = _UTM_DATUMS.get(datum_name.lower())
        if datum is None:
            raise HeaderError(
                header.path, f"UTM datum {datum_name!r} needs a 'coordinate system string' (WKT) to be read"
            )
        return CRS.from_dict({"proj": "utm", "zone": zone, "south": south, "datum": datum})
    if projection in ("geographic lat/lon", "geographic"):
        return CRS.from_epsg(4326)
    if (nad := state_plane_datum(projection)) is not None:
        return state_plane_crs(header, nad, values, options)
    raise HeaderError(header.path, f"map projection {values[0]!r} needs a 'coordinate system string' (WKT)")


# MGRS latitude bands C-M lie south of the equator, P-X north; N and S are read as ENVI's North/South.
_SOUTH_BANDS, _NORTH_BANDS = set("cdefghjklm"), set("pqrtuvwx")


def _utm_south(header: EnviHeader, token: str) -> bool:
    """Whether a UTM ``map info`` hemisphere is south: ``North``/``South`` (ENVI), or a latitude band letter.

    Resonon's Spectronon writes the MGRS latitude band (``15, T``) where ENVI writes ``North``; reading
    every non-``S`` word as north would put a band-``H`` scene (Australia) 10,000 km off.
    """
    word = token.strip().lower()
    if word.startswith("north") or word == "n" or word in _NORTH_BANDS:
        return False
    if word.startswith("south") or word == "s" or word in _SOUTH_BANDS:
        return True
    raise HeaderError(
        header.path, f"UTM hemisphere {token.strip()!r} is neither North/South nor a latitude band letter"
    )


def _crs_text(crs: CRS) -> str:
    """``EPSG:n`` when the CRS is a registered one (ESRI WKT included), else its WKT."""
    code = crs.to_epsg(min_confidence=70)
    return f"EPSG:{code}" if code is not None else crs.to_wkt()


def _gsd_m(crs: CRS, size_x: float, y: float) -> float:
    """One pixel step in metres: map units converted (feet, degrees at the product's latitude)."""
    if crs.is_geographic:
        return float(size_x * math.pi / 180.0 * 6_371_008.8 * math.cos(math.radians(y)))
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return float(size_x * factor)


def corner_points(transform: Affine6, lines: int, samples: int) -> list[tuple[float, float]]:
    """The four outer corners of the pixel grid in map coordinates, clockwise from the origin."""
    a, b, c, d, e, f = transform
    corners = [(0, 0), (samples, 0), (samples, lines), (0, lines)]
    return [(a * col + b * row + c, d * col + e * row + f) for col, row in corners]


def footprint_from_transform(crs: str, transform: Affine6, lines: int, samples: int) -> dict[str, Any]:
    """GeoJSON Polygon (WGS-84 lon/lat) of the four transformed corners."""
    to_wgs84 = tile_footprint_transformer(crs)
    ring = [to_wgs84.transform(x, y) for x, y in corner_points(transform, lines, samples)]
    return polygon(ring)


def polygon(ring: list[tuple[float, float]]) -> dict[str, Any]:
    """A closed, counter-clockwise GeoJSON Polygon from corner (lon, lat) pairs."""
    pts = [(float(x), float(y)) for x, y in ring]
    signed_area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True))
    if signed_area < 0:
        pts.reverse()
    return {"type": "Polygon", "coordinates": [[list(p) for p in [*pts, pts[0]]]]}


def tile_footprint_transformer(crs: str | None) -> Transformer | None:
    """A reusable map-to-WGS-84 transformer for per-tile footprints (None for unprojected products)."""
    if crs is None:
        return None
    return Transformer.from_crs(CRS.from_user_input(crs), CRS.from_epsg(4326), always_xy=True)


def footprint_from_lonlat(lon: np.ndarray, lat: np.ndarray) -> dict[str, Any]:
    """Footprint of an unprojected product from its ``loc`` corner pixels (lon/lat arrays, lines×samples)."""
    corners = [(0, 0), (0, -1), (-1, -1), (-1, 0)]
    return polygon([(lon[r, c], lat[r, c]) for r, c in corners])


def gsd_from_lonlat(lon: np.ndarray, lat: np.ndarray) -> float | None:
    """Mean along-line pixel spacing in metres from per-pixel lon/lat (haversine at the scene centre)."""
    rows, cols = lon.shape
    if cols < 2:
        return None
    r, c = rows // 2, min(cols // 2, cols - 2)
    lat0, lat1 = np.radians(lat[r, c]), np.radians(lat[r, c + 1])
    dlat, dlon = lat1 - lat0, np.radians(lon[r, c + 1] - lon[r, c])
    h = np.sin(dlat / 2) ** 2 + np.cos(lat0) * np.cos(lat1) * np.sin(dlon / 2) ** 2
    return float(2 * 6_371_008.8 * np.arcsin(np.sqrt(h)))


def format_map_info(crs_epsg: int, transform: Affine6, rotation_deg: float, size: float) -> str:
    """ENVI ``map info`` for a UTM/WGS-84 grid (used by the product generator)."""
    zone = crs_epsg % 100
    hemisphere = "North" if crs_epsg < 32700 else "South"
    _, _, c, _, _, f = transform
    return (
        f"{{UTM, 1.000, 1.000, {c:.3f}, {f:.3f}, {size!r}, {size!r}, {zone}, {hemisphere}, WGS-84, "
        f"units=Meters, rotation={rotation_deg!r}}}"
    )


def rotated_transform(origin_x: float, origin_y: float, size: float, rotation_deg: float) -> Affine6:
    """The affine an ENVI ``map info`` with this origin, pixel size and rotation describes."""
    theta = math.radians(rotation_deg)
    a, b = math.cos(theta) * size, math.sin(theta) * size
    d, e = math.sin(theta) * size, -math.cos(theta) * size
    return (a, b, origin_x, d, e, origin_y)
