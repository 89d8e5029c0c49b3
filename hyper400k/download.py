"""Fetch the raw products listed in a manifest, robustly and idempotently.

Each product is written to ``<name>.part`` and renamed into place only after its size and
sha256 (when the manifest gives them) check out, so a final file is always complete. A
transfer that fails keeps its ``.part`` and the next attempt (or the next run) resumes it with
an HTTP ``Range`` request; a checksum mismatch or a full disk deletes it instead.

Credentials never reach a host they were not meant for: a bearer token goes only to the host
of the manifest URL, a netrc ``machine`` entry only to that machine, and neither is carried
across a redirect to another host.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import http.client
import http.cookiejar
import logging
import netrc
import os
import re
import ssl
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import urlsplit

from hyper400k.manifest import ManifestEntry
from hyper400k.progress import progress_bar

log = logging.getLogger(__name__)

TOKEN_ENV = "EARTHDATA_TOKEN"
"""Environment variable holding a bearer token, used when no token is passed explicitly."""

EARTHDATA_LOGIN_HOST = "urs.earthdata.nasa.gov"
"""Where NASA Earthdata sends a request without a token to log in (netrc ``machine`` for ``auth: earthdata``)."""

_CHUNK = 1 << 20
_MAX_DELAY_S = 60.0
_RETRIED_4XX = frozenset({408, 429})  # timeouts and rate limits are transient; other 4xx are not
_VERIFY_ATTEMPTS = 2  # a mismatch is retried once from zero: a resumed .part may hold stale bytes
_USER_AGENT = "hyper400k-download/0.1"
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)")


class FetchStatus(StrEnum):
    """Outcome of fetching one entry."""

    OK = "ok"
    FAILED = "failed"


@dataclass(frozen=True)
class FetchResult:
    """What happened to one manifest entry.

    ``path`` is where the product lies (or would lie, on failure); ``reason`` says why it failed;
    ``skipped`` is true when a complete, verified file was already there and nothing was
    downloaded; ``extracted`` lists the tarball members written to the destination directory.
    """

    entry: ManifestEntry
    status: FetchStatus
    path: Path
    reason: str | None = None
    skipped: bool = False
    extracted: tuple[Path, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the product is in place (and extracted, when asked)."""
        return self.status is FetchStatus.OK


class FetchError(Exception):
    """A failure that ends the fetch of one entry; the message is the reason reported for it."""


class _TransientError(Exception):
    """A failure worth another attempt: dropped connection, timeout, 5xx, 408 or 429."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Credentials:
    """Chooses the ``Authorization`` header per host, so a credential only reaches its own host.

    The bearer token goes to the manifest URL's host only and wins there over netrc; a netrc
    ``machine`` entry goes to that machine only. netrc ``default`` entries are ignored on purpose:
    they would send a password to any host a redirect points at.
    """

    token: str | None
    token_host: str | None
    machines: Mapping[str, tuple[str, str | None, str]]

    @classmethod
    def for_url(cls, url: str, token: str | None) -> _Credentials:
        """Credentials for fetching ``url``: ``token``, else ``$EARTHDATA_TOKEN``, plus netrc."""
        token = token or os.environ.get(TOKEN_ENV, "").strip() or None
        return cls(token=token, token_host=urlsplit(url).hostname, machines=_netrc_machines())

    def header_for(self, url: str) -> str | None:
        """The ``Authorization`` value to send to ``url``'s host, or None."""
        host = urlsplit(url).hostname
        if self.token and host == self.token_host:
            return f"Bearer {self.token}"
        if host in self.machines:
            login, _account, password = self.machines[host]
            return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")
        return None


@dataclass(frozen=True)
class _HttpOptions:
    """How hard and how long to try one HTTP transfer."""

    credentials: _Credentials
    retries: int
    backoff: float
    timeout: float
    progress: bool


