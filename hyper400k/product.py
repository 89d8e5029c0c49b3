"""``open_product``: one call opens any supported product and returns a lazy :class:`Scene`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from hyper400k.errors import ProductError, UnsupportedProductError
from hyper400k.overrides import Overrides, read_sidecar
from hyper400k.readers.envi_product import open_envi
from hyper400k.readers.geotiff import open_geotiff
from hyper400k.readers.netcdf import open_netcdf
from hyper400k.scene import Scene

_OPENERS = {".nc": open_netcdf, ".nc4": open_netcdf, ".tif": open_geotiff, ".tiff": open_geotiff}


def open_product(
    path: str | Path,
    *,
    sensor: str | None = None,
    level: str | None = None,
    scale: float | None = None,
    when: datetime | None = None,
) -> Scene:
    """Open a product by its data file or header; nothing is read until pixels are asked for.

    ``sensor``/``level``/``scale``/``when`` override what the name and header say; they are needed only
    for products of unknown instruments (sensor ``other``) whose files do not state them. They win over
    the product's sidecar (:mod:`hyper400k.overrides`), which states the same for every command.
    """
    path = Path(path)
    if not path.exists():
        raise ProductError(path, "no such file")
    if path.is_dir():
        raise UnsupportedProductError(path, "is a directory; give the product's data file or header")
    stated = Overrides(sensor, level, scale, when).merged_over(read_sidecar(path))
    options = dict(sensor_name=stated.sensor, level=stated.level, scale=stated.scale, when=stated.datetime)
    opener = _OPENERS.get(path.suffix.lower())
    if opener is None:
        return open_envi(path, companions=stated.companions, **options)
    if stated.companions:
        raise UnsupportedProductError(path, "'companions' overrides apply to ENVI products only")
    # GDAL and netCDF call a file they may not read merely unreadable; Python names the refusal (exit code 3).
    path.open("rb").close()
    return opener(path, **options)


def is_product_file(path: Path) -> bool:
    """Whether a file in a folder is a product's main file (ENVI header, GeoTIFF or NetCDF), not a companion."""
    from hyper400k.sensors import file_role

    if path.suffix.lower() not in (".hdr", *_OPENERS):
        return False
    return file_role(path.with_suffix("") if path.suffix.lower() == ".hdr" else path) == "data"
