"""Stream the samples of one shard: optional checksum, skip to a position by headers, decode without copies.

Reading is the loader's hot path, so it avoids the copies that reading members into ``bytes`` and calling
:meth:`Sample.decode` makes (each costing more in page faults on fresh memory than in copying):

* the shard is memory-mapped and :func:`hyper400k.shards.iter_encoded` (the project's strict tar reader:
  truncation and corruption are :class:`ShardError`) reads it through a stream whose large reads are
  zero-copy views of the map, so sample data goes from the page cache straight into the batch tensor;
* ``.npy`` members are decoded as views of those buffers (``np.frombuffer``), not copied again;
* skipping to the ``n``-th sample (resuming) walks the tar headers and seeks over member data.

A shard given by URL (``s3://``, ``gs://``, ``https://``) is streamed front to back through fsspec instead
(:func:`hyper400k.storage.open_stream`): object stores in large read-ahead blocks, where a resume's header
walk seeks by range requests; a plain HTTP server as one download, where a resume reads and drops the
samples before the position (a static server need not answer range requests).

The sample contract is the same one :meth:`Sample.decode` enforces: :func:`decode` runs
:func:`hyper400k.sample.schema_problems` and raises :class:`SchemaError` with the same message. Shards are
immutable once written (the writer renames complete files into place); truncating one in place while it is
being read would be a fatal signal (SIGBUS) for the reading process rather than an exception.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import mmap
import os
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO, Literal, cast

import numpy as np

from hyper400k import storage
from hyper400k.sample import MEMBERS, Sample, SchemaError, schema_problems
from hyper400k.shards import ShardError, iter_encoded
from hyper400k.storage import Location
from specaware.data.report import SkipCounters
from specaware.data.source import Shard

# Reads at least this large are zero-copy views of the map; smaller ones (tar headers, meta.json) are bytes.
_LARGE_READ = 1 << 16
# An .npy header is at most 64 KiB (format 1.0) and NumPy refuses ones above 10 kB by default.
_NPY_HEADER_PEEK = (1 << 16) + 16

Member = bytes | memoryview


class _MappedShard:
    """A read-only binary stream over a private memory map of a shard (see the module doc).

    Reads of at least ``_LARGE_READ`` bytes return zero-copy memoryviews of the map; smaller ones return bytes.
    The map is copy-on-write, so arrays over it are writable without ever touching the file, and it stays
    alive as long as any view of it does.
    """

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_COPY) if size else b""
        self._view = memoryview(mapped)
        self._position = 0

    def read(self, size: int = -1) -> Member:
        end = len(self._view) if size < 0 else min(self._position + size, len(self._view))
        chunk = self._view[self._position : end]
        self._position = end
        return chunk if len(chunk) >= _LARGE_READ else bytes(chunk)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position


def decode(key: str, members: Mapping[str, Member]) -> Sample:
    """The :class:`Sample` of ``members`` (arrays are views of the member buffers); raises
    :class:`SchemaError` exactly where :meth:`Sample.decode` does."""
    missing = [m for m in MEMBERS if m not in members]
    if missing:
        raise SchemaError(key, f"missing members {missing}")
    try:
        data = _npy_view(members["data.npy"])
        valid = _npy_view(members["valid.npy"])
        meta = json.loads(bytes(members["meta.json"]))
    except (ValueError, EOFError) as exc:
        raise SchemaError(key, f"undecodable member: {exc}") from exc
    if not isinstance(meta, dict):
        raise SchemaError(key, f"meta.json is a {type(meta).__name__}, not an object")
    problems = schema_problems(key, data, valid, meta)
    if problems:
        raise SchemaError(key, "; ".join(problems))
    return Sample(key, data, valid, meta)


def _npy_view(buffer: Member) -> np.ndarray:
    """A ``.npy`` member as an array viewing ``buffer`` (a writable copy when the buffer is read-only bytes)."""
    header = io.BytesIO(bytes(buffer[:_NPY_HEADER_PEEK]))
    version = np.lib.format.read_magic(header)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(header)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(header)
    if dtype.hasobject:
        raise ValueError("object arrays are not allowed")
    count = int(np.prod(shape, dtype=np.int64))
    array = np.frombuffer(buffer, dtype=dtype, count=count, offset=header.tell())
    array = array.reshape(shape, order="F" if fortran else "C")
    return array if array.flags.writeable else array.copy()


def sha256_of(path: Location) -> str:
    if not isinstance(path, Path):
        return storage.sha256(path)
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def skip_samples(stream: BinaryIO, path: Location, count: int, keys: frozenset[str] | None) -> None:
    """Position ``stream`` (at the start of a tar) on the first sample after ``count`` samples, counting only
    keys in ``keys`` when given. Reads headers only and seeks over member data. When the shard holds fewer
    samples, the stream is left at the end of the archive."""
    try:
        archive = tarfile.open(fileobj=stream, mode="r:")
        previous: str | None = None
        seen = 0
        while (info := archive.next()) is not None:
            key = _key_of(info.name)
            if key == previous:
                continue
            if seen == count:
                stream.seek(info.offset)
                return
            previous = key
            seen += keys is None or key in keys
        stream.seek(archive.offset)
    except tarfile.TarError as exc:
        raise ShardError(path, f"corrupt tar while skipping to sample {count}: {exc}") from exc


def _key_of(name: str) -> str:
    """The sample key of a member name (WebDataset's rule: up to the first dot of the base name)."""
    directory, slash, base = name.rpartition("/")
    return directory + slash + base.partition(".")[0]


class ShardReader:
    """Reads samples from shards, applying the loader's policies for bad shards and bad samples.

    ``verify`` checks a shard's sha256 against the index before its first use in this process;
    ``on_bad_shard`` is what a checksum mismatch, truncation or unreadable shard does (raise
    :class:`ShardError`, or log, count and move on); ``on_bad_sample`` the same for a sample that violates the
    schema (:class:`SchemaError`).
    """

    def __init__(
        self,
        counters: SkipCounters,
        *,
        verify: bool = False,
        on_bad_shard: Literal["raise", "skip"] = "raise",
        on_bad_sample: Literal["raise", "skip"] = "skip",
    ) -> None:
        self.counters = counters
        self.verify = verify
        self.on_bad_shard = on_bad_shard
        self.on_bad_sample = on_bad_sample
        self._verified: set[Location] = set()

    def samples(self, shard: Shard, skip: int = 0) -> Iterator[Sample]:
        """The (selected) samples of ``shard`` after the first ``skip`` of them."""
        try:
            self._check(shard)
            with self._open(shard.path) as stream:
                drop = 0
                if skip and storage.can_seek(shard.path):
                    skip_samples(stream, shard.path, skip, shard.keys)
                else:
                    drop = skip
                for key, members in iter_encoded(shard.path, fileobj=stream):
                    if shard.keys is not None and key not in shard.keys:
                        continue
                    if drop:
                        drop -= 1
                        continue
                    yield from self._decoded(shard, key, members)
        except ShardError as exc:
            if self.on_bad_shard == "raise":
                raise
            self.counters.shard_skipped(str(shard.path), exc.problem)
        except OSError as exc:
            error = ShardError(shard.path, f"cannot read: {exc.strerror or exc}")
            if self.on_bad_shard == "raise":
                raise error from exc
            self.counters.shard_skipped(str(shard.path), error.problem)

    @staticmethod
    def _open(path: Location) -> contextlib.AbstractContextManager[BinaryIO]:
        """A local shard as a memory map (see the module doc), a URL as a sequential stream."""
        if isinstance(path, Path):
            return contextlib.nullcontext(cast(BinaryIO, _MappedShard(path)))
        return storage.open_stream(path)

    def _decoded(self, shard: Shard, key: str, members: Mapping[str, Member]) -> Iterator[Sample]:
        """The sample, or nothing when it violates the schema and bad samples are skipped."""
        try:
            yield decode(key, members)
        except SchemaError as exc:
            if self.on_bad_sample == "raise":
                raise
            self.counters.sample_skipped(str(shard.path), str(exc))

    def _check(self, shard: Shard) -> None:
        if not self.verify or shard.path in self._verified:
            return
        if shard.sha256 is None:
            raise ShardError(shard.path, "no sha256 to verify against (no index.json lists this shard)")
        actual = sha256_of(shard.path)
        if actual != shard.sha256:
            raise ShardError(
                shard.path, f"sha256 {actual} differs from the index's {shard.sha256}: corrupt shard"
            )
        self._verified.add(shard.path)
