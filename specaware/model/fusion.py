"""Cross-modal fusion CMF(a, b) (spec 1.5): the block that merges two conditions into one d-dim vector."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CrossModalFusion(nn.Module):
    """p = Linear(a), q = Linear(b); out = Dropout(GELU(LN(Linear([p; q])))) + p.

    The residual is on the projected first input, so ``a`` is the primary stream and ``b`` the condition merged
    into it. Shapes broadcast: ``a`` and ``b`` are (..., dim_a) and (..., dim_b) with the same leading shape.
    """

    def __init__(self, dim_a: int, dim_b: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.proj_a = nn.Linear(dim_a, dim)
        self.proj_b = nn.Linear(dim_b, dim)
        self.fuse = nn.Linear(2 * dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        p = self.proj_a(a)
        q = self.proj_b(b)
        return self.drop(self.act(self.norm(self.fuse(torch.cat([p, q], dim=-1))))) + p
