"""True-colour quicklooks of hyperspectral patches, with bands picked by wavelength (not index)."""

from __future__ import annotations

from collections.abc import Sequence
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


def save_true_colour(
    path: Path, data: np.ndarray, wavelength_nm: Sequence[float], valid: np.ndarray | None = None
) -> None:
    Image.fromarray(true_colour(data, wavelength_nm, valid)).save(path)