class _CredentialRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects deciding credentials afresh for every hop.

    ``Authorization`` is added as an unredirected header, so the standard handler never copies
    it to the next request; this handler adds the new host's own credential, if it has one.
    """

    def __init__(self, credentials: _Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            _authorize(new, self._credentials)
        return new


def fetch(
    entry: ManifestEntry,
    dest_dir: str | Path,
    *,
    auth: str | None = None,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 60.0,
    progress: bool = True,
) -> FetchResult:
    """Download (or copy) one product into ``dest_dir``, verify it, and extract what it asks for.

    ``auth`` is a bearer token (default ``$EARTHDATA_TOKEN``); netrc (``$NETRC`` or ``~/.netrc``)
    supplies per-host logins. ``retries`` counts consecutive failed attempts that added no bytes;
    the wait doubles from ``backoff`` seconds. ``timeout`` bounds connecting and every read.
    Failures are returned, not raised, so a caller can go on with other products.
    """
    dest_dir = Path(dest_dir)
    final = dest_dir / entry.name
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        skipped = _already_complete(final, entry)
        if not skipped:
            _check_login(entry, auth)
            _download_verified(entry, final, _transfer_for(entry, auth, retries, backoff, timeout, progress))
        extracted = _extract(final, entry.extract, dest_dir) if entry.extract else ()
        _check_holds_product(entry, final, extracted)
    except (FetchError, OSError) as exc:
        reason = str(exc) if isinstance(exc, FetchError) else f"{final}: {exc}"
        log.error("%s: %s", entry.name, reason)
        return FetchResult(entry, FetchStatus.FAILED, final, reason=reason)
    log.info("%s: ok%s", entry.name, " (already present)" if skipped else "")
    return FetchResult(entry, FetchStatus.OK, final, skipped=skipped, extracted=extracted)


def fetch_all(
    entries: Iterable[ManifestEntry],
    dest_dir: str | Path,
    *,
    auth: str | None = None,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 60.0,
    progress: bool = True,
) -> list[FetchResult]:
    """Fetch every entry in turn, carrying on past failures; one result per entry, in order."""
    entries = list(entries)
    results = [
        fetch(
            entry, dest_dir, auth=auth, retries=retries, backoff=backoff, timeout=timeout, progress=progress
        )
        for entry in progress_bar(entries, desc="products", unit="product", disable=not progress)
    ]
    failed = sum(not result.ok for result in results)
    present = sum(result.skipped for result in results)
    log.info("fetched %d products: %d already present, %d failed", len(results), present, failed)
    return results


def _check_login(entry: ManifestEntry, token: str | None) -> None:
    """Refuse an ``auth: earthdata`` entry up front when no Earthdata credential exists at all."""
    if entry.auth != "earthdata" or not entry.is_remote:
        return
    credentials = _Credentials.for_url(entry.url, token)
    if credentials.token or {EARTHDATA_LOGIN_HOST, credentials.token_host} & set(credentials.machines):
        return
    raise FetchError(
        f"{entry.url} needs a NASA Earthdata login: set ${TOKEN_ENV} or add "
        f"'machine {EARTHDATA_LOGIN_HOST} login … password …' to ~/.netrc"
    )


def _check_holds_product(entry: ManifestEntry, final: Path, extracted: Sequence[Path]) -> None:
    """A tarball entry naming its product must have yielded that product's file."""
    if entry.product and entry.extract and not any(p.name == entry.product for p in extracted):
        raise FetchError(f"{final} holds no member named {entry.product}")


def _transfer_for(
    entry: ManifestEntry, auth: str | None, retries: int, backoff: float, timeout: float, progress: bool
) -> Callable[[Path], None]:
    """A function that fills a ``.part`` file for ``entry`` from wherever the product lives."""
    if not entry.is_remote:
        return lambda part: _copy_local(_local_path(entry.url), part, progress)
    options = _HttpOptions(_Credentials.for_url(entry.url, auth), retries, backoff, timeout, progress)
    return lambda part: _http_transfer(entry, part, options)


def _already_complete(final: Path, entry: ManifestEntry) -> bool:
    """Whether ``final`` exists and verifies; a file that fails verification is deleted."""
    if not final.is_file():
        return False
    problem = _verify(final, entry)
    if problem is None:
        return True
    log.warning("%s: existing file fails verification (%s); downloading again", final, problem)
    final.unlink()
    return False


