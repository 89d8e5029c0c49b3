"""Open a shard set: from a build folder, a shards folder, a brace pattern, a list of tars, or a STAC selection.

Whatever the input, the result is a :class:`ShardSet`: every shard with its sensor × level group, the number of
samples it will stream, its sha256 (when an ``index.json`` lists it) and, for a selection, the keys to stream.
Everything the loader plans with (group sizes for mixing weights, shard sizes for resuming) is known here,
before any worker starts, so every rank derives the same schedule from the same numbers.

A selection (sensor, level, split, product, QA threshold, any pyarrow expression) is a query on the
stac-geoparquet patch index: it picks the shard files *and* the keys inside them, and the reader skips the
other keys without decoding them.
"""

from __future__ import annotations

import glob
import json
import tarfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pyarrow.compute as pc
from braceexpand import braceexpand

from hyper400k import storage
from hyper400k.shards import INDEX_NAME, ShardError, count_samples, index_root, iter_encoded, read_index
from hyper400k.stac import (
    CATALOG_FILE,
    PATCH_INDEX_FILE,
    REL_SHARD_INDEX,
    catalog_generation,
    find_catalog,
    read_patch_index,
)
from hyper400k.storage import Location, as_location, is_url

Source = str | Path | Sequence[str | Path]  # local paths, or URLs (s3://, gs://, https://, ...)

_PATCH_COLUMNS = ["id", "hyper400k:shard", "hyper400k:sensor", "hyper400k:level"]


@dataclass(frozen=True)
class Shard:
    """One tar shard: where it is (a local path, or a URL the reader streams), its group, how many samples it
    streams, its checksum, its selected keys.

    ``samples`` counts the samples the loader streams from it: all of them, or the selected ones when ``keys``
    is set (the reader then skips every other key without decoding it).
    """

    path: Location
    sensor: str
    level: str
    samples: int
    sha256: str | None = None
    keys: frozenset[str] | None = None

    @property
    def group(self) -> str:
        """``<sensor>-<level>``, the build's shard group and the loader's bucket."""
        return f"{self.sensor}-{self.level}"


@dataclass(frozen=True)
class ShardSet:
    """The shards to stream and the per-band statistics the build computed (``{group: {wavelength_nm, mean,
    std, pixels}}``, empty when the source has no shard index)."""

    shards: tuple[Shard, ...]
    band_stats: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return sum(shard.samples for shard in self.shards)

    def by_group(self) -> dict[str, list[Shard]]:
        """Shards per group, groups and shards in a stable (sorted) order."""
        groups: dict[str, list[Shard]] = defaultdict(list)
        for shard in sorted(self.shards, key=lambda s: (s.group, str(s.path))):
            groups[shard.group].append(shard)
        return dict(sorted(groups.items()))

    def group_samples(self) -> dict[str, int]:
        """Samples per group."""
        return {group: sum(s.samples for s in shards) for group, shards in self.by_group().items()}


