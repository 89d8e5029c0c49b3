"""The Sample contract: one patch as stored in a shard (``data.npy``, ``valid.npy``, ``meta.json``).

``meta.json`` carries everything a model or a user needs without any other file. This module owns
the encoding and the schema check, so the writer, ``verify`` and the streaming loader agree by construction.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from hyper400k.splits import SPLITS

SCHEMA_VERSION = 1
MEMBERS = ("data.npy", "valid.npy", "meta.json")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+_r\d+_c\d+$")

# Required meta.json fields and their JSON types.
META_FIELDS: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "key": str,
    "sensor": str,
    "level": str,
    "product": str,
    "flight_line": str,
    "segment": (str, type(None)),  # numbered piece of the flight line (``003``), None when not cut
    "wavelength_nm": list,
    "fwhm_nm": list,
    "good_bands": list,
    "gsd_m": (float, int, type(None)),
    "units": str,
    "crs": (str, type(None)),
    "transform": (list, type(None)),
    "footprint": (dict, type(None)),
    "datetime": str,
    "row": int,
    "col": int,
    "height": int,
    "width": int,
    "angles": dict,
    "qa": dict,
    "split": str,
    "preset": str,
}
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-]")


def sample_key(product_id: str, row: int, col: int) -> str:
    """``<product>_r<row>_c<col>``; dots (which WebDataset treats as extension separators) become ``-``."""
    safe = _UNSAFE_KEY_CHARS.sub("-", product_id)
    return f"{safe}_r{row}_c{col}"


@dataclass
class Sample:
    """A patch: ``data`` C×H×W float16 in physical units (invalid pixels 0), ``valid`` H×W bool, ``meta``."""

    key: str
    data: np.ndarray
    valid: np.ndarray
    meta: dict[str, Any]

    def encode(self) -> dict[str, bytes]:
        """The member bytes of this sample, keyed by member name (``data.npy`` …)."""
        return {name: b"".join(parts) for name, parts in self.encode_parts().items()}

    def encode_parts(self) -> dict[str, tuple[bytes | memoryview, ...]]:
        """The members as the pieces that make them up, in order, without copying the arrays: a ``.npy``
        member is its header followed by a view of the array's memory. A writer that streams the pieces
        saves the two copies of a ~55 MB patch (into a buffer, then out of it) that :meth:`encode` costs."""
        return {
            "data.npy": npy_parts(self.data),
            "valid.npy": npy_parts(self.valid),
            "meta.json": (json.dumps(self.meta, allow_nan=False).encode(),),
        }

    @classmethod
    def decode(cls, key: str, members: dict[str, bytes]) -> Sample:
        missing = [m for m in MEMBERS if m not in members]
        if missing:
            raise SchemaError(key, f"missing members {missing}")
        try:
            data = np.load(io.BytesIO(members["data.npy"]), allow_pickle=False)
            valid = np.load(io.BytesIO(members["valid.npy"]), allow_pickle=False)
            meta = json.loads(members["meta.json"])
        except (ValueError, EOFError) as exc:  # JSONDecodeError is a ValueError; an empty .npy is an EOFError
            raise SchemaError(key, f"undecodable member: {exc}") from exc
        if not isinstance(meta, dict):
            raise SchemaError(key, f"meta.json is a {type(meta).__name__}, not an object")
        sample = cls(key, data, valid, meta)
        sample.check()
        return sample

    def check(self) -> None:
        """Raise :class:`SchemaError` if this sample violates the contract."""
        problems = schema_problems(self.key, self.data, self.valid, self.meta)
        if problems:
            raise SchemaError(self.key, "; ".join(problems))


class SchemaError(ValueError):
    """A sample violates the shard contract; the message names the sample key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"sample {key}: {problem}")


def schema_problems(key: str, data: np.ndarray, valid: np.ndarray, meta: dict[str, Any]) -> list[str]:
    """Every way a sample breaks the contract (empty when it is valid)."""
    problems = []
    if not KEY_PATTERN.match(key):
        problems.append(f"key {key!r} is not '<product>_r<row>_c<col>' without dots")
    if data.dtype != np.float16 or data.ndim != 3:
        problems.append(f"data must be C×H×W float16, is {data.dtype} with shape {data.shape}")
    if valid.dtype != np.bool_ or valid.shape != data.shape[1:]:
        problems.append(f"valid must be bool {data.shape[1:]}, is {valid.dtype} {valid.shape}")
    for name, kind in META_FIELDS.items():
        if name not in meta:
            problems.append(f"meta.json lacks '{name}'")
        elif not isinstance(meta[name], kind):
            problems.append(f"meta.json '{name}' has type {type(meta[name]).__name__}")
    if problems:
        return problems
    bands = data.shape[0]
    for name in ("wavelength_nm", "fwhm_nm", "good_bands"):
        if len(meta[name]) != bands:
            problems.append(f"meta.json '{name}' has {len(meta[name])} entries for {bands} bands")
    if meta["key"] != key:
        problems.append(f"meta.json key {meta['key']!r} differs from the sample key")
    if meta["split"] not in SPLITS:
        problems.append(f"split {meta['split']!r} not in {SPLITS}")
    if (meta["height"], meta["width"]) != data.shape[1:]:
        problems.append("meta.json height/width disagree with data")
    if not _all_finite_float16(data):
        problems.append("data holds non-finite values (invalid pixels must be 0)")
    return problems


def _all_finite_float16(data: np.ndarray) -> bool:
    """``np.isfinite(data).all()`` for float16 by its exponent bits, a few bands at a time so the temporaries
    stay in cache: ~10x faster than ``isfinite`` on 50 MB patches."""
    bits = np.ascontiguousarray(data).view(np.uint16).reshape(data.shape[0], -1)
    scratch = np.empty((min(16, len(bits)), bits.shape[1]), dtype=np.uint16)
    for start in range(0, len(bits), len(scratch)):
        chunk = bits[start : start + len(scratch)]
        exponent = np.bitwise_and(chunk, 0x7C00, out=scratch[: len(chunk)])
        if (exponent == 0x7C00).any():
            return False
    return True


def npy_parts(array: np.ndarray) -> tuple[bytes, memoryview]:
    """The ``.npy`` encoding of ``array`` as (header, the array's bytes): joined, exactly what ``np.save`` writes.

    Written by hand because ``np.save`` into a buffer copies the array twice (``tobytes``, then the buffer),
    and a writer that can take the two pieces needs neither copy."""
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return header.getvalue(), memoryview(array.reshape(-1)).cast("B")
