"""Open an ENVI product and assemble its :class:`SceneMeta` with the sensor's rules applied.

Sensor rules used here, all from the sensor definition or the header: AVIRIS-Classic L1 DN are divided
by per-channel gains (the ``.gain`` companion, else the documented defaults, with a warning); L2 stored
as integers are divided by the header's ``reflectance scale factor`` (default 10000 for integer data,
1 for float data); fill is the header's ``data ignore value``, else -9999 for JPL products.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path

import numpy as np

from hyper400k.bands import band_info_from_header, check_band_centres
from hyper400k.envi_header import EnviHeader, find_data_file, find_header
from hyper400k.errors import HeaderError, UnsupportedProductError
from hyper400k.geo import footprint_from_lonlat, footprint_from_transform, gsd_from_lonlat, parse_map_info
from hyper400k.readers.companions import (
    Companions,
    find_companions,
    read_corners,
    read_geometry,
    with_time_of_day,
)
from hyper400k.readers.envi import EnviScene
from hyper400k.readers.metadata import (
    acquisition_time,
    product_id_of,
    refuse_companion,
    resolve_identity,
    sensor_of,
    units_for,
)
from hyper400k.scene import Geometry, SceneMeta
from hyper400k.sensors import aviris_classic, good_band_mask, identify, sensor

log = logging.getLogger(__name__)
JPL_FILL = -9999.0
DEFAULT_REFLECTANCE_SCALE = 10000.0


def resolve_paths(path: Path) -> tuple[Path, Path]:
    """(header, data) for a path given as either the header or the data file."""
    if path.suffix.lower() == ".hdr":
        return path, find_data_file(path)
    return find_header(path), path


def open_envi(
    path: Path,
    *,
    sensor_name: str | None = None,
    level: str | None = None,
    scale: float | None = None,
    when: datetime | None = None,
    companions: dict[str, Path] | None = None,
) -> EnviScene:
    """``companions`` (role -> data file or header) replace the ones found by name, for foreign products."""
    header_path, data_path = resolve_paths(path)
    header = EnviHeader.read(header_path)
    if (header.get("file type") or "").lower().startswith("envi spectral library"):
        raise UnsupportedProductError(header_path, "is an ENVI spectral library, not an image cube")
    file_type = (header.get("file type") or "ENVI Standard").strip()
    if file_type.lower().startswith("envi classification"):
        raise UnsupportedProductError(
            header_path, "is an ENVI classification image (class codes), not spectra"
        )
    if not file_type.lower().startswith("envi"):
        raise UnsupportedProductError(
            header_path, f"describes a '{file_type}' file, not raw ENVI data; open {data_path.name} itself"
        )
    if (header.get("file compression") or "0").strip() not in ("", "0"):
        raise UnsupportedProductError(
            header_path, "compressed ENVI data ('file compression') cannot be memory-mapped"
        )
    refuse_companion(data_path)
    _refuse_wavenumber_axis(header)
    lines, samples, bands = header.shape
    info = band_info_from_header(header, data_path)
    spec = sensor(sensor_name or sensor_of(data_path))
    check_band_centres(info.wavelength_nm, info.fwhm_nm, spec.spectrometer_joins_nm, header_path)
    identity = resolve_identity(data_path, spec.name, level, hint=_level_hint(header))
    band_scale, band_offset, notes = _band_scale(header, data_path, identity.sensor, identity.level, scale)
    notes += _subset_notes(header)
    nodata = header.float_or_none("data ignore value")
    if nodata is None and identity.sensor != "other":
        nodata = JPL_FILL
    if header.has("correction factors"):
        notes.append(
            "header 'correction factors' were applied by the JPL processor; recorded, not re-applied"
        )

    companions = (
        Companions(**{role: _companion_header(companions.get(role)) for role in ("loc", "obs")})
        if companions
        else find_companions(data_path, lines, samples)
    )
    georef = parse_map_info(header)
    crs, transform, footprint, gsd = None, None, None, None
    if georef is not None:
        crs, transform, gsd = georef.crs, georef.transform, georef.gsd_m
        footprint = footprint_from_transform(georef.crs, georef.transform, lines, samples)
    elif companions.loc is not None:
        lon, lat = read_corners(companions.loc)
        footprint, gsd = footprint_from_lonlat(lon, lat), gsd_from_lonlat(lon, lat)
        notes.append(f"unprojected: footprint and GSD from {companions.loc.name}")
    elif (pixel := _pixel_size_m(header)) is not None:
        gsd = pixel
        notes.append("no map projection: GSD from 'pixel size'; CRS and footprint unknown")
    else:
        notes.append(
            "no map projection (no or Arbitrary 'map info') and no loc companion: CRS, footprint and GSD unknown"
        )
    geometry, utc_hours = Geometry(), None
    if companions.obs is not None:
        geometry, utc_hours = read_geometry(companions.obs)
    acquired = acquisition_time(identity.datetime, when, _header_time(header), header_path)
    files = {"data": str(data_path), "header": str(header_path)}
    files |= {role: str(p) for role, p in (("loc", companions.loc), ("obs", companions.obs)) if p is not None}
    meta = SceneMeta(
        sensor=identity.sensor,
        level=identity.level,
        product_id=product_id_of(data_path),
        processing_version=identity.version,
        datetime=with_time_of_day(acquired, utc_hours),
        lines=lines,
        samples=samples,
        bands=bands,
        wavelength_nm=info.wavelength_nm,
        fwhm_nm=info.fwhm_nm,
        good_bands=good_band_mask(info.wavelength_nm, spec.bad_windows_nm, info.bbl),
        units=units_for(identity.level),
        nodata=nodata,
        gsd_m=gsd,
        crs=crs,
        transform=transform,
        footprint=footprint,
        geometry=geometry,
        files=files,
        fwhm_source=info.fwhm_source,
        notes=notes,
    )
    return EnviScene(meta, header, data_path, band_scale, band_offset)


def _refuse_wavenumber_axis(header: EnviHeader) -> None:
    """Refuse a spectral axis in wavenumbers (a Raman or FTIR map), which would otherwise pass for nm.

    ENVI says so in ``wavelength units = Wavenumber`` or, with no units, in the first ``z plot titles``
    entry (the spectral axis of a Z profile, e.g. ``Wavenumbers (cm-1)``); 650-4000 cm-1 read as nm
    would look like a plausible VNIR-SWIR band set.
    """
    units = (header.get("wavelength units") or "").lower()
    titles = header.strings("z plot titles") or [""]
    axis = titles[0].lower().replace(" ", "")
    if "wavenumber" in units or "wavenumber" in axis or "cm-1" in axis or "cm^-1" in axis:
        raise UnsupportedProductError(
            header.path,
            "its spectral axis is in wavenumbers (cm-1), not wavelengths: not an imaging spectrometer cube",
        )


def _companion_header(path: Path | None) -> Path | None:
    """The header of a companion named by its data file or its header."""
    if path is None:
        return None
    return path if path.suffix.lower() == ".hdr" else find_header(path)


def _level_hint(header: EnviHeader) -> str:
    """Header text that may say radiance or reflectance: description, plot titles, a reflectance scale factor."""
    texts = [header.get("description") or "", header.get("z plot titles") or ""]
    if header.has("reflectance scale factor"):
        texts.append("reflectance")
    return " ".join(texts)


# Specim's Lumo recorder labels its values: ``acquisition date = DATE(yyyy-mm-dd): 2019-01-29``,
# ``Start Time = UTC TIME: 14:46:16``; the label is dropped, the value kept.
_VALUE_LABEL = re.compile(r"^\s*(?:date\s*\([^)]*\)|utc\s+time)\s*:\s*", re.IGNORECASE)


def _header_time(header: EnviHeader) -> str | None:
    """``acquisition time``, or a separate ``acquisition date`` + start time (UTC).

    HySpex writes the start as ``acquisition start time``, Specim's Lumo recorder as ``Start Time``.
    """
    if header.has("acquisition time"):
        return header.get("acquisition time")
    date = header.get("acquisition date")
    start = header.get("acquisition start time") or header.get("start time")
    date, start = (_VALUE_LABEL.sub("", v).strip() if v else None for v in (date, start))
    if date and start:
        return f"{date}T{start}"
    return date


_LENGTH_UNITS_M = {"meters": 1.0, "meter": 1.0, "m": 1.0, "km": 1000.0, "kilometers": 1000.0, "feet": 0.3048,
                   "us feet": 1200 / 3937}  # fmt: skip


def _pixel_size_m(header: EnviHeader) -> float | None:
    """The along-line pixel size of ``pixel size = {x, y, units=...}`` in metres, for products without map info."""
    raw = header.strings("pixel size")
    if not raw:
        return None
    options = {
        k.strip().lower(): v.strip().lower() for k, _, v in (i.partition("=") for i in raw if "=" in i)
    }
    factor = _LENGTH_UNITS_M.get(options.get("units", "meters"))
    try:
        size = float(raw[0])
    except ValueError as exc:
        raise HeaderError(header.path, f"'pixel size' is not numeric: {raw[0]!r}") from exc
    return None if factor is None or not size > 0 else size * factor


def _subset_notes(header: EnviHeader) -> list[str]:
    """What ``x start``/``y start`` and ``sensor type`` say, kept in the notes (they change no pixel)."""
    notes = []
    if header.has("x start") or header.has("y start"):
        notes.append(
            f"a subset starting at sample {header.int_or('x start', 1)}, line {header.int_or('y start', 1)} "
            "of its original (x start / y start, 1-based)"
        )
    kind = (header.get("sensor type") or "").strip()
    if kind and kind.lower() != "unknown":
        notes.append(f"header 'sensor type' = {kind}")
    return notes


def _stated_gains(header: EnviHeader, bands: int) -> tuple[np.ndarray, np.ndarray] | None:
    """ENVI's ``data gain values`` / ``data offset values`` (physical = stored x gain + offset), when stated."""
    gains, offsets = header.floats("data gain values"), header.floats("data offset values")
    if gains is None and offsets is None:
        return None
    gains = np.ones(bands) if gains is None else gains
    offsets = np.zeros(bands) if offsets is None else offsets
    for key, values in (("data gain values", gains), ("data offset values", offsets)):
        if len(values) != bands:
            raise HeaderError(header.path, f"'{key}' lists {len(values)} values for {bands} bands")
        if not np.isfinite(values).all():
            raise HeaderError(header.path, f"'{key}' holds a non-finite value")
    if (gains == 0).any():
        raise HeaderError(header.path, "'data gain values' holds a zero gain")
    return gains, offsets


