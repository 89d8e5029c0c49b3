"""The Scene contract: lazy access to a product's pixels plus its metadata (see DESIGN.md).

Every reader returns a :class:`Scene`; tiling, shards and STAC consume only this interface, so a
new product format is one new reader and nothing else.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

SENSORS = ("aviris-classic", "aviris-ng", "aviris-3", "other")
LEVELS = ("L1", "L2")
RADIANCE_UNITS = "uW cm-2 sr-1 nm-1"
REFLECTANCE_UNITS = "reflectance"


@dataclass
class Geometry:
    """Scene-mean sun and view angles in degrees (from an ``obs`` companion when one exists)."""

    solar_zenith: float | None = None
    solar_azimuth: float | None = None
    view_zenith: float | None = None
    view_azimuth: float | None = None
    earth_sun_distance_au: float | None = None


@dataclass
class SceneMeta:
    """Everything tiling, shards and STAC need to know about one product.

    ``transform`` is the full 6-term affine in rasterio order ``(a, b, c, d, e, f)`` with
    ``x = a*col + b*row + c`` and ``y = d*col + e*row + f``; ortho products are rotated, so ``b`` and
    ``d`` are generally non-zero. ``footprint`` is a GeoJSON Polygon in WGS-84 built from the four
    transformed corners (or from the ``loc`` companion for unprojected products).
    """

    sensor: str
    level: str
    product_id: str
    processing_version: str | None
    datetime: datetime
    lines: int
    samples: int
    bands: int
    wavelength_nm: np.ndarray
    fwhm_nm: np.ndarray
    good_bands: np.ndarray
    units: str
    nodata: float | None
    gsd_m: float | None
    crs: str | None
    transform: tuple[float, float, float, float, float, float] | None
    footprint: dict[str, Any] | None
    geometry: Geometry = field(default_factory=Geometry)
    files: dict[str, str] = field(default_factory=dict)
    fwhm_source: str = "header"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.sensor not in SENSORS:
            raise ValueError(f"unknown sensor {self.sensor!r}; expected one of {SENSORS}")
        if self.level not in LEVELS:
            raise ValueError(f"unknown level {self.level!r}; expected one of {LEVELS}")
        for name in ("wavelength_nm", "fwhm_nm", "good_bands"):
            if len(getattr(self, name)) != self.bands:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {self.bands} bands")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(lines, samples, bands)``, the order ``inspect`` reports."""
        return self.lines, self.samples, self.bands

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (numpy arrays as lists, datetime as ISO 8601 UTC with ``Z``)."""
        out = asdict(self)
        out["wavelength_nm"] = [float(v) for v in self.wavelength_nm]
        out["fwhm_nm"] = [float(v) for v in self.fwhm_nm]
        out["good_bands"] = [bool(v) for v in self.good_bands]
        out["datetime"] = self.datetime.strftime("%Y-%m-%dT%H:%M:%SZ")
        out["transform"] = None if self.transform is None else [float(v) for v in self.transform]
        out["shape"] = list(self.shape)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), allow_nan=False)


class Scene(ABC):
    """A lazily read product: nothing is loaded until :meth:`read_lines` is called.

    Pixels come back in physical units (radiance in µW cm⁻² sr⁻¹ nm⁻¹, reflectance 0–1) as float32,
    band-first ``(C, h, W)``. Values the product marks as nodata are NaN, and fill pixels (outside
    the swath) are NaN in every band; deciding which pixels are usable is the quality rules' job.
    """

    meta: SceneMeta

    @abstractmethod
    def read_lines(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Lines ``[start, stop)`` as float32 ``(bands, stop - start, samples)``."""

    def iter_strips(self, strip_lines: int) -> Any:
        """Yield ``(start, array)`` for consecutive strips of ``strip_lines`` lines (last may be shorter)."""
        for start in range(0, self.meta.lines, strip_lines):
            stop = min(start + strip_lines, self.meta.lines)
            yield start, self.read_lines(start, stop)

    def read_all(self) -> np.ndarray:
        """The whole cube; for small products and tests only."""
        return self.read_lines(0, self.meta.lines)

    def close(self) -> None:  # noqa: B027 - optional hook, most readers hold nothing open
        """Release file handles; readers holding none need not override."""

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_range(self, start: int, stop: int) -> None:
        if not 0 <= start < stop <= self.meta.lines:
            raise IndexError(
                f"lines [{start}, {stop}) outside [0, {self.meta.lines}) of {self.meta.product_id}"
            )


def source_path(meta: SceneMeta) -> Path:
    """The main data file of a product."""
    return Path(meta.files["data"])
