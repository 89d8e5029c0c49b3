"""Download manifests: the list of raw products to fetch, with what to check and what to extract.

A manifest is a YAML or JSON file holding either a list of entries or a mapping with a
``products`` list. Each entry is a mapping::

    products:
      - url: https://example.org/ang20190101t000000.tar.gz   # http(s), file:// or a local path
        name: ang20190101t000000.tar.gz                        # optional, default: URL basename
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  # optional
        size: 123456789                                        # optional, bytes
        extract: ["*_rdn_v2*", "*_obs_ort*"]                   # optional, tarballs only
        product: ang20190101t000000_rdn_v2x1_img               # optional: the product this entry holds
        auth: none                                             # optional: none or earthdata
        overrides: {level: L1, datetime: 2023-11-10T07:15:21Z} # optional, see hyper400k.overrides

A mapping may also carry an ``unavailable`` list (products with no derivable download, and why), which
``hyper400k manifest`` writes for the record and the download ignores.

Errors are raised while loading, naming the file and the entry index, so that a bad manifest
fails before any byte is downloaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from hyper400k.errors import ProductError
from hyper400k.overrides import Overrides, parse_overrides
from hyper400k.text_files import load_yaml, read_text_file

TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_REMOTE_SCHEMES = frozenset({"http", "https"})
_KNOWN_KEYS = frozenset({"url", "name", "sha256", "size", "extract", "product", "auth", "overrides"})
AUTH_KINDS = ("none", "earthdata")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(ValueError):
    """A manifest cannot be used. The message names the file and, when known, the entry index."""

    def __init__(self, path: str | Path, problem: str, index: int | None = None) -> None:
        self.path = Path(path)
        self.index = index
        self.problem = problem
        where = f"{self.path}" if index is None else f"{self.path}: entry {index}"
        super().__init__(f"{where}: {problem}")


_Fail = Callable[[str], ManifestError]


@dataclass(frozen=True)
class ManifestEntry:
    """One product to fetch.

    ``url`` is an http(s) URL, a ``file://`` URL or an absolute local path; ``name`` is the file
    name the product gets in the destination directory. ``extract`` holds ``fnmatch`` patterns
    matched against member paths when the product is a tarball; empty means keep the archive only.
    """

    url: str
    name: str
    sha256: str | None = None
    size: int | None = None
    extract: tuple[str, ...] = ()
    product: str | None = None  # the product identifier the download holds (a tarball must contain it)
    auth: str = "none"  # "earthdata": needs a NASA Earthdata token or netrc login
    overrides: Overrides | None = None  # written beside each downloaded product as its sidecar

    @property
    def is_remote(self) -> bool:
        """Whether the product is fetched over HTTP(S) rather than copied from the file system."""
        return urlsplit(self.url).scheme in _REMOTE_SCHEMES

    @property
    def is_tarball(self) -> bool:
        """Whether the product file is a tar archive (judged by its name)."""
        return self.name.lower().endswith(TARBALL_SUFFIXES)


def load_manifest(path: str | Path) -> list[ManifestEntry]:
    """Read and validate a YAML/JSON manifest; relative local paths resolve against its directory."""
    path = Path(path)
    raw_entries = _raw_entries(path)
    entries = [_parse_entry(raw, path, index) for index, raw in enumerate(raw_entries)]
    _check_unique(entries, path)
    return entries


def _raw_entries(path: Path) -> list[Any]:
    """Load the file and return its list of entries, whichever of the two layouts it uses."""
    try:
        text = read_text_file(path)
    except OSError as exc:
        raise ManifestError(path, f"cannot read manifest: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else load_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ManifestError(
            path, f"not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}"
        ) from exc
    if isinstance(data, dict) and "products" in data and set(data) <= {"products", "unavailable"}:
        data = data["products"]
    if not isinstance(data, list):
        raise ManifestError(path, "expected a list of entries or a mapping with a 'products' list")
    return data


def _parse_entry(raw: Any, path: Path, index: int) -> ManifestEntry:
    """Validate one raw entry and turn it into a :class:`ManifestEntry`."""

    def fail(problem: str) -> ManifestError:
        return ManifestError(path, problem, index)

    if not isinstance(raw, dict):
        raise fail(f"expected a mapping, got {type(raw).__name__}")
    unknown = sorted(str(key) for key in set(raw) - _KNOWN_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KNOWN_KEYS))}")
    url = _parse_url(raw.get("url"), path.parent, fail)
    name = _parse_name(raw.get("name"), url, fail)
    entry = ManifestEntry(
        url=url,
        name=name,
        sha256=_parse_sha256(raw.get("sha256"), fail),
        size=_parse_size(raw.get("size"), fail),
        extract=_parse_extract(raw.get("extract"), fail),
        product=_parse_product(raw.get("product"), fail),
        auth=_parse_auth(raw.get("auth"), fail),
        overrides=_parse_entry_overrides(raw.get("overrides"), path, fail),
    )
    if entry.extract and not entry.is_tarball:
        raise fail(f"'extract' given but {name!r} is not a tarball ({', '.join(TARBALL_SUFFIXES)})")
    return entry


def _parse_url(value: Any, base_dir: Path, fail: _Fail) -> str:
    """Accept http(s)/file URLs and local paths; relative paths become absolute against ``base_dir``."""
    if not isinstance(value, str) or not value.strip():
        raise fail("missing 'url' (a non-empty string)")
    value = value.strip()
    scheme = urlsplit(value).scheme
    if scheme in _REMOTE_SCHEMES or scheme == "file":
        return value
    if scheme and len(scheme) > 1:  # one letter would be a Windows drive, i.e. a path
        raise fail(f"unsupported URL scheme {scheme!r} in {value!r}; use http, https, file or a path")
    local = Path(value).expanduser()
    return str(local if local.is_absolute() else (base_dir / local).resolve())


def _parse_name(value: Any, url: str, fail: _Fail) -> str:
    """Use the given name, or the URL's last path segment; either must be a bare file name."""
    if value is None:
        value = unquote(PurePosixPath(urlsplit(url).path).name) if "://" in url else Path(url).name
    if not isinstance(value, str) or not value:
        raise fail(f"cannot derive a file name from url {url!r}; give 'name'")
    if value in {".", ".."} or "/" in value or "\\" in value or value.endswith(".part"):
        raise fail(f"'name' must be a plain file name not ending in .part, got {value!r}")
    return value


