"""Flight and sun geometry of an orthorectified flight line, evaluated strip by strip.

An ortho product is a north-up-rotated grid (ENVI ``map info`` ``rotation=``) around the imaged swath.
The swath itself is a rectangle slightly tilted inside the grid (an aircraft never flies exactly along
the grid axis), so the grid corners are fill, as in real JPL ortho products. Per pixel we derive the
quantities of a JPL ``obs`` file: view angles from the across-track distance to the nadir track,
acquisition time from the along-track distance, the sun's position (NOAA low-precision formulas),
and terrain slope, aspect and illumination cosine from the terrain field's exact gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hyper400k.geo import Affine6
from hyper400k.synth.fields import SmoothField

OBS_BAND_NAMES = (
    "Path length (m)",
    "To-sensor azimuth (0 to 360 degrees cw from N)",
    "To-sensor zenith (0 to 90 degrees from zenith)",
    "To-sun azimuth (0 to 360 degrees cw from N)",
    "To-sun zenith (0 to 90 degrees from zenith)",
    "Solar phase",
    "Slope",
    "Aspect",
    "Cosine(i)",
    "UTC Time",
    "Earth-sun distance (AU)",
)
LOC_BAND_NAMES = ("Longitude (WGS-84)", "Latitude (WGS-84)", "Elevation (m)")


@dataclass(frozen=True)
class Swath:
    """A rectangle inside a ``lines × samples`` grid, tilted so its centre line runs from
    ``(0, samples/2 + tilt)`` to ``(lines, samples/2 - tilt)`` (pixel units, rows then columns)."""

    lines: int
    samples: int
    tilt: float
    half_width: float

    @property
    def _norm(self) -> float:
        return math.hypot(self.lines, 2 * self.tilt)

    @property
    def along_unit(self) -> tuple[float, float]:
        """Flight direction as (d_row, d_col)."""
        return self.lines / self._norm, -2 * self.tilt / self._norm

    @property
    def across_unit(self) -> tuple[float, float]:
        return 2 * self.tilt / self._norm, self.lines / self._norm

    @property
    def half_length(self) -> float:
        """Largest half-length that keeps the tilted rectangle's corners inside the grid."""
        fit = self._norm / 2 - 2 * self.tilt * self.half_width / max(self.lines, 1)
        return max(fit, self._norm / 4)

    def coordinates(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Along-track (from the swath start) and signed across-track position of pixel centres, pixels."""
        d_row = rows + 0.5 - self.lines / 2
        d_col = cols + 0.5 - self.samples / 2
        (ar, ac), (cr, cc) = self.along_unit, self.across_unit
        return d_row * ar + d_col * ac + self.half_length, d_row * cr + d_col * cc

    def inside(self, along: np.ndarray, across: np.ndarray) -> np.ndarray:
        return (along >= 0) & (along <= 2 * self.half_length) & (np.abs(across) <= self.half_width)

    def pixel_at(self, along: np.ndarray, across: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns of the pixels holding swath positions (inverse of :meth:`coordinates`)."""
        (ar, ac), (cr, cc) = self.along_unit, self.across_unit
        a = along - self.half_length
        rows = np.floor(self.lines / 2 + a * ar + across * cr).astype(np.int64)
        return rows, np.floor(self.samples / 2 + a * ac + across * cc).astype(np.int64)


def map_vector(transform: Affine6, d_row: np.ndarray, d_col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A displacement in pixels as (east, north) metres through the affine's linear part."""
    a, b, _, d, e, _ = transform
    return a * d_col + b * d_row, d * d_col + e * d_row


def azimuth_deg(east: np.ndarray, north: np.ndarray) -> np.ndarray:
    """Compass bearing of a map vector, degrees clockwise from north in [0, 360)."""
    return np.mod(np.degrees(np.arctan2(east, north)), 360.0)


def solar_position(
    day_of_year: int, utc_hours: np.ndarray, lat_deg: float, lon_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Solar zenith and azimuth (degrees, azimuth clockwise from north) by the NOAA approximations."""
    gamma = 2 * np.pi / 365.0 * (day_of_year - 1 + (utc_hours - 12.0) / 24.0)
    eq_time = 229.18 * (
        0.000075
        + 0.001868 * np.cos(gamma)
        - 0.032077 * np.sin(gamma)
        - 0.014615 * np.cos(2 * gamma)
        - 0.040849 * np.sin(2 * gamma)
    )
    decl = (
        0.006918
        - 0.399912 * np.cos(gamma)
        + 0.070257 * np.sin(gamma)
        - 0.006758 * np.cos(2 * gamma)
        + 0.000907 * np.sin(2 * gamma)
        - 0.002697 * np.cos(3 * gamma)
        + 0.00148 * np.sin(3 * gamma)
    )
    true_solar_minutes = utc_hours * 60.0 + eq_time + 4.0 * lon_deg
    hour_angle = np.radians(true_solar_minutes / 4.0 - 180.0)
    lat = math.radians(lat_deg)
    cos_zenith = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    zenith = np.degrees(np.arccos(np.clip(cos_zenith, -1.0, 1.0)))
    azimuth = np.degrees(
        np.arctan2(np.sin(hour_angle), np.cos(hour_angle) * np.sin(lat) - np.tan(decl) * np.cos(lat))
    )
    return zenith, np.mod(azimuth + 180.0, 360.0)


def earth_sun_distance_au(day_of_year: int) -> float:
    """Earth-sun distance from the orbit's eccentricity (perihelion near 4 January)."""
    return 1.0 - 0.01672 * math.cos(math.radians(0.9856 * (day_of_year - 4)))


@dataclass(frozen=True)
class Flight:
    """What the geometry needs to know about one flight line."""

    transform: Affine6
    swath: Swath
    pixel_m: float
    sensor_altitude_m: float
    speed_m_s: float
    start_utc_hours: float
    day_of_year: int
    latitude: float
    longitude: float
    terrain: SmoothField
    ground_m: float
    relief_m: float


@dataclass
class StripGeometry:
    """Per-pixel geometry of lines ``[row0, row1)``: every array is ``(lines, samples)``."""

    inside: np.ndarray
    elevation: np.ndarray
    obs: np.ndarray  # (11, lines, samples) in OBS_BAND_NAMES order

    @property
    def cos_i(self) -> np.ndarray:
        return self.obs[8]

    @property
    def view_zenith(self) -> np.ndarray:
        return self.obs[2]


def strip_geometry(flight: Flight, row0: int, row1: int) -> StripGeometry:
    """Swath membership, terrain and the eleven ``obs`` quantities on one strip."""
    samples = flight.swath.samples
    rows, cols = np.meshgrid(
        np.arange(row0, row1, dtype=np.float64), np.arange(samples, dtype=np.float64), indexing="ij"
    )
    along, across = flight.swath.coordinates(rows, cols)
    elevation = flight.ground_m + flight.relief_m * flight.terrain.strip(row0, row1, samples)
    dz_row, dz_col = (
        flight.relief_m * g / flight.pixel_m for g in flight.terrain.gradient(row0, row1, samples)
    )
    # Gradient in map axes: the affine's linear part A of a rotated ENVI grid is symmetric with A·A = s²·I,
    # so ∇(east, north) = A⁻ᵀ ∇(col, row) = A ∇(col, row) / s².
    grad_e, grad_n = map_vector(flight.transform, dz_row, dz_col)
    grad_e, grad_n = grad_e / flight.pixel_m, grad_n / flight.pixel_m
    slope = np.degrees(np.arctan(np.hypot(grad_e, grad_n)))
    aspect = azimuth_deg(-grad_e, -grad_n)

    height = flight.sensor_altitude_m - elevation
    view_zenith = np.degrees(np.arctan(np.abs(across) * flight.pixel_m / height))
    cr, cc = flight.swath.across_unit
    toward_track = -np.sign(across)
    view_azimuth = azimuth_deg(*map_vector(flight.transform, toward_track * cr, toward_track * cc))
    path_length = height / np.cos(np.radians(view_zenith))

    utc = flight.start_utc_hours + along * flight.pixel_m / flight.speed_m_s / 3600.0
    sun_zenith, sun_azimuth = solar_position(flight.day_of_year, utc, flight.latitude, flight.longitude)
    sz, vz = np.radians(sun_zenith), np.radians(view_zenith)
    sa, va = np.radians(sun_azimuth), np.radians(view_azimuth)
    phase = np.degrees(
        np.arccos(np.clip(np.cos(sz) * np.cos(vz) + np.sin(sz) * np.sin(vz) * np.cos(sa - va), -1, 1))
    )
    s, asp = np.radians(slope), np.radians(aspect)
    cos_i = np.cos(sz) * np.cos(s) + np.sin(sz) * np.sin(s) * np.cos(sa - asp)
    distance = np.full_like(utc, earth_sun_distance_au(flight.day_of_year))
    obs = np.stack(
        [
            path_length,
            view_azimuth,
            view_zenith,
            sun_azimuth,
            sun_zenith,
            phase,
            slope,
            aspect,
            cos_i,
            utc,
            distance,
        ]
    )
    return StripGeometry(flight.swath.inside(along, across), elevation, obs)
