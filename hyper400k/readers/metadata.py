"""Metadata rules shared by every reader: identity (sensor, level), product id, time and units."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hyper400k.errors import HeaderError, UnsupportedProductError
from hyper400k.scene import LEVELS, RADIANCE_UNITS, REFLECTANCE_UNITS
from hyper400k.sensors import file_role, identify, sensor

_REFLECTANCE_HINT = re.compile(r"(^|[^a-z])(rfl|refl|reflectance|l2a?|boa)([^a-z]|$)", re.IGNORECASE)
_RADIANCE_HINT = re.compile(r"(^|[^a-z])(rdn|rad|radiance|l1[a-c]?|toa)([^a-z]|$)", re.IGNORECASE)
_DATA_SUFFIXES = {".img", ".dat", ".bin", ".raw", ".tif", ".tiff", ".nc", ".hdr"}


@dataclass(frozen=True)
class Identity:
    sensor: str
    level: str
    version: str | None
    datetime: datetime | None


def resolve_identity(data_path: Path, sensor_name: str | None, level: str | None, hint: str = "") -> Identity:
    """Sensor, level, version and time from the name, overridable by the caller.

    Names no sensor claims are sensor ``other``; their level is what the caller says, else what the name
    or ``hint`` (header text) says: reflectance (``rfl``, ``L2A``, ...) or radiance (``rdn``, ``L1B``, ...).
    When nothing says, or both do, the product is refused rather than guessed.
    """
    refuse_companion(data_path)
    name = identify(data_path)
    if sensor_name is not None:
        sensor(sensor_name)  # validates the name
    if level is not None and level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    if name is None:
        stated = level or _stated_level(data_path.name, hint)
        if stated is None:
            says = (
                "its name or header names both radiance and reflectance"
                if _names_both(data_path.name, hint)
                else "nothing states whether it holds radiance or reflectance"
            )
            raise HeaderError(data_path, f"{says}: pass --level L1 or --level L2")
        return Identity(sensor_name or "other", stated, None, None)
    return Identity(sensor_name or name.sensor, level or name.level, name.version, name.datetime)


def sensor_of(data_path: Path) -> str:
    """The sensor a file name claims, or ``other``."""
    name = identify(data_path)
    return "other" if name is None else name.sensor


def refuse_companion(data_path: Path) -> None:
    """Refuse a ``loc``/``obs``/``glt``/``igm`` companion given where an image product is expected."""
    role = file_role(data_path)
    if role != "data":
        raise UnsupportedProductError(data_path, f"is a '{role}' companion file, not an image product")


def _names_both(*texts: str) -> bool:
    """Whether the texts name both reflectance and radiance (a processing history in a file name, say)."""
    return any(_REFLECTANCE_HINT.search(t) for t in texts) and any(_RADIANCE_HINT.search(t) for t in texts)


def _stated_level(*texts: str) -> str | None:
    """L2 or L1 when the texts name reflectance or radiance (and not both), else None."""
    reflectance = any(_REFLECTANCE_HINT.search(t) for t in texts)
    radiance = any(_RADIANCE_HINT.search(t) for t in texts)
    if reflectance == radiance:
        return None
    return "L2" if reflectance else "L1"


def acquisition_time(
    from_name: datetime | None, override: datetime | None, header_value: str | None, source: Path
) -> datetime:
    """Caller's override, else the name's time, else the header's ``acquisition time``; always UTC."""
    for candidate in (override, from_name):
        if candidate is not None:
            return candidate if candidate.tzinfo else candidate.replace(tzinfo=UTC)
    if header_value:
        try:
            parsed = datetime.fromisoformat(header_value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise HeaderError(source, f"'acquisition time' is not ISO 8601: {header_value!r}") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise HeaderError(
        source,
        "no acquisition time: the name follows no known sensor convention and the file states none; pass --datetime",
    )


def product_id_of(data_path: Path) -> str:
    """The product id: the data file name without a data-file extension."""
    return data_path.stem if data_path.suffix.lower() in _DATA_SUFFIXES else data_path.name


def units_for(level: str) -> str:
    return RADIANCE_UNITS if level == "L1" else REFLECTANCE_UNITS
