"""What is under a build's INPUT folder: every file is a product, part of one, or listed with a reason.

Nothing is passed over silently. Each file is one of:

- a **product** (an ENVI header with its data file, a GeoTIFF, a NetCDF), handed to the build;
- **part of a product or its flight line**: the data file beside a product header, ``loc``/``obs``/``glt``/
  ``igm`` companions (of any instrument, see :func:`hyper400k.sensors.file_role`), and known side files
  (``.gain`` tables, ``wavelengths.txt``, ``*.overrides.yaml`` sidecars, GDAL ``.aux.xml``);
- **ignored**, with the reason (an ENVI spectral library, a README, anything else), listed in the report;
- a **failure**: a folder or file that cannot be read, or a data file whose header is missing (the
  failure names the header looked for).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyper400k.envi_header import EnviHeader
from hyper400k.errors import ProductError
from hyper400k.overrides import is_sidecar
from hyper400k.product import is_product_file
from hyper400k.readers.metadata import product_id_of
from hyper400k.sensors import file_role, identify

# Raw-cube extensions: a file with one of these (or a sensor-named data file) needs a header beside it.
RAW_DATA_SUFFIXES = (".img", ".dat", ".bin", ".raw", ".bsq", ".bil", ".bip")
_SIDE_FILE_SUFFIXES = (".gain", ".aux.xml")
_SELF_DESCRIBING = (".tif", ".tiff", ".nc", ".nc4")  # products of their own, even beside an ENVI header
_WAVELENGTH_FILES = ("wavelengths.txt", "_wavelengths.txt")


@dataclass
class InputListing:
    """The outcome of looking at every file under INPUT."""

    products: list[Path] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)  # build-report failure records
    ignored: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}


def list_input(root: Path) -> InputListing:
    """Walk ``root`` (following no links) and sort every file; see the module docstring."""
    listing = InputListing()

    def unreadable_folder(exc: OSError) -> None:
        listing.failures.append(
            _failure(Path(exc.filename or root), f"cannot list folder: {exc.strerror or exc}")
        )

    files: list[Path] = []
    for folder, _dirs, names in os.walk(root, onerror=unreadable_folder):
        files += [Path(folder, name) for name in names]
    claimed = _data_files_of_headers(files)
    for path in sorted(files):
        if path in claimed:
            continue
        verdict = _classify(path)
        if verdict is None:
            listing.products.append(path.resolve())
        elif verdict[0] == "failed":
            listing.failures.append(_failure(path, verdict[1]))
        elif verdict[0] == "ignored":
            listing.ignored.append({"path": str(path), "reason": verdict[1]})
    return listing


def _data_files_of_headers(files: list[Path]) -> set[Path]:
    """Files that are the data of a header in the same folder (``X`` or ``X.img`` beside ``X.hdr``, ...)."""
    present = set(files)
    claimed: set[Path] = set()
    for header in (p for p in files if p.suffix.lower() == ".hdr"):
        stem = header.with_suffix("")
        candidates = [stem, *(stem.with_name(stem.name + ext) for ext in (*RAW_DATA_SUFFIXES, ".sli"))]
        claimed.update(c for c in candidates if c in present and c.suffix.lower() not in _SELF_DESCRIBING)
    return claimed


def _classify(path: Path) -> tuple[str, str] | None:
    """None for a product; ("part", why) for companions and side files; ("ignored" | "failed", why)."""
    if not os.path.isfile(path) or os.path.islink(path):
        return "ignored", "not a regular file (links, devices and sockets are not read)"
    if not os.access(path, os.R_OK) or not _readable(path):
        return "failed", "cannot read file: permission denied"
    name = path.name.lower()
    if is_sidecar(path) or name.endswith(_SIDE_FILE_SUFFIXES) or name.endswith(_WAVELENGTH_FILES):
        return "part", "side file"
    if is_product_file(path):
        if path.suffix.lower() == ".hdr":
            return _classify_header(path)
        return None
    if path.suffix.lower() == ".hdr" or file_role(path) != "data":
        return "part", "companion"
    if path.suffix.lower() in RAW_DATA_SUFFIXES or (identify(path) is not None):
        return "failed", f"data file without a header: looked for {path.name}.hdr" + (
            f" and {path.with_suffix('.hdr').name}" if path.suffix else ""
        )
    return "ignored", "not a product, a companion or a known side file"


def _classify_header(header: Path) -> tuple[str, str] | None:
    """An image header is a product; a spectral library or a TIFF's ENVI sidecar is not."""
    try:
        file_type = (EnviHeader.read(header).get("file type") or "ENVI Standard").strip().lower()
    except ProductError:
        return None  # the build reports the broken header as a failed product, with the reason
    if file_type.startswith("envi spectral library"):
        return "ignored", "ENVI spectral library, not an image"
    if file_type.startswith("envi classification"):
        return "ignored", "ENVI classification image (class codes), not spectra"
    if not file_type.startswith("envi"):
        return "part", f"ENVI sidecar of a '{file_type}' file"
    return None


def _readable(path: Path) -> bool:
    """Opening tells what permission bits cannot (ACLs, root squash, a file gone since the listing)."""
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def _failure(path: Path, reason: str) -> dict[str, Any]:
    return {
        "status": "failed",
        "product_id": product_id_of(path),
        "path": str(path),
        "reason": f"{path}: {reason}",
    }
