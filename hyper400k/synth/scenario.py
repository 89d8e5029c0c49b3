"""Everything about one synthetic flight line that is drawn once from the seed.

Where and when it was flown (the site follows the acquisition time so the sun is always up: the
longitude puts local solar time near noon), the grid (UTM, rotated ``map info``), the swath, the
atmosphere, cloud cover and the defects. L1 and L2 products of one seed describe the same flight line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from pyproj import Transformer
from scipy.special import ndtri

from hyper400k.geo import Affine6, rotated_transform
from hyper400k.synth.fields import SmoothField
from hyper400k.synth.geometry import Flight, Swath, solar_position

# Layers of the random fields drawn from one seed (materials use MATERIAL_LAYER + index).
TERRAIN_LAYER, WATER_VAPOUR_LAYER, CLOUD_LAYER, TEXTURE_LAYER, MATERIAL_LAYER = 1, 2, 3, 4, 16


@dataclass(frozen=True)
class Platform:
    """Typical flight parameters of an instrument (1 mrad IFOV: altitude above ground = 1000 × pixel)."""

    pixel_m: tuple[float, float]
    speed_m_s: float
    years: tuple[int, int]
    shot_noise: float  # L1 noise variance per unit radiance
    read_noise: float  # L1 noise floor, µW cm⁻² sr⁻¹ nm⁻¹


PLATFORMS = {
    "aviris-ng": Platform((4.5, 5.5), 65.0, (2014, 2022), 3e-4, 0.01),
    "aviris-classic": Platform((14.0, 17.0), 205.0, (2006, 2011), 6e-4, 0.02),
    "aviris-3": Platform((3.5, 5.5), 70.0, (2023, 2025), 3e-4, 0.01),
}
_SATURATED_PER_PIXEL = 1.0 / 20000.0
# Share of flight lines with a dead detector element. Delivered JPL products rarely show one (bad elements are
# flagged and interpolated in calibration), so most generated flight lines have none; drawn from its own seeded
# stream so that the other draws of a seed do not depend on it.
DEAD_DETECTOR_RATE = 0.15
_DEAD_STREAM = 0xDEAD
# Half-width of the imaged swath as a share of the grid's width: the rest is fill on either side, about 4 % a
# side, plus the corners the swath's tilt leaves (wider fill margins made every demo edge tile fail the QA).
SWATH_HALF_WIDTH = 0.46


@dataclass(frozen=True)
class Scenario:
    """The seed's flight line: acquisition, grid, flight geometry, atmosphere, clouds and defects."""

    sensor: str
    seed: int
    lines: int
    samples: int
    acquired: datetime
    epsg: int
    rotation_deg: float
    pixel_m: float
    transform: Affine6
    flight: Flight
    water_cm: float
    aerosol_550: float
    cloud_threshold: float
    run: int
    product_hash: str
    dead_column: int | None  # None: no dead detector element in this flight line
    saturated_rows: np.ndarray
    saturated_cols: np.ndarray
    saturated_factor: np.ndarray

    @property
    def platform(self) -> Platform:
        return PLATFORMS[self.sensor]

    def field(self, layer: int, scales_m: tuple[float, ...], weights: tuple[float, ...]) -> SmoothField:
        """A random field of this seed with correlation lengths given on the ground (metres)."""
        return SmoothField(self.seed, layer, tuple(s / self.pixel_m for s in scales_m), weights)

    @classmethod
    def draw(cls, sensor: str, seed: int, lines: int, samples: int, acquired: datetime | None) -> Scenario:
        """The flight line of ``seed`` for ``sensor`` on a ``lines × samples`` grid at time ``acquired``."""
        platform = PLATFORMS[sensor]
        rng = np.random.default_rng([seed, 0x5CE7A, list(PLATFORMS).index(sensor)])
        # Airborne campaigns fly near local noon: the site's longitude and the UTC time follow each other.
        local_solar_hours = float(rng.uniform(10.5, 13.5))
        site_longitude = float(rng.uniform(-122.0, -100.0))
        year = int(rng.integers(platform.years[0], platform.years[1] + 1))
        day_of_year = int(rng.integers(121, 261))
        if acquired is None:
            hours = local_solar_hours - site_longitude / 15.0
            acquired = datetime(year, 1, 1, tzinfo=UTC) + timedelta(
                days=day_of_year - 1, seconds=round(hours * 3600)
            )
        else:
            acquired = acquired.replace(tzinfo=UTC) if acquired.tzinfo is None else acquired.astimezone(UTC)
        midnight = acquired.replace(hour=0, minute=0, second=0, microsecond=0)
        utc_hours = (acquired - midnight).total_seconds() / 3600
        longitude = (15.0 * (local_solar_hours - utc_hours) + 180.0) % 360.0 - 180.0
        latitude = float(rng.uniform(28.0, 46.0))
        epsg = 32600 + int((longitude + 180.0) // 6.0) + 1
        pixel_m = round(float(rng.uniform(*platform.pixel_m)), 2)
        rotation = round(float(rng.uniform(20.0, 70.0)), 2)
        east, north = Transformer.from_crs(4326, epsg, always_xy=True).transform(longitude, latitude)
        a, b, _, d, e, _ = rotated_transform(0.0, 0.0, pixel_m, rotation)
        # Origin rounded to the millimetre that ENVI ``map info`` carries, so the header is exact.
        origin_x = round(east - (a * samples + b * lines) / 2, 3)
        origin_y = round(north - (d * samples + e * lines) / 2, 3)
        transform = rotated_transform(origin_x, origin_y, pixel_m, rotation)
        swath = Swath(lines, samples, tilt=0.05 * samples, half_width=SWATH_HALF_WIDTH * samples)
        ground = float(rng.uniform(50.0, 1800.0))
        flight = Flight(
            transform=transform,
            swath=swath,
            pixel_m=pixel_m,
            sensor_altitude_m=ground + 1000.0 * pixel_m,
            speed_m_s=platform.speed_m_s,
            start_utc_hours=utc_hours,
            day_of_year=acquired.timetuple().tm_yday,
            latitude=latitude,
            longitude=float(longitude),
            terrain=SmoothField(seed, TERRAIN_LAYER, (2000.0 / pixel_m, 500.0 / pixel_m), (1.0, 0.3)),
            ground_m=ground,
            relief_m=float(rng.uniform(20.0, 150.0)),
        )
        water_cm = float(rng.uniform(0.8, 2.5))
        aerosol = float(rng.uniform(0.05, 0.2))
        cloud_threshold = float(ndtri(1.0 - rng.uniform(0.0, 0.12)))
        run = int(rng.integers(1, 20))
        product_hash = f"{int(rng.integers(0, 2**32)):08x}"
        dead_column: int | None = int(samples / 2 + rng.uniform(-0.3, 0.3) * swath.half_width)
        if np.random.default_rng([seed, _DEAD_STREAM]).random() >= DEAD_DETECTOR_RATE:
            dead_column = None
        count = max(3, round(lines * samples * _SATURATED_PER_PIXEL))
        along = rng.uniform(0.1, 1.9, count) * swath.half_length
        across = rng.uniform(-0.9, 0.9, count) * swath.half_width
        rows, cols = swath.pixel_at(along, across)
        factor = rng.uniform(1.2, 1.8, count)
        keep = cols != dead_column
        order = np.argsort(rows[keep], kind="stable")
        return cls(
            sensor=sensor,
            seed=seed,
            lines=lines,
            samples=samples,
            acquired=acquired,
            epsg=epsg,
            rotation_deg=rotation,
            pixel_m=pixel_m,
            transform=transform,
            flight=flight,
            water_cm=water_cm,
            aerosol_550=aerosol,
            cloud_threshold=cloud_threshold,
            run=run,
            product_hash=product_hash,
            dead_column=dead_column,
            saturated_rows=rows[keep][order],
            saturated_cols=cols[keep][order],
            saturated_factor=factor[keep][order],
        )

    @property
    def sun_zenith_deg(self) -> float:
        """The sun's zenith at the acquisition start over the scene centre (sets the atmospheric path)."""
        zenith, _ = solar_position(
            self.flight.day_of_year,
            np.array(self.flight.start_utc_hours),
            self.flight.latitude,
            self.flight.longitude,
        )
        return float(zenith)

    def saturated_in(self, row0: int, row1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Saturated pixels on lines ``[row0, row1)`` as (row - row0, col, factor above the ceiling)."""
        lo, hi = np.searchsorted(self.saturated_rows, [row0, row1])
        return self.saturated_rows[lo:hi] - row0, self.saturated_cols[lo:hi], self.saturated_factor[lo:hi]
