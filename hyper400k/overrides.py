"""Per-product overrides: what a user states about a product whose files do not say it.

A product of an instrument no sensor definition knows (a PRISM line, an EnMAP GeoTIFF, a lab HySpex cube)
may lack its level, scale, acquisition time, or carry companions named its own way. The user states
them once, in a sidecar YAML beside the product, and every command reads the product the same way:
``inspect``, ``tile`` and ``build`` (a download manifest entry's ``overrides`` are written as that sidecar).
The sidecar of a product ``X`` (data file ``X``, ``X.img``, ``X.tif``..., or header ``X.hdr``) is
``X.overrides.yaml``::

    sensor: other          # a sensor name known to hyper400k
    level: L1              # L1 (radiance) or L2 (reflectance)
    scale: 0.0001          # stored value x scale = physical value
    datetime: 2023-11-10T07:15:21Z
    companions: {loc: prm20231110t071521_loc_two_px, obs: prm20231110t071521_obs_two_px}

Options given on the command line win over the sidecar.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from hyper400k.errors import HeaderError
from hyper400k.text_files import load_yaml, read_text_file

SIDECAR_SUFFIX = ".overrides.yaml"
COMPANION_ROLES = ("loc", "obs")
_KEYS = ("sensor", "level", "scale", "datetime", "companions")


@dataclass(frozen=True)
class Overrides:
    """Stated facts about one product; None (or no companion) means: take it from the files."""

    sensor: str | None = None
    level: str | None = None
    scale: float | None = None
    datetime: datetime | None = None
    companions: dict[str, Path] = field(default_factory=dict)

    def merged_over(self, base: Overrides) -> Overrides:
        """These values where set, else ``base``'s (command-line options over a sidecar)."""
        changes = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}
        return replace(base, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's YAML mapping (only the values that are set)."""
        out: dict[str, Any] = {}
        for name in ("sensor", "level", "scale"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.datetime is not None:
            out["datetime"] = self.datetime.strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.companions:
            out["companions"] = {role: path.name for role, path in self.companions.items()}
        return out


def sidecar_path(product: str | Path) -> Path:
    """Where the overrides of a product (given by its data file or header) live: ``<product id>.overrides.yaml``."""
    from hyper400k.readers.metadata import product_id_of

    product = Path(product)
    return product.with_name(product_id_of(product) + SIDECAR_SUFFIX)


def is_sidecar(path: Path) -> bool:
    return path.name.endswith(SIDECAR_SUFFIX)


def parse_overrides(raw: Any, source: str | Path, folder: Path) -> Overrides:
    """Validate a mapping of overrides (from a sidecar or a manifest entry); companion paths resolve in ``folder``."""
    if raw is None:
        return Overrides()
    if not isinstance(raw, dict):
        raise HeaderError(source, f"overrides must be a mapping of {', '.join(_KEYS)}")
    unknown = sorted(str(k) for k in set(raw) - set(_KEYS))
    if unknown:
        raise HeaderError(source, f"unknown override(s) {', '.join(unknown)}; allowed: {', '.join(_KEYS)}")
    scale = raw.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0):
        raise HeaderError(source, f"'scale' must be a positive number, got {scale!r}")
    companions = raw.get("companions") or {}
    if not isinstance(companions, dict) or set(companions) - set(COMPANION_ROLES):
        raise HeaderError(source, f"'companions' must map {' and/or '.join(COMPANION_ROLES)} to file names")
    return Overrides(
        sensor=_known_sensor(raw, source),
        level=_optional_text(raw, "level", source),
        scale=None if scale is None else float(scale),
        datetime=_parse_datetime(raw.get("datetime"), source),
        companions={role: folder / str(name) for role, name in companions.items()},
    )


def read_sidecar(product: str | Path) -> Overrides:
    """The overrides stated beside a product, or none when it has no sidecar."""
    path = sidecar_path(product)
    try:
        text = read_text_file(path)
    except FileNotFoundError:
        return Overrides()
    except OSError as exc:
        raise HeaderError(path, f"cannot read overrides: {exc.strerror or exc}") from exc
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise HeaderError(path, f"not valid YAML: {' '.join(str(exc).split())}") from exc
    return parse_overrides(raw, path, path.parent)


def write_sidecar(product: str | Path, overrides: Overrides) -> Path:
    """Write a product's sidecar atomically (temporary name, then rename)."""
    path = sidecar_path(product)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(overrides.to_dict(), sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _optional_text(raw: dict[str, Any], key: str, source: str | Path) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise HeaderError(source, f"'{key}' must be text, got {value!r}")
    return value


def _known_sensor(raw: dict[str, Any], source: str | Path) -> str | None:
    """The stated sensor, checked here so that a misspelt one names the file that states it."""
    from hyper400k.sensors import sensor

    name = _optional_text(raw, "sensor", source)
    if name is not None:
        try:
            sensor(name)
        except ValueError as exc:
            raise HeaderError(source, str(exc)) from None
    return name


def _parse_datetime(value: Any, source: str | Path) -> datetime | None:
    """YAML reads an unquoted ISO time as a datetime already; text is parsed as ISO 8601. Naive means UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise HeaderError(source, f"'datetime' is not ISO 8601: {value!r}") from exc
    if not isinstance(value, datetime):
        raise HeaderError(source, f"'datetime' must be an ISO 8601 time, got {value!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)
