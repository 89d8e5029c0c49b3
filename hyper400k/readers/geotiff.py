"""GeoTIFF (or any GDAL raster) cubes with per-band spectral metadata, read through rasterio.

Band metadata is taken from the per-band tags GDAL writes for ENVI-derived rasters (``wavelength``,
``fwhm``, ``bbl``, ``wavelength_units``), falling back to wavelengths in band descriptions.
"""

from __future__ import annotations

import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from hyper400k.bands import check_band_centres, estimate_fwhm, unit_factor, wavelengths_from_band_names
from hyper400k.errors import HeaderError, ProductError
from hyper400k.geo import footprint_from_transform
from hyper400k.readers.metadata import acquisition_time, product_id_of, resolve_identity, units_for
from hyper400k.scene import Scene, SceneMeta
from hyper400k.sensors import good_band_mask, sensor


def open_raster(path: Path) -> rasterio.DatasetReader:
    """``rasterio.open`` without its ``NotGeoreferencedWarning``: a raster without georeferencing is read as one
    (no CRS, transform or footprint), so the warning, printed with a line of rasterio's code, tells nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


class RasterioScene(Scene):
    """Lines come from windowed reads; nodata values become NaN; ``scale`` multiplies values."""

    def __init__(self, meta: SceneMeta, path: Path, scale: float | None) -> None:
        self.meta = meta
        self.path = path
        self._scale = scale
        self._dataset = open_raster(path)

    def read_lines(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        self._check_range(start, stop)
        window = Window(0, start, self.meta.samples, stop - start)
        try:
            raw = self._dataset.read(window=window)
        except rasterio.errors.RasterioIOError as exc:
            raise ProductError(self.path, f"read of lines {start}-{stop} failed: {exc}") from exc
        data = raw.astype(np.float32) if out is None else out
        if out is not None:
            np.copyto(out, raw, casting="unsafe")
        if self.meta.nodata is not None:
            data[raw == raw.dtype.type(self.meta.nodata)] = np.nan
        if self._scale is not None:
            data *= np.float32(self._scale)
        return data

    def close(self) -> None:
        self._dataset.close()


def open_geotiff(
    path: Path,
    *,
    sensor_name: str | None = None,
    level: str | None = None,
    scale: float | None = None,
    when: datetime | None = None,
) -> RasterioScene:
    try:
        dataset = open_raster(path)
    except rasterio.errors.RasterioIOError as exc:
        raise ProductError(path, f"not a readable raster: {exc}") from exc
    with dataset:
        tags = [dataset.tags(b) for b in range(1, dataset.count + 1)]
        identity = resolve_identity(path, sensor_name, level, hint=" ".join(dataset.tags().values()))
        wavelength_nm, fwhm_nm, bbl, fwhm_source = _band_metadata(path, tags, list(dataset.descriptions))
        check_band_centres(wavelength_nm, fwhm_nm, sensor(identity.sensor).spectrometer_joins_nm, path)
        crs = dataset.crs.to_string() if dataset.crs else None
        transform = tuple(dataset.transform)[:6] if dataset.crs else None
        footprint = footprint_from_transform(crs, transform, dataset.height, dataset.width) if crs else None
        gsd = float(np.hypot(transform[0], transform[3])) if transform else None
        file_tags = dataset.tags()
        scale, scale_note = _scale(path, dataset, scale)
        meta = SceneMeta(
            sensor=identity.sensor,
            level=identity.level,
            product_id=product_id_of(path),
            processing_version=identity.version,
            datetime=acquisition_time(
                identity.datetime,
                when,
                file_tags.get("start_time") or file_tags.get("acquisition_time"),
                path,
            ),
            lines=dataset.height,
            samples=dataset.width,
            bands=dataset.count,
            wavelength_nm=wavelength_nm,
            fwhm_nm=fwhm_nm,
            good_bands=good_band_mask(wavelength_nm, sensor(identity.sensor).bad_windows_nm, bbl),
            units=units_for(identity.level),
            nodata=dataset.nodata,
            gsd_m=gsd,
            crs=crs,
            transform=transform,
            footprint=footprint,
            files={"data": str(path)},
            fwhm_source=fwhm_source,
            notes=[scale_note] if scale_note else [],
        )
    return RasterioScene(meta, path, scale)


def _scale(
    path: Path, dataset: rasterio.DatasetReader, requested: float | None
) -> tuple[float | None, str | None]:
    """The multiplier to physical units: the caller's, else GDAL's band scale; integers with neither are refused."""
    if requested is not None:
        return requested, f"values multiplied by {requested} as requested"
    scales, offsets = set(dataset.scales), set(dataset.offsets)
    if offsets - {0.0} or len(scales) > 1:
        raise HeaderError(path, "per-band scales or offsets are not supported: pass --scale")
    stated = scales.pop() if scales else 1.0
    if stated != 1.0:
        return stated, f"values multiplied by the raster's scale {stated:g}"
    if np.dtype(dataset.dtypes[0]).kind in "iu":
        raise HeaderError(
            path, "integer values and nothing states their scale: pass --scale (e.g. 0.0001 for x10000)"
        )
    return None, None


def _band_metadata(
    path: Path, tags: list[dict[str, str]], descriptions: list[str | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    def column(key: str) -> np.ndarray | None:
        if not all(key in t for t in tags):
            return None
        try:
            return np.array([float(t[key]) for t in tags], dtype=np.float64)
        except ValueError as exc:
            raise HeaderError(path, f"band tag '{key}' is not numeric: {exc}") from exc

    wavelength, units = column("wavelength"), tags[0].get("wavelength_units") if tags else None
    if wavelength is None and all(descriptions):
        parsed = wavelengths_from_band_names([d or "" for d in descriptions])
        if parsed is not None:
            wavelength, units = parsed[0], units or parsed[1]
    if wavelength is None:
        raise HeaderError(
            path,
            "no wavelengths: bands carry neither 'wavelength' tags nor wavelengths in their descriptions",
        )
    factor = unit_factor(units, wavelength, path)
    fwhm = column("fwhm")
    if fwhm is None:
        return (
            wavelength * factor,
            estimate_fwhm(wavelength * factor),
            column("bbl"),
            "estimated from band spacing",
        )
    return wavelength * factor, fwhm * factor, column("bbl"), "band tags"
