"""Memory-mapped reader for ENVI products (AVIRIS-Classic, AVIRIS-NG, AVIRIS-3 and any other cube).

Pixels are converted one line at a time from the memory map into a band-first float32 output, so
each line's scaling, fill detection and byte swapping run on data that sits in the CPU cache; the
only full pass over the strip is the copy itself (see ``benchmarks/read.py``).
"""

from __future__ import annotations

import logging
import mmap
from pathlib import Path

import numpy as np

from hyper400k.envi_header import EnviHeader
from hyper400k.errors import HeaderError
from hyper400k.scene import Scene, SceneMeta

log = logging.getLogger(__name__)


class EnviScene(Scene):
    """A lazily read ENVI cube: ``read_lines`` maps only the requested lines.

    ``scale`` multiplies each band (e.g. 1/gain for AVIRIS-Classic DN). Stored values equal to
    ``nodata`` become NaN (whole fill pixels, or whole bad bands some products fill that way); pixels
    whose whole spectrum is one constant are fill too and become NaN in every band (a real surface
    never gives the same value in hundreds of bands; JPL's v1 reflectance fills edge pixels that way
    without declaring it).
    """

    def __init__(
        self, meta: SceneMeta, header: EnviHeader, data_path: Path, scale: np.ndarray | None
    ) -> None:
        self.meta = meta
        self.header = header
        self.data_path = data_path
        self.interleave = header.interleave
        self.dtype = header.dtype
        lines, samples, bands = header.shape
        check_data_size(header, data_path)
        layout = {
            "bil": (lines, bands, samples),
            "bip": (lines, samples, bands),
            "bsq": (bands, lines, samples),
        }
        self._mm = np.memmap(
            data_path, dtype=self.dtype, mode="r", offset=header.header_offset, shape=layout[self.interleave]
        )
        self._scale = None if scale is None else np.asarray(scale, dtype=np.float32).reshape(-1, 1)
        self._nodata = None if meta.nodata is None else self.dtype.type(meta.nodata)
        self._is_float = self.dtype.kind == "f"

    def read_lines(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        self._check_range(start, stop)
        shape = (self.meta.bands, stop - start, self.meta.samples)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32:
            raise ValueError(f"out must be float32 {shape}, got {out.dtype} {out.shape}")
        if self.interleave == "bsq":
            out[...] = self._mm[:, start:stop, :]
            for row in range(stop - start):
                self._clean_line(out[:, row, :], out[:, row, :])
        else:
            for row, line in enumerate(range(start, stop)):
                raw = self._mm[line] if self.interleave == "bil" else self._mm[line].T
                self._clean_line(raw, out[:, row, :])
        self._release(start, stop)
        return out

    def _release(self, start: int, stop: int) -> None:
        """Drop the mapped pages of lines just read from this process's resident set.

        Mapped file pages count towards RSS until unmapped; without this a strip-wise pass over a
        multi-gigabyte product would look like it holds the whole product. The page cache keeps them.
        """
        mapping = getattr(self._mm, "_mmap", None)
        if mapping is None:
            return
        line_bytes = self.meta.samples * self.dtype.itemsize
        if self.interleave == "bsq":
            band_bytes = self.meta.lines * line_bytes
            ranges = [(b * band_bytes + start * line_bytes, (stop - start) * line_bytes) for b in range(self.meta.bands)]
        else:
            line_bytes *= self.meta.bands
            ranges = [(start * line_bytes, (stop - start) * line_bytes)]
        base = self._mm.offset - self._mm.offset % mmap.ALLOCATIONGRANULARITY  # where numpy's mapping begins
        head = self._mm.offset - base
        for offset, length in ranges:
            begin = head + offset
            first_page = -(-begin // mmap.PAGESIZE) * mmap.PAGESIZE  # only whole pages inside the range
            last_page = (begin + length) // mmap.PAGESIZE * mmap.PAGESIZE
            if last_page > first_page:
                mapping.madvise(mmap.MADV_DONTNEED, first_page, last_page - first_page)

    def _clean_line(self, raw: np.ndarray, dest: np.ndarray) -> None:
        """One line ``(bands, samples)``: convert into ``dest``, scale, NaN the nodata values and fill pixels."""
        nodata = None if self._nodata is None else raw == self._nodata
        fill = self._constant_pixels(raw)
        if dest is not raw:
            np.copyto(dest, raw, casting="unsafe")
        if self._scale is not None:
            dest *= self._scale
        if nodata is not None:
            dest[nodata] = np.nan
        if fill is not None:
            dest[:, fill] = np.nan

    @staticmethod
    def _constant_pixels(raw: np.ndarray) -> np.ndarray | None:
        """Columns of one line whose whole spectrum is a single value (fill), or None when there are none."""
        first, middle, last = raw[0], raw[raw.shape[0] // 2], raw[-1]
        candidates = np.flatnonzero((first == last) & (first == middle))
        if candidates.size == 0 or raw.shape[0] < 3:
            return None
        constant = (raw[:, candidates] == first[candidates]).all(axis=0)
        return candidates[constant] if constant.any() else None


def check_data_size(header: EnviHeader, data_path: Path) -> None:
    """Refuse a data file whose size disagrees with the header (truncated download, wrong header)."""
    lines, samples, bands = header.shape
    expected = header.header_offset + lines * samples * bands * header.dtype.itemsize
    try:
        actual = data_path.stat().st_size
    except OSError as exc:
        raise HeaderError(data_path, f"cannot stat data file: {exc.strerror or exc}") from exc
    if actual < expected:
        raise HeaderError(
            data_path,
            f"truncated: header {header.path.name} implies {expected} bytes "
            f"({lines} lines x {samples} samples x {bands} bands x {header.dtype.itemsize} B + {header.header_offset} offset), "
            f"file has {actual}",
        )
    if actual > expected:
        raise HeaderError(
            data_path,
            f"size disagrees with header {header.path.name}: file has {actual} bytes, header implies {expected}",
        )
