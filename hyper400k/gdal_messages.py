"""GDAL messages that rasterio cannot decode are logged as one line, not printed as a Python traceback.

rasterio receives GDAL's warnings and errors as bytes in a C callback and decodes them as UTF-8 before logging
them under ``rasterio._env``. A damaged raster can put other bytes into a message (GDAL quotes the broken tag
or XML attribute), and so can a file name in a non-UTF-8 locale. The decoding then fails inside the callback,
where an exception cannot propagate, and Python prints it on stderr twice: once through ``sys.excepthook``
without a traceback, then as "Exception ignored in: 'rasterio._env.log_error'" with one (rasterio/rasterio#3128,
still open). The command lines promise one error line per failure, so the processes the project runs (both
command lines and the build's Dask workers) call :func:`log_undecodable_gdal_messages`.

This is done with interpreter hooks because nothing else reaches it: rasterio installs its GDAL error handler
itself and exposes no option for the decoding. The hooks act only on that one failure and hand every other
exception to the hooks that were there before; a library user who never calls the function is not affected.
"""

from __future__ import annotations

import functools
import logging
import sys
from types import TracebackType
from typing import Any

LOG = logging.getLogger("rasterio._env")  # where rasterio logs the GDAL messages it can decode
# An unraisable exception's object names the Cython callback it came from: 'rasterio._env.log_error'.
CALLBACK_PREFIX = "rasterio."


@functools.cache  # once per process: a second call would wrap the hooks again
def log_undecodable_gdal_messages() -> None:
    """Log, as a warning with the undecodable bytes replaced, each GDAL message rasterio fails to decode."""
    previous_unraisable = sys.unraisablehook
    previous_excepthook = sys.excepthook

    def unraisable(info: Any) -> None:
        if isinstance(info.exc_value, UnicodeDecodeError) and str(info.object).startswith(CALLBACK_PREFIX):
            LOG.warning("%s", message_text(info.exc_value))
            return
        previous_unraisable(info)

    def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        # The callback's wrapper prints the same failure first, through this hook and with no traceback; an
        # exception a program lets out always has one, so nothing else is held back here.
        if tb is None and isinstance(value, UnicodeDecodeError):
            return
        previous_excepthook(kind, value, tb)

    sys.unraisablehook = unraisable
    sys.excepthook = excepthook


def message_text(failure: UnicodeDecodeError) -> str:
    """The message rasterio could not decode, with the bytes that are not UTF-8 replaced."""
    raw = failure.object
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
    return " ".join(text.split())
