"""AVIRIS-3 (and similar) NetCDF products, read lazily through xarray.

Layout: a group ``radiance`` or ``reflectance`` holding the cube variable of the same name, its
``wavelength`` and ``fwhm`` variables (nm, or µm by their ``units``), and a grid-mapping variable whose
``spatial_ref`` (WKT) and ``GeoTransform`` (GDAL order) attributes carry the rotated georeference
(the CF/GDAL convention). Which dimension is the band axis is decided by the wavelength count.

netCDF4 reports a damaged file as ``OSError`` when it opens it and as ``RuntimeError`` (a NetCDF or HDF5 error
code) when it reads an attribute or a variable; both become a :class:`ProductError` naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr
from pyproj import CRS
from pyproj.exceptions import CRSError

from hyper400k.bands import check_band_centres, estimate_fwhm, unit_factor
from hyper400k.errors import HeaderError, ProductError, UnsupportedProductError
from hyper400k.geo import footprint_from_transform
from hyper400k.readers.metadata import acquisition_time, product_id_of, resolve_identity, units_for
from hyper400k.scene import Scene, SceneMeta
from hyper400k.sensors import good_band_mask, sensor

PRODUCT_GROUPS = {"radiance": "L1", "reflectance": "L2"}


class NetcdfScene(Scene):
    """Strips are sliced from the xarray variable, so only the requested lines are decoded."""

    def __init__(
        self, meta: SceneMeta, path: Path, dataset: xr.Dataset, variable: str, band_axis: int
    ) -> None:
        self.meta = meta
        self.path = path
        self._dataset = dataset
        self._variable = dataset[variable]
        dims = list(self._variable.dims)
        self._band_dim = dims.pop(band_axis)
        self._line_dim, self._sample_dim = dims

    def read_lines(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        self._check_range(start, stop)
        strip = self._variable.isel({self._line_dim: slice(start, stop)})
        # mask-and-scale already turned _FillValue into NaN; a pixel with any non-finite band is fill.
        with damaged_file_errors(self.path, f"read of lines {start}-{stop} failed"):
            cube = np.ascontiguousarray(
                strip.transpose(self._band_dim, self._line_dim, self._sample_dim).values, dtype=np.float32
            )
        cube[:, ~np.isfinite(cube).all(axis=0)] = np.nan
        if out is None:
            return cube
        np.copyto(out, cube)
        return out

    def close(self) -> None:
        self._dataset.close()


def open_netcdf(
    path: Path,
    *,
    sensor_name: str | None = None,
    level: str | None = None,
    scale: float | None = None,
    when: datetime | None = None,
) -> NetcdfScene:
    group = _product_group(path)
    if scale is not None:
        raise UnsupportedProductError(
            path, "NetCDF products carry their own scale_factor; an explicit scale is refused"
        )
    try:
        dataset = xr.open_dataset(path, group=group, engine="netcdf4", mask_and_scale=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ProductError(path, f"cannot open NetCDF group '{group}': {exc}") from exc
    try:
        with damaged_file_errors(path, f"cannot read NetCDF group '{group}'"):
            meta, band_axis = _scene_meta(path, dataset, group, sensor_name, level, when)
    except BaseException:
        dataset.close()
        raise
    return NetcdfScene(meta, path, dataset, group, band_axis)


@contextmanager
def damaged_file_errors(path: Path, doing: str) -> Iterator[None]:
    """What netCDF4 raises for a damaged file, as a :class:`ProductError` naming ``path`` and what was done."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        raise ProductError(path, f"{doing}: {exc}") from exc


