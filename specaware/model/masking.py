"""Random per-sample token masking for MAE and its bookkeeping (keep / restore indices).

Conventions (MAE's): ``ids_shuffle`` sorts uniform noise, the first ``keep`` tokens are visible, ``ids_restore`` is
the inverse permutation (so gathering the shuffled sequence with it restores the grid order), and ``mask`` (B, N) is
True where a token was removed, in grid order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def visible_count(tokens: int, ratio: float) -> int:
    """round((1 - ratio) * N) visible tokens, at least one."""
    return max(1, int(round((1.0 - ratio) * tokens)))


@dataclass(frozen=True)
class Masking:
    """ids_keep (B, keep), ids_restore (B, N) and mask (B, N) bool (True = masked)."""

    ids_keep: Tensor
    ids_restore: Tensor
    mask: Tensor


def random_masking(
    batch: int, tokens: int, ratio: float, device: torch.device, generator: torch.Generator | None = None
) -> Masking:
    """Draw an independent random mask per sample; ratio 0 keeps every token in grid order (no shuffle)."""
    keep = visible_count(tokens, ratio)
    if keep == tokens:
        order = torch.arange(tokens, device=device).expand(batch, tokens)
        return Masking(order, order, torch.zeros(batch, tokens, dtype=torch.bool, device=device))
    # Draw where the generator lives (a CPU generator can drive a CUDA model), then move.
    source = device if generator is None else generator.device
    noise = torch.rand(batch, tokens, device=source, generator=generator).to(device)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    mask = torch.ones(batch, tokens, dtype=torch.bool, device=device)
    mask[:, :keep] = False
    return Masking(ids_shuffle[:, :keep], ids_restore, mask.gather(1, ids_restore))


def gather_tokens(x: Tensor, ids: Tensor) -> Tensor:
    """x (B, N, D) -> x[b, ids[b]] (B, len(ids), D)."""
    return x.gather(1, ids[..., None].expand(-1, -1, x.shape[-1]))
