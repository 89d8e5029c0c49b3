"""SpecAware model: meta-content aware module, HyperEmbedding, GSD-aware ViT encoder, MAE decoder with the
hyper-decoder, SAM + Charbonnier loss, checkpoints. Spec: ``../shared/SPECAWARE.md``.

Module map: ``inputs`` (batch contract) · ``fourier`` (λ features, range check) · ``text`` (sensor/level vectors) ·
``minilm`` (computes the shipped vectors) · ``fusion`` (CMF) · ``meta`` (z and meta') · ``patches`` · ``contraction``
(memory-lean band sum) · ``generators`` (hypernetwork MLPs) · ``hyperembed`` · ``posembed`` · ``masking`` · ``vit`` ·
``encoder`` · ``decoder`` · ``loss`` · ``mae`` (whole model, :func:`build_model`) · ``checkpoint`` (ours, and
:func:`load_model` for either kind) · ``published`` (the published checkpoints' names) · ``patchsize`` (patch-size
change) · ``pretrained`` (ImageNet MAE block init) · ``memtrace`` (peak tensor memory, for tests/benchmarks).
"""

from specaware.config import CONFIGS, ModelConfig, model_config
from specaware.model.checkpoint import load_checkpoint, load_model, save_checkpoint
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
    "load_model",
    "model_config",
    "save_checkpoint",
]
