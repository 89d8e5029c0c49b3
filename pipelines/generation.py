"""Build generations: what the last committed build holds, what the next one packs, and the commit itself.

A generation is the set {shards, shard index, patch table, catalog}. Shards are immutable files named after
the window that wrote them; the index, patch table and STAC collections of generation N live in
``generations/<N>/``; the root ``catalog.json`` names N and links into that folder, and renaming it into
place is the commit. Until that rename a reader sees generation N-1 whole (nothing it uses was touched); after
it, generation N. Only then are the files no generation uses any more removed (:func:`collect_garbage`).

Planning keeps every committed window whose products are all still wanted and whose shards are intact; a
window that lost products is rewritten from its own shards without them (no re-tiling), a damaged one is
packed again from its products (re-tiled when their spools are gone), and products in no window are packed
into new windows of ``window_products`` products of one sensor × level.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hyper400k import storage
from hyper400k.sensors import identify
from hyper400k.shards import ShardError, index_root, iter_encoded, read_index, shard_keys, write_index
from hyper400k.stac import CATALOG_FILE, GENERATIONS_DIR, STAGING_PREFIX, catalog_generation, generation_dir
from pipelines.pack import (
    SHARDS,
    WINDOWS,
    WindowRecord,
    WindowSpec,
    group_name,
    shard_info,
    window_record_path,
)
from pipelines.product_task import ProductJob

INDEX_BASE = f"../../{SHARDS}"  # from generations/<N>/index.json to the shard tree


@dataclass
class Committed:
    """The generation that ``catalog.json`` commits: its number, index (path and content) and windows."""

    generation: int
    index_path: Path
    index: dict[str, Any]

    @property
    def windows(self) -> list[dict[str, Any]]:
        return list(self.index.get("windows", []))

    @property
    def shard_entries(self) -> dict[str, dict[str, Any]]:
        return {entry["name"]: entry for entry in self.index["shards"]}


@dataclass
class FreshWindow:
    """A window packed from its products' spools; ``jobs`` are its products (tiled first where needed)."""

    spec: WindowSpec
    jobs: list[ProductJob]


@dataclass
class Plan:
    """What the next generation holds: committed windows kept as they are, windows to pack, and whether
    anything differs from the committed generation at all."""

    generation: int
    kept: list[WindowRecord] = field(default_factory=list)
    fresh: list[FreshWindow] = field(default_factory=list)
    derived: list[WindowSpec] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    repaired: dict[str, list[str]] = field(default_factory=dict)  # window id -> problems found

    @property
    def changed(self) -> bool:
        return bool(self.fresh or self.derived or self.dropped)


def load_committed(output: Path) -> Committed | None:
    """The committed generation of the build in ``output``, or None (no build yet, or an older layout)."""
    catalog = output / CATALOG_FILE
    if not catalog.is_file():
        return None
    generation, _, index_path = catalog_generation(catalog)
    if generation is None or index_path is None or not index_path.is_file():
        return None
    try:
        index = read_index(index_path)
    except ShardError:
        return None
    return Committed(generation, index_path, index)


def check_shards(
    output: Path, committed: Committed, *, checksum: bool, shards_url: str = ""
) -> dict[str, list[str]]:
    """Problems per committed window: shards missing or of the wrong size (always), or of the wrong
    sha256 (with ``checksum``, which streams every byte). Empty when every shard is intact. The shards are
    those under the index's root, or under ``shards_url`` for a build to an object store."""
    root = shards_url or index_root(committed.index_path, committed.index)
    entries = committed.shard_entries
    problems: dict[str, list[str]] = {}
    for window in committed.windows:
        for name in window["shards"]:
            entry, path = entries[name], storage.join(root, name)
            size = storage.size(path)
            if size is None:
                problem = f"{name}: missing"
            elif size != entry["bytes"]:
                problem = f"{name}: size {size} bytes, index says {entry['bytes']}"
            elif checksum and storage.sha256(path) != entry["sha256"]:
                problem = f"{name}: sha256 differs from the index"
            else:
                continue
            problems.setdefault(window["id"], []).append(problem)
    return problems


