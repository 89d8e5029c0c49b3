"""The SpecAware masked autoencoder: encoder + MAE decoder + hyper-decoder + loss, and :func:`build_model`.

``SpecAwareMAE(batch)`` takes the loader's batch dict (see :mod:`specaware.model.inputs`) and returns an
:class:`MAEOutput` with the loss and the reconstruction of each sample's own C bands. ``encode(batch)`` gives the
encoder features for downstream use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from specaware.config import ModelConfig, model_config
from specaware.model.decoder import HyperDecoder, MAEDecoder
from specaware.model.encoder import EncoderOutput, SpecAwareEncoder
from specaware.model.generators import zero_output_layer
from specaware.model.inputs import parse_batch
from specaware.model.loss import reconstruction_loss, token_mask_to_pixels
from specaware.model.text import TextEmbedding, text_vectors


@dataclass(frozen=True)
class MAEOutput:
    """``loss`` = ``sam`` + w * ``charbonnier`` (scalars, float32); ``prediction`` (B, C, H, W) in the input's
    physical units (padding bands 0); ``mask`` (B, N) True = masked token; ``pixels`` (B, H, W) True = pixel in
    the loss (masked and valid)."""

    loss: Tensor
    sam: Tensor
    charbonnier: Tensor
    prediction: Tensor
    mask: Tensor
    pixels: Tensor


def _init_weights(module: nn.Module) -> None:
    """The published initialisation of every Linear and LayerNorm: trunc-normal(0.02) weights, zero biases, unit LN."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class SpecAwareMAE(nn.Module):
    """The whole pretraining model. ``text``: (sensor vectors (4, 384), level vectors (2, 384), kind)."""

    def __init__(self, config: ModelConfig, text: tuple[Tensor, Tensor, str]) -> None:
        super().__init__()
        self.config = config
        self.encoder = SpecAwareEncoder(config, TextEmbedding(config.meta_dim, *text))
        self.decoder = MAEDecoder(config)
        self.hyper_decoder = HyperDecoder(config)
        self.apply(_init_weights)
        # Published exceptions: the band-interaction layer is PyTorch's TransformerEncoderLayer, whose packed
        # q/k/v projection is a bare parameter that keeps its xavier-uniform start; both bias generators' output
        # layers start at zero; cls and mask tokens trunc-normal(0.02).
        nn.init.xavier_uniform_(self.encoder.meta.bands.attn.qkv.weight)
        zero_output_layer(self.encoder.embed.bias_gen)
        zero_output_layer(self.hyper_decoder.b_gen)
        nn.init.trunc_normal_(self.encoder.cls_token, std=0.02)
        nn.init.trunc_normal_(self.decoder.mask_token, std=0.02)

    @property
    def text_kind(self) -> str:
        """Which sensor/level vectors the model holds (all-MiniLM-L6-v2 embeddings or documented placeholders)."""
        return self.encoder.meta.text.kind

    def encode(
        self,
        batch: Mapping[str, Any],
        mask_ratio: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> EncoderOutput:
        """Encoder features of a loader batch; with ratio 0 (default) every token, in grid order, after the cls."""
        return self.encoder(parse_batch(batch, self.config), mask_ratio, generator)

    def forward(
        self,
        batch: Mapping[str, Any],
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
    ) -> MAEOutput:
        """Mask (``config.mask_ratio`` unless given), encode, decode every band of every sample, score."""
        ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        inputs = parse_batch(batch, self.config)
        encoded = self.encoder(inputs, ratio, generator)
        tokens = self.decoder(encoded.tokens, encoded.ids_restore, inputs.gsd, encoded.grid)
        prediction = self.hyper_decoder(tokens, encoded.meta, inputs.band_mask, encoded.grid)
        pixels = token_mask_to_pixels(encoded.mask, encoded.grid, self.config.patch_size) & inputs.valid
        terms = reconstruction_loss(
            prediction,
            inputs.image,
            pixels,
            inputs.band_mask,
            self.config.charbonnier_weight,
            self.config.charbonnier_eps,
        )
        return MAEOutput(terms.total, terms.sam, terms.charbonnier, prediction, encoded.mask, pixels)


def build_model(config: str | ModelConfig = "tiny", text: str = "minilm", **overrides: Any) -> SpecAwareMAE:
    """A freshly initialised SpecAware MAE from a named configuration (``tiny``, ``base``, ``large``).

    ``text`` picks the sensor/level vectors (see :func:`specaware.model.text.text_vectors`): ``minilm`` (or
    ``auto``) the shipped all-MiniLM-L6-v2 vectors, ``placeholder`` the documented meaningless ones; nothing is
    ever downloaded. ``overrides`` replace individual config values.
    """
    return SpecAwareMAE(model_config(config, **overrides), text_vectors(text))
