"""The sensor registry: look a product up by file name or by sensor name."""

from __future__ import annotations

import re
from pathlib import Path

from hyper400k.sensors import aviris3, aviris_classic, aviris_ng
from hyper400k.sensors.base import (
    DETECTOR_END_WINDOWS_NM,
    WATER_VAPOUR_WINDOWS_NM,
    ProductName,
    SensorSpec,
    good_band_mask,
    water_band_mask,
)

# Order matters only for names two patterns could both claim; none do today.
REGISTRY: dict[str, SensorSpec] = {
    spec.name: spec for spec in (aviris_ng.SPEC, aviris_classic.SPEC, aviris3.SPEC)
}

# Products of any other instrument ("other"): generic ceilings, no band grid.
OTHER = SensorSpec(
    name="other",
    instrument="unknown",
    platform="unknown",
    patterns=(),
    l1_ceiling=100.0,
    spectrometer_joins_nm=None,
)


def sensor(name: str) -> SensorSpec:
    """The definition of a sensor by name, ``other`` included."""
    if name == OTHER.name:
        return OTHER
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown sensor {name!r}; known: {', '.join([*REGISTRY, OTHER.name])}") from None


# Companion files of any imaging spectrometer's flight line follow JPL's convention (``<line>_loc…``,
# ``<line>_obs_ort…``, ``…_glt``, ``…_igm``), whether or not a sensor here claims the line's name.
_COMPANION_TOKEN = re.compile(r"_(loc|obs|glt|igm)(?=_|\.|$)", re.IGNORECASE)


def file_role(path: str | Path) -> str:
    """``data`` for an image product, else the companion kind (``loc``, ``obs``, ``glt``, ``igm``).

    Names no sensor claims are judged by the companion token alone, so a foreign product's
    ``prm…_loc…`` beside its ``prm…_rdn…`` is a companion, not a second product.
    """
    found = identify(path)
    if found is not None:
        return found.role
    token = _COMPANION_TOKEN.search(Path(path).name)
    return token.group(1).lower() if token else "data"


def identify(path: str | Path) -> ProductName | None:
    """What the file name says about a product, or None for names no sensor claims."""
    name = Path(path).name
    for spec in REGISTRY.values():
        found = spec.match(name)
        if found is not None:
            return found
    return None


__all__ = [
    "DETECTOR_END_WINDOWS_NM",
    "OTHER",
    "REGISTRY",
    "WATER_VAPOUR_WINDOWS_NM",
    "ProductName",
    "SensorSpec",
    "file_role",
    "good_band_mask",
    "identify",
    "sensor",
    "water_band_mask",
]
