"""True-colour quicklooks of hyperspectral patches, with bands picked by wavelength (not index)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

QUICKLOOK_BANDS_NM = (640.0, 550.0, 460.0)  # red, green, blue


def true_colour(
    data: np.ndarray, wavelength_nm: Sequence[float], valid: np.ndarray | None = None
) -> np.ndarray:
    """``(H, W, 3)`` uint8 from the bands nearest 640/550/460 nm, 2-98 % stretched over valid pixels."""
    wavelength = np.asarray(wavelength_nm, dtype=np.float64)
    picks = [int(np.argmin(np.abs(wavelength - nm))) for nm in QUICKLOOK_BANDS_NM]
    rgb = np.stack([np.asarray(data[i], dtype=np.float32) for i in picks], axis=-1)
    mask = np.ones(rgb.shape[:2], dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if mask.any():
        low, high = np.percentile(rgb[mask], [2, 98])
    else:
        low, high = 0.0, 1.0
    scaled = np.clip((rgb - low) / max(high - low, 1e-12), 0, 1)
    scaled[~mask] = 0
    return (scaled * 255).astype(np.uint8)


@dataclass
class Quicklook:
    """A rendered tile: its key, where it is in the product, and why it was dropped (empty when kept)."""

    key: str
    row: int
    col: int
    rgb: np.ndarray
    reasons: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{'dropped' if self.reasons else 'quicklook'}_{self.key}.png"


class QuicklookSampler:
    """A uniform random sample of a product's kept tiles and of its dropped tiles, rendered as they stream by.

    Reservoir sampling (Algorithm R) picks ``kept`` and ``dropped`` tiles with equal probability wherever they
    are in the product, without knowing the tile count in advance; a tile is rendered only when it enters the
    sample. The draw is seeded by ``seed`` (the product id), so re-runs pick the same tiles.
    """

    def __init__(self, seed: str, *, kept: int, dropped: int) -> None:
        self._random = random.Random(seed)
        self._limits = {False: kept, True: dropped}
        self._seen = {False: 0, True: 0}
        self._picked: dict[bool, list[Quicklook]] = {False: [], True: []}

    def offer(
        self,
        key: str,
        row: int,
        col: int,
        render: Callable[[], np.ndarray],
        reasons: Sequence[str] = (),
    ) -> None:
        """Consider one tile; ``render`` gives its RGB and is called only if the tile is picked."""
        dropped = bool(reasons)
        self._seen[dropped] += 1
        picked, limit = self._picked[dropped], self._limits[dropped]
        slot = len(picked) if len(picked) < limit else self._random.randrange(self._seen[dropped])
        if slot < limit:
            look = Quicklook(key, row, col, render(), list(reasons))
            if slot < len(picked):
                picked[slot] = look
            else:
                picked.append(look)

    def save(self, folder: Path) -> list[Quicklook]:
        """Write the picked tiles as PNGs into ``folder``: kept ones, then dropped ones, each in grid order."""
        looks = [look for dropped in (False, True) for look in sorted(self._picked[dropped], key=_grid_order)]
        for look in looks:
            Image.fromarray(look.rgb).save(folder / look.name)
        return looks


def _grid_order(look: Quicklook) -> tuple[int, int]:
    return look.row, look.col