def _download_verified(entry: ManifestEntry, final: Path, transfer: Callable[[Path], None]) -> None:
    """Fill ``<final>.part``, verify it, and rename it to ``final``; a mismatch is retried from zero once."""
    part = final.with_name(final.name + ".part")
    for attempt in range(1, _VERIFY_ATTEMPTS + 1):
        transfer(part)
        problem = _verify(part, entry)
        if problem is None:
            os.replace(part, final)
            return
        part.unlink(missing_ok=True)
        if attempt == _VERIFY_ATTEMPTS:
            raise FetchError(problem)
        log.warning("%s: %s; downloading again from zero", entry.name, problem)


def _verify(path: Path, entry: ManifestEntry) -> str | None:
    """Check ``path`` against the entry's size and sha256; the mismatch as a reason, or None."""
    if entry.size is not None and (actual := path.stat().st_size) != entry.size:
        return f"size mismatch: expected {entry.size} bytes got {actual} for {entry.name}"
    if entry.sha256 is not None and (digest := _sha256(path)) != entry.sha256:
        return f"sha256 mismatch: expected {entry.sha256} got {digest} for {entry.name}"
    return None


def _sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _http_transfer(entry: ManifestEntry, part: Path, options: _HttpOptions) -> None:
    """Fill ``part`` from the entry's URL, retrying transient failures with exponential back-off.

    An attempt that leaves ``part`` longer than ever before resets the failure count, so a
    flaky connection that keeps making progress eventually finishes a large file.
    """
    opener = urllib.request.build_opener(
        _CredentialRedirectHandler(options.credentials),
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),  # login redirects set cookies
    )
    failures = 0
    high_water = _size(part)
    while True:
        try:
            _http_attempt(opener, entry, part, options)
            return
        except _TransientError as exc:
            if _size(part) > high_water:
                high_water, failures = _size(part), 0
            failures += 1
            if failures > options.retries:
                raise FetchError(f"gave up after {failures} attempts without progress: {exc}") from exc
            delay = _retry_delay(failures, options.backoff, exc.retry_after)
            log.warning("%s: %s; retry %d of %d in %.1f s", entry.name, exc, failures, options.retries, delay)
            time.sleep(delay)


def _http_attempt(
    opener: urllib.request.OpenerDirector, entry: ManifestEntry, part: Path, options: _HttpOptions
) -> None:
    """One request: resume ``part`` from its current size, or start over when the server will not."""
    offset = _size(part)
    if entry.size is not None and offset >= entry.size:
        if offset == entry.size:
            return  # nothing left to ask for; verification decides whether it is right
        part.unlink()
        offset = 0
    request = _build_request(entry.url, offset, options.credentials)
    try:
        response = opener.open(request, timeout=options.timeout)
    except urllib.error.HTTPError as exc:
        try:
            _handle_http_error(exc, entry.url, part, offset)
        finally:
            exc.close()
        return
    except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
        raise _connection_failure(exc, entry.url) from exc
    with response:
        _receive(response, entry.url, part, offset, options.progress)


def _build_request(url: str, offset: int, credentials: _Credentials) -> urllib.request.Request:
    """A GET for ``url`` asking for bytes from ``offset`` on, with this host's credential."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    _authorize(request, credentials)
    return request


def _authorize(request: urllib.request.Request, credentials: _Credentials) -> None:
    """Attach the credential for the request's host, as a header that redirects do not copy."""
    header = credentials.header_for(request.full_url)
    if header:
        request.add_unredirected_header("Authorization", header)


def _handle_http_error(exc: urllib.error.HTTPError, url: str, part: Path, offset: int) -> None:
    """Classify an error status; returns only for a 416 that shows ``part`` is already complete."""
    if exc.code == 416 and offset:
        _first, total = _content_range(exc.headers.get("Content-Range"))
        if total == offset:
            return
        part.unlink(missing_ok=True)
        raise _TransientError(f"HTTP 416 for a resume at byte {offset} of URL {url}; restarting from zero")
    reason = f"HTTP {exc.code} {exc.reason} for URL {url}"
    if exc.code >= 500 or exc.code in _RETRIED_4XX:
        raise _TransientError(reason, _retry_after(exc.headers.get("Retry-After")))
    raise FetchError(reason)


