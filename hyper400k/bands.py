"""Per-band spectral metadata from headers: wavelength in nm at full precision, FWHM, good bands.

Handles the variants seen in real products: wavelengths in nm or µm (normalised to nm), wavelengths
only inside ``band names``, FWHM only in a ``wavelengths.txt`` side file (index, centre, FWHM), and
no FWHM at all (estimated from band spacing, flagged as such). Band order is always kept as stored:
AVIRIS-Classic is non-monotonic at its spectrometer joins and sorting would scramble the cube.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hyper400k.envi_header import EnviHeader
from hyper400k.errors import HeaderError

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
_UNIT_FACTORS = {
    "nanometers": 1.0, "nanometer": 1.0, "nm": 1.0,
    "micrometers": 1e3, "micrometer": 1e3, "microns": 1e3, "micron": 1e3, "um": 1e3, "µm": 1e3,
    "millimeters": 1e6, "mm": 1e6,
}  # fmt: skip


@dataclass(frozen=True)
class BandInfo:
    """Resolved spectral metadata; ``fwhm_source`` says where FWHM came from."""

    wavelength_nm: np.ndarray
    fwhm_nm: np.ndarray
    bbl: np.ndarray | None
    fwhm_source: str


def unit_factor(units: str | None, values: np.ndarray, source: str | Path) -> float:
    """Multiplier to nm. Without units, values below 100 are taken as µm (no sensor has bands < 100 nm)."""
    if units:
        key = units.strip().lower()
        if key in _UNIT_FACTORS:
            return _UNIT_FACTORS[key]
        if key not in ("unknown", "index"):
            raise HeaderError(source, f"unsupported wavelength units {units!r}")
    return 1e3 if float(np.nanmax(values)) < 100.0 else 1.0


def wavelengths_from_band_names(names: list[str]) -> tuple[np.ndarray, str | None] | None:
    """Band centres embedded in band names, e.g. ``band 1 (418.24 Nanometers)`` or ``B012 0.4425um``.

    A name's last number is its wavelength only when a unit names it or it has decimals: ``Band 12`` or
    ``TM Band 1`` are band numbers, and reading them as wavelengths would invent a spectrum.
    """
    values, unit = [], None
    for name in names:
        numbers = _NUMBER.findall(name)
        lowered = name.lower()
        named_unit = next(
            (c for c in ("nanometers", "micrometers", "microns", "nm", "um", "µm") if c in lowered), None
        )
        if not numbers or (named_unit is None and "." not in numbers[-1]):
            return None
        values.append(float(numbers[-1]))
        unit = named_unit or unit
    return np.array(values, dtype=np.float64), unit


def read_side_file(path: Path, bands: int) -> tuple[np.ndarray, np.ndarray]:
    """``wavelengths.txt``: rows of ``index centre fwhm`` (µm or nm); returns (centre, fwhm) in nm."""
    try:
        table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise HeaderError(path, f"wavelength side file is not a numeric table: {exc}") from exc
    if table.shape[1] < 3:
        raise HeaderError(
            path, f"wavelength side file needs 3 columns (index, centre, FWHM), has {table.shape[1]}"
        )
    if table.shape[0] != bands:
        raise HeaderError(path, f"wavelength side file has {table.shape[0]} rows for {bands} bands")
    factor = 1e3 if float(table[:, 1].max()) < 100.0 else 1.0
    return table[:, 1] * factor, table[:, 2] * factor


def find_side_file(data_path: Path) -> Path | None:
    """``<stem>_wavelengths.txt`` or ``wavelengths.txt`` beside the product."""
    for candidate in (
        data_path.with_name(data_path.stem + "_wavelengths.txt"),
        data_path.with_name("wavelengths.txt"),
    ):
        if candidate.is_file():
            return candidate
    return None


def estimate_fwhm(wavelength_nm: np.ndarray) -> np.ndarray:
    """FWHM ≈ local band spacing (Nyquist-sampled spectrometers), used only when nothing better exists."""
    spacing = np.abs(np.gradient(wavelength_nm)) if len(wavelength_nm) > 1 else np.array([10.0])
    return spacing.astype(np.float64)


# An instrument of unknown layout may step back in wavelength only where one spectrometer hands over to the
# next; a run this short between two step-backs is a scrambled list, not a spectrometer.
MIN_SPECTROMETER_BANDS = 8


def check_band_centres(
    wavelength_nm: np.ndarray,
    fwhm_nm: np.ndarray,
    joins_nm: tuple[tuple[float, float], ...] | None,
    source: str | Path,
) -> None:
    """Refuse band metadata no instrument can have, naming the first offending band (1-based).

    Wavelengths must be finite and positive and rise within each spectrometer; FWHM finite and positive.
    A step back is a spectrometer join when both centres lie in one of the sensor's ``joins_nm`` windows
    (``()``: one spectrometer, no step back allowed). For an instrument of unknown layout (``None``), a step
    back is a join when at least :data:`MIN_SPECTROMETER_BANDS` rising bands lie on each side of it.
    """
    for name, values in (("wavelength", wavelength_nm), ("fwhm", fwhm_nm)):
        bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
        if bad.size:
            i = int(bad[0])
            raise HeaderError(source, f"band {i + 1} has an impossible {name} of {float(values[i]):g} nm")
    steps = np.diff(wavelength_nm)
    repeats = np.flatnonzero(steps == 0)
    if repeats.size:
        i = int(repeats[0]) + 1
        raise HeaderError(
            source, f"band {i + 1} repeats the wavelength of band {i} ({wavelength_nm[i]:g} nm)"
        )
    backs = np.flatnonzero(steps < 0)
    edges = [0, *(int(b) + 1 for b in backs), len(wavelength_nm)]
    for k, back in enumerate(backs):
        before, after = float(wavelength_nm[back]), float(wavelength_nm[back + 1])
        if joins_nm is None:
            is_join = min(edges[k + 1] - edges[k], edges[k + 2] - edges[k + 1]) >= MIN_SPECTROMETER_BANDS
        else:
            is_join = any(low <= after < before <= high for low, high in joins_nm)
        if not is_join:
            raise HeaderError(
                source,
                f"wavelengths decrease within one spectrometer: band {back + 2} is {after:g} nm "
                f"after {before:g} nm",
            )


def band_info_from_header(header: EnviHeader, data_path: Path) -> BandInfo:
    """Resolve wavelengths, FWHM and ``bbl`` for an ENVI product, in that order of preference."""
    bands = header.required_int("bands")
    units = header.get("wavelength units")
    wavelength = header.floats("wavelength")
    if wavelength is None:
        names = header.strings("band names")
        parsed = wavelengths_from_band_names(names) if names else None
        if parsed is None:
            raise HeaderError(
                header.path, "no wavelengths: neither 'wavelength' nor numeric 'band names' in the header"
            )
        wavelength, units = parsed[0], units or parsed[1]
    if len(wavelength) != bands:
        raise HeaderError(header.path, f"'wavelength' lists {len(wavelength)} values for {bands} bands")
    factor = unit_factor(units, wavelength, header.path)
    wavelength_nm = wavelength * factor
    fwhm, source = header.floats("fwhm"), "header"
    side = find_side_file(data_path)
    if fwhm is not None:
        fwhm_nm = fwhm * factor
        if len(fwhm_nm) != bands:
            raise HeaderError(header.path, f"'fwhm' lists {len(fwhm_nm)} values for {bands} bands")
    elif side is not None:
        side_centres, fwhm_nm = read_side_file(side, bands)
        if np.max(np.abs(side_centres - wavelength_nm)) > 0.5 * float(np.median(fwhm_nm)):
            raise HeaderError(
                side, f"side-file band centres disagree with {header.path.name} by more than half a FWHM"
            )
        source = f"side file {side.name}"
    else:
        fwhm_nm, source = estimate_fwhm(wavelength_nm), "estimated from band spacing"
    bbl = header.floats("bbl")
    if bbl is not None and len(bbl) != bands:
        raise HeaderError(header.path, f"'bbl' lists {len(bbl)} values for {bands} bands")
    return BandInfo(wavelength_nm, fwhm_nm, bbl, source)
