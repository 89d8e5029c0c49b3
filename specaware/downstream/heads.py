"""Downstream models on a SpecAware encoder: segmentation (UPerNet), change detection, scene classification, and
linear probes.

Multi-level features are the patch tokens after the blocks at depth fractions 1/4, 2/4, 3/4 and 4/4 (blocks 3, 6, 9,
12 of ViT-B), read with forward hooks on ``model.encoder.blocks`` so the model code stays untouched; the last level
is the encoder's final-LN output. A neck turns each into a ``neck_width``-channel map rescaled ×4, ×2, ×1, ×0.5
(strides k/4 … 2k), then a UPerNet head (PSP pooling on the coarsest level + FPN) fuses them at stride k/4; the
fused features are upsampled bilinearly to the input's full resolution, optionally joined by a pixel-spectrum
branch (:class:`PixelBranch`, a skip path from the input spectra), and a 3×3 conv + 1×1 classifier predict every
pixel at full resolution. Norm layers are GroupNorm (ours) so batches of one work on CPU.

Head outputs are logits over classes 1..K (channel i is label i + 1); label 0 is never predicted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from specaware.model.mae import SpecAwareMAE


def level_blocks(depth: int) -> list[int]:
    """Indices of the blocks whose outputs are the four levels (depth fractions 1/4 … 4/4)."""
    return sorted({max(0, round(depth * q / 4) - 1) for q in (1, 2, 3, 4)})


class SpecAwareFeatures(nn.Module):
    """The encoder of a SpecAware MAE as a multi-level feature extractor: batch -> list of (B, E, rows, cols).

    ``frozen``: parameters untouched by training, encoder always in eval mode and run without autograd (linear
    probing and frozen-feature heads)."""

    def __init__(self, model: SpecAwareMAE, frozen: bool = False) -> None:
        super().__init__()
        self.model = model
        self.frozen = frozen
        self.patch_size = model.config.patch_size
        self.embed_dim = model.config.embed_dim
        self.levels = level_blocks(len(model.encoder.blocks))
        self._captured: dict[int, Tensor] = {}
        for index in self.levels[:-1]:
            model.encoder.blocks[index].register_forward_hook(self._hook(index))
        if frozen:
            model.requires_grad_(False)

    def _hook(self, index: int) -> Any:
        def capture(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
            self._captured[index] = output

        return capture

    def train(self, mode: bool = True) -> SpecAwareFeatures:
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def forward(self, batch: Mapping[str, Any]) -> list[Tensor]:
        self._captured.clear()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            out = self.model.encode(batch)
        rows, cols = out.grid
        tokens = [self._captured[i] for i in self.levels[:-1]] + [out.tokens]
        self._captured.clear()
        return [t[:, 1:].transpose(1, 2).reshape(t.shape[0], -1, rows, cols) for t in tokens]


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm of at most 8 groups of at least 4 channels: a group always holds several values, even for one
    image pooled to 1×1 (PSP scale 1), where one channel per group cannot be normalised."""
    return nn.GroupNorm(max(1, min(8, channels // 4)), channels)


def conv_block(inputs: int, outputs: int, kernel: int = 3) -> nn.Sequential:
    """Conv + GroupNorm + ReLU, the unit of UPerNet."""
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, kernel, padding=kernel // 2, bias=False),
        _norm(outputs),
        nn.ReLU(inplace=True),
    )


class Neck(nn.Module):
    """Per level: 1×1 conv to ``width``, then rescale ×4 (two 2×2 transposed convs), ×2, ×1, ×0.5 (max-pool)."""

    def __init__(self, embed_dim: int, width: int, levels: int = 4) -> None:
        super().__init__()
        if levels != 4:
            raise ValueError("the neck expects four feature levels")
        self.reduce = nn.ModuleList(nn.Conv2d(embed_dim, width, 1) for _ in range(4))
        self.rescale = nn.ModuleList(
            [
                nn.Sequential(
                    nn.ConvTranspose2d(width, width, 2, stride=2),
                    _norm(width),
                    nn.GELU(),
                    nn.ConvTranspose2d(width, width, 2, stride=2),
                ),
                nn.ConvTranspose2d(width, width, 2, stride=2),
                nn.Identity(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
        )

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        return [
            scale(reduce(f)) for f, reduce, scale in zip(features, self.reduce, self.rescale, strict=True)
        ]


class UPerHead(nn.Module):
    """UPerNet: a pyramid-pooling module (``pool_scales``) on the coarsest level, FPN top-down fusion of all levels,
    concatenation at the finest level and a fuse conv -> ``channels`` features at the finest level's stride."""

    def __init__(self, width: int, channels: int, pool_scales: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.pool_scales = tuple(pool_scales)
        self.psp = nn.ModuleList(conv_block(width, channels, 1) for _ in self.pool_scales)
        self.bottleneck = conv_block(width + len(self.pool_scales) * channels, channels)
        self.lateral = nn.ModuleList(conv_block(width, channels, 1) for _ in range(3))
        self.fpn = nn.ModuleList(conv_block(channels, channels) for _ in range(3))
        self.fuse = conv_block(4 * channels, channels)

    def forward(self, levels: Sequence[Tensor]) -> Tensor:
        top = levels[-1]
        size = top.shape[-2:]
        pooled = [
            F.interpolate(
                conv(F.adaptive_avg_pool2d(top, scale)), size=size, mode="bilinear", align_corners=False
            )
            for scale, conv in zip(self.pool_scales, self.psp, strict=True)
        ]
        laterals = [conv(f) for conv, f in zip(self.lateral, levels[:-1], strict=True)]
        laterals.append(self.bottleneck(torch.cat([top, *pooled], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="bilinear", align_corners=False
            )
        finest = laterals[0].shape[-2:]
        outs = [conv(x) for conv, x in zip(self.fpn, laterals[:-1], strict=True)] + [laterals[-1]]
        outs = [outs[0]] + [
            F.interpolate(x, size=finest, mode="bilinear", align_corners=False) for x in outs[1:]
        ]
        return self.fuse(torch.cat(outs, dim=1))


def _to_input(logits: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class PixelBranch(nn.Module):
    """The optional skip path from the input spectra into the head: each pixel's own spectrum, standardised per
    band with the training pixels' statistics, through a per-pixel MLP (two 1×1 convs) -> ``width`` channels at
    full resolution. It lets the head see what a per-pixel spectral classifier sees; the encoder's tokens then
    only have to add spatial and contextual evidence. Runs with and without it show the encoder's share."""

    def __init__(self, band_mean: Tensor, band_std: Tensor, width: int) -> None:
        super().__init__()
        bands = int(band_mean.numel())
        self.width = width
        self.register_buffer("band_mean", band_mean.reshape(1, bands, 1, 1).float().clone())
        self.register_buffer("band_std", band_std.reshape(1, bands, 1, 1).float().clamp_min(1e-6).clone())
        self.mlp = nn.Sequential(
            nn.Conv2d(bands, width, 1, bias=False),
            _norm(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 1, bias=False),
            _norm(width),
            nn.ReLU(inplace=True),
        )

    def forward(self, image: Tensor) -> Tensor:
        return self.mlp((image - self.band_mean) / self.band_std)


class SegmentationModel(nn.Module):
    """Encoder levels -> neck -> UPerNet (stride k/4) -> bilinear to full resolution [+ pixel branch] -> 3×3 conv
    at full resolution -> per-pixel logits (B, K, H, W)."""

    def __init__(
        self,
        features: SpecAwareFeatures,
        num_classes: int,
        neck_width: int = 256,
        channels: int = 256,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        pixel_branch: PixelBranch | None = None,
    ) -> None:
        super().__init__()
        self.features = features
        self.neck = Neck(features.embed_dim, neck_width)
        self.head = UPerHead(neck_width, channels, pool_scales)
        self.pixel_branch = pixel_branch
        extra = pixel_branch.width if pixel_branch is not None else 0
        self.refine = conv_block(channels + extra, channels)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def decode(self, levels: Sequence[Tensor], pixels: Tensor) -> Tensor:
        """Feature levels and the (B, C, H, W) input spectra -> logits at the input's full resolution."""
        x = _to_input(self.head(self.neck(levels)), tuple(pixels.shape[-2:]))
        if self.pixel_branch is not None:
            x = torch.cat([x, self.pixel_branch(pixels)], dim=1)
        return self.classifier(self.dropout(self.refine(x)))

    def forward(self, batch: Mapping[str, Any]) -> Tensor:
        return self.decode(self.features(batch), batch["image"])


class ChangeModel(SegmentationModel):
    """Shared encoder on both dates; |difference| of every level -> neck -> UPerNet with 2 classes (unchanged,
    changed); the pixel branch, when on, sees |after - before| spectra. Batches carry ``image`` (date 1) and
    ``image_after`` (date 2) with one set of band metadata."""

    def __init__(
        self,
        features: SpecAwareFeatures,
        neck_width: int = 256,
        channels: int = 256,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        pixel_branch: PixelBranch | None = None,
    ) -> None:
        super().__init__(features, 2, neck_width, channels, pool_scales, dropout, pixel_branch)

    def forward(self, batch: Mapping[str, Any]) -> Tensor:
        before = self.features(batch)
        after = self.features({**batch, "image": batch["image_after"]})
        diff = [(a - b).abs() for a, b in zip(before, after, strict=True)]
        return self.decode(diff, (batch["image_after"] - batch["image"]).abs())


class SceneClassifier(nn.Module):
    """Mean of the last level's patch tokens -> MLP (``hidden`` > 0) or linear layer -> class logits (B, K)."""

    def __init__(
        self, features: SpecAwareFeatures, num_classes: int, hidden: int = 256, dropout: float = 0.1
    ):
        super().__init__()
        self.features = features
        dim = features.embed_dim
        self.head: nn.Module = (
            nn.Sequential(
                nn.LayerNorm(dim),
                nn.Linear(dim, hidden),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            )
            if hidden > 0
            else nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))
        )

    def forward(self, batch: Mapping[str, Any]) -> Tensor:
        return self.head(self.features(batch)[-1].mean(dim=(2, 3)))


class LinearProbe(nn.Module):
    """Linear probing on a frozen encoder: a linear layer on the last level's (final-LN) patch tokens, standardised.

    As MAE's linear probing, the features pass a parameter-free BatchNorm (no affine, eps 1e-6) before the linear
    layer: the frozen tokens' channels differ in scale by orders of magnitude (at the published initialisation the
    content part is ~1e-5 of the positional part), which a linear layer trained for a few hundred steps cannot undo.
    The normalisation adds no capacity (a per-channel affine map a linear layer could absorb).

    ``segmentation``: 1×1 conv per token, bilinear upsampling to pixels; ``change``: the same on |token difference|
    of the two dates; ``scene``: on the mean token."""

    def __init__(self, features: SpecAwareFeatures, task: str, num_classes: int) -> None:
        super().__init__()
        if not features.frozen:
            raise ValueError("a linear probe needs a frozen encoder")
        if task not in ("segmentation", "change", "scene"):
            raise ValueError(f"unknown task {task!r}")
        self.features = features
        self.task = task
        self.norm = nn.BatchNorm2d(features.embed_dim, affine=False, eps=1e-6)
        self.linear = nn.Conv2d(features.embed_dim, num_classes, 1)

    def forward(self, batch: Mapping[str, Any]) -> Tensor:
        tokens = self.features(batch)[-1]
        if self.task == "change":
            tokens = (self.features({**batch, "image": batch["image_after"]})[-1] - tokens).abs()
        if self.task == "scene":
            return self.linear(self.norm(tokens.mean(dim=(2, 3), keepdim=True)))[:, :, 0, 0]
        return _to_input(self.linear(self.norm(tokens)), tuple(batch["image"].shape[-2:]))


def build_head_model(
    backbone: SpecAwareMAE,
    task: str,
    num_classes: int,
    mode: str,
    neck_width: int = 256,
    channels: int = 256,
    pool_scales: Sequence[int] = (1, 2, 3, 6),
    dropout: float = 0.1,
    scene_hidden: int = 256,
    pixel_branch: PixelBranch | None = None,
) -> nn.Module:
    """The downstream model of ``task`` (``segmentation``, ``abundance``: one output map per endmember,
    ``change``, ``scene``) in ``mode`` ``finetune`` (whole model trained, optionally with a ``pixel_branch``) or
    ``probe`` (frozen encoder + linear head)."""
    if mode == "probe":
        probe_task = "segmentation" if task == "abundance" else task
        return LinearProbe(SpecAwareFeatures(backbone, frozen=True), probe_task, num_classes)
    if mode != "finetune":
        raise ValueError(f"unknown mode {mode!r}; use finetune or probe")
    if pixel_branch is not None and task == "scene":
        raise ValueError("the pixel branch feeds per-pixel heads; scene classification has none")
    features = SpecAwareFeatures(backbone)
    if task in ("segmentation", "abundance"):
        return SegmentationModel(
            features, num_classes, neck_width, channels, pool_scales, dropout, pixel_branch
        )
    if task == "change":
        return ChangeModel(features, neck_width, channels, pool_scales, dropout, pixel_branch)
    if task == "scene":
        return SceneClassifier(features, num_classes, scene_hidden, dropout)
    raise ValueError(f"unknown task {task!r}")
