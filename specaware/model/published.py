"""Checkpoints in the published SpecAware layout (the authors' ``SpecAware/*.py``): name mapping, strict import, export.

The published code names its modules differently (``patch_embed.matrix_generator.u_generator.6.weight`` is our
``encoder.embed.u_gen.6.weight``) but, module by module, holds the same tensors with the same shapes, with two
exceptions handled here: the embedding scale is a 0-d tensor there and a (1,) tensor here, and the six sensor/level
text vectors are not in a published checkpoint at all (the published code recomputes them at construction; we
keep the shipped MiniLM vectors, :mod:`specaware.model.text`).

Two published forms are read:

- ``mae``: the pretraining model's state dict (encoder, ``decoder_*`` and ``decoder_pred.*``), optionally under a
  ``model`` key as MAE's training loop saves it;
- ``encoder``: the encoder only (``patch_embed.*``, ``cls_token``, ``blocks.*``, ``norm.*``), with or without the
  ``encoder.`` prefix the published fine-tuning example adds. The decoder of the imported model then keeps its
  fresh initialisation (it is not used by feature extraction, probing or fine-tuning).

Import is strict: every published tensor must map to one of ours and every one of ours (of that form) must be present,
with equal shapes, or a ``ValueError`` names the keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from specaware.config import CONFIGS, ModelConfig, model_config
from specaware.model.mae import SpecAwareMAE
from specaware.model.text import text_vectors

# (published module, our module): the state-dict prefixes, longest first where one extends another.
MODULES: tuple[tuple[str, str], ...] = (
    ("patch_embed.spectral_embedding.fwhm_encoder.mlp", "encoder.meta.fwhm"),
    ("patch_embed.spectral_embedding.attribute_encoder.fc", "encoder.meta.text.proj"),
    ("patch_embed.spectral_embedding.fusion_weights", "encoder.meta.mix_logits"),
    ("patch_embed.spectral_embedding.spectral_enhancement_mlp.mlp", "encoder.meta.spectral"),
    ("patch_embed.spectral_embedding.cross_modal_fusion", "encoder.meta.text_fusion"),
    ("patch_embed.spectral_aware_transformer.transformer_encoder.layers.0", "encoder.meta.bands"),
    ("patch_embed.content_feature_extractor.avg_feature_encoder", "encoder.meta.content.from_mean"),
    ("patch_embed.content_feature_extractor.max_feature_encoder", "encoder.meta.content.from_max"),
    ("patch_embed.content_feature_extractor.feature_fusion", "encoder.meta.content.fuse"),
    ("patch_embed.content_feature_extractor.layer_norm", "encoder.meta.content.norm"),
    ("patch_embed.feature_fusion", "encoder.meta.content_fusion"),
    ("patch_embed.matrix_generator.u_generator", "encoder.embed.u_gen"),
    ("patch_embed.matrix_generator.v_generator", "encoder.embed.v_gen"),
    ("patch_embed.matrix_generator.bias_generator", "encoder.embed.bias_gen"),
    ("patch_embed.scaler", "encoder.embed.scale"),
    ("cls_token", "encoder.cls_token"),
    ("blocks", "encoder.blocks"),
    ("norm", "encoder.norm"),
    ("decoder_embed", "decoder.embed"),
    ("mask_token", "decoder.mask_token"),
    ("decoder_blocks", "decoder.blocks"),
    ("decoder_norm", "decoder.norm"),
    ("decoder_pred.x_attention_pool.query_proj", "hyper_decoder.pool.query"),
    ("decoder_pred.x_attention_pool.key_proj", "hyper_decoder.pool.key"),
    ("decoder_pred.x_attention_pool.value_proj", "hyper_decoder.pool.value"),
    ("decoder_pred.x_feature_extractor", "hyper_decoder.content"),
    ("decoder_pred.feature_fusion", "hyper_decoder.fusion"),
    ("decoder_pred.matrix_generator.u_generator", "hyper_decoder.u_gen"),
    ("decoder_pred.matrix_generator.v_generator", "hyper_decoder.v_gen"),
    ("decoder_pred.matrix_generator.bias_generator", "hyper_decoder.b_gen"),
)

# Names inside a module that differ: the cross-modal fusions and PyTorch's TransformerEncoderLayer.
_FUSION = {"modal1_proj": "proj_a", "modal2_proj": "proj_b", "fusion.0": "fuse", "fusion.1": "norm"}
_BAND_LAYER = {
    "self_attn.in_proj_weight": "attn.qkv.weight",
    "self_attn.in_proj_bias": "attn.qkv.bias",
    "self_attn.out_proj": "attn.proj",
    "linear1": "mlp.fc1",
    "linear2": "mlp.fc2",
}
_INNER: dict[str, dict[str, str]] = {
    "encoder.meta.text_fusion": _FUSION,
    "encoder.meta.content_fusion": _FUSION,
    "hyper_decoder.fusion": _FUSION,
    "encoder.meta.bands": _BAND_LAYER,
}
# Ours that a published checkpoint does not hold: the shipped text vectors (and the text module's extra state).
_NOT_PUBLISHED = ("encoder.meta.text.sensor_vectors", "encoder.meta.text.level_vectors", "encoder.meta.text._extra_state")
_SCALAR = "encoder.embed.scale"  # 0-d there, (1,) here
_ENCODER_PREFIX = "encoder."
FORMS = ("mae", "encoder")


def _rename(name: str, table: Mapping[str, str]) -> str:
    for old, new in table.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return name


def published_name(ours: str) -> str:
    """The published state-dict name of our tensor ``ours`` (``ValueError`` for a name with no counterpart)."""
    for theirs, mine in MODULES:
        if ours == mine or ours.startswith(mine + "."):
            inner = ours[len(mine) + 1 :]
            inverse = {new: old for old, new in _INNER.get(mine, {}).items()}
            return theirs + ("." + _rename(inner, inverse) if inner else "")
    raise ValueError(f"{ours} has no counterpart in the published SpecAware checkpoints")


def name_table(model: SpecAwareMAE, form: str = "mae") -> dict[str, str]:
    """{published name: our name} for every tensor of ``model`` a published checkpoint of ``form`` holds."""
    if form not in FORMS:
        raise ValueError(f"unknown published form {form!r}; use {' or '.join(FORMS)}")
    table = {}
    for ours in model.state_dict():
        if ours in _NOT_PUBLISHED or (form == "encoder" and not ours.startswith("encoder.")):
            continue
        table[published_name(ours)] = ours
    return table


def export_published(model: SpecAwareMAE, form: str = "mae") -> dict[str, Tensor]:
    """``model``'s tensors under their published names and shapes (``encoder`` form without the prefix)."""
    state = model.state_dict()
    exported = {}
    for theirs, ours in name_table(model, form).items():
        tensor = state[ours].detach().clone()
        exported[theirs] = tensor.reshape(()) if ours == _SCALAR else tensor
    return exported


