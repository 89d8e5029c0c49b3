"""Strip-wise writers that stage every file under a temporary name and move it into place on commit.

A product is committed companions and side files first, the main data file next and its header last,
so a run killed at any point leaves at most ``*.partial`` files: never a data file under its final
name without its complete content, and never a header that promises data that is not there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import netCDF4
import numpy as np
from pyproj import CRS

from hyper400k.envi_header import write_header
from hyper400k.geo import Affine6


def partial_path(path: Path) -> Path:
    """The temporary name a file is written under until it is complete."""
    return path.with_name(path.name + ".partial")


class Staged(Protocol):
    """A file being written: ``commit`` moves it to its final name, ``abort`` removes the temporary."""

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class TextFile:
    """A small text side file (gain table, wavelength table), written at once and renamed on commit."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        partial_path(path).write_text(text, encoding="ascii")

    def commit(self) -> None:
        os.replace(partial_path(self.path), self.path)

    def abort(self) -> None:
        partial_path(self.path).unlink(missing_ok=True)


class EnviWriter:
    """An ENVI cube appended strip by strip; strips arrive as ``(lines, samples, bands)`` arrays."""

    def __init__(self, path: Path, header: dict[str, object], dtype: np.dtype, interleave: str) -> None:
        if interleave not in ("bil", "bip"):
            raise ValueError(f"interleave {interleave!r} is not written strip-wise (use bil or bip)")
        self.path = path
        self.header = header
        self.dtype = dtype
        self.interleave = interleave
        self._expected = int(header["lines"]) * int(header["samples"]) * int(header["bands"]) * dtype.itemsize
        self._file = open(partial_path(path), "wb")

    def write(self, strip: np.ndarray) -> None:
        layout = strip.transpose(0, 2, 1) if self.interleave == "bil" else strip
        np.ascontiguousarray(layout, dtype=self.dtype).tofile(self._file)

    def commit(self) -> None:
        self._file.close()
        written = partial_path(self.path).stat().st_size
        if written != self._expected:
            raise RuntimeError(f"{self.path.name}: wrote {written} bytes, header implies {self._expected}")
        os.replace(partial_path(self.path), self.path)
        write_header(self.path.with_name(self.path.name + ".hdr"), self.header)

    def abort(self) -> None:
        self._file.close()
        partial_path(self.path).unlink(missing_ok=True)


class NetcdfWriter:
    """A NetCDF-4 product: root attributes, one group holding the cube ``(y, x, wavelength)``, the band
    table and a CF ``transverse_mercator`` grid mapping with GDAL's ``spatial_ref`` and ``GeoTransform``."""

    def __init__(
        self,
        path: Path,
        *,
        group: str,
        units: str,
        shape: tuple[int, int],
        wavelength_nm: np.ndarray,
        fwhm_nm: np.ndarray,
        epsg: int,
        transform: Affine6,
        attributes: dict[str, str],
        fill: float,
    ) -> None:
        self.path = path
        self._row = 0
        self._dataset = netCDF4.Dataset(partial_path(path), "w", format="NETCDF4")
        self._dataset.setncatts(attributes)
        grp = self._dataset.createGroup(group)
        grp.createDimension("y", shape[0])
        grp.createDimension("x", shape[1])
        grp.createDimension("wavelength", wavelength_nm.size)
        for name, values, long_name in (
            ("wavelength", wavelength_nm, "band centre wavelength"),
            ("fwhm", fwhm_nm, "band full width at half maximum"),
        ):
            var = grp.createVariable(name, "f8", ("wavelength",))
            var.setncatts({"units": "nm", "long_name": long_name})
            var[:] = values
        crs = CRS.from_epsg(epsg)
        mapping = grp.createVariable("transverse_mercator", "i4")
        mapping.setncatts({k: v for k, v in crs.to_cf().items() if v is not None})
        a, b, c, d, e, f = transform
        mapping.setncatts(
            {
                "spatial_ref": crs.to_wkt(),
                "GeoTransform": " ".join(repr(float(v)) for v in (c, a, b, f, d, e)),
            }
        )
        self._cube = grp.createVariable(
            group, "f4", ("y", "x", "wavelength"), fill_value=np.float32(fill), contiguous=True
        )
        self._cube.setncatts({"units": units, "grid_mapping": "transverse_mercator", "long_name": group})

    def write(self, strip: np.ndarray) -> None:
        self._cube[self._row : self._row + strip.shape[0]] = strip
        self._row += strip.shape[0]

    def commit(self) -> None:
        self._dataset.close()
        os.replace(partial_path(self.path), self.path)

    def abort(self) -> None:
        if self._dataset.isopen():
            self._dataset.close()
        partial_path(self.path).unlink(missing_ok=True)
