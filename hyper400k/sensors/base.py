"""What a sensor definition is: naming rules, value ceilings, band grid and bad-band windows.

All sensor-specific knowledge lives in one :class:`SensorSpec` per sensor, so adding a sensor is adding
one module under ``hyper400k/sensors/`` and registering it, without editing readers, tiling or STAC.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources

import numpy as np

# Deep water-vapour absorption (no usable surface signal) and the noisy detector ends, in nm.
# Good bands are decided by wavelength, never by band index, so the same windows apply to every grid.
WATER_VAPOUR_WINDOWS_NM: tuple[tuple[float, float], ...] = ((1340.0, 1450.0), (1790.0, 1960.0))
DETECTOR_END_WINDOWS_NM: tuple[tuple[float, float], ...] = ((0.0, 380.0), (2500.0, float("inf")))


@dataclass(frozen=True)
class ProductName:
    """What a file name tells: sensor, level, flight line, segment, time, processing version and file role.

    A flight line is one pass of the aircraft; ``segment`` numbers a piece of it when the archive cuts
    lines into pieces (AVIRIS-3 and AVIRIS-NG 2023+ ``…_NNN_…``, AVIRIS-Classic ``…_scNN_…`` scenes),
    else None. Splits, reports and STAC grouping go by flight line, never by segment.
    """

    sensor: str
    level: str
    flight_line: str
    datetime: datetime
    version: str | None
    role: str  # "data" for the image itself, else the companion kind: "loc", "obs", "glt", "igm"
    segment: str | None = None  # digits as written in the name: "003", "01"

    def same_piece(self, other: ProductName) -> bool:
        """Whether two files belong to one piece of one flight line (a file naming no segment fits all)."""
        return self.flight_line == other.flight_line and (
            self.segment is None or other.segment is None or self.segment == other.segment
        )


@dataclass(frozen=True)
class NamePattern:
    """One naming convention: a regex over the file name and a function that reads its groups."""

    regex: re.Pattern[str]
    parse: Callable[[re.Match[str]], ProductName]


@dataclass(frozen=True)
class SensorSpec:
    """Everything hyper400k knows about one imaging spectrometer."""

    name: str
    instrument: str
    platform: str
    patterns: tuple[NamePattern, ...]
    # Published Hyper-400K ceilings: a pixel with any band above is invalid (after gain, in physical units).
    l1_ceiling: float
    l2_ceiling: float = 2.5
    band_grid: str | None = None  # CSV under hyper400k/data with index, wavelength_nm, fwhm_nm
    bad_windows_nm: tuple[tuple[float, float], ...] = field(
        default=WATER_VAPOUR_WINDOWS_NM + DETECTOR_END_WINDOWS_NM
    )
    # Where band centres may step back because one spectrometer hands over to the next, as (low, high) nm
    # windows holding both centres of the step; () for a single spectrometer, None when unknown.
    spectrometer_joins_nm: tuple[tuple[float, float], ...] | None = ()

    def match(self, file_name: str) -> ProductName | None:
        for pattern in self.patterns:
            found = pattern.regex.match(file_name)
            if found:
                return pattern.parse(found)
        return None

    def ceiling(self, level: str) -> float:
        return self.l1_ceiling if level == "L1" else self.l2_ceiling

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """The sensor's real band centres and FWHM in nm (used by the product generator)."""
        if self.band_grid is None:
            raise ValueError(f"sensor {self.name!r} ships no band grid")
        return load_band_grid(self.band_grid)


@cache
def load_band_grid(file_name: str) -> tuple[np.ndarray, np.ndarray]:
    text = resources.files("hyper400k.data").joinpath(file_name).read_text()
    rows = [row for row in csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))]
    centres = np.array([float(r["wavelength_nm"]) for r in rows])
    fwhm = np.array([float(r["fwhm_nm"]) for r in rows])
    centres.setflags(write=False)
    fwhm.setflags(write=False)
    return centres, fwhm


def good_band_mask(
    wavelength_nm: np.ndarray,
    windows_nm: tuple[tuple[float, float], ...] = WATER_VAPOUR_WINDOWS_NM + DETECTOR_END_WINDOWS_NM,
    bbl: np.ndarray | None = None,
) -> np.ndarray:
    """True for usable bands: outside every bad window, and good in the header's ``bbl`` when present."""
    wavelength_nm = np.asarray(wavelength_nm, dtype=np.float64)
    good = np.ones(wavelength_nm.shape, dtype=bool)
    for low, high in windows_nm:
        good &= ~((wavelength_nm >= low) & (wavelength_nm <= high))
    if bbl is not None:
        good &= np.asarray(bbl) != 0
    return good


def water_band_mask(wavelength_nm: np.ndarray) -> np.ndarray:
    """True for bands inside the deep water-vapour windows (zeroed in L2 by the Hyper-400K rules)."""
    return ~good_band_mask(wavelength_nm, WATER_VAPOUR_WINDOWS_NM)


def compact_datetime(text: str) -> datetime:
    """``20170323t202244`` -> 2017-03-23T20:22:44Z."""
    return datetime.strptime(text.lower(), "%Y%m%dt%H%M%S").replace(tzinfo=UTC)


def level_from_kind(kind: str) -> str:
    """Product kinds in names: radiance is L1; ``corr``/``rfl``/``refl``/``OE`` reflectance is L2."""
    kind = kind.lower()
    if kind in ("rdn", "l1b_rdn", "rdn_ort"):
        return "L1"
    if kind in ("corr", "rfl", "refl", "l2a_oe", "rfl_ort"):
        return "L2"
    return "L1"
