"""Write a synthetic product in a sensor's real on-disk format, strip by strip with bounded memory.

Per strip of lines: flight/sun geometry, surface reflectance, then (L1) at-sensor radiance, sensor
noise drawn from a per-line random stream (so the output does not depend on ``strip_lines``),
defects (a few saturated pixels above the sensor's ceiling, a dead detector column in some flight lines), conversion
to the stored type and fill outside the swath. Memory grows with ``strip_lines × samples × bands``,
never with ``lines``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from pyproj import Transformer

from hyper400k.sensors import sensor as sensor_spec
from hyper400k.synth.formats import (
    ENVI_FILL,
    RADIANCE_UNITS,
    ProductFormat,
    companion_header,
    product_format,
)
from hyper400k.synth.geometry import StripGeometry, earth_sun_distance_au, strip_geometry
from hyper400k.synth.radiance import Atmosphere, add_noise, gas_transmittance, standard_normal
from hyper400k.synth.scenario import WATER_VAPOUR_LAYER, Scenario
from hyper400k.synth.surface import Surface
from hyper400k.synth.writers import EnviWriter, NetcdfWriter, Staged, TextFile

_NOISE_STREAM = 0x9015E
_DEAD_VALUE = 0.005  # physical value a dead detector element reads, in every line and band
_L2_SHOT, _L2_READ = 2e-5, 0.002  # reflectance noise: variance per unit reflectance, floor
_SENSORS = ("aviris-ng", "aviris-classic", "aviris-3")


class _Renderer:
    """Physical values (radiance or reflectance) of one product, strip by strip."""

    def __init__(self, sc: Scenario, level: str, wavelength_nm: np.ndarray, speclib: Path | None) -> None:
        self.sc = sc
        self.level = level
        self.surface = Surface(sc, wavelength_nm, speclib)
        self.ceiling = sensor_spec(sc.sensor).ceiling(level)
        self.atmosphere = Atmosphere(
            wavelength_nm, sc.aerosol_550, earth_sun_distance_au(sc.flight.day_of_year)
        )
        self.mu_sun = float(np.cos(np.radians(sc.sun_zenith_deg)))
        self.water_field = sc.field(WATER_VAPOUR_LAYER, (1500.0,), (1.0,))
        # Retrieved reflectance is noisiest where the atmosphere lets little light through.
        transmittance = gas_transmittance(wavelength_nm, sc.water_cm, 1.0 / self.mu_sun + 1.0)
        self.l2_band_noise = np.minimum(1.0 / np.maximum(transmittance, 1e-3), 10.0).astype(np.float32)

    def strip(self, geom: StripGeometry, row0: int, row1: int) -> np.ndarray:
        """Float32 ``(lines * samples, bands)`` physical values of lines ``[row0, row1)``."""
        sc, samples = self.sc, self.sc.samples
        values = self.surface.reflectance(row0, row1)
        if self.level == "L1":
            water = sc.water_cm * (1.0 + 0.1 * self.water_field.strip(row0, row1, samples)).reshape(-1)
            mu_view = np.cos(np.radians(geom.view_zenith)).reshape(-1)
            values = self.atmosphere.radiance(values, geom.cos_i.reshape(-1), self.mu_sun, mu_view, water)
            shot, read, band_noise = sc.platform.shot_noise, sc.platform.read_noise, None
        else:
            shot, read, band_noise = _L2_SHOT, _L2_READ, self.l2_band_noise
        level_code = 1 if self.level == "L1" else 2
        for i, row in enumerate(range(row0, row1)):
            rng = np.random.default_rng([sc.seed, _NOISE_STREAM, level_code, row])
            normal = standard_normal(rng, (samples, values.shape[1]))
            if band_noise is not None:
                normal *= band_noise
            add_noise(values[i * samples : (i + 1) * samples], normal, shot, read)
        np.maximum(values, 0.0, out=values)
        for r, c, factor in zip(*sc.saturated_in(row0, row1), strict=True):
            pixel = values[r * samples + c]
            pixel *= np.float32(factor * self.ceiling / max(float(pixel.max()), 1e-6))
        if sc.dead_column is not None:
            values[sc.dead_column :: samples] = _DEAD_VALUE
        return values


def _encode(values: np.ndarray, inside: np.ndarray, pf: ProductFormat, samples: int) -> np.ndarray:
    """Stored values ``(lines, samples, bands)``: scaled, rounded and clipped for integers, fill outside."""
    if pf.scale is not None:
        values *= pf.scale.astype(np.float32)
    if pf.dtype.kind == "i":
        info = np.iinfo(pf.dtype)
        np.rint(values, out=values)
        np.clip(values, info.min, info.max, out=values)
    values[~inside.reshape(-1)] = pf.fill
    return values.reshape(-1, samples, values.shape[1])


def _loc_strip(sc: Scenario, geom: StripGeometry, row0: int, row1: int, to_wgs84: Transformer) -> np.ndarray:
    """Longitude, latitude, elevation of pixel centres: ``(3, lines, samples)``."""
    a, b, c, d, e, f = sc.transform
    rows, cols = np.meshgrid(np.arange(row0, row1) + 0.5, np.arange(sc.samples) + 0.5, indexing="ij")
    lon, lat = to_wgs84.transform(a * cols + b * rows + c, d * cols + e * rows + f)
    return np.stack([lon, lat, geom.elevation])


def _open_files(
    sc: Scenario,
    level: str,
    fmt: str,
    pf: ProductFormat,
    output: Path,
    wavelength_nm: np.ndarray,
    fwhm_nm: np.ndarray,
) -> tuple[list[Staged], EnviWriter | NetcdfWriter, EnviWriter | None, EnviWriter | None]:
    """Stage every file of the product; the list is in commit order (main data last)."""
    staged: list[Staged] = []
    obs = loc = None
    if pf.obs_name is not None:
        obs = EnviWriter(output / pf.obs_name, companion_header(sc, "obs"), np.dtype("<f8"), "bil")
        staged.append(obs)
    if pf.loc_name is not None:
        loc = EnviWriter(output / pf.loc_name, companion_header(sc, "loc"), np.dtype("<f8"), "bil")
        staged.append(loc)
    staged.extend(TextFile(output / name, text) for name, text in pf.side_files.items())
    main: EnviWriter | NetcdfWriter
    if fmt == "netcdf":
        group = "radiance" if level == "L1" else "reflectance"
        main = NetcdfWriter(
            output / pf.data_name,
            group=group,
            units=RADIANCE_UNITS if level == "L1" else "1",
            shape=(sc.lines, sc.samples),
            wavelength_nm=wavelength_nm,
            fwhm_nm=fwhm_nm,
            epsg=sc.epsg,
            transform=sc.transform,
            attributes={
                "title": f"Synthetic AVIRIS-3 {level} {group} (hyper400k.synth, seed {sc.seed})",
                "sensor": "AVIRIS-3",
                "time_coverage_start": sc.acquired.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "processing_version": sc.product_hash,
            },
            fill=ENVI_FILL,
        )
    else:
        main = EnviWriter(output / pf.data_name, pf.header, pf.dtype, pf.interleave)
    staged.append(main)
    return staged, main, obs, loc


def generate(
    sensor: str,
    level: str,
    lines: int,
    samples: int,
    output: Path,
    *,
    seed: int = 0,
    speclib: Path | None = None,
    fmt: str = "envi",
    strip_lines: int = 256,
    acquired: datetime | None = None,
) -> Path:
    """Write one synthetic ``sensor`` product at ``level`` (``L1`` radiance, ``L2`` reflectance) into
    ``output`` and return the path of its main data file (not the header).

    The same seed gives the same flight line (names, geometry, landscape) at both levels and the same
    bytes on every run; ``acquired`` (UTC; naive means UTC) overrides the seed's acquisition time.
    ``speclib`` adds surfaces drawn from an ENVI spectral library. ``fmt="netcdf"`` is AVIRIS-3 only.
    Peak memory is about four strips of float32 (``4 × strip_lines × samples × bands × 4`` bytes) and
    does not depend on ``lines``; every file is written under a ``.partial`` name and renamed at the end.
    """
    if sensor not in _SENSORS:
        raise ValueError(f"unknown sensor {sensor!r}; expected one of {', '.join(_SENSORS)}")
    if level not in ("L1", "L2"):
        raise ValueError(f"level must be 'L1' or 'L2', not {level!r}")
    if fmt not in ("envi", "netcdf") or (fmt == "netcdf" and sensor != "aviris-3"):
        raise ValueError(f"format {fmt!r} is not written for {sensor} (envi for all, netcdf for aviris-3)")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if lines < 1 or samples < 1 or strip_lines < 1:
        raise ValueError(
            f"lines, samples and strip_lines must be positive, got {lines}, {samples}, {strip_lines}"
        )
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    wavelength_nm, fwhm_nm = sensor_spec(sensor).grid()
    sc = Scenario.draw(sensor, seed, lines, samples, acquired)
    renderer = _Renderer(sc, level, wavelength_nm, speclib)
    pf = product_format(sc, level, fmt, wavelength_nm, fwhm_nm)
    to_wgs84 = Transformer.from_crs(sc.epsg, 4326, always_xy=True)
    staged, main, obs, loc = _open_files(sc, level, fmt, pf, output, wavelength_nm, fwhm_nm)
    try:
        for row0 in range(0, lines, strip_lines):
            row1 = min(row0 + strip_lines, lines)
            geom = strip_geometry(sc.flight, row0, row1)
            outside = ~geom.inside
            main.write(_encode(renderer.strip(geom, row0, row1), geom.inside, pf, samples))
            if obs is not None:
                geom.obs[:, outside] = ENVI_FILL
                obs.write(geom.obs.transpose(1, 2, 0))
            if loc is not None:
                values = _loc_strip(sc, geom, row0, row1, to_wgs84)
                values[:, outside] = ENVI_FILL
                loc.write(values.transpose(1, 2, 0))
        for item in staged:
            item.commit()
    except BaseException:
        for item in staged:
            item.abort()
        raise
    return output / pf.data_name