def plan_generation(
    output: Path,
    jobs: list[ProductJob],
    records: dict[str, dict[str, Any] | None],
    committed: Committed | None,
    settings: dict[str, Any],
    *,
    window_products: int,
    checksum: bool,
    shards_url: str = "",
) -> Plan:
    """The windows of the next generation (see the module docstring). ``records`` are the finished
    product records by id (None where a product has none); ``settings`` (preset, shard size, seed) must
    equal the committed generation's for any of its windows to be kept. ``shards_url`` is where the
    committed shards are when the build's output is an object store."""
    plan = Plan(generation=committed.generation + 1 if committed else 1)
    wanted = {job.product_id: job for job in jobs}
    assigned: set[str] = set()
    if committed is not None:
        same_settings = committed.index.get("settings") == settings
        damage = check_shards(output, committed, checksum=checksum, shards_url=shards_url)
        for window in sorted(committed.windows, key=lambda w: w["id"]):
            present = [p for p in window["products"] if p in wanted]
            assigned.update(present)
            current = all(_up_to_date(wanted[p], records.get(p)) for p in present)
            if not present:
                plan.dropped.append(window["id"])
            elif window["id"] in damage or not same_settings or not current:
                if window["id"] in damage:
                    plan.repaired[window["id"]] = damage[window["id"]]
                plan.dropped.append(window["id"])
                plan.fresh.append(_fresh(output, plan.generation, [wanted[p] for p in present], settings))
            elif len(present) < len(window["products"]):
                plan.dropped.append(window["id"])
                plan.derived.append(
                    WindowSpec(
                        _window_id(plan.generation, present, settings),
                        str(output),
                        settings["shard_bytes"],
                        settings["seed"],
                        source_shards=tuple(window["shards"]),
                        keep=tuple(sorted(present)),
                    )
                )
            else:
                plan.kept.append(
                    WindowRecord(
                        window["id"],
                        window["products"],
                        _entries_with_keys(output, window, committed, shards_url),
                    )
                )
    unassigned: dict[str, list[ProductJob]] = {}
    for job in sorted(jobs, key=lambda j: j.product_id):
        if job.product_id not in assigned:
            unassigned.setdefault(_expected_group(job), []).append(job)
    for _, members in sorted(unassigned.items()):
        for start in range(0, len(members), window_products):
            plan.fresh.append(
                _fresh(output, plan.generation, members[start : start + window_products], settings)
            )
    return plan


def _up_to_date(job: ProductJob, record: dict[str, Any] | None) -> bool:
    """A product's record still describes it: same preset and split (a split can move when flight lines
    are added to a tiny build)."""
    return record is not None and record.get("preset") == job.preset.name and record.get("split") == job.split


def _fresh(output: Path, generation: int, jobs: list[ProductJob], settings: dict[str, Any]) -> FreshWindow:
    ids = [job.product_id for job in jobs]
    spec = WindowSpec(
        _window_id(generation, ids, settings), str(output), settings["shard_bytes"], settings["seed"]
    )
    return FreshWindow(spec, jobs)


def _window_id(generation: int, products: Iterable[str], settings: dict[str, Any]) -> str:
    """A window's id: a digest of what it holds and of the generation that first writes it, so a rewritten
    window never reuses the file names of the one it replaces."""
    text = json.dumps([generation, sorted(products), settings], sort_keys=True)
    return "w" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _expected_group(job: ProductJob) -> str:
    """The sensor × level a product's name announces (products of other names are windowed together;
    the packing task still routes every sample by the group its record gives). A product fetched by its
    task is known by the identifier its manifest entry names until then."""
    name = identify(job.product_id if job.download is not None else job.path)
    return group_name(name.sensor, name.level) if name else "other"


