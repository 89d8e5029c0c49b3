"""``hyper400k filter``: re-apply a rule set to a finished build from the QA stored in each sample.

Only ``meta.json`` is decoded; kept samples are copied as raw tar members into a new shard set (one
folder per sensor × level, like the build), so re-filtering never re-reads a product.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from hyper400k.quality import RuleSet
from hyper400k.shards import ShardInfo, ShardWriter, iter_encoded, read_index, write_index


@dataclass
class FilterResult:
    kept: int = 0
    dropped_samples: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # per reason; a sample may break several rules


def refilter(build_dir: Path, rules: RuleSet, output: Path, shard_bytes: int) -> FilterResult:
    """Write ``output/<group>/*.tar`` and ``output/index.json`` holding the samples ``rules`` keep."""
    shards_dir = build_dir / "shards" if (build_dir / "shards" / "index.json").is_file() else build_dir
    index = read_index(shards_dir)
    result = FilterResult()
    writers: dict[str, ShardWriter] = {}
    infos: list[ShardInfo] = []
    try:
        for entry in index["shards"]:
            group = Path(entry["name"]).parent.name or "all"
            for key, members in iter_encoded(shards_dir / entry["name"]):
                reasons = rules.evaluate(json.loads(members["meta.json"])["qa"])
                if reasons:
                    result.dropped_samples += 1
                    result.dropped.update(reasons)
                    continue
                if group not in writers:
                    writers[group] = ShardWriter(output / group, group, shard_bytes)
                writers[group].write_encoded(key, members)
                result.kept += 1
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for group, writer in sorted(writers.items()):
        infos += [replace(info, name=f"{group}/{info.name}") for info in writer.close()]
    output.mkdir(parents=True, exist_ok=True)
    write_index(output, infos, extra={"filtered_from": str(shards_dir), "rules": rules.name})
    return result
