"""Where a build lives: a local folder, or an object-store / web prefix (``s3://``, ``gs://``, ``https://``).

A *location* is a :class:`~pathlib.Path` for a local file or folder, or a URL string for anything fsspec
opens. The functions here take either, so the code that reads a build (catalog, shard index, patch table,
shards) and the code that publishes one do not care which it has: local paths keep using the operating system
directly (renames, fsync, memory maps stay where they are), URLs go through fsspec.

Credentials and endpoints come from the backend's usual sources (``AWS_*`` variables or ``~/.aws`` for
``s3fs``, application-default credentials for ``gcsfs``); :func:`configure` adds explicit storage options
(``--storage-option key=value``) as fsspec's per-protocol defaults, so every filesystem opened later in the
process uses them. Errors of the backends (no credentials, no bucket, access denied, unreachable endpoint)
become one :class:`OSError` naming the URL (:func:`naming`), which the CLI prints as one line with exit code 3.
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO, overload
from urllib.parse import urlsplit

import fsspec
import fsspec.config
import yaml

Location = Path | str  # a local path, or a URL string ("s3://bucket/prefix/catalog.json")

_CHUNK = 1 << 20
_READAHEAD = 8 << 20  # block size of object-store reads: few requests, memory bounded by one block
_LOCAL_PROTOCOLS = ("file", "local")


def is_url(location: Location | str) -> bool:
    """True for ``scheme://...`` strings other than ``file://`` (those are local paths)."""
    if isinstance(location, Path):
        return False
    scheme = urlsplit(str(location)).scheme
    return len(scheme) > 1 and "://" in str(location) and scheme not in _LOCAL_PROTOCOLS


def as_location(value: Location | str) -> Location:
    """A URL stays a string (``file://`` URLs become paths); anything else is a :class:`Path`."""
    if is_url(value):
        return str(value).rstrip("/")
    text = str(value)
    return Path(text.removeprefix("file://")) if text.startswith("file://") else Path(text)


@overload
def join(base: Path, *parts: str) -> Path: ...
@overload
def join(base: str, *parts: str) -> str: ...
def join(base: Location, *parts: str) -> Location:
    """``base`` / ``parts`` with ``.`` and ``..`` resolved (a relative href followed from ``base``)."""
    if isinstance(base, Path):
        return Path(os.path.normpath(base.joinpath(*parts)))
    scheme, _, rest = base.partition("://")
    host, _, path = rest.partition("/")
    joined = posixpath.normpath(posixpath.join("/" + path, *parts))
    return f"{scheme}://{host}{joined if joined != '/' else ''}"


def parent(location: Location) -> Location:
    return location.parent if isinstance(location, Path) else join(location, "..")


def name_of(location: Location) -> str:
    return location.name if isinstance(location, Path) else location.rstrip("/").rsplit("/", 1)[-1]


def configure(url: str, options: Mapping[str, Any]) -> None:
    """Make ``options`` (e.g. ``{"endpoint_url": ..., "anon": True}``) the defaults of every filesystem of
    ``url``'s protocol opened from now on in this process (fsspec's own per-protocol configuration)."""
    if options and is_url(url):
        protocol = urlsplit(url).scheme
        fsspec.config.conf.setdefault(protocol, {}).update(options)
        _forget_instances(url)


def parse_storage_options(pairs: list[str]) -> dict[str, Any]:
    """``["endpoint_url=http://host:9000", "anon=true"]`` -> options; values are read as YAML scalars or
    flow mappings (``true``, ``3``, ``{region_name: eu-west-1}``), anything else stays a string."""
    options: dict[str, Any] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"--storage-option {pair!r}: expected KEY=VALUE")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        options[name.strip()] = value if parsed is None or isinstance(parsed, list) else parsed
    return options


def _forget_instances(url: str) -> None:
    """Drop fsspec's cached filesystem instances of ``url``'s protocol so new options take effect."""
    cls = fsspec.get_filesystem_class(urlsplit(url).scheme)
    cls.clear_instance_cache()


def _fs(url: str) -> tuple[Any, str]:
    return fsspec.core.url_to_fs(url)


@contextmanager
def naming(url: Location) -> Iterator[None]:
    """Turn what a storage backend raises into an :class:`OSError` naming ``url``: ``FileNotFoundError`` stays
    one (a missing object), anything else (no credentials, no bucket, access denied, unreachable endpoint,
    a backend's own exception class) is an OSError whose message says what happened."""
    try:
        yield
    except FileNotFoundError as exc:
        if isinstance(url, Path) or exc.filename == str(url):
            raise
        raise FileNotFoundError(errno.ENOENT, "not found", str(url)) from exc
    except OSError as exc:
        if isinstance(url, Path) or exc.filename == str(url):
            raise
        raise OSError(exc.errno or errno.EIO, _reason(exc), str(url)) from exc
    except (ValueError, KeyError, TypeError, AttributeError):
        raise
    except Exception as exc:  # noqa: BLE001 - botocore/aiohttp/google-auth errors share no base class
        raise OSError(errno.EIO, _reason(exc), str(url)) from exc