def _connection_failure(exc: BaseException, url: str) -> Exception:
    """Map a failure to connect or to read headers: certificate errors are final, the rest transient."""
    cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return FetchError(f"TLS certificate rejected for URL {url}: {cause}")
    return _TransientError(f"connection to URL {url} failed: {cause!r}")


def _receive(response: http.client.HTTPResponse, url: str, part: Path, offset: int, progress: bool) -> None:
    """Write the response body into ``part`` and check that all of it arrived."""
    start = _response_start(response, url, part, offset)
    length = response.headers.get("Content-Length", "")
    expected_end = start + int(length) if length.isdigit() else None
    with progress_bar(
        total=expected_end,
        initial=start,
        desc=part.name.removesuffix(".part"),
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        leave=False,
        disable=not progress,
    ) as bar:
        _write_stream(lambda: _read_response(response, url), part, append=start > 0, on_chunk=bar.update)
    received = _size(part)
    if expected_end is not None and received < expected_end:
        raise _TransientError(f"connection closed at byte {received} of {expected_end} from URL {url}")


def _response_start(response: http.client.HTTPResponse, url: str, part: Path, offset: int) -> int:
    """The file offset the body starts at: ``offset`` for a matching 206, else 0 (a full body)."""
    if response.status == 206:
        content_range = response.headers.get("Content-Range")
        first, _total = _content_range(content_range)
        if first == offset:
            return offset
        part.unlink(missing_ok=True)
        raise _TransientError(
            f"asked URL {url} for byte {offset} on, got range {content_range!r}; restarting"
        )
    if offset:
        log.info("%s ignored the Range request; downloading again from zero", url)
    return 0


def _read_response(response: http.client.HTTPResponse, url: str) -> bytes:
    """Next chunk of the body; a drop or a timeout becomes a transient failure."""
    try:
        return response.read1(_CHUNK)  # whatever has arrived, so a stall loses nothing already received
    except (OSError, http.client.HTTPException) as exc:
        raise _TransientError(f"connection to URL {url} dropped: {exc!r}") from exc


def _copy_local(source: Path, part: Path, progress: bool) -> None:
    """Copy a local product into ``part``, from zero: local reads are cheap and do not drop."""

    def read_chunk() -> bytes:
        try:
            return handle.read(_CHUNK)
        except OSError as exc:
            raise FetchError(f"cannot read source {source}: {exc.strerror or exc}") from exc

    try:
        handle = source.open("rb")
    except OSError as exc:
        raise FetchError(f"cannot read source {source}: {exc.strerror or exc}") from exc
    total = os.fstat(handle.fileno()).st_size
    with (
        handle,
        progress_bar(
            total=total, desc=source.name, unit="B", unit_scale=True, leave=False, disable=not progress
        ) as bar,
    ):
        _write_stream(read_chunk, part, append=False, on_chunk=bar.update)


def _local_path(url: str) -> Path:
    """The file system path of a ``file://`` URL or a plain path."""
    parts = urlsplit(url)
    return Path(urllib.request.url2pathname(parts.path)) if parts.scheme == "file" else Path(url)


def _write_stream(
    read_chunk: Callable[[], bytes], path: Path, *, append: bool, on_chunk: Callable[[int], object]
) -> None:
    """Write chunks from ``read_chunk`` to ``path`` until it returns b""; read errors are the reader's."""
    try:
        with path.open("ab" if append else "wb") as out:
            while chunk := read_chunk():
                out.write(chunk)
                on_chunk(len(chunk))
    except OSError as exc:
        raise _write_failure(exc, path) from exc


