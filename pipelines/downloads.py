"""Manifest entries as build inputs: fetched just before their product is tiled, deleted once it is.

At archive scale the downloads are the largest thing on disk: Hyper-400K's archives and their extracted
members come to several times the packed corpus. So an entry that names its product (``product:``, which
``hyper400k manifest`` always writes) and arrives whole (a tarball, or a self-contained NetCDF/GeoTIFF/HDF5
file) is not fetched up front. Its product is planned from the identifier alone (flight line, segment,
split), and the tiling task fetches it, tiles it and deletes the download once the product's record is
durable. The disk then holds the packed corpus plus the downloads and spools in flight, and a re-run
fetches nothing for products already tiled. Other entries (a hand-written manifest that lists an ENVI
header and its data file apart, or names no product) are fetched before planning, as a folder would be read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hyper400k.download import FetchError, FetchResult, fetch
from hyper400k.envi_header import find_data_file
from hyper400k.manifest import ManifestEntry
from hyper400k.overrides import sidecar_path, write_sidecar
from hyper400k.product import is_product_file
from hyper400k.readers.metadata import product_id_of
from hyper400k.sensors import file_role

SELF_CONTAINED = (".nc", ".nc4", ".tif", ".tiff", ".h5", ".he5")
"""Single-file formats that carry their metadata: a download of one of them is a whole product."""


def deferrable(entry: ManifestEntry) -> bool:
    """Whether ``entry`` can be planned before it is fetched: it names its product and arrives whole."""
    return entry.product is not None and (entry.is_tarball or entry.name.lower().endswith(SELF_CONTAINED))


def fetched_files(result: FetchResult) -> tuple[Path, ...]:
    """Every file a successful fetch put on disk (the archive's extracted members, or the file itself).

    Writes the entry's overrides beside each data file first, as its sidecar, so the readers see them.
    """
    files = result.extracted or (result.path,)
    if result.entry.overrides:
        for path in files:
            if file_role(path) == "data":
                write_sidecar(path, result.entry.overrides)
    return files


@dataclass(frozen=True)
class Download:
    """A fetched entry: the data file of the product it was asked for, and every file the fetch wrote."""

    data: Path
    result: FetchResult

    def origins(self, root: Path) -> dict[Path, dict[str, str]]:
        """Where each file of this download is distributed, by its resolved path on disk: the entry's URL, and
        for a tarball's member its name in the archive (extracted under ``root``, the folder fetched into).
        What the catalog names as the source once the download is deleted."""
        url = self.result.entry.url
        if not self.result.extracted:
            return {self.result.path.resolve(): {"href": url}}
        return {
            path.resolve(): {"href": url, "member": path.relative_to(root).as_posix()}
            for path in self.result.extracted
        }

    def discard(self, root: Path) -> None:
        """Delete the download (archive, extracted members, sidecars) and the folders it leaves empty under
        ``root``; what is already gone is skipped."""
        files = [self.result.path, *self.result.extracted]
        if self.result.entry.overrides:
            files += [sidecar_path(p) for p in self.result.extracted or (self.result.path,)]
        for path in files:
            path.unlink(missing_ok=True)
        _remove_empty_parents((p.parent for p in files), root)


def fetch_product(entry: ManifestEntry, dest: Path, product_id: str) -> Download:
    """Fetch ``entry`` into ``dest`` and find the data file of ``product_id`` in it.

    Raises :class:`~hyper400k.download.FetchError` (naming the URL or file and the problem) when the
    download fails or does not hold that product.
    """
    result = fetch(entry, dest, progress=False)
    if not result.ok:
        raise FetchError(result.reason or f"{entry.url}: download failed")
    for path in sorted(p for p in fetched_files(result) if is_product_file(p)):
        data = find_data_file(path) if path.suffix.lower() == ".hdr" else path
        if product_id_of(data) == product_id:
            return Download(data, result)
    raise FetchError(f"{result.path}: holds no product named {product_id}")


def _remove_empty_parents(folders: Iterable[Path], root: Path) -> None:
    """Remove each folder and its ancestors below ``root`` while they are empty."""
    root = root.resolve()
    for folder in sorted({f.resolve() for f in folders}, key=lambda f: len(f.parts), reverse=True):
        while folder != root and root in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (another product's files), or already gone
                break
            folder = folder.parent
