"""Where each era of AVIRIS product is distributed: the rule from a product identifier to its download.

Four eras cover the Hyper-400K list (sources: see "Rebuilding Hyper-400K" in the project README):

- **AVIRIS-Classic, JPL portal** (runs from 2006): one gzipped tarball per run,
  ``https://popo.jpl.nasa.gov/avcl/y<yy>_data/<run>.tar.gz`` (L1 radiance with ``.gain``, ``obs``/``obs_ort``
  and ``ort_glt`` companions) and ``<run>_refl.tar.gz`` (L2 reflectance). No login.
- **AVIRIS-NG, JPL portal** (``ang…_rdn_<v>_img`` / ``…_corr|rfl_<v>_img``): one tarball per flight line,
  ``https://popo.jpl.nasa.gov/avng/y<yy>/<line>.tar.gz`` (L1 with ``loc``/``obs``/``obs_ort``/``glt``) and
  ``<line>rfl.tar.gz`` (L2). No login.
- **AVIRIS-3, NASA Earthdata (ORNL DAAC)**: one NetCDF file per segment, named by the identifier, in the
  collections ``AV3_L1B_RDN_2356`` (``…/protected/aviris/AV3_L1B_RDN/data/<id>.nc``) and
  ``AV3_L2A_RFL_2357`` (``…/AV3_L2A_RFL/data/<id>.nc``). Earthdata login (token or netrc).
- **AVIRIS-NG segment products** (2022+, ``ang…_<NNN>_L1B_RDN_…`` / ``…_L2A_OE_…``): no published rule maps
  the identifier to a file URL, so these are listed as unavailable with that reason rather than guessed.

Tarball members are chosen by exact file name (the identifier itself, its ``.hdr`` and the companions
the readers use), so an archive that lacks the product fails loudly instead of yielding nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from hyper400k.archive.product_list import ListedProduct

JPL_PORTAL = "https://popo.jpl.nasa.gov"
ORNL_DAAC = "https://data.ornldaac.earthdata.nasa.gov/protected/aviris"
EARTHDATA_LOGIN_HOST = "urs.earthdata.nasa.gov"
AUTH_NONE = "none"
AUTH_EARTHDATA = "earthdata"
CLASSIC_PORTAL_FIRST_YEAR = 2006
"""The JPL AVIRIS-Classic portal serves per-run archives from 2006 on; earlier runs are not online there."""

AV3_COLLECTIONS = {"L1": "AV3_L1B_RDN", "L2": "AV3_L2A_RFL"}
"""ORNL DAAC folder of each AVIRIS-3 level (collection short names ``AV3_L1B_RDN_2356``, ``AV3_L2A_RFL_2357``)."""


@dataclass(frozen=True)
class Download:
    """Where one product comes from: URL, local file name, login, and the archive members to keep."""

    product_id: str
    era: str
    url: str
    name: str
    auth: str
    extract: tuple[str, ...] = ()
    size: int | None = None


@dataclass(frozen=True)
class Unavailable:
    """A product with no derivable download, and why."""

    product_id: str
    era: str
    reason: str


def era_of(listed: ListedProduct) -> str:
    """The distribution era of a product: ``aviris-classic``, ``aviris-ng``, ``aviris-ng-segment`` or ``aviris-3``."""
    name = listed.name
    if name.sensor == "aviris-ng" and name.segment is not None:
        return "aviris-ng-segment"
    return name.sensor


def locate(listed: ListedProduct) -> Download | Unavailable:
    """The download of one listed product, or the reason there is none."""
    era = era_of(listed)
    return _RULES[era](listed, era)


def _classic(listed: ListedProduct, era: str) -> Download | Unavailable:
    name, pid = listed.name, listed.product_id
    if listed.year < CLASSIC_PORTAL_FIRST_YEAR:
        return Unavailable(
            pid,
            era,
            f"AVIRIS-Classic runs before {CLASSIC_PORTAL_FIRST_YEAR} are not served by the JPL portal",
        )
    run = name.flight_line
    folder = f"{JPL_PORTAL}/avcl/y{listed.year % 100:02d}_data"
    members = [f"*{pid}", f"*{pid}.hdr"]
    if name.level == "L1":
        stem = f"{run}rdn_{name.version}"
        geometry = ("_obs_ort", "_ort_glt") if "_ort" in pid else ("_obs",)
        members += [f"*{stem}{suffix}{ext}" for suffix in geometry for ext in ("", ".hdr")]
        members.append(f"*{stem}.gain")
        return Download(pid, era, f"{folder}/{run}.tar.gz", f"{run}.tar.gz", AUTH_NONE, tuple(members))
    return Download(pid, era, f"{folder}/{run}_refl.tar.gz", f"{run}_refl.tar.gz", AUTH_NONE, tuple(members))


def _ng_portal(listed: ListedProduct, era: str) -> Download:
    name, pid = listed.name, listed.product_id
    line = name.flight_line
    folder = f"{JPL_PORTAL}/avng/y{listed.year % 100:02d}"
    members = [f"*{pid}", f"*{pid}.hdr"]
    if name.level == "L1":
        kinds = ("loc", "obs", "obs_ort", "glt")
        members += [f"*{line}_*{kind}{ext}" for kind in kinds for ext in ("", ".hdr")]
        return Download(pid, era, f"{folder}/{line}.tar.gz", f"{line}.tar.gz", AUTH_NONE, tuple(members))
    return Download(pid, era, f"{folder}/{line}rfl.tar.gz", f"{line}rfl.tar.gz", AUTH_NONE, tuple(members))


def _aviris3(listed: ListedProduct, era: str) -> Download:
    pid = listed.product_id
    url = f"{ORNL_DAAC}/{AV3_COLLECTIONS[listed.name.level]}/data/{pid}.nc"
    return Download(pid, era, url, f"{pid}.nc", AUTH_EARTHDATA)


def _ng_segment(listed: ListedProduct, era: str) -> Unavailable:
    return Unavailable(
        listed.product_id,
        era,
        "AVIRIS-NG segment products (2022 on) have no published URL rule: the JPL portal names its archives "
        "by flight line and processing tag, not by segment; find the file in NASA Earthdata search and add it by hand",
    )


_RULES = {
    "aviris-classic": _classic,
    "aviris-ng": _ng_portal,
    "aviris-3": _aviris3,
    "aviris-ng-segment": _ng_segment,
}
