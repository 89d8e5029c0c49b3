"""Turn build records into the STAC catalog (products as Items, patches in the stac-geoparquet index)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hyper400k.stac import PatchRecord, ProductRecord, build_catalog


def write_catalog(output: Path, records: list[dict[str, Any]], shard_index: dict[str, Any]) -> Path:
    """Write ``output/catalog.json`` (+ collections, items, ``patches.parquet``) for the built products."""
    key_to_shard = shard_index.get("key_to_shard", {})
    products = [_product_record(r) for r in records]
    patches = [
        PatchRecord(
            key=p["key"],
            shard=f"shards/{key_to_shard[p['key']]}",
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
    return build_catalog(output, products, patches, shard_index="shards/index.json")


def _product_record(record: dict[str, Any]) -> ProductRecord:
    files = {role: Path(path) for role, path in record["meta"]["files"].items()}
    return ProductRecord(
        meta=record["meta"],
        flight_line=record["flight_line"],
        split=record["split"],
        sizes={role: path.stat().st_size for role, path in files.items() if path.is_file()},
        checksums=record.get("checksums", {}),
        tiles_kept=record["kept"],
        tiles_dropped=record["dropped_tiles"],
        drop_reasons=record["dropped"],
        source_url=record.get("source_url"),
        segment=record.get("segment"),
    )
