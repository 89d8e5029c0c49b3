"""Verify a shard folder against its ``index.json``: files, sizes, sha256, sample schema, unique keys.

This is what a user runs after copying a corpus (or before training on one): every problem is reported with
the shard name (and the sample key where there is one) instead of stopping at the first. Each shard is read
once, in 1 MiB chunks: the same bytes feed the sha256 and the sample decoder, so memory stays bounded by the
largest sample and the cost is one sequential read of the corpus.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from hyper400k.progress import progress_bar
from hyper400k.sample import Sample, SchemaError
from hyper400k.shards import INDEX_NAME, TEMP_SUFFIX, ShardError, iter_encoded, read_index

_CHUNK = 1 << 20


@dataclass
class VerifyReport:
    """The outcome of :func:`verify_shards`; ``ok`` when no problem was found."""

    directory: str
    problems: list[str] = field(default_factory=list)
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
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report as a JSON object (``ok``, ``directory``, ``problems``, counts)."""
        return json.dumps({"ok": self.ok, **asdict(self)}, indent=2)


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


def verify_shards(directory: Path, *, check_samples: bool = True, progress: bool = False) -> VerifyReport:
    """Check the shards listed in ``directory/index.json`` and report every problem found.

    Checks: each listed shard exists with the recorded size and sha256; the index totals add up; no unlisted
    ``*.tar`` (or leftover ``*.tar.tmp``) sits in the folder. With ``check_samples``, also decodes every sample
    through :meth:`Sample.decode` (the schema check), compares per-shard sample counts with the index, and
    reports keys that occur more than once across the corpus.
    """
    directory = Path(directory)
    report = VerifyReport(str(directory))
    try:
        index = read_index(directory / INDEX_NAME)
    except ShardError as exc:
        report.problems.append(str(exc))
        return report
    entries = index["shards"]
    listed = [entry["name"] for entry in entries]
    _check_listing(directory, listed, report)
    if index["total_samples"] != sum(entry["samples"] for entry in entries):
        report.problems.append(f"{INDEX_NAME}: total_samples disagrees with the sum over shards")
    if index["total_bytes"] != sum(entry["bytes"] for entry in entries):
        report.problems.append(f"{INDEX_NAME}: total_bytes disagrees with the sum over shards")

    seen: dict[str, str] = {}
    existing = [entry for entry in entries if (directory / entry["name"]).is_file()]
    total = sum((directory / entry["name"]).stat().st_size for entry in existing)
    with progress_bar(total=total, unit="B", unit_scale=True, desc="verify", disable=not progress) as bar:
        for entry in entries:
            path = directory / entry["name"]
            if not path.is_file():
                report.problems.append(f"{entry['name']}: listed in {INDEX_NAME} but missing")
                continue
            _check_shard(path, entry, seen, report, check_samples, bar.update)
            report.shards_checked += 1
    return report


def _check_listing(directory: Path, listed: list[str], report: VerifyReport) -> None:
    """Report repeated index entries, unlisted shards and temp files left by an interrupted write.

    Shards may sit in subfolders (index names like ``aviris-ng-L1/aviris-ng-L1-000000.tar``), so the whole tree
    is searched.
    """
    names = set(listed)
    if len(names) != len(listed):
        report.problems.append(f"{INDEX_NAME}: lists a shard more than once")
    for path in sorted(directory.rglob("*.tar")):
        name = path.relative_to(directory).as_posix()
        if name not in names:
            report.problems.append(f"{name}: shard not listed in {INDEX_NAME}")
    for path in sorted(directory.rglob(f"*.tar{TEMP_SUFFIX}")):
        report.problems.append(
            f"{path.relative_to(directory).as_posix()}: unfinished temp shard (an interrupted write)"
        )


def _check_shard(
    path: Path,
    entry: dict[str, Any],
    seen: dict[str, str],
    report: VerifyReport,
    check_samples: bool,
    on_bytes: Callable[[int], Any],
) -> None:
    """Hash one shard and (``check_samples``) decode its samples, in a single sequential read."""
    name = entry["name"]
    samples = 0
    with open(path, "rb", buffering=_CHUNK) as stream:
        reader = _HashingReader(stream, on_bytes)
        if check_samples:
            try:
                for key, members in iter_encoded(path, fileobj=reader):
                    samples += 1
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
