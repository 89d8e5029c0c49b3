"""Pack per-product spools into final shards: grouped by sensor × level, mixed across flight lines.

Samples are copied as raw tar members (no decoding). The new shard set is written to a temporary
folder and swapped in whole; a build whose inputs have not changed since the last pack is not re-packed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hyper400k.shards import ShardInfo, ShardWriter, interleave, read_index, write_index

SHARDS = "shards"
KEYS = "keys.json"


def group_name(sensor: str, level: str) -> str:
    return f"{sensor}-{level}"


def pack_shards(output: Path, records: list[dict[str, Any]], shard_bytes: int, seed: int) -> dict[str, Any]:
    """Write ``output/shards/<sensor>-<level>/*.tar``, ``index.json`` and ``keys.json``; return the index
    with ``key_to_shard`` (sample key -> shard path relative to ``shards/``) added."""
    final = output / SHARDS
    fingerprint = _fingerprint(records, shard_bytes, seed)
    if (final / "index.json").is_file() and (final / KEYS).is_file():
        current = read_index(final)
        if current.get("fingerprint") == fingerprint:
            return {**current, "key_to_shard": json.loads((final / KEYS).read_text())}
    staging = output / (SHARDS + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["kept"]:
            groups.setdefault(group_name(record["meta"]["sensor"], record["meta"]["level"]), []).append(
                record
            )
    infos: list[ShardInfo] = []
    key_to_shard: dict[str, str] = {}
    band_stats: dict[str, Any] = {}
    for group, members in sorted(groups.items()):
        spools = [Path(r["spool_path"]) for r in sorted(members, key=lambda r: r["product_id"])]
        with ShardWriter(staging / group, group, shard_bytes) as writer:
            for key, payload in interleave(spools, seed):
                writer.write_encoded(key, payload)
        for info in writer.shards:
            named = replace(info, name=f"{group}/{info.name}")
            infos.append(named)
            key_to_shard.update(dict.fromkeys(info.keys, named.name))
        band_stats[group] = merged_band_stats(members)
    (staging / KEYS).write_text(json.dumps(key_to_shard, allow_nan=False))
    write_index(
        staging, infos, extra={"fingerprint": fingerprint, "groups": sorted(groups), "band_stats": band_stats}
    )
    _swap(staging, final)
    return {**read_index(final), "key_to_shard": key_to_shard}


def merged_band_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-band mean and std over every valid pixel of the group's kept samples (for normalisation)."""
    count = sum(r["band_stats"]["count"] for r in records)
    total = np.sum([r["band_stats"]["sum"] for r in records if r["band_stats"]["count"]], axis=0)
    total_sq = np.sum([r["band_stats"]["sum_sq"] for r in records if r["band_stats"]["count"]], axis=0)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 0.0))
    wavelengths = records[0]["meta"]["wavelength_nm"]
    return {"pixels": count, "wavelength_nm": wavelengths, "mean": mean.tolist(), "std": std.tolist()}


def _fingerprint(records: list[dict[str, Any]], shard_bytes: int, seed: int) -> str:
    parts = sorted(f"{r['product_id']}:{r['kept']}:{r.get('spool_sha256', '')}" for r in records)
    return hashlib.sha256(json.dumps([parts, shard_bytes, seed]).encode()).hexdigest()


def _swap(staging: Path, final: Path) -> None:
    """Replace ``final`` by ``staging`` with two renames (the old set stays whole until the second)."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
