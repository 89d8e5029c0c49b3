"""Meta-content aware module (spec section 1): per-band condition z (B, C, d) and meta' (B, C, d).

Per band: wavelength Fourier features and scaled FWHM are mixed into a spectral code, fused with the sensor/level
text condition (meta), made aware of the other bands of the same sample by one Transformer layer across bands with
an outer residual, meta' = layer(meta) + meta as published (the layer has its own residuals, so the identity path is
counted twice; meta' also conditions the decoder), and finally fused with a summary of the band's image content (z).

Nothing here depends on band order except through the band-interaction layer, which has no positional encoding
over bands; so permuting the bands (with their wavelengths and FWHM) permutes meta' and z the same way. Padding bands
are excluded from that layer's keys, so they cannot influence real bands.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from specaware.config import ModelConfig
from specaware.model.fourier import WavelengthFourier
from specaware.model.fusion import CrossModalFusion
from specaware.model.inputs import SpectralBatch
from specaware.model.text import TextEmbedding
from specaware.model.vit import Block, mlp


@dataclass(frozen=True)
class MetaOutput:
    """``meta``: meta' (B, C, d), the band-aware metadata code; ``z``: the per-band embedding condition."""

    meta: Tensor
    z: Tensor


class ContentSummary(nn.Module):
    """Per band: average- and max-pool the band image to a fixed grid, two MLPs, a fusion MLP, LN -> h (B, C, d).

    Adaptive pooling to ``grid`` x ``grid`` is k x k pooling at the pretraining size and keeps the module valid for
    any image size.
    """

    def __init__(self, grid: int, hidden: int, fusion_hidden: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.grid = grid
        self.from_mean = mlp([grid * grid, hidden, dim])
        self.from_max = mlp([grid * grid, hidden, dim])
        self.fuse = mlp([2 * dim, fusion_hidden, dim], dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, image: Tensor) -> Tensor:
        mean = F.adaptive_avg_pool2d(image, self.grid).flatten(2)
        peak = F.adaptive_max_pool2d(image, self.grid).flatten(2)
        return self.norm(self.fuse(torch.cat([self.from_mean(mean), self.from_max(peak)], dim=-1)))


class MetaContentModule(nn.Module):
    """SpectralBatch -> :class:`MetaOutput` (see the module docstring)."""

    def __init__(self, config: ModelConfig, text: TextEmbedding) -> None:
        super().__init__()
        d = config.meta_dim
        self.fwhm_scale = config.fwhm_scale_nm
        self.fourier = WavelengthFourier(d, config.fourier_period_range_nm)
        self.fwhm = mlp([1, config.fwhm_hidden, d])
        # Logits of the softmax weights of (Fourier, FWHM); the logits themselves start at 0.8 / 0.2, as published
        # (so the weights start at softmax = 0.646 / 0.354).
        self.mix_logits = nn.Parameter(torch.tensor(config.spectral_mix_init, dtype=torch.float32))
        self.spectral = mlp([d, config.spectral_hidden, d])
        self.text = text
        self.text_fusion = CrossModalFusion(d, d, d, config.meta_dropout)
        self.bands = Block(
            d,
            config.band_heads,
            config.band_ffn,
            qkv_bias=True,
            eps=config.band_ln_eps,
            dropout=config.band_dropout,
        )
        self.content = ContentSummary(
            config.content_grid, config.content_hidden, config.content_fusion_hidden, d, config.meta_dropout
        )
        self.content_fusion = CrossModalFusion(d, d, d, config.meta_dropout)

    def forward(self, batch: SpectralBatch) -> MetaOutput:
        # Inputs arrive in float32; follow the parameters' dtype (e.g. a model cast to bf16 for training).
        dtype = self.mix_logits.dtype
        low, high = self.fwhm_scale
        fwhm = self.fwhm(((batch.fwhm - low) / (high - low))[..., None].to(dtype))
        weights = self.mix_logits.softmax(0)
        spectral = weights[0] * self.fourier(batch.wavelength).to(dtype) + weights[1] * fwhm
        spectral = spectral + self.spectral(spectral)
        text = self.text(batch.sensor, batch.level)[:, None, :].expand_as(spectral)
        meta = self.text_fusion(spectral, text) + spectral
        meta = self.bands(meta, key_mask=batch.band_mask) + meta
        content = self.content(batch.image.to(dtype))
        return MetaOutput(meta=meta, z=self.content_fusion(meta, content) + meta)