def _reason(exc: BaseException) -> str:
    """A one-line reason, naming the backend's error class when its message alone says little."""
    text = " ".join((getattr(exc, "strerror", None) or str(exc) or "").split())
    kind = type(exc).__name__
    if kind in ("OSError", "PermissionError") or kind.lower() in text.lower():
        return text or kind
    return f"{kind}: {text}" if text else kind


def is_file(location: Location) -> bool:
    if isinstance(location, Path):
        return location.is_file()
    with naming(location):
        fs, path = _fs(location)
        return bool(fs.isfile(path))


def size(location: Location) -> int | None:
    """The size of a file in bytes, or None when there is none."""
    if isinstance(location, Path):
        return location.stat().st_size if location.is_file() else None
    with naming(location):
        fs, path = _fs(location)
        try:
            return int(fs.size(path))
        except FileNotFoundError:
            return None


def read_bytes(location: Location) -> bytes:
    if isinstance(location, Path):
        return location.read_bytes()
    with naming(location):
        fs, path = _fs(location)
        return bytes(fs.cat_file(path))


def read_text(location: Location) -> str:
    return read_bytes(location).decode("utf-8")


def open_stream(location: Location) -> BinaryIO:
    """A binary stream over a file, read front to back without keeping a copy of it: a local file, an
    object read in large blocks ahead (seeks are cheap range requests), or a plain HTTP download (a static
    server need not answer range requests; seeking forward there reads and drops the bytes)."""
    if isinstance(location, Path):
        return open(location, "rb", buffering=_CHUNK)
    with naming(location):
        fs, path = _fs(location)
        if urlsplit(location).scheme in ("http", "https"):
            return _FullReads(fs.open(path, "rb", block_size=0))
        return fs.open(path, "rb", block_size=_READAHEAD, cache_type="readahead")


class _FullReads:
    """A stream whose ``read(n)`` returns ``n`` bytes unless the stream ends (an HTTP body stream returns
    whatever the socket holds, which a tar reader would take for truncation)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return bytes(self._stream.read())
        parts, got = [], 0
        while got < size and (chunk := self._stream.read(size - got)):
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> _FullReads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def can_seek(location: Location) -> bool:
    """Whether :func:`open_stream` gives a stream that seeks (all but plain HTTP downloads)."""
    return isinstance(location, Path) or urlsplit(location).scheme not in ("http", "https")


def sha256(location: Location) -> str:
    """The sha256 of a file, streamed in 1 MiB chunks."""
    digest = hashlib.sha256()
    with naming(location), open_stream(location) as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(location: Location) -> list[str]:
    """Every file under a folder or prefix, as posix paths relative to it (empty when there is none)."""
    if isinstance(location, Path):
        if not location.is_dir():
            return []
        return sorted(p.relative_to(location).as_posix() for p in location.rglob("*") if p.is_file())
    with naming(location):
        fs, path = _fs(location)
        root = path.rstrip("/")
        try:
            found = fs.find(root)
        except FileNotFoundError:
            return []
        return sorted(p[len(root) + 1 :] for p in found if p.startswith(root + "/"))


def put_file(local: Path, url: str) -> None:
    """Upload a local file to ``url``. One object PUT is atomic on S3 and GCS: a reader sees the old object
    or the new one, never part of it (the guarantee a local build gets from writing a temp file and renaming)."""
    with naming(url):
        fs, path = _fs(url)
        fs.put_file(str(local), path)


def remove(url: str) -> None:
    """Delete an object; a missing one is no error."""
    with naming(url):
        fs, path = _fs(url)
        with suppress(FileNotFoundError):
            fs.rm_file(path)


def check_writable(location: str) -> None:
    """Fail early, naming the URL, when a remote output cannot be written (no credentials, no bucket,
    access denied, unreachable endpoint), before any product is tiled: write and delete a small object."""
    probe = join(location, ".hyper400k-write-check")
    try:
        with naming(location):
            fs, path = _fs(str(probe))
            fs.pipe_file(path, b"")
            fs.rm_file(path)
    except FileNotFoundError as exc:  # S3 and GCS answer a write into a missing bucket with "not found"
        raise OSError(errno.EIO, "no such bucket (create it first)", location) from exc
