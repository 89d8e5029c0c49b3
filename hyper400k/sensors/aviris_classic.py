"""AVIRIS-Classic: JPL's original imaging spectrometer (1987-2021), 224 bands in four spectrometers.

Names: ``f080702t01p00r08rdn_c_sc01_ort_img`` — date ``yymmdd``, flight ``t01``, run ``r08`` (the
flight line), product kind (``rdn`` radiance; ``corr``/``refl``/``rfl`` reflectance, and the 2013
``rdn_refl_img_corr``), processing version (``c``, ``v1f4``), scene ``sc01`` (the segment). The name
carries no time of day; the ``obs`` companion's UTC-time band gives it when present.

L1 radiance is int16 DN (byte order per header) divided by a per-channel gain from the ``.gain``
companion; when that is absent the historic defaults apply: 300 for channels 1-110, 600 for
111-160, 1200 for 161-224. Band centres are non-monotonic at the spectrometer joins: never sort them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np

from hyper400k.sensors.base import NamePattern, ProductName, SensorSpec, level_from_kind


def default_gains(bands: int = 224) -> np.ndarray:
    """Radiance = DN / gain; the documented per-spectrometer defaults."""
    gains = np.empty(bands, dtype=np.float64)
    gains[:110] = 300.0
    gains[110:160] = 600.0
    gains[160:] = 1200.0
    return gains


_COMPANION = re.compile(r"_(obs|loc|igm|glt)(?:_|$)", re.IGNORECASE)


def _parse(match: re.Match[str]) -> ProductName:
    yymmdd = match.group("date")
    year = int(yymmdd[:2])
    year += 1900 if year >= 87 else 2000
    when = datetime(year, int(yymmdd[2:4]), int(yymmdd[4:6]), tzinfo=UTC)
    kind = match.group("kind").lower().removeprefix("rdn_")  # ``rdn_refl``: reflectance from radiance
    # Companions repeat the radiance stem: ``f080702t01p00r08rdn_c_obs_ort``, ``…rdn_c_ort_glt``.
    companion = _COMPANION.search(match.string[match.end() :])
    role = (
        companion.group(1).lower()
        if companion
        else ("data" if kind in ("rdn", "corr", "refl", "rfl") else kind)
    )
    return ProductName(
        sensor="aviris-classic",
        level=level_from_kind(kind) if role == "data" else "L1",
        flight_line=f"f{yymmdd}t{match.group('flight')}p{match.group('p')}r{match.group('run')}",
        datetime=when,
        version=match.group("version"),
        role=role,
        segment=match.group("scene"),
    )


SPEC = SensorSpec(
    name="aviris-classic",
    instrument="aviris-classic",
    platform="airborne",
    l1_ceiling=30.0,
    band_grid="aviris-classic_bands.csv",
    # Spectrometers A/B, B/C and C/D overlap by about one band (e.g. 667.6 -> 655.3 nm, 1263.0 -> 1253.4 nm,
    # 1873.2 -> 1867.7 nm in 2008); the windows allow for the drift of the band centres over the years.
    spectrometer_joins_nm=((620.0, 720.0), (1220.0, 1300.0), (1830.0, 1910.0)),
    patterns=(
        NamePattern(
            re.compile(
                r"^f(?P<date>\d{6})t(?P<flight>\d{2})p(?P<p>\d{2})r(?P<run>\d{2})_?"
                r"(?P<kind>rdn_refl|rdn_rfl|rdn|corr|refl|rfl|obs|loc|igm|glt)"
                # the version is whatever follows the kind, unless it is a layout token (``_img``, ``_sc01``)
                r"(?:_(?P<version>(?!(?:img|ort|geo|sc\d+)(?:_|$))[a-z0-9]+))?(?:_sc(?P<scene>\d+))?",
                re.IGNORECASE,
            ),
            _parse,
        ),
    ),
)
