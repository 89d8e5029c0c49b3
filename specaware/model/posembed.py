"""GSD-scaled fixed 2-D sin-cos positional embedding (spec section 3).

MAE's 2-D sin-cos embedding with the grid coordinates in metres: token (row, col) of a sample with ground sampling
distance g sits at (col * g, row * g), as the spec defines (coordinate = index x g). Half of the channels encode x,
half y; each half is [sin(pos * w_i), cos(pos * w_i)] with w_i = 10000^(-i / (dim / 4)). Samples of different GSD
in one batch get their own positions. Computed in float32 (positions reach hundreds of metres).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _axis(positions: Tensor, dim: int) -> Tensor:
    """(B, N) positions -> (B, N, dim) sin/cos features."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float32, device=positions.device) / (dim // 2))
    phase = positions[..., None] * omega
    return torch.cat([phase.sin(), phase.cos()], dim=-1)


def gsd_sincos(grid: tuple[int, int], dim: int, gsd: Tensor) -> Tensor:
    """Positions of a (rows, cols) token grid, row-major, for each sample's GSD (B,) in metres -> (B, N, dim)."""
    rows, cols = grid
    device = gsd.device
    y = torch.arange(rows, dtype=torch.float32, device=device).repeat_interleave(cols)
    x = torch.arange(cols, dtype=torch.float32, device=device).repeat(rows)
    scale = gsd.float()[:, None]
    return torch.cat([_axis(x * scale, dim // 2), _axis(y * scale, dim // 2)], dim=-1)
