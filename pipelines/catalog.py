"""Turn build records into the STAC catalog of one generation (products as Items, patches in the
stac-geoparquet index); writing it commits the generation (see :mod:`pipelines.generation`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hyper400k.shards import INDEX_NAME
from hyper400k.stac import PatchRecord, ProductRecord, ShardAsset, build_catalog, generation_dir
from pipelines.pack import SHARDS, WindowRecord


def write_catalog(
    output: Path,
    records: list[dict[str, Any]],
    windows: list[WindowRecord],
    generation: int,
    root_fields: dict[str, Any] | None = None,
) -> Path:
    """Write ``output/catalog.json`` (+ collections, items, ``patches.parquet`` of ``generation``);
    ``root_fields`` go into the root collection as they are."""
    key_to_shard = {
        key: shard["name"] for window in windows for shard in window.shards for key in shard["keys"]
    }
    products = [_product_record(r) for r in records]
    first_keys = {shard["keys"][0] for window in windows for shard in window.shards}
    by_key = {p["key"]: r for r in records for p in r["patches"] if p["key"] in first_keys}
    patches = [
        PatchRecord(
            key=p["key"],
            shard=f"{SHARDS}/{key_to_shard[p['key']]}",
            product_id=r["product_id"],
            sensor=r["meta"]["sensor"],
            level=r["meta"]["level"],
            split=r["split"],
            row=p["row"],
            col=p["col"],
            datetime=r["meta"]["datetime"],
            footprint=p["footprint"],
            qa=p["qa"],
            flight_line=r["flight_line"],
            segment=r.get("segment"),
        )
        for r in records
        for p in r["patches"]
        if p["key"] in key_to_shard
    ]
    shards = [
        ShardAsset(
            href=f"{SHARDS}/{shard['name']}",
            sensor=record["meta"]["sensor"],
            level=record["meta"]["level"],
            split=record["split"],
            samples=shard["samples"],
            size=shard["bytes"],
            sha256=shard["sha256"],
        )
        for window in windows
        for shard in window.shards
        if (record := by_key.get(shard["keys"][0])) is not None
    ]
    return build_catalog(
        output,
        products,
        patches,
        shard_index=f"{generation_dir(generation)}/{INDEX_NAME}",
        generation=generation,
        shards=shards,
        root_fields=root_fields,
    )


def _product_record(record: dict[str, Any]) -> ProductRecord:
    files = {role: Path(path) for role, path in record["meta"]["files"].items()}
    return ProductRecord(
        meta=record["meta"],
        flight_line=record["flight_line"],
        split=record["split"],
        # Sizes taken at tiling time: a product fetched from a manifest is deleted once it is tiled.
        sizes=record.get("sizes") or {role: p.stat().st_size for role, p in files.items() if p.is_file()},
        checksums=record.get("checksums", {}),
        tiles_kept=record["kept"],
        tiles_dropped=record["dropped_tiles"],
        drop_reasons=record["dropped"],
        source_url=record.get("source_url"),
        segment=record.get("segment"),
        distributed_as=record.get("distributed_as", {}),
    )
