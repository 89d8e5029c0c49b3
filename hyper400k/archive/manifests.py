"""Turn product identifiers into a download manifest that ``hyper400k build`` takes.

The manifest is YAML: a ``products`` list (one :class:`hyper400k.manifest.ManifestEntry` per product,
with ``product`` and ``auth`` set) and an ``unavailable`` list of products with no derivable download and
the reason, so nothing is dropped silently.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from hyper400k.archive.product_list import ListedProduct
from hyper400k.archive.sources import Download, Unavailable, locate
from hyper400k.text_files import load_yaml


@dataclass(frozen=True)
class ManifestPlan:
    """The downloads of a set of products and the products that have none."""

    downloads: list[Download]
    unavailable: list[Unavailable]

    def to_dict(self) -> dict[str, Any]:
        return {
            "products": [_entry(d) for d in self.downloads],
            "unavailable": [
                {"product": u.product_id, "era": u.era, "reason": u.reason} for u in self.unavailable
            ],
        }


def make_manifest(
    products: Iterable[ListedProduct], mirrors: Mapping[str, str] | None = None
) -> ManifestPlan:
    """Locate every product once (a repeated identifier is kept once), in the order given.

    ``mirrors`` maps a URL prefix (``https://popo.jpl.nasa.gov``) to the prefix of a copy of that archive
    with the same layout (a local mirror, an institutional cache); the longest matching prefix wins.
    """
    downloads: list[Download] = []
    unavailable: list[Unavailable] = []
    seen: set[str] = set()
    for listed in products:
        if listed.product_id in seen:
            continue
        seen.add(listed.product_id)
        found = locate(listed)
        if isinstance(found, Download) and mirrors:
            found = replace(found, url=_mirrored(found.url, mirrors))
        (downloads if isinstance(found, Download) else unavailable).append(found)
    return ManifestPlan(downloads, unavailable)


def _mirrored(url: str, mirrors: Mapping[str, str]) -> str:
    for prefix in sorted(mirrors, key=len, reverse=True):
        if url.startswith(prefix):
            return mirrors[prefix].rstrip("/") + url[len(prefix.rstrip("/")) :]
    return url


def parse_mirrors(values: Iterable[str]) -> dict[str, str]:
    """``FROM=TO`` options as a prefix mapping; each side must be a URL."""
    mirrors: dict[str, str] = {}
    for value in values:
        source, sep, target = value.partition("=")
        if not sep or "://" not in source or "://" not in target:
            raise ValueError(f"--mirror {value!r}: expected FROM=TO, two URL prefixes")
        mirrors[source] = target
    return mirrors


def write_manifest(plan: ManifestPlan, path: Path) -> None:
    """Write the manifest as YAML through a temporary file, so an existing manifest is never left half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(plan.to_dict(), sort_keys=False, width=1000)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a manifest is an ordinary shared file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _entry(download: Download) -> dict[str, Any]:
    entry: dict[str, Any] = {"product": download.product_id, "url": download.url, "name": download.name}
    entry["auth"] = download.auth
    if download.size is not None:
        entry["size"] = download.size
    if download.extract:
        entry["extract"] = list(download.extract)
    return entry


def read_unavailable(path: Path) -> list[dict[str, Any]]:
    """The ``unavailable`` list a manifest records (empty when it has none); the file is already validated."""
    data = load_yaml(path.read_text(encoding="utf-8"))
    return list(data.get("unavailable") or []) if isinstance(data, dict) else []
