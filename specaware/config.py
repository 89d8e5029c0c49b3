"""Named SpecAware model configurations: every hyper-parameter of ``../shared/SPECAWARE.md`` as a config value.

``tiny`` is for CPU tests and CI demos, ``base`` is the published ViT-B/8 at 224 px with rank 64 (module by module
the authors' ``mae_vit_base_patch8``, 117,963,659 parameters), ``large`` is the same architecture with the ViT-L encoder
(the authors' ``mae_vit_large_patch8``). A configuration is a frozen dataclass so it can be hashed, compared and stored in a checkpoint as a
plain dict (:meth:`ModelConfig.to_dict` / :meth:`ModelConfig.from_dict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Every size and default of the SpecAware MAE (encoder, decoder, loss).

    Values the spec calls "default" keep the spec's value here; values the spec leaves open are marked "(ours)".
    """

    name: str = "base"

    # Geometry. ``image_size`` is the pretraining size; any image whose sides are multiples of ``patch_size`` is
    # accepted at run time. ``content_grid`` is the fixed grid the content summary pools every band to (28 =
    # 224 / 8 as published; it stays 28 when the patch size changes, as in the published fine-tuning).
    image_size: int = 224
    patch_size: int = 8
    content_grid: int = 28
    # Positions use GSD x this factor. 1 at the pretraining patch size; a model moved to patch size k by
    # ``specaware.model.patchsize.change_patch_size`` gets k / 8, as the published fine-tuning scales the GSD.
    position_gsd_scale: float = 1.0

    # Meta-content aware module (spec section 1). ``meta_dim`` is d; the Fourier features have d / 2 periods.
    meta_dim: int = 128
    fourier_period_range_nm: tuple[float, float] = (350.0, 2550.0)
    # Wavelengths outside this range are rejected (ours: the Fourier period range).
    wavelength_range_nm: tuple[float, float] = (350.0, 2550.0)
    fwhm_scale_nm: tuple[float, float] = (5.0, 15.0)
    fwhm_hidden: int = 64
    spectral_mix_init: tuple[float, float] = (0.8, 0.2)
    spectral_hidden: int = 256
    text_dim: int = 384
    band_heads: int = 4
    band_ffn: int = 128
    band_ln_eps: float = 1e-5  # PyTorch's TransformerEncoderLayer default, as published
    band_dropout: float = 0.0  # as published
    content_hidden: int = 196  # content_grid**2 / 4, as published
    content_fusion_hidden: int = 256
    meta_dropout: float = 0.1  # dropout inside every CMF and the content head's fusion MLP, as published

    # HyperEmbedding (spec section 2).
    embed_dim: int = 768
    rank: int = 64
    # Generators (encoder and hyper-decoder): LN -> Linear d->hidden -> GELU -> Dropout -> Linear hidden->bottleneck
    # -> GELU -> output; bias generators LN -> Linear d->bottleneck -> GELU -> output. Published: d, d / 2, 0.1.
    generator_hidden: int = 128
    generator_bottleneck: int = 64
    generator_dropout: float = 0.1
    embed_scale_init: float = 0.02

    # Encoder (spec section 3).
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    ln_eps: float = 1e-6

    # MAE decoder and hyper-decoder (spec section 4).
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    decoder_rank: int = 64  # (ours: the encoder's rank)
    pool_key_dim: int = 64

    # Pretraining objective.
    mask_ratio: float = 0.75
    charbonnier_weight: float = 2.0
    charbonnier_eps: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if self.meta_dim % 2:
            problems.append(f"meta_dim {self.meta_dim} must be even (sin and cos of d / 2 Fourier periods)")
        if self.position_gsd_scale <= 0:
            problems.append(f"position_gsd_scale {self.position_gsd_scale} must be positive")
        if self.image_size % self.patch_size:
            problems.append(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for label, width, heads in (
            ("embed_dim", self.embed_dim, self.heads),
            ("decoder_dim", self.decoder_dim, self.decoder_heads),
            ("meta_dim", self.meta_dim, self.band_heads),
        ):
            if width % heads:
                problems.append(f"{label} {width} is not divisible by its {heads} heads")
        for label, width in (("embed_dim", self.embed_dim), ("decoder_dim", self.decoder_dim)):
            if width % 4:
                problems.append(f"{label} {width} must be a multiple of 4 (2-D sin-cos positions)")
        low, high = self.wavelength_range_nm
        if not 0 < low < high:
            problems.append(
                f"wavelength_range_nm {self.wavelength_range_nm} is not an increasing positive range"
            )
        if not 0.0 <= self.mask_ratio < 1.0:
            problems.append(f"mask_ratio {self.mask_ratio} must be in [0, 1)")
        if problems:
            raise ValueError(f"invalid model config {self.name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples become lists) for checkpoints and logs."""
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error so a stale checkpoint cannot load silently."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}")
        return cls(
            **{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
        )


CONFIGS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        name="tiny",
        image_size=64,
        meta_dim=64,
        content_grid=8,
        fwhm_hidden=32,
        spectral_hidden=128,
        band_ffn=64,
        content_hidden=16,
        content_fusion_hidden=128,
        embed_dim=96,
        rank=8,
        generator_hidden=64,
        generator_bottleneck=32,
        depth=4,
        heads=3,
        decoder_dim=64,
        decoder_depth=2,
        decoder_heads=4,
        decoder_rank=8,
        pool_key_dim=16,
    ),
    "base": ModelConfig(name="base"),
    "large": ModelConfig(name="large", embed_dim=1024, depth=24, heads=16),
}


def model_config(name: str | ModelConfig, **overrides: Any) -> ModelConfig:
    """The named configuration (``tiny``, ``base``, ``large``), optionally with some values overridden."""
    if isinstance(name, ModelConfig):
        base = name
    else:
        try:
            base = CONFIGS[name]
        except KeyError:
            raise ValueError(f"unknown model config {name!r}; known: {', '.join(CONFIGS)}") from None
    return replace(base, **overrides) if overrides else base