def _parse_sha256(value: Any, fail: _Fail) -> str | None:
    """Accept a 64-digit hex digest (any case); stored lower-case."""
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value.strip().lower()):
        raise fail(f"'sha256' must be 64 hexadecimal digits, got {value!r}")
    return value.strip().lower()


def _parse_size(value: Any, fail: _Fail) -> int | None:
    """Accept a non-negative integer byte count."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise fail(f"'size' must be a non-negative integer (bytes), got {value!r}")
    return value


def _parse_extract(value: Any, fail: _Fail) -> tuple[str, ...]:
    """Accept a list of non-empty glob strings."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise fail(f"'extract' must be a list of glob patterns, got {value!r}")
    return tuple(value)


def _parse_product(value: Any, fail: _Fail) -> str | None:
    """Accept a bare product identifier (a file name without folders)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "/" in value:
        raise fail(f"'product' must be a product identifier, got {value!r}")
    return value.strip()


def _parse_auth(value: Any, fail: _Fail) -> str:
    """Accept one of :data:`AUTH_KINDS` (default ``none``)."""
    if value is None:
        return "none"
    if value not in AUTH_KINDS:
        raise fail(f"'auth' must be one of {', '.join(AUTH_KINDS)}, got {value!r}")
    return value
def _parse_entry_overrides(value: Any, path: Path, fail: _Fail) -> Overrides | None:
    """Accept the product overrides of :mod:`hyper400k.overrides` (companions named by file name)."""
    if value is None:
        return None
    try:
        return parse_overrides(value, path, Path())
    except ProductError as exc:
        raise fail(exc.problem) from exc


def _check_unique(entries: list[ManifestEntry], path: Path) -> None:
    """Reject two entries with the same URL or name: they would race for one destination file."""
    for field in ("url", "name"):
        first_seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            value = getattr(entry, field)
            if value in first_seen:
                raise ManifestError(
                    path, f"duplicate {field} {value!r} (already used by entry {first_seen[value]})", index
                )
            first_seen[value] = index