def _band_scale(
    header: EnviHeader, data_path: Path, sensor_name: str, level: str, scale: float | None
) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
    """Per-band multiplier and offset from stored values to physical units, and notes on where they came from.

    An explicit scale wins; then the header's ``data gain values``/``data offset values``; then the sensor's
    rules (AVIRIS-Classic gains, reflectance scale factors).
    """
    bands = header.required_int("bands")
    if scale is not None:
        return np.full(bands, scale), None, [f"values multiplied by {scale} as requested"]
    stated = _stated_gains(header, bands)
    if stated is not None:
        gains, offsets = stated
        return (
            gains,
            (offsets if offsets.any() else None),
            ["values x 'data gain values' + 'data offset values'"],
        )
    multiplier, notes = _sensor_scale(header, data_path, sensor_name, level)
    return multiplier, None, notes


def _sensor_scale(
    header: EnviHeader, data_path: Path, sensor_name: str, level: str
) -> tuple[np.ndarray | None, list[str]]:
    """The sensor's rule for stored values: AVIRIS-Classic DN / gain, reflectance / scale factor, or as stored."""
    bands = header.required_int("bands")
    if sensor_name == "aviris-classic" and level == "L1":
        gain_file = find_gain_file(data_path)
        if gain_file is not None:
            return 1.0 / read_gain_file(gain_file, bands), [
                f"DN divided by per-channel gains from {gain_file.name}"
            ]
        log.warning("%s: no .gain file beside the product; using default gains 300/600/1200", data_path)
        return 1.0 / aviris_classic.default_gains(bands), [
            "DN divided by default gains 300/600/1200 (no .gain file)"
        ]
    if level == "L2":
        factor = header.float_or_none("reflectance scale factor")
        if factor is None and header.dtype.kind in "iu" and sensor_name == "other":
            raise HeaderError(
                header.path,
                "integer reflectance and no 'reflectance scale factor': pass --scale (e.g. 0.0001 for x10000)",
            )
        if factor is None:  # JPL's integer reflectance is documented as x10000
            factor = DEFAULT_REFLECTANCE_SCALE if header.dtype.kind in "iu" else 1.0
        if factor <= 0:
            raise HeaderError(header.path, f"'reflectance scale factor' must be positive, not {factor}")
        if factor != 1.0:
            return np.full(bands, 1.0 / factor), [f"reflectance = stored value / {factor:g}"]
    elif header.dtype.kind in "iu":
        raise HeaderError(
            header.path,
            "integer values and nothing states their level or scale: pass --level L2 if they are reflectance "
            "(divided by the 'reflectance scale factor'), or --scale for radiance",
        )
    return None, []


def find_gain_file(data_path: Path) -> Path | None:
    """The AVIRIS-Classic ``.gain`` companion: a sibling ``*.gain`` of the same flight line (longest name wins)."""
    me = identify(data_path)
    candidates = [
        g
        for g in data_path.parent.glob("*.gain")
        if me is not None and (o := identify(g)) and o.same_piece(me)
    ]
    return max(candidates, key=lambda g: len(g.stem), default=None)


def read_gain_file(path: Path, bands: int) -> np.ndarray:
    """Per-channel gains: the first number on each row (rows may also carry the channel number)."""
    try:
        table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise HeaderError(path, f"gain file is not a numeric table: {exc}") from exc
    gains = table[:, 0]
    if gains.size != bands:
        raise HeaderError(path, f"gain file has {gains.size} rows for {bands} bands")
    if not np.all(np.isfinite(gains) & (gains > 0)):
        raise HeaderError(path, "gain file holds zero, negative or non-finite gains")
    return gains
