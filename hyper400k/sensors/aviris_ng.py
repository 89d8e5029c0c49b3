"""AVIRIS-NG: JPL's next-generation imaging spectrometer (2012-), 425 bands at ~5 nm, 380-2510 nm.

File names seen in the wild:
- L1B radiance ``ang20170323t202244_rdn_v2p9_img`` (float32 BIL) with ``_loc``, ``_obs``/``_obs_ort``,
  ``_glt``, ``_igm`` companions sharing the flight-line prefix;
- L2 reflectance ``ang20140912t192359_corr_v1c_img`` (v1 era, BIP, 432 bands) and ``…_rfl_v2p9_img``;
- 2022+ ``ang20230723t195108_012_L1B_RDN_8c4e3f2a_RDN_ORT`` and ``…_L2A_OE_8c4e3f2a_RFL_ORT`` (also
  ``…_L2A_OE_main_27577724_RFL_ORT``): segment ``012`` of flight line ``ang20230723t195108``.
Crops used in tests append ``_<row range>_<col range>`` suffixes; the patterns accept trailing text.
"""

from __future__ import annotations

import re

from hyper400k.sensors.base import NamePattern, ProductName, SensorSpec, compact_datetime, level_from_kind

_COMPANIONS = ("loc", "obs_ort", "obs", "glt", "igm")


_COMPANION_TOKEN = re.compile(r"_(loc|obs|glt|igm)(?:_|$)", re.IGNORECASE)


def _classic_era(match: re.Match[str]) -> ProductName:
    kind = match.group("kind").lower()
    # Companions repeat the radiance stem (``ang…_rdn_v2p9_loc``, ``…_rdn_v2p9_obs_ort``) or replace it
    # (``ang…_loc_7000-7010``): a companion token anywhere after the time stamp decides the role.
    companion = _COMPANION_TOKEN.search(match.string, match.start("kind") - 1)
    role = companion.group(1).lower() if companion else ("data" if kind in ("rdn", "corr", "rfl") else kind)
    level = "L1" if role != "data" else level_from_kind(kind)
    return ProductName(
        sensor="aviris-ng",
        level=level,
        flight_line="ang" + match.group("stamp").lower(),
        datetime=compact_datetime(match.group("stamp")),
        version=match.group("version"),
        role=role,
    )


def _portal_era(match: re.Match[str]) -> ProductName:
    level = "L1" if match.group("product").upper() == "L1B_RDN" else "L2"
    scene = match.group("scene")
    return ProductName(
        sensor="aviris-ng",
        level=level,
        flight_line="ang" + match.group("stamp").lower(),
        datetime=compact_datetime(match.group("stamp")),
        version=match.group("hash"),
        role="data" if match.group("suffix").upper() in ("RDN", "RFL") else match.group("suffix").lower(),
        segment=scene,
    )


SPEC = SensorSpec(
    name="aviris-ng",
    instrument="aviris-ng",
    platform="airborne",
    l1_ceiling=100.0,
    band_grid="aviris-ng_bands.csv",
    patterns=(
        NamePattern(
            re.compile(
                r"^ang(?P<stamp>\d{8}t\d{6})(?:_(?P<scene>\d{3}))?_(?P<product>L1B_RDN|L2A_OE)_"
                r"(?P<hash>[0-9A-Za-z]+(?:_[0-9A-Za-z]+)*?)_(?P<suffix>RDN|RFL|LOC|OBS|GLT)(?:_ORT)?\b",
                re.IGNORECASE,
            ),
            _portal_era,
        ),
        NamePattern(
            re.compile(
                r"^ang(?P<stamp>\d{8}t\d{6})_(?:rdn_)?(?P<kind>rdn|corr|rfl|" + "|".join(_COMPANIONS) + r")"
                r"(?:_(?P<version>v\d[0-9a-z]*))?(?:_(?:img|ort))*",
                re.IGNORECASE,
            ),
            _classic_era,
        ),
    ),
)
