"""WebDataset shards: write samples into size-bounded tar shards, read them back, mix sources, index them.

A shard is a plain tar whose members are named ``{key}.{member}`` (``data.npy``, ``valid.npy``, ``meta.json``),
the layout every WebDataset reader understands. The writer is built for a long, resumable dataset build:

* a shard is written as ``{name}.tmp`` and renamed (after ``fsync``) only when complete, so a crash or a full
  disk never leaves a half shard under a final name;
* headers carry fixed mtime/uid/gid/mode, so the same samples always give byte-identical shards;
* size and sha256 are computed from the bytes as they are written, so the index costs no second read.

``iter_encoded`` and ``interleave`` move samples as raw member bytes (no decoding), which is what a packer
needs to mix per-product spool tars into shards that each hold many flight lines.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from hyper400k import storage
from hyper400k.sample import Sample
from hyper400k.storage import Location, as_location

INDEX_NAME = "index.json"
INDEX_VERSION = 1
TEMP_SUFFIX = ".tmp"

_BLOCK = 512
_END_OF_ARCHIVE = bytes(2 * _BLOCK)
_IO_BUFFER = 1 << 20
_INDEX_FIELDS = ("version", "shards", "total_samples", "total_bytes")
# Member types that carry header data for the member that follows rather than a member of their own.
_LONGNAME_TYPES = (tarfile.GNUTYPE_LONGNAME,)
_PAX_TYPES = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE)
_SKIPPED_TYPES = (tarfile.XGLTYPE,)

Encoded = tuple[str, dict[str, bytes]]
Buffer = bytes | bytearray | memoryview


class ShardError(Exception):
    """A shard (or spool tar) cannot be written or read; the message always names the file."""

    def __init__(self, path: Location, problem: str) -> None:
        self.path = as_location(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class ShardInfo:
    """One finished shard: its file name (relative to the shard folder), sample count, size, sha256 (None when
    its writer was told not to hash: a transient spool) and keys."""

    name: str
    samples: int
    bytes: int
    sha256: str | None
    keys: list[str] = field(default_factory=list)

    def index_entry(self) -> dict[str, Any]:
        """The shard's entry in ``index.json`` (keys are left out: they would dominate the file)."""
        return {"name": self.name, "samples": self.samples, "bytes": self.bytes, "sha256": self.sha256}


def shard_name(prefix: str, index: int) -> str:
    """``{prefix}-{index:06d}.tar``: names sort in write order and match WebDataset brace patterns."""
    return f"{prefix}-{index:06d}.tar"


