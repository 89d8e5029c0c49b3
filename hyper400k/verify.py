"""Verify a shard folder against its ``index.json``: files, sizes, sha256, sample schema, unique keys.

This is what a user runs after copying a corpus (or before training on one): every problem is reported with
the shard name (and the sample key where there is one) instead of stopping at the first. Each shard is read
once, in 1 MiB chunks: the same bytes feed the sha256 and the sample decoder, so memory stays bounded by the
largest sample and the cost is one sequential read of the corpus. A build in an object store or on a web
server (a URL) is verified the same way, each shard streamed once (:mod:`hyper400k.storage`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from hyper400k import storage
from hyper400k.progress import progress_bar
from hyper400k.sample import Sample, SchemaError
from hyper400k.shards import (
    INDEX_NAME,
    TEMP_SUFFIX,
    ShardError,
    index_root,
    iter_encoded,
    read_index,
    shard_keys,
)
from hyper400k.stac import CATALOG_FILE, catalog_generation, read_patch_index
from hyper400k.storage import Location, as_location

_CHUNK = 1 << 20


@dataclass
class VerifyReport:
    """The outcome of :func:`verify_shards`; ``ok`` when no problem was found."""

    directory: str
    problems: list[str] = field(default_factory=list)
    # Files beside a build's committed generation that it does not use: what a running or killed build
    # left (the next build commits or removes them). Readers never see them, so they are not problems.
    uncommitted: list[str] = field(default_factory=list)
    shards_checked: int = 0
    samples_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_text(self) -> str:
        """A human summary: one status line, then one line per problem."""
        status = "OK" if self.ok else f"FAILED ({len(self.problems)} problems)"
        lines = [
            f"{status}: {self.shards_checked} shards, {self.samples_checked} samples in {self.directory}"
        ]
        lines += [f"  - {problem}" for problem in self.problems]
        if self.uncommitted:
            lines.append("Outside the committed generation (the next build commits or removes them):")
            lines += [f"  - {name}" for name in self.uncommitted]
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report as a JSON object (``ok``, ``directory``, ``problems``, counts)."""
        return json.dumps({"ok": self.ok, **asdict(self)}, indent=2, allow_nan=False)


class _HashingReader:
    """A read-only stream that feeds every byte it returns into a sha256 and a byte counter."""

    def __init__(self, stream: BinaryIO, on_bytes: Callable[[int], Any]) -> None:
        self.stream = stream
        self.sha = hashlib.sha256()
        self.bytes = 0
        self.on_bytes = on_bytes

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.sha.update(data)
        self.bytes += len(data)
        self.on_bytes(len(data))
        return data

    def drain(self) -> None:
        """Read (and hash) whatever is left, e.g. after a decoding error or trailing bytes."""
        while self.read(_CHUNK):
            pass


def verify_shards(
    directory: Location,
    *,
    check_samples: bool = True,
    progress: bool = False,
    keys: dict[str, list[str]] | None = None,
    generation: int | None = None,
) -> VerifyReport:
    """Check the shards listed in ``directory/index.json`` (or the index file ``directory``) and report every
    problem found.

    Checks: each listed shard exists with the recorded size and sha256; the index totals add up; no unlisted
    ``*.tar`` (or leftover ``*.tar.tmp``) sits in the shard folder. With ``check_samples``, also decodes every
    sample through :meth:`Sample.decode` (the schema check), compares per-shard sample counts with the index,
    and reports keys that occur more than once across the corpus. ``keys``, when given, receives the sample
    keys of every readable shard (by index name), for cross-checks against the patch table. With
    ``generation`` (the index is a build generation's), unlisted files are listed as ``uncommitted``.
    """
    directory = as_location(directory)
    is_index = storage.name_of(directory).endswith(".json")
    index_path = directory if is_index else storage.join(directory, INDEX_NAME)
    report = VerifyReport(str(directory))
    try:
        index = read_index(index_path)
    except ShardError as exc:
        report.problems.append(str(exc))
        return report
    directory = index_root(index_path, index)
    entries = index["shards"]
    listed = [entry["name"] for entry in entries]
    _check_listing(directory, listed, report, report.problems if generation is None else report.uncommitted)
    if index["total_samples"] != sum(entry["samples"] for entry in entries):
        report.problems.append(f"{INDEX_NAME}: total_samples disagrees with the sum over shards")
    if index["total_bytes"] != sum(entry["bytes"] for entry in entries):
        report.problems.append(f"{INDEX_NAME}: total_bytes disagrees with the sum over shards")

    seen: dict[str, str] = {}
    sizes = {entry["name"]: storage.size(storage.join(directory, entry["name"])) for entry in entries}
    total = sum(size for size in sizes.values() if size is not None)
    with progress_bar(total=total, unit="B", unit_scale=True, desc="verify", disable=not progress) as bar:
        for entry in entries:
            path = storage.join(directory, entry["name"])
            if sizes[entry["name"]] is None:
                report.problems.append(f"{entry['name']}: listed in {INDEX_NAME} but missing")
                continue
            found = _check_shard(path, entry, seen, report, check_samples, bar.update)
            if keys is not None:
                keys[entry["name"]] = found if check_samples else _header_keys(path, entry["name"], report)
            report.shards_checked += 1
    return report


