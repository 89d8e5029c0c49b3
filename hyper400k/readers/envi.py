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

    ``scale`` multiplies each band (e.g. 1/gain for AVIRIS-Classic DN) and ``offset`` is then added
    (ENVI's ``data offset values``). Stored values equal to
    ``nodata`` become NaN (whole fill pixels, or whole bad bands some products fill that way); pixels
    whose whole spectrum is one constant are fill too and become NaN in every band (a real surface
    never gives the same value in hundreds of bands; JPL's v1 reflectance fills edge pixels that way
    without declaring it).
    """

    def __init__(
        self,
        meta: SceneMeta,
        header: EnviHeader,
        data_path: Path,
        scale: np.ndarray | None,
        offset: np.ndarray | None = None,
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
        self._offset = None if offset is None else np.asarray(offset, dtype=np.float32).reshape(-1, 1)
        self._nodata = None if meta.nodata is None else self.dtype.type(meta.nodata)
        self._nodata_f32 = None if meta.nodata is None else np.float32(self._nodata)
        self._mask = np.empty((bands, samples), dtype=bool)  # reused per line by _mask_nodata
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
            ranges = [
                (b * band_bytes + start * line_bytes, (stop - start) * line_bytes)
                for b in range(self.meta.bands)
            ]
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
        """One line ``(bands, samples)``: convert into ``dest``, scale, NaN the nodata values and fill pixels.

        The nodata test runs on the converted line while it is still in the CPU cache (the stored
        value and its float32 image compare equal for every ENVI data type we read).
        """
        constant = self._constant_pixels(raw)
        if dest is not raw:
            np.copyto(dest, raw, casting="unsafe")
        if self._nodata_f32 is not None:
            self._mask_nodata(dest)
        if self._scale is not None:
            dest *= self._scale
        if self._offset is not None:
            dest += self._offset
        if constant is not None:
            dest[:, constant] = np.nan

    def _mask_nodata(self, dest: np.ndarray) -> None:
        """NaN every nodata value of one converted line.

        Ortho swaths leave fill at both ends of a line: those columns are blanked by slicing (a memset),
        then one comparison into a reused mask catches any nodata value left inside the line.
        """
        fill = dest[0] == self._nodata_f32
        if fill.any():
            data_columns = np.flatnonzero(~fill)
            if data_columns.size == 0:
                dest[...] = np.nan
                return
            dest[:, : data_columns[0]] = np.nan
            dest[:, data_columns[-1] + 1 :] = np.nan
        mask = np.equal(dest, self._nodata_f32, out=self._mask)
        if mask.any():
            dest[mask] = np.nan

    def _constant_pixels(self, raw: np.ndarray) -> np.ndarray | None:
        """Columns of one line whose whole spectrum is one value other than nodata (undeclared fill)."""
        if raw.shape[0] < 3:
            return None
        first, middle, last = raw[0], raw[raw.shape[0] // 2], raw[-1]
        candidates = (first == last) & (first == middle)
        if self._nodata is not None:
            candidates &= first != self._nodata  # declared fill becomes NaN value by value
        columns = np.flatnonzero(candidates)
        if columns.size == 0:
            return None
        constant = (raw[:, columns] == first[columns]).all(axis=0)
        return columns[constant] if constant.any() else None


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