def open_shards(
    source: Source,
    *,
    sensor: str | Iterable[str] | None = None,
    level: str | Iterable[str] | None = None,
    split: str | Iterable[str] | None = None,
    product: str | Iterable[str] | None = None,
    min_valid_fraction: float | None = None,
    expression: pc.Expression | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> ShardSet:
    """The shards of ``source``, optionally narrowed to the samples matching a selection.

    ``source`` is one of: a build folder (holding ``catalog.json``), a ``catalog.json``, a ``patches.parquet``,
    a shards folder or its ``index.json``, one ``.tar``, a list of ``.tar`` paths, a brace pattern such as
    ``"shards/aviris-ng-L1/aviris-ng-L1-{000000..000123}.tar"``, or a glob such as
    ``"build/shards/*/train/*.tar"`` (a build keeps one split per shard, in ``shards/<group>/<split>/``). The selection arguments are those of
    :func:`hyper400k.stac.read_patch_index` and need the patch index (a build folder, catalog or parquet).

    Any of these may be a URL (``s3://bucket/build``, ``gs://...``, ``https://host/build/catalog.json``, a
    brace pattern of URLs): the catalog and indexes are read through fsspec and every shard is streamed
    front to back when it is read, never copied whole. ``storage_options`` (e.g. ``{"endpoint_url": ...}``)
    become the defaults of that protocol's filesystems in this process (:func:`hyper400k.storage.configure`);
    credentials otherwise come from the backend's usual environment.

    Raises :class:`~hyper400k.shards.ShardError` naming a listed shard that is missing, and ``ValueError``
    for an unusable source or a selection that matches nothing.
    """
    selection = {
        "sensor": sensor,
        "level": level,
        "split": split,
        "product": product,
        "min_valid_fraction": min_valid_fraction,
        "expression": expression,
    }
    selecting = any(value is not None for value in selection.values())
    first = source if isinstance(source, str | Path) else next(iter(source), "")
    if storage_options and is_url(str(first)):
        storage.configure(str(first), storage_options)
    if isinstance(source, str) and "{" in source:
        _refuse_selection(selecting, source)
        return _from_tars([as_location(p) for p in braceexpand(source)])
    if isinstance(source, str) and any(char in source for char in "*?["):
        _refuse_selection(selecting, source)
        matches = _glob(source)
        if not matches:
            raise ValueError(f"the pattern {source} matches no shard")
        return _from_tars(matches)
    if not isinstance(source, str | Path):
        _refuse_selection(selecting, "a list of tars")
        return _from_tars([as_location(p) for p in source])
    path = as_location(source)
    catalog = find_catalog(path)
    if catalog is not None:
        _, patches, index = catalog_generation(catalog)
        if selecting:
            if patches is None:
                raise ValueError(f"{catalog} has no patch index asset; cannot select samples")
            return _from_patch_index(patches, storage.parent(catalog), index, selection)
        if index is None:
            raise ValueError(f"{catalog} links no shard index ({REL_SHARD_INDEX})")
        return _from_index(index)
    name = storage.name_of(path)
    local_dir = isinstance(path, Path) and path.is_dir()
    if name.endswith(".parquet") or (local_dir and (path / PATCH_INDEX_FILE).is_file()):
        patches = path if name.endswith(".parquet") else storage.join(path, PATCH_INDEX_FILE)
        beside = find_catalog(storage.join(storage.parent(patches), CATALOG_FILE))
        index = catalog_generation(beside)[2] if beside is not None else None
        return _from_patch_index(patches, storage.parent(patches), index, selection)
    if name == INDEX_NAME or (local_dir and (path / INDEX_NAME).is_file()):
        _refuse_selection(selecting, str(path))
        return _from_index(path)
    if local_dir:
        tars = sorted(path.rglob("*.tar"))
        if not tars:
            raise ValueError(f"{path} holds no catalog.json, index.json or *.tar")
        _refuse_selection(selecting, str(path))
        return _from_tars(tars)
    if name.endswith(".tar"):
        _refuse_selection(selecting, str(path))
        return _from_tars([path])
    if is_url(path) and storage.is_file(storage.join(path, INDEX_NAME)):
        _refuse_selection(selecting, str(path))
        return _from_index(storage.join(path, INDEX_NAME))
    raise ValueError(f"cannot open {path}: not a build folder, catalog, patch index, shard index or tar")


def _glob(pattern: str) -> list[Location]:
    """The files a glob matches, local or on a remote filesystem (fsspec globs the listing)."""
    if not is_url(pattern):
        return [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
    with storage.naming(pattern):
        fs, inner = fsspec.core.url_to_fs(pattern)
        return sorted(fs.unstrip_protocol(p) for p in fs.glob(inner))


def _refuse_selection(selecting: bool, source: str) -> None:
    if selecting:
        raise ValueError(
            f"selecting by sensor/level/split/QA needs the STAC patch index; {source} has none "
            "(open the build folder, its catalog.json or patches.parquet instead)"
        )


def _index_file(path: Location) -> Location:
    return path if storage.name_of(path).endswith(".json") else storage.join(path, INDEX_NAME)


def _from_index(index_path: Location) -> ShardSet:
    """Every shard an ``index.json`` lists, with counts and checksums from the index."""
    index = read_index(index_path)
    folder = index_root(_index_file(index_path), index)
    groups = set(index.get("groups", []))
    shards = []
    for entry in index["shards"]:
        path = storage.join(folder, entry["name"])
        _require_file(path, index_path)
        directory = Path(entry["name"]).parts[0]
        sensor, level = _split_group(directory) if directory in groups else _peek_group(path)
        shards.append(Shard(path, sensor, level, entry["samples"], entry["sha256"]))
    return ShardSet(tuple(shards), index.get("band_stats", {}))


def _from_tars(paths: list[Location]) -> ShardSet:
    """Explicit tar files; counts, checksums and band statistics come from the shard index that lists them
    (an ``index.json`` in a folder above them, or the committed index of the build they are in) when there
    is one, else from the tar headers."""
    if not paths:
        raise ValueError("no shard paths given")
    entries: dict[Location, dict[str, Any]] = {}
    band_stats: dict[str, Any] = {}
    groups: set[str] = set()
    for index_path in sorted({found for p in paths if (found := _index_above(p)) is not None}):
        index = read_index(index_path)
        folder = index_root(index_path, index)
        entries.update({_identity(storage.join(folder, e["name"])): e for e in index["shards"]})
        band_stats.update(index.get("band_stats", {}))
        groups.update(index.get("groups", []))
    shards = []
    for path in paths:
        _require_file(path, None)
        entry = entries.get(_identity(path))
        if entry is None:
            sensor, level = _peek_group(path)
            shards.append(Shard(path, sensor, level, _count(path)))
            continue
        directory = Path(entry["name"]).parts[0]
        sensor, level = _split_group(directory) if directory in groups else _peek_group(path)
        shards.append(Shard(path, sensor, level, entry["samples"], entry["sha256"]))
    return ShardSet(tuple(shards), band_stats)


def _index_above(tar: Location) -> Location | None:
    """The shard index covering a tar: ``index.json`` in one of the three folders above it, or the index
    a ``catalog.json`` there commits (a build keeps ``shards/<group>/<split>/*.tar``)."""
    folder = tar.resolve() if isinstance(tar, Path) else tar
    for _ in range(4):
        folder = storage.parent(folder)
        if storage.is_file(candidate := storage.join(folder, INDEX_NAME)):
            return candidate
        if storage.is_file(catalog := storage.join(folder, CATALOG_FILE)):
            index = catalog_generation(catalog)[2]
            if index is not None and storage.is_file(index):
                return index
    return None


def _identity(location: Location) -> Location:
    """What two spellings of one shard have in common (a resolved path; a normalised URL as it is)."""
    return location.resolve() if isinstance(location, Path) else location


def _count(path: Location) -> int:
    """Samples in a tar no index describes: a header walk locally, one streamed read for a URL."""
    if isinstance(path, Path):
        return count_samples(path)
    return sum(1 for _ in iter_encoded(path))


def _from_patch_index(
    patches: Location, root: Location, index_path: Location | None, selection: Mapping[str, Any]
) -> ShardSet:
    """The shards and keys of the patch-index rows matching ``selection`` (hrefs are relative to ``root``)."""
    table = read_patch_index(patches, columns=_PATCH_COLUMNS, **selection)
    if table.num_rows == 0:
        raise ValueError(f"the selection {_describe(selection)} matches no sample in {patches}")
    index = read_index(index_path) if index_path is not None else None
    entries = {}
    if index is not None:
        folder = index_root(_index_file(index_path), index)
        entries = {_identity(storage.join(folder, e["name"])): e for e in index["shards"]}
    rows = table.to_pydict()
    keys: dict[str, set[str]] = defaultdict(set)
    group_of: dict[str, tuple[str, str]] = {}
    for key, href, sensor, level in zip(*(rows[c] for c in _PATCH_COLUMNS), strict=True):
        keys[href].add(key)
        group_of[href] = (sensor, level)
    shards = []
    for href in sorted(keys):
        path = _identity(storage.join(root, href))
        _require_file(path, patches)
        entry = entries.get(path)
        selected = frozenset(keys[href])
        if entry is not None and entry["samples"] == len(selected):
            selected_keys = None  # every sample of the shard is selected: stream it without a key filter
        else:
            selected_keys = selected
        sensor, level = group_of[href]
        shards.append(
            Shard(path, sensor, level, len(selected), entry["sha256"] if entry else None, selected_keys)
        )
    return ShardSet(tuple(shards), index.get("band_stats", {}) if index else {})


def _describe(selection: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in selection.items() if value is not None) or "(all)"


def _require_file(path: Location, listed_in: Location | None) -> None:
    """A listed local shard must exist. Remote shards are not probed one request each here (a corpus has
    hundreds of thousands); the reader names a missing one when it comes to it."""
    if isinstance(path, Path) and not path.is_file():
        where = f" (listed in {listed_in})" if listed_in is not None else ""
        raise ShardError(path, f"shard is missing{where}")


def _split_group(group: str) -> tuple[str, str]:
    """``"aviris-ng-L1"`` -> ``("aviris-ng", "L1")`` (levels hold no ``-``)."""
    sensor, _, level = group.rpartition("-")
    return sensor, level


def _peek_group(path: Location) -> tuple[str, str]:
    """Sensor and level of a shard from the ``meta.json`` of its first sample (data members are skipped)."""
    try:
        with storage.open_stream(path) as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
            for info in archive:
                if info.isfile() and info.name.endswith(".meta.json"):
                    member = archive.extractfile(info)
                    assert member is not None  # a regular file always has a reader
                    meta = json.loads(member.read())
                    return str(meta["sensor"]), str(meta["level"])
    except (tarfile.TarError, OSError, ValueError, KeyError, TypeError) as exc:
        raise ShardError(path, f"cannot read the first sample's meta.json: {exc!r}") from exc
    raise ShardError(path, "holds no meta.json: not a hyper400k shard")