def _header_keys(path: Location, name: str, report: VerifyReport) -> list[str]:
    try:
        if not isinstance(path, Path):  # no cheap seeks over a stream: read it once
            return [key for key, _ in iter_encoded(path)]
        return shard_keys(path)
    except ShardError as exc:
        report.problems.append(f"{name}: {exc.problem}")
        return []


def _check_listing(
    directory: Location, listed: list[str], report: VerifyReport, unlisted: list[str]
) -> None:
    """Report repeated index entries, and (into ``unlisted``) unlisted shards and temp files left by an
    interrupted write.

    Shards may sit in subfolders (index names like ``aviris-ng-L1/aviris-ng-L1-000000.tar``), so the whole tree
    is searched (a plain web server cannot be listed: there, only the listed shards are checked).
    """
    names = set(listed)
    if len(names) != len(listed):
        report.problems.append(f"{INDEX_NAME}: lists a shard more than once")
    present = [] if _unlistable(directory) else storage.list_files(directory)
    for name in present:
        if name.endswith(".tar") and name not in names:
            unlisted.append(f"{name}: shard not listed in {INDEX_NAME}")
    for name in present:
        if name.endswith(f".tar{TEMP_SUFFIX}"):
            unlisted.append(f"{name}: unfinished temp shard (an interrupted write)")


def _unlistable(location: Location) -> bool:
    return isinstance(location, str) and location.startswith(("http://", "https://"))


def _check_shard(
    path: Location,
    entry: dict[str, Any],
    seen: dict[str, str],
    report: VerifyReport,
    check_samples: bool,
    on_bytes: Callable[[int], Any],
) -> list[str]:
    """Hash one shard and (``check_samples``) decode its samples, in a single sequential read; return the
    keys read."""
    name = entry["name"]
    samples = 0
    keys: list[str] = []
    with storage.open_stream(path) as stream:
        reader = _HashingReader(stream, on_bytes)
        if check_samples:
            try:
                for key, members in iter_encoded(path, fileobj=reader):
                    samples += 1
                    keys.append(key)
                    _check_sample(name, key, members, seen, report)
            except ShardError as exc:
                report.problems.append(f"{name}: {exc.problem}")
        reader.drain()
    report.samples_checked += samples
    if reader.bytes != entry["bytes"]:
        report.problems.append(f"{name}: size {reader.bytes} bytes, index says {entry['bytes']}")
    if reader.sha.hexdigest() != entry["sha256"]:
        report.problems.append(f"{name}: sha256 {reader.sha.hexdigest()} differs from the index")
    if check_samples and samples != entry["samples"]:
        report.problems.append(f"{name}: holds {samples} samples, index says {entry['samples']}")
    return keys


def _check_sample(
    shard: str, key: str, members: dict[str, bytes], seen: dict[str, str], report: VerifyReport
) -> None:
    if key in seen:
        report.problems.append(f"{shard}: duplicate key {key} (also in {seen[key]})")
    else:
        seen[key] = shard
    try:
        Sample.decode(key, members)
    except SchemaError as exc:
        report.problems.append(f"{shard}: {exc}")
    except (ValueError, TypeError, EOFError) as exc:
        # Damage that Sample.decode does not turn into a SchemaError (an empty .npy, meta.json not an object).
        report.problems.append(f"{shard}: sample {key}: undecodable: {exc!r}")