def _entries_with_keys(
    output: Path, window: dict[str, Any], committed: Committed, shards_url: str = ""
) -> list[dict[str, Any]]:
    """The shard entries of a committed window with their keys: from its window record, or (when ``work/``
    was cleared) from the shards' tar headers (by one streamed read of each shard in an object store)."""
    path = window_record_path(output, window["id"])
    if path.is_file():
        return list(json.loads(path.read_text())["shards"])
    entries = committed.shard_entries
    if shards_url:
        return [
            entries[name] | {"keys": [key for key, _ in iter_encoded(storage.join(shards_url, name))]}
            for name in window["shards"]
        ]
    return [entries[name] | {"keys": shard_keys(output / SHARDS / name)} for name in window["shards"]]


def write_generation_index(
    output: Path,
    generation: int,
    windows: list[WindowRecord],
    records: list[dict[str, Any]],
    settings: dict[str, Any],
) -> tuple[Path, dict[str, Any]]:
    """Write ``generations/<N>/index.json``: every shard of the generation (names relative to ``shards/``),
    its windows, groups, per-band statistics and build settings. Returns its path and content."""
    folder = output / generation_dir(generation)
    folder.mkdir(parents=True, exist_ok=True)
    infos = [shard_info(entry) for window in windows for entry in window.shards]
    groups = sorted({info.name.split("/", 1)[0] for info in infos})
    by_group: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_group.setdefault(group_name(record["meta"]["sensor"], record["meta"]["level"]), []).append(record)
    extra = {
        "base": INDEX_BASE,
        "generation": generation,
        "settings": settings,
        "groups": groups,
        "windows": [
            {"id": w.window_id, "products": w.products, "shards": w.shard_names()}
            for w in sorted(windows, key=lambda w: w.window_id)
        ],
        "band_stats": {
            g: merged_band_stats(members) for g, members in sorted(by_group.items()) if g in groups
        },
    }
    path = write_index(folder, infos, extra=extra)
    return path, read_index(path)


def merged_band_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-band mean and std over every valid pixel of the group's kept samples (for normalisation)."""
    count = sum(r["band_stats"]["count"] for r in records)
    total = np.sum([r["band_stats"]["sum"] for r in records if r["band_stats"]["count"]], axis=0)
    total_sq = np.sum([r["band_stats"]["sum_sq"] for r in records if r["band_stats"]["count"]], axis=0)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 0.0))
    wavelengths = records[0]["meta"]["wavelength_nm"]
    return {"pixels": count, "wavelength_nm": wavelengths, "mean": mean.tolist(), "std": std.tolist()}


def collect_garbage(output: Path, committed: Committed) -> list[str]:
    """Remove what the committed generation does not use: shards of dropped windows and unfinished
    ``*.tar.tmp`` files (and the index of the pre-generation layout), older generation folders, records of
    windows not committed, and catalog staging folders a killed build left. Returns what was removed."""
    removed: list[str] = []
    shards = output / SHARDS
    keep = set(committed.shard_entries)
    if shards.is_dir():
        for path in sorted(shards.rglob("*")):
            name = path.relative_to(shards).as_posix()
            if path.is_file() and name not in keep:
                path.unlink()
                removed.append(f"{SHARDS}/{name}")
        for folder in sorted((p for p in shards.rglob("*") if p.is_dir()), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()
    current = output / generation_dir(committed.generation)
    generations = output / GENERATIONS_DIR
    for folder in sorted(generations.iterdir()) if generations.is_dir() else []:
        if folder != current:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.relative_to(output).as_posix())
    windows = {window["id"] for window in committed.windows}
    for path in sorted((output / "work" / WINDOWS).glob("*")) if (output / "work" / WINDOWS).is_dir() else []:
        if path.name.removesuffix(".json") not in windows:
            path.unlink()
    for folder in sorted(output.glob(STAGING_PREFIX + "*")):
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed
