"""``hyper400k filter``: re-apply a rule set to a finished build from the QA stored in each sample.

Only ``meta.json`` is decoded; kept samples are copied as raw tar members into a new shard set (the folders
of the source, one sensor × level and split each, like the build), so re-filtering never re-reads a product.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from hyper400k.quality import RuleSet
from hyper400k.shards import (
    INDEX_NAME,
    ShardInfo,
    ShardWriter,
    index_root,
    iter_encoded,
    read_index,
    write_index,
)
from hyper400k.stac import CATALOG_FILE, catalog_generation


@dataclass
class FilterResult:
    kept: int = 0
    dropped_samples: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # per reason; a sample may break several rules


def refilter(build_dir: Path, rules: RuleSet, output: Path, shard_bytes: int) -> FilterResult:
    """Write ``output/<group>/<split>/*.tar`` and ``output/index.json`` holding the samples ``rules`` keep.

    ``build_dir`` is a build (its committed generation is read) or a shard folder with an ``index.json``."""
    index_path = build_dir / INDEX_NAME
    if (build_dir / CATALOG_FILE).is_file():
        index_path = catalog_generation(build_dir / CATALOG_FILE)[2] or index_path
    index = read_index(index_path)
    shards_dir = index_root(index_path, index)
    result = FilterResult()
    writers: dict[str, ShardWriter] = {}
    infos: list[ShardInfo] = []
    try:
        for entry in index["shards"]:
            group = Path(entry["name"]).parent.as_posix()
            group = "all" if group == "." else group
            for key, members in iter_encoded(shards_dir / entry["name"]):
                reasons = rules.evaluate(json.loads(members["meta.json"])["qa"])
                if reasons:
                    result.dropped_samples += 1
                    result.dropped.update(reasons)
                    continue
                if group not in writers:
                    writers[group] = ShardWriter(output / group, group.replace("/", "-"), shard_bytes)
                writers[group].write_encoded(key, members)
                result.kept += 1
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for group, writer in sorted(writers.items()):
        infos += [replace(info, name=f"{group}/{info.name}") for info in writer.close()]
    output.mkdir(parents=True, exist_ok=True)
    groups = sorted({Path(info.name).parts[0] for info in infos})
    write_index(
        output, infos, extra={"filtered_from": str(shards_dir), "rules": rules.name, "groups": groups}
    )
    return result
