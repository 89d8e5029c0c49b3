"""A build whose output is an object store (``s3://bucket/prefix``, ``gs://...``): what lives where, and how
a generation is published so that readers always see one consistent generation.

The build runs in a local work folder exactly as a local build does (product spools, window records, the
catalog written and validated by pystac); only the committed output goes to the store:

* each packing task uploads its finished shards (``shards/<group>/<split>/*.tar``) and deletes their local
  copies, so local disk holds about one window of spools and shards per worker;
* the generation's index, patch table and collections go to ``generations/<N>/`` (a folder no earlier
  generation uses), and ``catalog.json`` is PUT last. One object PUT is atomic on S3 and GCS, so the catalog
  switches readers from generation N-1 to N at once, as the rename of a local build does;
* only then are shards and generation folders that the new generation does not use deleted.

The local folder mirrors the committed ``catalog.json`` and shard index (:func:`pull_committed`) so planning
(kept, damaged, added and removed windows) works as for a local build, against the store's shards: their
sizes are checked on every run and their sha256 (streamed) with ``--verify``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from hyper400k import storage
from hyper400k.stac import CATALOG_FILE, GENERATIONS_DIR, catalog_generation, generation_dir
from pipelines.generation import Committed
from pipelines.pack import SHARDS

REPORT = "report"
FAILURES = "failures.json"


def default_work_dir(url: str) -> Path:
    """The local work folder of a remote output when ``--work`` is not given: one per output URL in the
    user's cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``), so a re-run finds its spools and window
    records again."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "hyper400k" / "builds" / digest


def pull_committed(url: str, local: Path) -> None:
    """Mirror the store's committed ``catalog.json`` and shard index into ``local`` (what planning reads);
    with no catalog in the store, remove any local one, so the build starts from generation 1."""
    catalog = storage.join(url, CATALOG_FILE)
    mirror = local / CATALOG_FILE
    if not storage.is_file(catalog):
        mirror.unlink(missing_ok=True)
        return
    generation, _, index = catalog_generation(catalog)
    if generation is None or index is None:
        mirror.unlink(missing_ok=True)
        return
    target = local / generation_dir(generation) / storage.name_of(index)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write(target, storage.read_bytes(index))
    _write(mirror, storage.read_bytes(catalog))


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def push_generation(local: Path, url: str, generation: int) -> None:
    """Upload generation ``generation`` from ``local``: every file of ``generations/<N>/`` first, then
    ``catalog.json`` (the commit)."""
    folder = generation_dir(generation)
    for name in storage.list_files(local / folder):
        storage.put_file(local / folder / name, storage.join(url, folder, name))
    storage.put_file(local / CATALOG_FILE, storage.join(url, CATALOG_FILE))


def push_report(local: Path, url: str) -> None:
    """Upload the build report folder and the failure list (after the commit: they describe it)."""
    for name in storage.list_files(local / REPORT):
        storage.put_file(local / REPORT / name, storage.join(url, REPORT, name))
    if (local / FAILURES).is_file():
        storage.put_file(local / FAILURES, storage.join(url, FAILURES))


def collect_remote_garbage(url: str, committed: Committed) -> list[str]:
    """Delete from the store what the committed generation does not use: shards of dropped windows (and
    any a killed build uploaded but never committed) and older generation folders. Returns what was removed."""
    removed = []
    keep = set(committed.shard_entries)
    for name in storage.list_files(storage.join(url, SHARDS)):
        if name not in keep:
            storage.remove(storage.join(url, SHARDS, name))
            removed.append(f"{SHARDS}/{name}")
    current = generation_dir(committed.generation)
    for name in storage.list_files(storage.join(url, GENERATIONS_DIR)):
        path = f"{GENERATIONS_DIR}/{name}"
        if not path.startswith(current + "/"):
            storage.remove(storage.join(url, path))
            removed.append(path)
    return removed