def _tar_header(name: str, size: int) -> bytes:
    """The header block(s) of a regular member, with fixed metadata so that output is reproducible."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")


def _padding(size: int) -> int:
    return -size % _BLOCK


class _OpenShard:
    """The shard in progress: a temp file plus the running byte count and sha256 (if asked) of what was written."""

    def __init__(self, final: Path, checksum: bool) -> None:
        self.final = final
        self.temp = final.with_name(final.name + TEMP_SUFFIX)
        self.sha = hashlib.sha256() if checksum else None
        self.bytes = 0
        self.keys: list[str] = []
        self.file: BinaryIO = open(self.temp, "wb", buffering=_IO_BUFFER)

    def write(self, chunk: bytes | memoryview) -> None:
        self.file.write(chunk)
        if self.sha is not None:
            self.sha.update(chunk)
        self.bytes += memoryview(chunk).nbytes

    def finish(self) -> ShardInfo:
        """Write the end-of-archive marker, flush to disk and move the shard to its final name."""
        self.write(_END_OF_ARCHIVE)
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.temp, self.final)
        _fsync_directory(self.final.parent)
        digest = self.sha.hexdigest() if self.sha is not None else None
        return ShardInfo(self.final.name, len(self.keys), self.bytes, digest, self.keys)

    def discard(self) -> None:
        """Close (ignoring errors: the disk may be full) and delete the temp file."""
        with contextlib.suppress(OSError):
            self.file.close()
        self.temp.unlink(missing_ok=True)


class ShardWriter:
    """Write samples into ``{prefix}-{index:06d}.tar`` shards of at most ``target_bytes`` each.

    A shard rolls over before a sample that would take it past ``target_bytes``; a sample larger than the
    target gets a shard of its own. Keys must be unique within one writer. Use as a context manager: leaving
    the block normally closes the last shard; leaving it with an exception deletes the temp file of the shard
    in progress (finished shards stay). Re-running with the same prefix replaces shards of the same name.
    ``checksum=False`` skips the sha256 (a fifth of a build task's CPU): for a transient file, such as a
    product's spool, that is read back whole (and its tar structure checked) by the task that packs it.
    """

    def __init__(
        self, out_dir: Path, prefix: str, target_bytes: int = 1_000_000_000, *, checksum: bool = True
    ) -> None:
        if target_bytes <= 0:
            raise ValueError(f"target_bytes must be positive, got {target_bytes}")
        if not prefix or "/" in prefix:
            raise ValueError(f"shard prefix {prefix!r} must be a non-empty file name (no '/')")
        self.out_dir = Path(out_dir)
        self.prefix = prefix
        self.target_bytes = target_bytes
        self.checksum = checksum
        self.shards: list[ShardInfo] = []
        self._current: _OpenShard | None = None
        self._seen: set[str] = set()
        self._closed = False
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, sample: Sample) -> None:
        """Check ``sample`` against the contract (:class:`~hyper400k.sample.SchemaError` if it breaks it), write it.

        The arrays go from their own memory to the file (:meth:`~hyper400k.sample.Sample.encode_parts`)."""
        sample.check()
        self.write_encoded(sample.key, sample.encode_parts())

    def write_encoded(self, key: str, members: Mapping[str, Buffer | tuple[Buffer, ...]]) -> None:
        """Write one sample given as raw member bytes (``{"data.npy": b"...", ...}``) without decoding it.

        A member may also be a tuple of byte strings or views, written one after the other (no joined copy).
        Members are written in sorted name order so that output does not depend on dict order. Only the tar
        structure is checked here (key and member names); ``verify`` checks the sample contract.
        """
        if self._closed:
            raise ValueError("ShardWriter is closed")
        parts = {name: data if isinstance(data, tuple) else (data,) for name, data in members.items()}
        self._check_names(key, parts)
        blocks = []
        for name in sorted(parts):
            length = sum(memoryview(part).nbytes for part in parts[name])
            blocks.append((_tar_header(f"{key}.{name}", length), parts[name], length))
        size = sum(len(header) + length + _padding(length) for header, _, length in blocks)
        current = self._current
        if (
            current is not None
            and current.keys
            and current.bytes + size + len(_END_OF_ARCHIVE) > self.target_bytes
        ):
            self._finish_current()
        if self._current is None:
            final = self.out_dir / shard_name(self.prefix, len(self.shards))
            try:
                self._current = _OpenShard(final, self.checksum)
            except OSError as exc:
                self._closed = True
                raise _write_error(final, exc) from exc
        shard = self._current
        try:
            for header, pieces, length in blocks:
                shard.write(header)
                for piece in pieces:
                    shard.write(memoryview(piece))
                shard.write(bytes(_padding(length)))
        except OSError as exc:
            self.abort()
            raise _write_error(shard.final, exc) from exc
        shard.keys.append(key)
        self._seen.add(key)

    def close(self) -> list[ShardInfo]:
        """Finish the shard in progress and return every shard written (also kept in :attr:`shards`)."""
        if not self._closed:
            self._closed = True
            if self._current is not None:
                self._finish_current()
        return self.shards

    def abort(self) -> None:
        """Delete the temp file of the shard in progress; finished shards stay. The writer is closed after."""
        self._closed = True
        if self._current is not None:
            self._current.discard()
            self._current = None

    def _check_names(self, key: str, members: Mapping[str, tuple[Buffer, ...]]) -> None:
        if not key or "." in key or "/" in key:
            raise ValueError(
                f"sample key {key!r} must be non-empty, without '.' or '/' (WebDataset splits on them)"
            )
        if key in self._seen:
            raise ValueError(f"sample key {key!r} was already written by this ShardWriter")
        if not members:
            raise ValueError(f"sample {key!r} has no members")
        for name, data in members.items():
            if not name or "/" in name or name.startswith("_"):
                raise ValueError(
                    f"sample {key!r}: member name {name!r} must be non-empty, without '/' or leading '_'"
                )
            for piece in data:
                if not isinstance(piece, bytes | bytearray | memoryview):
                    raise TypeError(f"sample {key!r}: member {name!r} is {type(piece).__name__}, not bytes")

    def _finish_current(self) -> None:
        shard = self._current
        assert shard is not None
        try:
            info = shard.finish()
        except OSError as exc:
            self.abort()
            raise _write_error(shard.final, exc) from exc
        self.shards.append(info)
        self._current = None


def _write_error(final: Path, exc: OSError) -> ShardError:
    """A :class:`ShardError` naming the file being written; a full disk is called out (the usual cause)."""
    reason = "disk full (ENOSPC)" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return ShardError(final, f"cannot write: {reason}; its temp file {final.name}{TEMP_SUFFIX} was removed")


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_exact(stream: BinaryIO, size: int, path: Path, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise ShardError(path, f"truncated tar: file ends inside {what}")
    return data


def _pax_path(records: bytes, path: Path) -> str | None:
    """The ``path`` record of a pax extended header (``"<len> path=<value>\\n"`` records), if any."""
    position = 0
    found = None
    while position < len(records) and records[position] != 0:
        length_text, _, _ = records[position:].partition(b" ")
        try:
            length = int(length_text)
        except ValueError:
            raise ShardError(path, "corrupt pax extended header") from None
        keyword, _, value = records[position + len(length_text) + 1 : position + length - 1].partition(b"=")
        if keyword == b"path":
            found = value.decode("utf-8", "surrogateescape")
        position += length
    return found


def _tar_members(stream: BinaryIO, path: Path) -> Iterator[tuple[str, bytes]]:
    """Every regular member of a tar as ``(name, data)``, read sequentially from ``stream``.

    Unlike :mod:`tarfile`, which takes a file that ends at a member boundary (or a damaged header) for the end
    of the archive, this requires the end-of-archive marker, so a truncated shard is always an error.
    """
    offset = 0
    pending_name: str | None = None
    while True:
        header = _read_exact(stream, _BLOCK, path, f"the header at byte {offset}")
        if header == bytes(_BLOCK):
            if _read_exact(stream, _BLOCK, path, "the end-of-archive marker") != bytes(_BLOCK):
                raise ShardError(path, f"corrupt tar: stray zero block at byte {offset}")
            return
        try:
            info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise ShardError(path, f"corrupt tar header at byte {offset}: {exc}") from None
        data = _read_exact(stream, info.size, path, f"member {info.name!r}")
        _read_exact(stream, _padding(info.size), path, f"the padding of member {info.name!r}")
        offset += _BLOCK + info.size + _padding(info.size)
        if info.type in _LONGNAME_TYPES:
            pending_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif info.type in _PAX_TYPES:
            pending_name = _pax_path(data, path) or pending_name
        elif info.type in _SKIPPED_TYPES:
            continue
        elif info.type in tarfile.REGULAR_TYPES:
            yield pending_name or info.name, data
            pending_name = None
        else:
            raise ShardError(path, f"member {info.name!r} is not a regular file (tar type {info.type!r})")


def _split_name(name: str, path: Path) -> tuple[str, str]:
    """``"dir/key.data.npy"`` -> ``("dir/key", "data.npy")``: WebDataset's rule (first dot of the base name)."""
    directory, slash, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    if not stem or not dot or not extension:
        raise ShardError(path, f"member name {name!r} is not of the form '{{key}}.{{member}}'")
    return directory + slash + stem, extension


def iter_encoded(tar_path: Location, *, fileobj: BinaryIO | None = None) -> Iterator[Encoded]:
    """Stream ``(key, {member: bytes})`` samples from a shard or spool tar, without decoding any member.

    Consecutive members with the same key form one sample. ``fileobj``, when given, is read instead of
    opening ``tar_path`` (``verify`` passes a hashing reader); ``tar_path`` still names the file in errors.
    Raises :class:`ShardError` on a truncated or corrupt tar, a member name without the ``{key}.{member}``
    form, or a member repeated within a sample.
    """
    path = as_location(tar_path)
    with contextlib.ExitStack() as stack:
        if fileobj is None:
            fileobj = stack.enter_context(storage.open_stream(path))
        key: str | None = None
        members: dict[str, bytes] = {}
        for name, data in _tar_members(fileobj, path):
            member_key, member = _split_name(name, path)
            if member_key != key:
                if key is not None:
                    yield key, members
                key, members = member_key, {}
            if member in members:
                raise ShardError(path, f"sample {key!r} holds member {member!r} twice")
            members[member] = data
        if key is not None:
            yield key, members


def shard_keys(tar_path: Path) -> list[str]:
    """The sample keys of a shard or spool tar in order, from its headers alone (member data is skipped)."""
    path = Path(tar_path)
    size = path.stat().st_size
    keys: list[str] = []
    pending_name: str | None = None
    with open(path, "rb") as stream:
        while True:
            offset = stream.tell()
            header = _read_exact(stream, _BLOCK, path, f"the header at byte {offset}")
            if header == bytes(_BLOCK):
                return keys
            try:
                info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise ShardError(path, f"corrupt tar header at byte {offset}: {exc}") from None
            end = offset + _BLOCK + info.size + _padding(info.size)
            if end > size:
                raise ShardError(path, f"truncated tar: file ends inside member {info.name!r}")
            if info.type in _LONGNAME_TYPES + _PAX_TYPES:
                data = stream.read(info.size)
                pending_name = (
                    data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                    if info.type in _LONGNAME_TYPES
                    else _pax_path(data, path) or pending_name
                )
            elif info.type in tarfile.REGULAR_TYPES:
                member_key, _ = _split_name(pending_name or info.name, path)
                if not keys or keys[-1] != member_key:
                    keys.append(member_key)
                pending_name = None
            stream.seek(end)


def count_samples(tar_path: Path) -> int:
    """The number of samples in a shard or spool tar, from its headers alone (member data is skipped)."""
    return len(shard_keys(tar_path))


def interleave(sources: list[Path], seed: int, *, max_open: int = 64) -> Iterator[Encoded]:
    """Yield every sample of ``sources`` exactly once, mixed so that consecutive samples come from many tars.

    Sources are shuffled (by ``seed``) and taken ``max_open`` at a time, which bounds open files and memory
    (one streaming reader per source). Within a window, each next sample comes from a source drawn at random
    with probability proportional to its remaining samples, so every part of the output is an even mix of the
    window's sources (rather than round-robin, which ends with only the longest source). Counts come from a
    header-only scan. The same sources and seed always give the same order.
    """
    if max_open < 1:
        raise ValueError(f"max_open must be at least 1, got {max_open}")
    rng = random.Random(seed)
    order = [Path(source) for source in sources]
    rng.shuffle(order)
    for start in range(0, len(order), max_open):
        window = order[start : start + max_open]
        remaining = [count_samples(path) for path in window]
        with contextlib.ExitStack() as stack:
            readers = [stack.enter_context(contextlib.closing(iter_encoded(path))) for path in window]
            indices = range(len(window))
            while any(remaining):
                chosen = rng.choices(indices, weights=remaining)[0]
                sample = next(readers[chosen], None)
                if sample is None:
                    raise ShardError(window[chosen], "holds fewer samples than its headers announced")
                remaining[chosen] -= 1
                if not remaining[chosen] and next(readers[chosen], None) is not None:
                    raise ShardError(window[chosen], "holds more samples than its headers announced")
                yield sample


def write_index(out_dir: Path, shards: list[ShardInfo], extra: dict[str, Any] | None = None) -> Path:
    """Write ``index.json`` (shard names, sample counts, bytes, sha256, totals, plus ``extra``) atomically.

    Written to a temp file, fsynced and renamed, so a reader never sees a partial index. Returns its path.
    """
    extra = dict(extra or {})
    clashes = sorted(set(extra) & set(_INDEX_FIELDS))
    if clashes:
        raise ValueError(f"extra index fields {clashes} would overwrite the index's own fields")
    index = {
        "version": INDEX_VERSION,
        "shards": [shard.index_entry() for shard in shards],
        "total_samples": sum(shard.samples for shard in shards),
        "total_bytes": sum(shard.bytes for shard in shards),
        **extra,
    }
    out_dir = Path(out_dir)
    final = out_dir / INDEX_NAME
    temp = final.with_name(final.name + TEMP_SUFFIX)
    try:
        with open(temp, "w", encoding="utf-8") as stream:
            json.dump(index, stream, indent=1, allow_nan=False)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, final)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise _write_error(final, exc) from exc
    _fsync_directory(out_dir)
    return final


