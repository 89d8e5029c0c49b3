"""SpecAware model: meta-content aware module, HyperEmbedding, GSD-aware ViT encoder, MAE decoder with the
hyper-decoder, SAM + Charbonnier loss, checkpoints. Spec: ``../shared/SPECAWARE.md``.

Module map: ``inputs`` (batch contract) · ``fourier`` (λ features, range check) · ``text`` (sensor/level vectors) ·
``fusion`` (CMF) · ``meta`` (z and meta') · ``patches`` · ``contraction`` (memory-lean band sum) ·
``hyperembed`` · ``posembed`` · ``masking`` · ``vit`` ·
``encoder`` · ``decoder`` · ``loss`` · ``mae`` (whole model, :func:`build_model`) · ``checkpoint`` · ``pretrained``
(ImageNet MAE block init) · ``views`` (spectral windows) · ``memtrace`` (peak tensor memory, for tests/benchmarks).
"""

from specaware.config import CONFIGS, ModelConfig, model_config
from specaware.model.checkpoint import load_checkpoint, save_checkpoint
from specaware.model.encoder import EncoderOutput
from specaware.model.mae import MAEOutput, SpecAwareMAE, build_model

__all__ = [
    "CONFIGS",
    "EncoderOutput",
    "MAEOutput",
    "ModelConfig",
    "SpecAwareMAE",
    "build_model",
    "load_checkpoint",
    "model_config",
    "save_checkpoint",
]
