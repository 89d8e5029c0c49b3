"""SpecAware encoder (spec section 3): meta-content module -> HyperEmbedding -> GSD positions -> mask -> ViT.

ViT-B by default: pre-norm blocks with qkv bias and LN eps 1e-6, a cls token at position zero, final LN. Masking
(ratio 0 for feature extraction) happens after embedding and positions, as in MAE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from specaware.config import ModelConfig
from specaware.model.hyperembed import HyperEmbedding
from specaware.model.inputs import SpectralBatch
from specaware.model.masking import gather_tokens, random_masking
from specaware.model.meta import MetaContentModule
from specaware.model.posembed import gsd_sincos
from specaware.model.text import TextEmbedding
from specaware.model.vit import Block


@dataclass(frozen=True)
class EncoderOutput:
    """``tokens`` (B, 1 + visible, E) after the final LN, cls first; ``mask`` (B, N) True = removed;
    ``ids_restore`` (B, N); ``meta`` meta' (B, C, d) for the decoder; ``grid`` (rows, cols) of tokens."""

    tokens: Tensor
    mask: Tensor
    ids_restore: Tensor
    meta: Tensor
    grid: tuple[int, int]


class SpecAwareEncoder(nn.Module):
    """SpectralBatch -> :class:`EncoderOutput`."""

    def __init__(self, config: ModelConfig, text: TextEmbedding) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.embed_dim = config.embed_dim
        self.meta = MetaContentModule(config, text)
        self.embed = HyperEmbedding(
            config.meta_dim,
            config.embed_dim,
            config.rank,
            config.patch_size,
            config.generator_hidden,
            config.generator_bottleneck,
            config.generator_dropout,
            config.embed_scale_init,
        )
        self.position_gsd_scale = config.position_gsd_scale
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        hidden = int(config.embed_dim * config.mlp_ratio)
        self.blocks = nn.ModuleList(
            Block(config.embed_dim, config.heads, hidden, config.qkv_bias, config.ln_eps)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.ln_eps)

    def forward(
        self, batch: SpectralBatch, mask_ratio: float = 0.0, generator: torch.Generator | None = None
    ) -> EncoderOutput:
        b, _, h, w = batch.image.shape
        grid = (h // self.patch_size, w // self.patch_size)
        conditions = self.meta(batch)
        tokens = self.embed(batch.image, conditions.z, batch.band_mask)
        gsd = batch.gsd * self.position_gsd_scale
        tokens = tokens + gsd_sincos(grid, self.embed_dim, gsd).to(tokens.dtype)
        masking = random_masking(b, tokens.shape[1], mask_ratio, tokens.device, generator)
        x = torch.cat([self.cls_token.expand(b, -1, -1), gather_tokens(tokens, masking.ids_keep)], dim=1)
        for block in self.blocks:
            x = block(x)
        return EncoderOutput(self.norm(x), masking.mask, masking.ids_restore, conditions.meta, grid)
