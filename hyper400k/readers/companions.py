"""Companion files of a flight line: ``loc`` (lon, lat, elevation) and ``obs`` (sun/view geometry).

Only scene-level summaries are taken here (mean angles, time of day, corner coordinates); they are read
from a bounded sample of lines so a multi-gigabyte companion never enters memory whole.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from hyper400k.envi_header import EnviHeader, find_data_file
from hyper400k.errors import HeaderError
from hyper400k.scene import Geometry
from hyper400k.sensors import identify

# Band order of the JPL obs files (AVIRIS-NG, AVIRIS-Classic, AVIRIS-3).
OBS_BANDS = {
    "view_azimuth": 1,
    "view_zenith": 2,
    "solar_azimuth": 3,
    "solar_zenith": 4,
    "utc_hours": 9,
    "earth_sun_distance_au": 10,
}
_SAMPLE_LINES = 64
_FILL = -9999.0


@dataclass(frozen=True)
class Companions:
    loc: Path | None
    obs: Path | None


def find_companions(data_path: Path, lines: int, samples: int) -> Companions:
    """Sibling ``loc``/``obs`` headers of the same flight line and segment, preferring the same grid and the closest name."""
    me = identify(data_path)
    if me is None:
        return Companions(None, None)
    found: dict[str, list[tuple[bool, float, Path]]] = {"loc": [], "obs": []}
    for header_path in data_path.parent.glob("*.hdr"):
        other = identify(header_path.with_suffix(""))
        if other is None or not other.same_piece(me) or other.role not in found:
            continue
        try:
            h = EnviHeader.read(header_path)
            same_grid = h.shape[:2] == (lines, samples)
        except HeaderError:
            continue
        similarity = difflib.SequenceMatcher(None, header_path.stem, data_path.stem).ratio()
        found[other.role].append((same_grid, similarity, header_path))
    best = {role: max(c)[2] if c else None for role, c in found.items()}
    return Companions(loc=best["loc"], obs=best["obs"])


def _sampled_bands(header_path: Path, band_indices: list[int]) -> np.ndarray:
    """Selected bands on an evenly spaced sample of lines: array (len(band_indices), n_lines, samples)."""
    header = EnviHeader.read(header_path)
    data_path = find_data_file(header_path)
    lines, samples, bands = header.shape
    if max(band_indices) >= bands:
        raise HeaderError(header_path, f"companion has {bands} bands, needs band {max(band_indices) + 1}")
    expected = header.header_offset + lines * samples * bands * header.dtype.itemsize
    if data_path.stat().st_size != expected:
        raise HeaderError(
            data_path, f"companion holds {data_path.stat().st_size} bytes, header implies {expected}"
        )
    mm = np.memmap(
        data_path, dtype=header.dtype, mode="r", offset=header.header_offset, shape=_layout(header)
    )
    rows = np.unique(np.linspace(0, lines - 1, min(lines, _SAMPLE_LINES)).astype(int))
    interleave = header.interleave
    if interleave == "bil":
        out = mm[rows][:, band_indices, :].transpose(1, 0, 2)
    elif interleave == "bip":
        out = mm[rows][:, :, band_indices].transpose(2, 0, 1)
    else:
        out = mm[band_indices][:, rows, :]
    return np.asarray(out, dtype=np.float64)


def _layout(header: EnviHeader) -> tuple[int, int, int]:
    lines, samples, bands = header.shape
    return {"bil": (lines, bands, samples), "bip": (lines, samples, bands), "bsq": (bands, lines, samples)}[
        header.interleave
    ]


def _valid_mean(values: np.ndarray, circular: bool = False) -> float | None:
    """Mean of the non-fill values; azimuths (degrees) averaged on the circle, so 359° and 1° give 0°."""
    good = values[np.isfinite(values) & (values != _FILL)]
    if not good.size:
        return None
    if not circular:
        return float(good.mean())
    angle = np.radians(good)
    return float(np.degrees(np.arctan2(np.sin(angle).mean(), np.cos(angle).mean())) % 360.0)


def read_geometry(obs_header: Path) -> tuple[Geometry, float | None]:
    """Scene-mean sun/view angles and the median UTC time of day (hours) from an ``obs`` companion."""
    names = list(OBS_BANDS)
    header = EnviHeader.read(obs_header)
    available = [n for n in names if OBS_BANDS[n] < header.required_int("bands")]
    sample = _sampled_bands(obs_header, [OBS_BANDS[n] for n in available])
    means = {
        name: _valid_mean(sample[i], circular=name.endswith("azimuth")) for i, name in enumerate(available)
    }
    utc = means.pop("utc_hours", None)
    return Geometry(**means), utc


def read_corners(loc_header: Path) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude on the sampled lines (enough for the footprint corners and GSD)."""
    sample = _sampled_bands(loc_header, [0, 1])
    return sample[0], sample[1]


def with_time_of_day(day: datetime, utc_hours: float | None) -> datetime:
    """Add the obs file's UTC time to a date-only acquisition time (AVIRIS-Classic names carry no time)."""
    if utc_hours is None or day.hour or day.minute or day.second:
        return day
    return day + timedelta(hours=utc_hours % 24.0)
