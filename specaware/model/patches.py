"""Image <-> non-overlapping k x k patches, band-first, row-major token order (token n = row * grid_w + col)."""

from __future__ import annotations

from torch import Tensor


def patchify(image: Tensor, k: int) -> Tensor:
    """(B, C, H, W) -> (B, C, N, k*k) with N = (H / k) * (W / k)."""
    b, c, h, w = image.shape
    grid = image.reshape(b, c, h // k, k, w // k, k).permute(0, 1, 2, 4, 3, 5)
    return grid.reshape(b, c, (h // k) * (w // k), k * k)


def unpatchify(tokens: Tensor, grid: tuple[int, int], k: int) -> Tensor:
    """(B, N, C, k*k) per-token band patches -> (B, C, H, W) for a ``grid`` of (H / k, W / k) tokens."""
    b, _, c, _ = tokens.shape
    rows, cols = grid
    image = tokens.reshape(b, rows, cols, c, k, k).permute(0, 3, 1, 4, 2, 5)
    return image.reshape(b, c, rows * k, cols * k)
