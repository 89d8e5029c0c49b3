"""MAE decoder and hyper-decoder (spec section 4): reconstruct exactly the C input bands of each sample.

Decoder: Linear E -> D, mask tokens, unshuffle, GSD sin-cos positions (cls at zero), pre-norm blocks, LN; it returns
every token, cls first, because the hyper-decoder pools over all of them (as published).

Hyper-decoder: a content vector u per sample from attention pooling over all decoder tokens including cls (query from
the token mean, ``pool_key_dim``-d keys, D-d values, no biases) and an MLP D -> d -> d; per band
y_c = CMF(meta'_c, u) + u; generators give U^d_c (k^2 x r), V^d_c (r x D) and b^d_c (k^2); the prediction for patch
token l and band c is U^d_c V^d_c x_l + b^d_c. We form the per-sample kernel W_c = U^d_c V^d_c, (B, C k^2, D), and apply
it as one GEMM per sample: memory B*C*k^2*D, no (B, N, C, r) intermediate, and the prediction itself is image-sized.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from specaware.config import ModelConfig
from specaware.model.fusion import CrossModalFusion
from specaware.model.generators import bias_generator, factor_generator, zero_output_layer
from specaware.model.masking import gather_tokens
from specaware.model.patches import unpatchify
from specaware.model.posembed import gsd_sincos
from specaware.model.vit import Block, mlp


class MAEDecoder(nn.Module):
    """(encoded tokens (B, 1 + visible, E), ids_restore (B, N), gsd (B,), grid) -> tokens (B, 1 + N, D), cls first."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dim = config.decoder_dim
        self.embed = nn.Linear(config.embed_dim, config.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_dim))
        hidden = int(config.decoder_dim * config.mlp_ratio)
        self.blocks = nn.ModuleList(
            Block(config.decoder_dim, config.decoder_heads, hidden, config.qkv_bias, config.ln_eps)
            for _ in range(config.decoder_depth)
        )
        self.norm = nn.LayerNorm(config.decoder_dim, eps=config.ln_eps)

    def forward(self, tokens: Tensor, ids_restore: Tensor, gsd: Tensor, grid: tuple[int, int]) -> Tensor:
        x = self.embed(tokens)
        b, n = ids_restore.shape
        patches = torch.cat([x[:, 1:], self.mask_token.expand(b, n + 1 - x.shape[1], -1)], dim=1)
        patches = gather_tokens(patches, ids_restore) + gsd_sincos(grid, self.dim, gsd).to(x.dtype)
        x = torch.cat([x[:, :1], patches], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class AttentionPool(nn.Module):
    """sum_l softmax_l(q . k_l / sqrt(key_dim)) v_l with q from the token mean; projections without bias."""

    def __init__(self, dim: int, key_dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, key_dim, bias=False)
        self.key = nn.Linear(dim, key_dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.key_dim = key_dim

    def forward(self, x: Tensor) -> Tensor:
        q = self.query(x.mean(dim=1))  # (B, key)
        scores = torch.einsum("bk,bnk->bn", q, self.key(x)) / math.sqrt(self.key_dim)
        return torch.einsum("bn,bnd->bd", scores.softmax(dim=1), self.value(x))


class HyperDecoder(nn.Module):
    """(decoder tokens (B, 1 + N, D) cls first, meta' (B, C, d), band_mask (B, C), grid) -> prediction (B, C, H, W)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, dim, rank, k2 = config.meta_dim, config.decoder_dim, config.decoder_rank, config.patch_size**2
        hidden, bottleneck, dropout = config.generator_hidden, config.generator_bottleneck, config.generator_dropout
        self.patch_size = config.patch_size
        self.rank = rank
        self.pool = AttentionPool(dim, config.pool_key_dim)
        self.content = mlp([dim, d, d])
        self.fusion = CrossModalFusion(d, d, d, config.meta_dropout)
        self.u_gen = factor_generator(d, hidden, bottleneck, k2 * rank, dropout)
        self.v_gen = factor_generator(d, hidden, bottleneck, rank * dim, dropout)
        self.b_gen = bias_generator(d, bottleneck, k2)
        zero_output_layer(self.b_gen)

    def forward(self, x: Tensor, meta: Tensor, band_mask: Tensor, grid: tuple[int, int]) -> Tensor:
        c = meta.shape[1]
        k2 = self.patch_size**2
        u = self.content(self.pool(x))[:, None, :].expand(-1, c, -1)
        x = x[:, 1:]  # predictions for the patch tokens only
        b, n, dim = x.shape
        y = self.fusion(meta.to(u.dtype), u) + u  # (B, C, d)
        bands = band_mask[:, :, None].to(y.dtype)  # padding bands get a zero kernel and bias: prediction 0
        u_factors = self.u_gen(y).view(b, c, k2, self.rank) * bands[..., None]
        kernel = u_factors @ self.v_gen(y).view(b, c, self.rank, dim)  # (B, C, k^2, D)
        bias = (self.b_gen(y) * bands).reshape(b, 1, c * k2)
        pred = torch.baddbmm(bias, x, kernel.reshape(b, c * k2, dim).transpose(1, 2))  # (B, N, C k^2)
        return unpatchify(pred.view(b, n, c, k2), grid, self.patch_size)