@dataclass(frozen=True)
class PublishedState:
    """A published state dict with its ``encoder.`` prefix removed, and which form it is."""

    state: dict[str, Tensor]
    form: str


def read_published(payload: object, source: str) -> PublishedState:
    """Unwrap (``model`` key), strip the ``encoder.`` prefix and classify a published checkpoint's contents."""
    state = payload.get("model", payload) if isinstance(payload, Mapping) else payload
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{source}: not a published SpecAware state dict (expected a mapping of names to tensors)")
    keys = list(state)
    prefixed = [key.startswith(_ENCODER_PREFIX) for key in keys]
    if any(prefixed):
        if not all(prefixed):
            stray = keys[prefixed.index(False)]
            raise ValueError(f"{source}: {stray} lacks the 'encoder.' prefix the other tensors carry")
        state = {key[len(_ENCODER_PREFIX) :]: value for key, value in state.items()}
    form = "mae" if any(key.startswith(("decoder_", "mask_token")) for key in state) else "encoder"
    return PublishedState(dict(state), form)


def infer_config(state: Mapping[str, Tensor], source: str) -> ModelConfig:
    """The named configuration (``base``, ``large``; ``tiny`` for tests) whose encoder width, depth and rank it has.

    The patch size is read from the V generator's output (r * k^2 rows): a checkpoint fine-tuned at another k gets
    that k, with positions scaled by k / 8 as the published fine-tuning scales the GSD.
    """
    try:
        width = state["cls_token"].shape[-1]
        depth = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
        rank = state["patch_embed.matrix_generator.u_generator.6.weight"].shape[0] // width
        k2 = state["patch_embed.matrix_generator.v_generator.6.weight"].shape[0] // max(rank, 1)
    except KeyError as exc:
        raise ValueError(f"{source}: no {exc.args[0]}, so not a published SpecAware checkpoint") from None
    for config in CONFIGS.values():
        if (config.embed_dim, config.depth, config.rank) == (width, depth, rank):
            k = round(k2**0.5)
            if k * k != k2:
                raise ValueError(f"{source}: V generator output {k2 * rank} is not rank {rank} x a square patch")
            if k == config.patch_size:
                return config
            return model_config(config, patch_size=k, position_gsd_scale=k / config.patch_size)
    raise ValueError(
        f"{source}: encoder width {width}, depth {depth}, rank {rank} match no named config ({', '.join(CONFIGS)})"
    )


def load_published_state(model: SpecAwareMAE, published: PublishedState, source: str) -> None:
    """Copy ``published`` into ``model`` strictly: every name mapped, none missing, every shape equal."""
    table = name_table(model, published.form)
    unexpected = sorted(set(published.state) - set(table))
    missing = sorted(set(table) - set(published.state))
    if unexpected or missing:
        parts = []
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else ""))
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
        raise ValueError(f"{source}: not a published SpecAware {published.form} checkpoint: {'; '.join(parts)}")
    ours = model.state_dict()
    converted = {}
    for theirs, mine in table.items():
        tensor = published.state[theirs]
        if mine == _SCALAR and tensor.shape == ():
            tensor = tensor.reshape(1)
        if tuple(tensor.shape) != tuple(ours[mine].shape):
            raise ValueError(
                f"{source}: {theirs} has shape {tuple(tensor.shape)}, {mine} needs {tuple(ours[mine].shape)}"
            )
        converted[mine] = tensor.to(ours[mine].dtype)
    model.load_state_dict(converted, strict=False)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_from_published(
    payload: object, path: Path, text: str = "minilm"
) -> tuple[SpecAwareMAE, dict[str, Any]]:
    """(model, origin) from the loaded contents of a published checkpoint file ``path``."""
    published = read_published(payload, str(path))
    config = infer_config(published.state, str(path))
    model = SpecAwareMAE(config, text_vectors(text))
    load_published_state(model, published, str(path))
    origin = {"source": path.name, "sha256": sha256(path), "form": published.form}
    if published.form == "encoder":
        origin["decoder"] = "freshly initialised (the checkpoint holds the encoder only)"
    return model, origin


def import_published(path: str | Path, text: str = "minilm") -> tuple[SpecAwareMAE, dict[str, Any]]:
    """(model, origin) from a published checkpoint file; ``origin`` records the source file, its SHA-256 and form."""
    from specaware.model.checkpoint import read_payload

    path = Path(path)
    return model_from_published(read_payload(path), path, text)