def index_root(index_path: Location, index: dict[str, Any]) -> Location:
    """The folder that the shard names of an index are relative to: the index's own folder, or its ``base``
    (a relative path such as ``"../.."``: a build keeps one index per generation outside the shard tree).
    A URL index gives a URL root."""
    path = as_location(index_path)
    name = storage.name_of(path)
    folder = storage.parent(path) if name == INDEX_NAME or name.endswith(".json") else path
    return storage.join(folder, index.get("base", "."))


def read_index(path: Location) -> dict[str, Any]:
    """Read a shard index (``path`` is ``index.json`` or the folder holding it, local or a URL); check its
    structure."""
    path = as_location(path)
    if isinstance(path, Path) and path.is_dir():
        path = path / INDEX_NAME
    try:
        index = json.loads(storage.read_text(path))
    except (OSError, ValueError) as exc:
        raise ShardError(path, f"cannot read the shard index: {exc}") from exc
    if not isinstance(index, dict) or any(name not in index for name in _INDEX_FIELDS):
        raise ShardError(path, f"not a shard index (needs {list(_INDEX_FIELDS)})")
    if index["version"] != INDEX_VERSION:
        raise ShardError(path, f"shard index version {index['version']!r}, this code reads {INDEX_VERSION}")
    for entry in index["shards"]:
        if not isinstance(entry, dict) or any(
            name not in entry for name in ("name", "samples", "bytes", "sha256")
        ):
            raise ShardError(path, f"malformed shard entry {entry!r}")
    return index
