"""Packing as independent tasks: one window of products -> that window's final shards, one split per shard.

A *window* is a handful of products of one sensor × level (the build plans them; see
:mod:`pipelines.generation`). Its task mixes the samples of all its products (raw tar members, no decoding)
and routes each to the shard set of its group and split, ``shards/<sensor>-<level>/<split>/``, so every
shard holds one band count and one split and a split is a path pattern. Samples stay mixed across the
window's flight lines; the loader shuffles across shards.

A window is written once under names that carry its id, then never touched: the next generation keeps it
byte-identical, replaces it by a new window (a product was removed or a shard was damaged), or drops it.
Its record, ``work/windows/<id>.json``, is written after its shards are durable and before the spools of its
products are deleted, so a crash at any point either redoes the window or finds it finished. For a build to
an object store (``shards_url``), "durable" means uploaded: each finished shard is PUT there and its local
copy deleted before the record is written (:mod:`pipelines.remote`).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hyper400k import storage
from hyper400k.sample import sample_key
from hyper400k.shards import ShardInfo, ShardWriter, interleave, iter_encoded

SHARDS = "shards"
WINDOWS = "windows"
_KEY_PRODUCT = re.compile(r"^(.*)_r\d+_c\d+$")


def group_name(sensor: str, level: str) -> str:
    return f"{sensor}-{level}"


@dataclass(frozen=True)
class WindowSpec:
    """One packing task, as plain data so it pickles to any worker.

    Fresh windows take their samples from the products' spools (``products``: their ``record.json`` dicts
    arrive as task arguments). A window derived from an earlier one (``source_shards``, paths relative to
    the build) copies those shards' samples in order, leaving out the keys of products not in ``keep``.
    ``shards_url`` is the shard tree of a build to an object store (shards are written under ``output``,
    then uploaded there); ``storage_options`` are its filesystem options, as ``(name, value)`` pairs.
    """

    window_id: str
    output: str
    shard_bytes: int
    seed: int
    source_shards: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    shards_url: str = ""
    storage_options: tuple[tuple[str, Any], ...] = ()

    def shard_root(self) -> storage.Location:
        """Where the build's finished shards live: the store's shard tree, or ``output/shards``."""
        return self.shards_url or Path(self.output) / SHARDS


@dataclass
class WindowRecord:
    """A packed window: its products, and its shards with their keys (names relative to ``shards/``)."""

    window_id: str
    products: list[str]
    shards: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # how long packing took (what the scale benchmark sums)

    def shard_names(self) -> list[str]:
        return [shard["name"] for shard in self.shards]


def window_record_path(output: Path, window_id: str) -> Path:
    return output / "work" / WINDOWS / f"{window_id}.json"


def load_window_record(output: Path, window_id: str) -> WindowRecord | None:
    path = window_record_path(output, window_id)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return WindowRecord(data["window_id"], data["products"], data["shards"], data.get("seconds", 0.0))


def pack_window(spec: WindowSpec, *records: dict[str, Any]) -> dict[str, Any]:
    """Write the window's shards, then its record, then delete its products' spools; return the record.

    ``records`` are the product records of a fresh window (failed products among them are left out and
    retried by the next build); a derived window takes none.
    """
    output = Path(spec.output)
    start = time.perf_counter()
    if spec.shards_url:
        storage.configure(spec.shards_url, dict(spec.storage_options))  # a worker process of its own
    if spec.source_shards:
        products = sorted(spec.keep)
        route = _route_derived(spec)
    else:
        packed = sorted((r for r in records if r.get("status") == "ok"), key=lambda r: r["product_id"])
        products = [r["product_id"] for r in packed]
        route = _route_fresh(packed, spec.seed)
    shards = write_window_shards(output, spec.window_id, spec.shard_bytes, route)
    if spec.shards_url:
        for shard in shards:
            local = output / SHARDS / shard["name"]
            storage.put_file(local, storage.join(spec.shards_url, shard["name"]))
            local.unlink()
    record = WindowRecord(spec.window_id, products, shards, time.perf_counter() - start)
    path = window_record_path(output, spec.window_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(record), allow_nan=False))
    os.replace(tmp, path)
    for product in records:  # the shards are durable (fsynced, renamed): the spools have done their job
        if product.get("spool_path"):
            Path(product["spool_path"]).unlink(missing_ok=True)
    return asdict(record)


Route = Iterable[tuple[tuple[str, str], str, dict[str, bytes]]]  # ((group, split), key, raw members)


def write_window_shards(output: Path, window_id: str, shard_bytes: int, route: Route) -> list[dict[str, Any]]:
    """Write the routed samples of one window into ``output/shards/<group>/<split>/`` under names carrying
    ``window_id``; return its shard entries (names relative to ``shards/``, with their keys). On an error the
    shard in progress of every set is removed (finished ones stay, under names no generation lists yet)."""
    writers: dict[tuple[str, str], ShardWriter] = {}
    try:
        for (group, split), key, members in route:
            writer = writers.get((group, split))
            if writer is None:
                folder = output / SHARDS / group / split
                writer = writers[(group, split)] = ShardWriter(
                    folder, f"{group}-{split}-{window_id}", shard_bytes
                )
            writer.write_encoded(key, members)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    shards: list[dict[str, Any]] = []
    for (group, split), writer in sorted(writers.items()):
        for info in writer.close():
            shards.append(asdict(info) | {"name": f"{group}/{split}/{info.name}"})
    return shards


def _route_fresh(records: list[dict[str, Any]], seed: int) -> Iterator[tuple[tuple[str, str], str, dict]]:
    """Samples of the products' spools, mixed across them, each with the (group, split) it belongs to."""
    target = {}
    for record in records:
        where = (group_name(record["meta"]["sensor"], record["meta"]["level"]), record["split"])
        target.update(dict.fromkeys((p["key"] for p in record["patches"]), where))
    spools = [Path(r["spool_path"]) for r in records if r["kept"]]
    for key, members in interleave(spools, seed):
        yield target[key], key, members


def _route_derived(spec: WindowSpec) -> Iterator[tuple[tuple[str, str], str, dict]]:
    """Samples of the source shards in order, without those of products outside ``spec.keep``."""
    keep = {sample_key(product, 0, 0).rpartition("_r")[0] for product in spec.keep}
    for name in spec.source_shards:
        group, split, _ = name.split("/", 2)
        for key, members in iter_encoded(storage.join(spec.shard_root(), name)):
            match = _KEY_PRODUCT.match(key)
            if match is not None and match.group(1) in keep:
                yield (group, split), key, members


def shard_info(entry: dict[str, Any]) -> ShardInfo:
    """A window record's shard entry as a :class:`ShardInfo`."""
    return ShardInfo(entry["name"], entry["samples"], entry["bytes"], entry["sha256"], list(entry["keys"]))
