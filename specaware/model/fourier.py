"""Wavelength Fourier features (spec 1.1) and the supported-wavelength check.

A band centre λ becomes [sin(2πλ/P_j)] ++ [cos(2πλ/P_j)] over log-spaced periods P_j (64 periods from 350 to 2550 nm
by default, so d = 128). Features are computed in float32 whatever the autocast dtype: the phases reach ~46 rad, far
beyond bf16's resolution.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def check_wavelength_range(wavelength: Tensor, band_mask: Tensor, supported: tuple[float, float]) -> None:
    """Raise ``ValueError`` naming the first real band (``band_mask`` True) whose centre is outside ``supported``.

    The model was designed for, and its features are only meaningful over, the supported range; silently
    extrapolating to e.g. thermal bands or micrometre-valued wavelengths would give garbage embeddings.
    """
    low, high = supported
    outside = band_mask & ~((wavelength >= low) & (wavelength <= high))
    if bool(outside.any()):
        sample, band = (int(i) for i in outside.nonzero()[0])
        found = float(wavelength[sample, band])
        hint = " (wavelengths must be in nm, not micrometres)" if 0 < found < 10 else ""
        raise ValueError(
            f"wavelength {found:g} nm (sample {sample}, band {band}) is outside the supported range "
            f"{low:g}-{high:g} nm{hint}"
        )


class WavelengthFourier(nn.Module):
    """λ (..., C) nm -> (..., C, dim) sin/cos features over dim / 2 log-spaced periods."""

    def __init__(self, dim: int, period_range_nm: tuple[float, float]) -> None:
        super().__init__()
        self.count = dim // 2
        self.log_range = (math.log10(period_range_nm[0]), math.log10(period_range_nm[1]))

    def forward(self, wavelength: Tensor) -> Tensor:
        # Periods are rebuilt in float32 on every call rather than kept as a buffer, which a model-wide
        # ``.to(torch.bfloat16)`` would round (a 0.4 % period error is a 0.2 rad phase error at 2500 nm).
        periods = torch.logspace(*self.log_range, self.count, dtype=torch.float32, device=wavelength.device)
        phase = wavelength.float()[..., None] * (2 * math.pi / periods)
        return torch.cat([phase.sin(), phase.cos()], dim=-1)
