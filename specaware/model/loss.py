"""Reconstruction loss (spec section 4): L = L_SAM + w * L_Charbonnier on masked, valid pixels, raw targets.

L_SAM = mean over selected pixels of 1 - cos(y^, y) between the predicted and true C-band spectra;
L_Charbonnier = mean over selected pixels and real bands of sqrt((y^ - y)^2 + eps^2) - eps (eps = 1: the spec's
sqrt(x^2 + 1) - 1). A pixel is selected when its token was masked and ``valid`` is True; padding bands are left out
of both the spectra and the mean. Means are over the whole batch (every selected pixel weighs the same), in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LossTerms:
    """``total`` = ``sam`` + weight * ``charbonnier`` (scalars)."""

    total: Tensor
    sam: Tensor
    charbonnier: Tensor


def token_mask_to_pixels(mask: Tensor, grid: tuple[int, int], k: int) -> Tensor:
    """(B, N) per-token mask in row-major grid order -> (B, H, W) per-pixel mask."""
    rows, cols = grid
    return mask.view(-1, rows, 1, cols, 1).expand(-1, rows, k, cols, k).reshape(-1, rows * k, cols * k)


def reconstruction_loss(
    prediction: Tensor,
    target: Tensor,
    pixels: Tensor,
    band_mask: Tensor,
    charbonnier_weight: float,
    charbonnier_eps: float,
) -> LossTerms:
    """``prediction``, ``target`` (B, C, H, W); ``pixels`` (B, H, W) bool selected; ``band_mask`` (B, C) bool."""
    pred = prediction.float()
    true = target.float()
    if not bool(band_mask.all()):
        bands = band_mask[:, :, None, None]
        zero = pred.new_zeros(())
        pred = torch.where(bands, pred, zero)
        true = torch.where(bands, true, zero)
    norms = torch.linalg.vector_norm(pred, dim=1) * torch.linalg.vector_norm(true, dim=1)
    cosine = torch.linalg.vecdot(pred, true, dim=1) / norms.clamp_min(1e-12)
    count = pixels.sum().clamp_min(1)
    zero = cosine.new_zeros(())
    sam = torch.where(pixels, 1.0 - cosine, zero).sum() / count
    # sqrt(x^2 + eps^2) as one hypot; padding bands (0 in both) add hypot(0, eps) - eps = 0 to the band sum.
    eps = torch.tensor(charbonnier_eps, dtype=pred.dtype, device=pred.device)
    charb = (torch.hypot(pred - true, eps) - eps).sum(1)
    values = (pixels.sum((1, 2)) * band_mask.sum(1)).sum().clamp_min(1)
    charbonnier = torch.where(pixels, charb, zero).sum() / values
    return LossTerms(sam + charbonnier_weight * charbonnier, sam, charbonnier)
