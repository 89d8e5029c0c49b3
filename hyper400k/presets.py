"""Named tiling + quality presets (``--preset``): the published rules, and stricter QA on top."""

from __future__ import annotations

from dataclasses import dataclass

from hyper400k.quality import PUBLISHED_RULES, Rule, RuleSet
from hyper400k.tiling import TileGrid


@dataclass(frozen=True)
class Preset:
    name: str
    grid: TileGrid
    rules: RuleSet
    zero_water_bands: bool = True


PRESETS: dict[str, Preset] = {
    # Hyper-400K as published: 256 x 256, stride 256, grid at (0, 0), edge tiles padded, > 20 % invalid -> drop.
    "hyper400k": Preset("hyper400k", TileGrid(256, 256), PUBLISHED_RULES),
    # The published rules plus QA: mostly valid, cloud-free, no detector artefacts.
    "hyper400k-qa": Preset(
        "hyper400k-qa",
        TileGrid(256, 256),
        RuleSet(
            "hyper400k-qa",
            PUBLISHED_RULES.rules
            + (
                Rule("valid_fraction", min=0.8),
                Rule("cloud_score", max=0.3),
                Rule("dead_detector", equals=False),
                Rule("stripe", equals=False),
            ),
        ),
    ),
}


def get_preset(name: str, tile: int | None = None, stride: int | None = None) -> Preset:
    """A preset by name, optionally with another tile size / stride (the rules stay)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    if tile is None and stride is None:
        return preset
    size = tile or preset.grid.size
    grid = TileGrid(size=size, stride=stride or size)
    return Preset(preset.name, grid, preset.rules, preset.zero_water_bands)