def _scene_meta(
    path: Path,
    dataset: xr.Dataset,
    group: str,
    sensor_name: str | None,
    level: str | None,
    when: datetime | None,
) -> tuple[SceneMeta, int]:
    """The scene metadata of an opened product group, and which axis of its cube holds the bands."""
    variable = dataset[group]
    for name in ("wavelength", "wavelengths"):
        if name in dataset:
            wavelength_var = dataset[name]
            break
    else:
        raise HeaderError(path, f"group '{group}' has no 'wavelength' variable")
    factor = unit_factor(wavelength_var.attrs.get("units"), wavelength_var.values, path)
    wavelength_nm = wavelength_var.values.astype(np.float64) * factor
    if "fwhm" in dataset:
        fwhm_nm, fwhm_source = dataset["fwhm"].values.astype(np.float64) * factor, "netcdf variable"
    else:
        fwhm_nm, fwhm_source = estimate_fwhm(wavelength_nm), "estimated from band spacing"
    band_axes = [i for i, n in enumerate(variable.shape) if n == len(wavelength_nm)]
    if len(variable.dims) != 3 or not band_axes:
        raise HeaderError(
            path, f"'{group}' has shape {variable.shape}; no axis matches {len(wavelength_nm)} wavelengths"
        )
    band_axis = band_axes[-1]
    lines, samples = (n for i, n in enumerate(variable.shape) if i != band_axis)
    root_attrs = _root_attributes(path)
    identity = resolve_identity(path, sensor_name, level or PRODUCT_GROUPS[group])
    check_band_centres(wavelength_nm, fwhm_nm, sensor(identity.sensor).spectrometer_joins_nm, path)
    crs, transform = _georeference(dataset, variable, path)
    meta = SceneMeta(
        sensor=identity.sensor,
        level=identity.level,
        product_id=product_id_of(path),
        processing_version=identity.version or root_attrs.get("processing_version"),
        datetime=acquisition_time(identity.datetime, when, root_attrs.get("time_coverage_start"), path),
        lines=lines,
        samples=samples,
        bands=len(wavelength_nm),
        wavelength_nm=wavelength_nm,
        fwhm_nm=fwhm_nm,
        good_bands=good_band_mask(wavelength_nm, sensor(identity.sensor).bad_windows_nm),
        units=units_for(identity.level),
        nodata=None,
        gsd_m=float(np.hypot(transform[0], transform[3])) if transform else None,
        crs=crs,
        transform=transform,
        footprint=footprint_from_transform(crs, transform, lines, samples) if crs and transform else None,
        files={"data": str(path)},
        fwhm_source=fwhm_source,
        notes=[f"NetCDF group '{group}'"],
    )
    return meta, band_axis


def _product_group(path: Path) -> str:
    with damaged_file_errors(path, "not a readable NetCDF file"), netCDF4.Dataset(path) as root:
        groups = [g for g in PRODUCT_GROUPS if g in root.groups]
    if not groups:
        raise UnsupportedProductError(path, f"NetCDF file has none of the groups {sorted(PRODUCT_GROUPS)}")
    return groups[0]


def _root_attributes(path: Path) -> dict[str, str]:
    with netCDF4.Dataset(path) as root:
        return {k: str(root.getncattr(k)) for k in root.ncattrs()}


def _georeference(
    dataset: xr.Dataset, variable: xr.DataArray, path: Path
) -> tuple[str | None, tuple[float, float, float, float, float, float] | None]:
    mapping_name = variable.attrs.get("grid_mapping") or variable.encoding.get("grid_mapping")
    if not mapping_name or mapping_name not in dataset:
        return None, None
    attrs = dataset[mapping_name].attrs
    wkt, geo = attrs.get("spatial_ref") or attrs.get("crs_wkt"), attrs.get("GeoTransform")
    if not wkt or not geo:
        return None, None
    try:
        gt = [float(v) for v in str(geo).split()]
    except ValueError as exc:
        raise HeaderError(path, f"GeoTransform is not 6 numbers: {geo!r}") from exc
    if len(gt) != 6:
        raise HeaderError(path, f"GeoTransform is not 6 numbers: {geo!r}")
    try:
        crs = CRS.from_wkt(wkt)
    except CRSError as exc:
        raise HeaderError(path, f"grid mapping '{mapping_name}' holds no WKT CRS: {exc}") from exc
    epsg = crs.to_epsg()
    return (f"EPSG:{epsg}" if epsg else crs.to_wkt()), (gt[1], gt[2], gt[0], gt[4], gt[5], gt[3])
