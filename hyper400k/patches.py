"""From a Scene to Samples: tiling, quality rules and the per-sample ``meta.json`` (the sample contract)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hyper400k.geo import corner_points, polygon, tile_footprint_transformer
from hyper400k.presets import Preset
from hyper400k.quality import TileAssessor, TileQuality
from hyper400k.sample import SCHEMA_VERSION, Sample, sample_key
from hyper400k.scene import Scene, SceneMeta
from hyper400k.tiling import iter_tiles, tile_transform


@dataclass
class TileOutcome:
    """One tile's fate: the Sample when kept, the reasons when dropped, its QA either way."""

    row: int
    col: int
    quality: TileQuality
    sample: Sample | None
    # the tile as read (float32, NaN fill), for quicklooks of dropped tiles; it may be a view of the strip
    # buffer, so use it before asking for the next outcome
    data: np.ndarray | None = None


@dataclass
class ProductSummary:
    """Per-product counts for the build report and the STAC item."""

    kept: int = 0
    dropped_tiles: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # per reason; a tile may break several rules

    def add(self, outcome: TileOutcome) -> None:
        if outcome.sample is not None:
            self.kept += 1
        else:
            self.dropped_tiles += 1
            self.dropped.update(outcome.quality.reasons)


def iter_outcomes(
    scene: Scene,
    preset: Preset,
    *,
    split: str,
    flight_line: str,
    segment: str | None = None,
    reuse_buffers: bool = False,
) -> Iterator[TileOutcome]:
    """Every tile of the product on the preset's grid, assessed, as a Sample when kept.

    An outcome's ``data`` (the tile as read) lives only until the next outcome is asked for; with
    ``reuse_buffers`` so does its sample's ``data``, for a consumer that writes each sample at once (the
    build: see :class:`~hyper400k.quality.TileAssessor`)."""
    meta = scene.meta
    assessor = TileAssessor(meta, preset.rules, preset.zero_water_bands, reuse_output=reuse_buffers)
    base = _product_fields(meta, preset, split, flight_line, segment)
    to_wgs84 = tile_footprint_transformer(meta.crs)
    for tile in iter_tiles(scene, preset.grid, reuse_buffer=True):  # TileOutcome.data is used at once
        quality = assessor.assess(tile.data)
        sample = None
        if quality.kept:
            key = sample_key(meta.product_id, tile.row, tile.col)
            transform = tile_transform(meta.transform, tile.row, tile.col)
            footprint = None
            if transform is not None and to_wgs84 is not None:
                size = preset.grid.size
                footprint = polygon(
                    [to_wgs84.transform(x, y) for x, y in corner_points(transform, size, size)]
                )
            sample_meta = {
                **base,
                "key": key,
                "row": tile.row,
                "col": tile.col,
                "height": preset.grid.size,
                "width": preset.grid.size,
                "transform": None if transform is None else list(transform),
                "footprint": footprint,
                "qa": quality.qa,
            }
            sample = Sample(key=key, data=quality.data, valid=quality.valid, meta=sample_meta)
        yield TileOutcome(tile.row, tile.col, quality, sample, tile.data)


def _product_fields(
    meta: SceneMeta, preset: Preset, split: str, flight_line: str, segment: str | None
) -> dict[str, Any]:
    """The meta.json fields shared by every sample of one product."""
    g = meta.geometry
    return {
        "schema_version": SCHEMA_VERSION,
        "sensor": meta.sensor,
        "level": meta.level,
        "product": meta.product_id,
        "flight_line": flight_line,
        "segment": segment,
        "processing_version": meta.processing_version,
        "wavelength_nm": [float(v) for v in meta.wavelength_nm],
        "fwhm_nm": [float(v) for v in meta.fwhm_nm],
        "good_bands": [bool(v) for v in meta.good_bands],
        "gsd_m": meta.gsd_m,
        "units": meta.units,
        "crs": meta.crs,
        "datetime": meta.datetime.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "angles": {
            "solar_zenith": g.solar_zenith,
            "solar_azimuth": g.solar_azimuth,
            "view_zenith": g.view_zenith,
            "view_azimuth": g.view_azimuth,
        },
        "split": split,
        "preset": preset.name,
    }