def verify_build(
    build_dir: Location, *, check_samples: bool = True, progress: bool = False
) -> VerifyReport:
    """Check a build's committed generation: its shards (as :func:`verify_shards`), and that the shard
    index, the patch table and the catalog describe the same samples.

    Cross-checks, each mismatch reported by name: every key in a shard has one patch-table row naming that
    shard and every row names a shard holding its key; per-shard counts agree; every product with patches
    has an Item and every Item's ``hyper400k:tiles_kept`` equals its rows; the index's windows cover its
    shards exactly.
    """
    build_dir = as_location(build_dir)
    catalog = storage.join(build_dir, CATALOG_FILE)
    try:
        generation, patches_path, index_path = catalog_generation(catalog)
    except ValueError as exc:
        return VerifyReport(str(build_dir), problems=[str(exc)])
    if index_path is None or not storage.is_file(index_path):
        return VerifyReport(str(build_dir), problems=[f"{CATALOG_FILE}: links no readable shard index"])
    keys: dict[str, list[str]] = {}
    report = verify_shards(
        index_path, check_samples=check_samples, progress=progress, keys=keys, generation=generation
    )
    report.directory = str(build_dir)
    try:
        index = read_index(index_path)
    except ShardError:
        return report
    if generation is not None and index.get("generation") != generation:
        report.problems.append(
            f"{INDEX_NAME}: generation {index.get('generation')}, {CATALOG_FILE} commits {generation}"
        )
    _check_windows(index, report)
    if patches_path is None and index["total_samples"] == 0:
        rows: dict[str, list[Any]] = {"id": [], "hyper400k:shard": [], "hyper400k:product": []}
    elif patches_path is None or not storage.is_file(patches_path):
        report.problems.append(f"{CATALOG_FILE}: links no readable patch table")
        return report
    else:
        columns = ["id", "hyper400k:shard", "hyper400k:product"]
        rows = read_patch_index(patches_path, columns=columns).to_pydict()
    shard_prefix = _shard_href_prefix(build_dir, index_path, index)
    _check_patch_rows(rows, keys, shard_prefix, report)
    _check_items(catalog, rows, report)
    return report


def _shard_href_prefix(build_dir: Location, index_path: Location, index: dict[str, Any]) -> str:
    """What the patch table puts before an index shard name: the shard root relative to the build."""
    root = index_root(index_path, index)
    if isinstance(root, Path) and isinstance(build_dir, Path):
        relative = root.resolve().relative_to(build_dir.resolve()).as_posix()
    else:
        relative = str(root).removeprefix(str(storage.join(build_dir, "."))).strip("/") or "."
    return "" if relative == "." else relative + "/"


def _check_windows(index: dict[str, Any], report: VerifyReport) -> None:
    if "windows" not in index:
        return
    listed = {entry["name"] for entry in index["shards"]}
    in_windows = [name for window in index["windows"] for name in window["shards"]]
    for name in sorted(set(in_windows) - listed):
        report.problems.append(f"{INDEX_NAME}: window shard {name} is not among the index's shards")
    for name in sorted(listed - set(in_windows)):
        report.problems.append(f"{INDEX_NAME}: shard {name} belongs to no window")


def _check_patch_rows(
    rows: dict[str, list[Any]], keys: dict[str, list[str]], prefix: str, report: VerifyReport
) -> None:
    """Shards ↔ patch table: the same keys in the same shards."""
    in_shards = {prefix + name: set(found) for name, found in keys.items()}
    in_table: dict[str, set[str]] = {}
    for key, href in zip(rows["id"], rows["hyper400k:shard"], strict=True):
        in_table.setdefault(href, set()).add(key)
    for href in sorted(set(in_table) - set(in_shards)):
        report.problems.append(f"patch table: {len(in_table[href])} rows name {href}, which the index lacks")
    for href in sorted(in_shards):
        missing = sorted(in_shards[href] - in_table.get(href, set()))
        extra = sorted(in_table.get(href, set()) - in_shards[href]) if href in in_table else []
        for key in missing:
            report.problems.append(f"patch table: no row for {key} (in {href})")
        for key in extra:
            report.problems.append(f"patch table: row {key} names {href}, which does not hold it")


def _check_items(catalog: Location, rows: dict[str, list[Any]], report: VerifyReport) -> None:
    """Catalog ↔ patch table: an Item per product with patches, and matching patch counts."""
    per_product: dict[str, int] = {}
    for product in rows["hyper400k:product"]:
        per_product[product] = per_product.get(product, 0) + 1
    items = dict(_item_counts(catalog))
    for product in sorted(set(per_product) - set(items)):
        report.problems.append(f"catalog: no Item for product {product} ({per_product[product]} patch rows)")
    for product, kept in sorted(items.items()):
        if kept != per_product.get(product, 0):
            report.problems.append(
                f"catalog: Item {product} says {kept} tiles kept, the patch table has "
                f"{per_product.get(product, 0)} rows"
            )


def _item_counts(catalog: Location) -> list[tuple[str, int]]:
    """(product id, tiles kept) of every Item reachable from the root by child and item links."""
    found = []
    pending = [catalog.resolve() if isinstance(catalog, Path) else catalog]
    while pending:
        path = pending.pop()
        try:
            data = json.loads(storage.read_text(path))
        except (OSError, ValueError):
            continue
        if data.get("type") == "Feature":
            found.append((data["id"], int(data.get("properties", {}).get("hyper400k:tiles_kept", 0))))
        for link in data.get("links", []):
            if link.get("rel") in ("child", "item") and "://" not in link.get("href", "://"):
                pending.append(storage.join(storage.parent(path), link["href"]))
    return found
