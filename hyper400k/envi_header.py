"""Parse and write ENVI ``.hdr`` files in all their real-world variety.

Written by hand rather than through GDAL or ``spectral`` because both lose information we need:
GDAL rounds wavelengths to 1 nm in its metadata domain, and ``spectral`` drops unknown keys, is strict
about key case, and cannot read products whose data file has no extension next to a ``.hdr``.
The grammar handled here: ``key = value`` lines, keys in any case and spacing, values in ``{}`` that
span lines, ``;`` comment lines, and the leading ``ENVI`` magic word.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hyper400k.errors import HeaderError

# ENVI "data type" codes -> numpy dtypes (byte order applied separately).
ENVI_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("u1"),
    2: np.dtype("i2"),
    3: np.dtype("i4"),
    4: np.dtype("f4"),
    5: np.dtype("f8"),
    12: np.dtype("u2"),
    13: np.dtype("u4"),
    14: np.dtype("i8"),
    15: np.dtype("u8"),
}
NUMPY_TO_ENVI: dict[str, int] = {dt.str[1:]: code for code, dt in ENVI_DTYPES.items()}

_KEY_VALUE = re.compile(r"^\s*([^=]+?)\s*=\s*(.*)$")


def normalise_key(key: str) -> str:
    """Header keys are case- and spacing-insensitive: ``Wavelength  Units`` == ``wavelength units``."""
    return " ".join(key.strip().lower().split())


def parse_header_text(text: str, source: str | Path = "<header>") -> dict[str, str]:
    """Split header text into ``{normalised key: raw value}``; braces are kept on list values."""
    lines = text.splitlines()
    if not lines or lines[0].strip().upper() != "ENVI":
        raise HeaderError(source, "not an ENVI header (first line is not 'ENVI')")
    fields: dict[str, str] = {}
    pending_key: str | None = None
    pending: list[str] = []
    for lineno, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip()
        if pending_key is not None:
            pending.append(line)
            if "}" in line:
                fields[pending_key] = "\n".join(pending).strip()
                pending_key, pending = None, []
            continue
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        match = _KEY_VALUE.match(line)
        if match is None:
            raise HeaderError(source, f"line {lineno} is neither 'key = value' nor a comment: {line!r}")
        key, value = normalise_key(match.group(1)), match.group(2).strip()
        if value.startswith("{") and "}" not in value:
            pending_key, pending = key, [value]
        else:
            fields[key] = value
    if pending_key is not None:
        raise HeaderError(
            source, f"value of '{pending_key}' opens '{{' but never closes it (truncated header?)"
        )
    return fields


def split_list(value: str) -> list[str]:
    """``{a, b ,c}`` -> ``['a', 'b', 'c']`` (whitespace and newlines inside the braces ignored)."""
    inner = value.strip()
    if inner.startswith("{"):
        inner = inner[1:]
    if inner.endswith("}"):
        inner = inner[:-1]
    return [item.strip() for item in inner.replace("\n", " ").split(",") if item.strip()]


@dataclass(frozen=True)
class EnviHeader:
    """A parsed header: the raw fields plus the typed values every reader needs."""

    path: Path
    fields: Mapping[str, str]

    @classmethod
    def read(cls, path: str | Path) -> EnviHeader:
        path = Path(path)
        try:
            text = path.read_text(encoding="latin-1")
        except OSError as exc:
            raise HeaderError(path, f"cannot read header: {exc.strerror or exc}") from exc
        return cls(path, parse_header_text(text, path))

    def has(self, key: str) -> bool:
        return normalise_key(key) in self.fields

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.fields.get(normalise_key(key), default)

    def required_int(self, key: str) -> int:
        value = self.get(key)
        if value is None:
            raise HeaderError(self.path, f"required key '{key}' is missing")
        try:
            return int(value)
        except ValueError as exc:
            raise HeaderError(self.path, f"'{key}' is not an integer: {value!r}") from exc

    def int_or(self, key: str, default: int) -> int:
        return self.required_int(key) if self.has(key) else default

    def float_or_none(self, key: str) -> float | None:
        value = self.get(key)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError as exc:
            raise HeaderError(self.path, f"'{key}' is not a number: {value!r}") from exc

    def strings(self, key: str) -> list[str] | None:
        value = self.get(key)
        return None if value is None else split_list(value)

    def floats(self, key: str) -> np.ndarray | None:
        """A ``{}`` list of numbers as float64 (full header precision), or None when absent."""
        items = self.strings(key)
        if items is None:
            return None
        try:
            return np.array([float(item) for item in items], dtype=np.float64)
        except ValueError as exc:
            raise HeaderError(self.path, f"'{key}' holds a non-numeric entry: {exc}") from exc

    @property
    def shape(self) -> tuple[int, int, int]:
        """(lines, samples, bands) as declared."""
        return self.required_int("lines"), self.required_int("samples"), self.required_int("bands")

    @property
    def dtype(self) -> np.dtype:
        code = self.required_int("data type")
        if code not in ENVI_DTYPES:
            raise HeaderError(self.path, f"unsupported ENVI data type {code} (complex or unknown)")
        order = self.int_or("byte order", 0)
        if order not in (0, 1):
            raise HeaderError(self.path, f"'byte order' must be 0 or 1, not {order}")
        return ENVI_DTYPES[code].newbyteorder("<" if order == 0 else ">")

    @property
    def interleave(self) -> str:
        value = (self.get("interleave") or "bsq").strip().lower()
        if value not in ("bsq", "bil", "bip"):
            raise HeaderError(self.path, f"unknown interleave {value!r} (expected bsq, bil or bip)")
        return value

    @property
    def header_offset(self) -> int:
        return self.int_or("header offset", 0)


def format_header(fields: Mapping[str, object]) -> str:
    """Render ``fields`` as ENVI header text; sequences become ``{a, b, ...}`` lists."""
    lines = ["ENVI"]
    for key, value in fields.items():
        if isinstance(value, list | tuple | np.ndarray):
            rendered = "{" + ", ".join(_format_scalar(v) for v in value) + "}"
        else:
            rendered = _format_scalar(value)
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"


def _format_scalar(value: object) -> str:
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


def write_header(path: str | Path, fields: Mapping[str, object]) -> None:
    """Write a header atomically (temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(format_header(fields), encoding="latin-1")
    os.replace(tmp, path)


def find_header(data_path: str | Path) -> Path:
    """The header of a data file: ``X.hdr`` or ``X.img`` -> ``X.hdr`` (AVIRIS-NG data files have no extension)."""
    data_path = Path(data_path)
    candidates = [data_path.with_name(data_path.name + ".hdr")]
    if data_path.suffix:
        candidates.append(data_path.with_suffix(".hdr"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise HeaderError(data_path, "no ENVI header found beside the data file")


def find_data_file(header_path: str | Path) -> Path:
    """The data file of a header: ``X.hdr`` -> ``X``, ``X.img``, ``X.dat``, ``X.bin`` or ``X.raw``."""
    header_path = Path(header_path)
    stem = header_path.with_suffix("")
    for candidate in (
        stem,
        *(stem.with_name(stem.name + ext) for ext in (".img", ".dat", ".bin", ".raw", ".sli")),
    ):
        if candidate.is_file() and candidate != header_path:
            return candidate
    raise HeaderError(
        header_path, "no data file found beside the header (tried no extension, .img, .dat, .bin, .raw, .sli)"
    )
