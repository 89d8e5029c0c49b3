"""What a build's Dask worker imports when it starts: ``dask worker SCHEDULER --preload pipelines.worker``.

Without it a worker imports the tiling and packing stack (numpy, torch, rasterio, xarray, pyproj: about 3 s
and 360 MB here) when its first task arrives, so every build on a fresh worker starts that much later, and a
short build on many workers spends a large share of its time importing. Preloaded, the cost is paid once,
when the worker starts. The build's own ``LocalCluster`` preloads it (:data:`pipelines.build.WORKER_PRELOAD`).

A worker reads products through rasterio too, so it logs GDAL messages rasterio cannot decode instead of
printing their tracebacks, as the command lines do (:mod:`hyper400k.gdal_messages`).
"""

from __future__ import annotations

from hyper400k.gdal_messages import log_undecodable_gdal_messages
from pipelines import pack, product_task

log_undecodable_gdal_messages()

__all__ = ["pack", "product_task"]
