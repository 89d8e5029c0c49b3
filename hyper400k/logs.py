"""Quiet by default: what the command lines show, and what ``-v`` brings back.

Without ``-v`` a run shows its progress bars, its stage lines and its summary; library loggers stay at WARNING.
Two libraries configure their own loggers and ignore the root level, so they are set here explicitly:

- dask.distributed sets its ``distributed`` logger to INFO when it is imported (from dask's ``logging`` config),
  which is why a build printed some 25 ``INFO distributed…`` lines whatever Python's root level was. Its level
  is set through dask's own config, the environment variable ``DASK_LOGGING__DISTRIBUTED``, which dask reads at
  import and which worker processes inherit; the loggers are also set directly if dask is already imported.
- DeepSpeed logs through its own ``DeepSpeed`` logger (own stdout handler, no propagation), and warns about the
  accelerator it picks while it is being imported. :func:`quiet_deepspeed` drops its records below ERROR (a
  logger filter survives the logger's re-configuration during DeepSpeed's import); training lets them through.
- rasterio prints a traceback for a GDAL message that is not UTF-8 (a damaged raster quotes its broken bytes);
  :mod:`hyper400k.gdal_messages` turns it into one log line.
"""

from __future__ import annotations

import logging
import os
import sys

from hyper400k.gdal_messages import log_undecodable_gdal_messages

FORMAT = "%(levelname)s %(name)s: %(message)s"
DASK_LEVEL_VARIABLE = "DASK_LOGGING__DISTRIBUTED"
DEEPSPEED_LOGGER = "DeepSpeed"


def configure_logging(verbose: bool) -> None:
    """Root logging at INFO with ``verbose``, else WARNING; dask.distributed at INFO with ``verbose``, else ERROR.

    dask's own warnings (e.g. a worker process killed while the cluster shuts down) are not actionable: a task
    that fails is recorded with its reason by the build, which is what the user acts on.
    """
    log_undecodable_gdal_messages()
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format=FORMAT, force=True)
    dask_level = logging.INFO if verbose else logging.ERROR
    os.environ[DASK_LEVEL_VARIABLE] = logging.getLevelName(dask_level).lower()
    if "distributed" in sys.modules:
        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core"):
            logging.getLogger(name).setLevel(dask_level)
    if verbose:
        allow_deepspeed()
    else:
        quiet_deepspeed()


class _BelowError(logging.Filter):
    """Drops records below ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


_DEEPSPEED_FILTER = _BelowError()


def quiet_deepspeed() -> None:
    """Silence DeepSpeed below ERROR (including its accelerator warning at import) until :func:`allow_deepspeed`."""
    logging.getLogger(DEEPSPEED_LOGGER).addFilter(_DEEPSPEED_FILTER)


def allow_deepspeed() -> None:
    """Let DeepSpeed's warnings through again (training: they concern the run)."""
    logging.getLogger(DEEPSPEED_LOGGER).removeFilter(_DEEPSPEED_FILTER)
