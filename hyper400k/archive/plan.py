"""What a build of a manifest will cost, before anything is downloaded: products, bytes, patches, disk, time.

Known sizes in the manifest are used as they are. Everything else comes from per-era typical shapes
(:data:`TYPICAL`) and is labelled an estimate. The build time divides the raster bytes by the per-core
tiling throughput that ``python -m benchmarks.etl --quick`` measures (tiling, QA and shard writing).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from hyper400k.archive.product_list import identify_id
from hyper400k.archive.sources import era_of
from hyper400k.manifest import ManifestEntry

TILE = 256
ETL_MB_S_PER_CORE = 253.0
"""Per-core tiling + QA + shard-writing throughput in MB/s of raster input (``benchmarks.etl --quick``)."""


@dataclass(frozen=True)
class Shape:
    """A typical product of one era and level: raster grid, stored value size, archive size, kept share.

    ``archive_bytes`` is the download (tarball or file); ``companion_share`` the extracted loc/obs/glt
    bytes relative to the raster; ``kept_share`` the share of 256² tiles that pass the quality rules
    (orthorectified grids lose their rotated fill margins).
    """

    lines: int
    samples: int
    bands: int
    value_bytes: int
    archive_bytes: int
    companion_share: float
    kept_share: float

    @property
    def raster_bytes(self) -> int:
        return self.lines * self.samples * self.bands * self.value_bytes


# Typical shapes. AVIRIS-Classic: the JPL portal's record of run f060426t01p00r03 (6688 x 1335 ortho grid,
# int16, gzip archive 2,673,260,903 bytes). AVIRIS-NG: 598 raw-geometry samples, float32, the 4.24 GB
# archive of ang20200712t201415. AVIRIS-3: 1234 samples, 284 bands, float32 NetCDF segments.
TYPICAL: dict[tuple[str, str], Shape] = {
    ("aviris-classic", "L1"): Shape(6688, 1335, 224, 2, 2_673_260_903, 0.12, 0.55),
    ("aviris-classic", "L2"): Shape(6688, 1335, 224, 2, 2_673_260_903, 0.0, 0.55),
    ("aviris-ng", "L1"): Shape(6000, 598, 425, 4, 4_240_000_000, 0.07, 0.9),
    ("aviris-ng", "L2"): Shape(6000, 598, 425, 4, 4_240_000_000, 0.0, 0.9),
    ("aviris-ng-segment", "L1"): Shape(1500, 1500, 425, 4, 3_825_000_000, 0.0, 0.55),
    ("aviris-ng-segment", "L2"): Shape(1500, 1500, 425, 4, 3_825_000_000, 0.0, 0.55),
    ("aviris-3", "L1"): Shape(1000, 1234, 284, 4, 1_401_824_000, 0.0, 0.9),
    ("aviris-3", "L2"): Shape(1400, 1600, 284, 4, 2_544_640_000, 0.0, 0.55),
}
META_BYTES_PER_BAND = 60  # wavelength, FWHM and good-band lists of meta.json, as JSON text
META_BYTES_FIXED = 4096  # the rest of meta.json, the tar headers of three members, the .npy headers


@dataclass
class GroupPlan:
    """The figures of one sensor × level (or of the whole manifest)."""

    products: int = 0
    download_bytes: int = 0
    raster_bytes: int = 0
    extracted_bytes: int = 0
    patches: float = 0.0
    shard_bytes: float = 0.0
    sizes_known: int = 0
    largest_fetch_bytes: int = 0  # one product's download plus its extracted members, the largest
    largest_shard_bytes: float = 0.0  # one product's samples (its spool), the largest

    def add(self, other: GroupPlan) -> None:
        for name in (
            "products",
            "download_bytes",
            "raster_bytes",
            "extracted_bytes",
            "patches",
            "shard_bytes",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.sizes_known += other.sizes_known
        self.largest_fetch_bytes = max(self.largest_fetch_bytes, other.largest_fetch_bytes)
        self.largest_shard_bytes = max(self.largest_shard_bytes, other.largest_shard_bytes)

    @property
    def download_estimated(self) -> bool:
        return self.sizes_known < self.products


@dataclass
class BuildPlan:
    """Per-group figures, totals, peak disk and build time, and what the figures rest on."""

    groups: dict[str, GroupPlan]
    total: GroupPlan
    cores: int
    etl_mb_s_per_core: float
    unavailable: int = 0
    unidentified: list[str] = field(default_factory=list)
    window_products: int = 8
    keep_downloads: bool = False

    @property
    def in_flight_bytes(self) -> float:
        """An upper bound on what the build holds besides the packed shards: on each core, one product's
        download and extracted members (deleted once it is tiled) and one window of spools (deleted once
        the window's shards are durable); with ``keep_downloads``, every download and extracted member."""
        spools = self.cores * self.window_products * self.total.largest_shard_bytes
        if self.keep_downloads:
            return self.total.download_bytes + self.total.extracted_bytes + spools
        return self.cores * self.total.largest_fetch_bytes + spools

    @property
    def peak_disk_bytes(self) -> float:
        """The packed shards plus what is in flight (:attr:`in_flight_bytes`)."""
        return self.total.shard_bytes + self.in_flight_bytes

    @property
    def build_hours(self) -> float:
        return self.total.raster_bytes / (self.etl_mb_s_per_core * 1e6 * self.cores) / 3600

    def to_dict(self) -> dict[str, Any]:
        def group(g: GroupPlan) -> dict[str, Any]:
            return {
                "products": g.products,
                "download_bytes": g.download_bytes,
                "download_estimated": g.download_estimated,
                "raster_bytes": g.raster_bytes,
                "patches": round(g.patches),
                "shard_bytes": round(g.shard_bytes),
                "estimated": True,
            }

        return {
            "groups": {name: group(g) for name, g in sorted(self.groups.items())},
            "total": group(self.total),
            "peak_disk_bytes": round(self.peak_disk_bytes),
            "in_flight_bytes": round(self.in_flight_bytes),
            "window_products": self.window_products,
            "keep_downloads": self.keep_downloads,
            "build_hours": round(self.build_hours, 2),
            "cores": self.cores,
            "etl_mb_s_per_core": self.etl_mb_s_per_core,
            "unavailable_products": self.unavailable,
            "unidentified_entries": self.unidentified,
        }


def plan_build(
    entries: Iterable[ManifestEntry],
    *,
    unavailable: int = 0,
    cores: int = 1,
    etl_mb_s_per_core: float = ETL_MB_S_PER_CORE,
    tile: int = TILE,
    window_products: int = 8,
    keep_downloads: bool = False,
) -> BuildPlan:
    """The cost of building ``entries`` on ``cores`` cores with ``window_products`` per packing task (the
    build's ``--window``); entries whose product is unknown are listed apart."""
    groups: dict[str, GroupPlan] = defaultdict(GroupPlan)
    unidentified: list[str] = []
    for entry in entries:
        product = entry.product or _stem(entry.name)
        try:
            listed = identify_id(product)
        except ValueError:
            unidentified.append(product)
            continue
        name = listed.name
        groups[f"{name.sensor}-{name.level}"].add(
            _product_plan(entry, TYPICAL[era_of(listed), name.level], tile)
        )
    total = GroupPlan()
    for g in groups.values():
        total.add(g)
    return BuildPlan(
        dict(groups), total, cores, etl_mb_s_per_core, unavailable, unidentified, window_products, keep_downloads
    )


def _product_plan(entry: ManifestEntry, shape: Shape, tile: int) -> GroupPlan:
    """One product: a raster file's known size is its raster; an archive's known size scales the typical one."""
    if entry.size is None:
        download, raster = shape.archive_bytes, shape.raster_bytes
    elif entry.is_tarball:
        download, raster = entry.size, round(shape.raster_bytes * entry.size / shape.archive_bytes)
    else:
        download, raster = entry.size, entry.size
    lines = raster / (shape.samples * shape.bands * shape.value_bytes)
    tiles = math.ceil(lines / tile) * math.ceil(shape.samples / tile) if lines else 0
    patches = tiles * shape.kept_share
    per_patch = (
        shape.bands * tile * tile * 2 + tile * tile + shape.bands * META_BYTES_PER_BAND + META_BYTES_FIXED
    )
    extracted = round(raster * (1 + shape.companion_share)) if entry.is_tarball else 0
    shards = patches * per_patch
    return GroupPlan(
        1, download, raster, extracted, patches, shards, int(entry.size is not None), download + extracted, shards
    )


def _stem(file_name: str) -> str:
    name = PurePosixPath(file_name).name
    for suffix in (".tar.gz", ".tgz", ".tar", ".nc", ".hdr"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