def _write_failure(exc: OSError, path: Path) -> FetchError:
    """The failure for a write error; on a full disk the partial file is deleted to give the space back."""
    if exc.errno == errno.ENOSPC:
        path.unlink(missing_ok=True)
        return FetchError(f"disk full (ENOSPC) while writing {path}")
    return FetchError(f"cannot write {path}: {exc.strerror or exc}")


def _extract(archive: Path, patterns: Sequence[str], dest_dir: Path) -> tuple[Path, ...]:
    """Extract the regular-file members of ``archive`` matching ``patterns`` into ``dest_dir``.

    Every selected member is checked first (no absolute path, no ``..``, tarfile's ``data``
    filter), so an unsafe archive writes nothing. Members already extracted (same size and
    mtime) are left alone, which keeps a re-run cheap.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            selected = [m for m in tar.getmembers() if any(fnmatchcase(m.name, p) for p in patterns)]
            if not selected:
                raise FetchError(f"no member of {archive} matches the extract patterns {list(patterns)}")
            safe = [_checked_member(member, archive, dest_dir) for member in selected]
            return tuple(
                _extract_member(tar, member, archive, dest_dir) for member in safe if _is_file(member)
            )
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise FetchError(f"cannot extract from {archive}: {exc}") from exc


def _checked_member(member: tarfile.TarInfo, archive: Path, dest_dir: Path) -> tarfile.TarInfo:
    """The member as tarfile's ``data`` filter sanitises it; unsafe members fail the whole entry."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise FetchError(f"refusing unsafe member {member.name!r} of {archive}: absolute path or '..'")
    try:
        return tarfile.data_filter(member, str(dest_dir))
    except tarfile.FilterError as exc:
        raise FetchError(f"refusing unsafe member {member.name!r} of {archive}: {exc}") from exc


def _is_file(member: tarfile.TarInfo) -> bool:
    """Whether to write the member: regular files only (directories are made as needed)."""
    if not member.isreg() and not member.isdir():
        log.warning("skipping %s: not a regular file (links and devices are not extracted)", member.name)
    return member.isreg()


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path, dest_dir: Path) -> Path:
    """Write one member to a temporary name beside its target, then rename it into place."""
    target = dest_dir / member.name
    if target.is_file() and _same_file(target, member):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    if source is None:  # cannot happen for a regular file; guards the type
        raise FetchError(f"cannot read member {member.name!r} of {archive}")

    def read_chunk() -> bytes:
        try:
            return source.read(_CHUNK)
        except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:
            raise FetchError(f"cannot read member {member.name!r} of {archive}: {exc}") from exc

    temporary = target.with_name(f".{target.name}.extracting")
    try:
        with source:
            _write_stream(read_chunk, temporary, append=False, on_chunk=lambda _n: None)
        os.utime(temporary, (member.mtime, member.mtime))
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def _same_file(target: Path, member: tarfile.TarInfo) -> bool:
    """Quick check (size and whole-second mtime) that ``target`` already holds ``member``."""
    stat = target.stat()
    return stat.st_size == member.size and int(stat.st_mtime) == int(member.mtime)


def _netrc_machines() -> Mapping[str, tuple[str, str | None, str]]:
    """The ``machine`` entries of ``$NETRC`` (or ``~/.netrc``); empty when there is none."""
    path = os.environ.get("NETRC") or None
    try:
        return netrc.netrc(path).hosts
    except FileNotFoundError:
        return {}
    except (netrc.NetrcParseError, OSError) as exc:
        log.warning("ignoring netrc %s: %s", path or "~/.netrc", exc)
        return {}


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """First byte and total length from a ``Content-Range`` header (None where absent or ``*``)."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total != "*" else None)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a numeric ``Retry-After`` header (the HTTP-date form is ignored)."""
    return float(value) if value and value.strip().isdigit() else None


def _retry_delay(failures: int, backoff: float, retry_after: float | None) -> float:
    """Exponential back-off, at least what the server asked for, capped at a minute."""
    delay = backoff * 2 ** (failures - 1)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, _MAX_DELAY_S)


def _size(path: Path) -> int:
    """Size of ``path`` in bytes, 0 when it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
