"""Save and load a SpecAware MAE with its configuration: a bit-exact round trip that never touches the network.

The file is a ``torch.save`` dict: format tag, the config as plain values, the text-embedding kind and the state dict
(which includes the six sensor/level vectors as buffers). Loading builds the model from the stored config with
placeholder vectors (no sentence encoder is imported) and then loads the stored tensors over them, strictly.
"""

from __future__ import annotations

from pathlib import Path

import torch

from specaware.config import ModelConfig
from specaware.model.mae import SpecAwareMAE
from specaware.model.text import text_vectors

FORMAT = "specaware-mae/1"


def save_checkpoint(model: SpecAwareMAE, path: str | Path) -> Path:
    """Write ``model`` (weights, buffers, config, text kind) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "text_kind": model.text_kind,
        "state_dict": model.state_dict(),
    }
    torch.save(payload, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> SpecAwareMAE:
    """The model saved at ``path``, in training mode as a freshly built one would be."""
    payload = torch.load(Path(path), map_location=map_location, weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} checkpoint (format {payload.get('format')!r})")
    model = SpecAwareMAE(ModelConfig.from_dict(payload["config"]), text_vectors("placeholder"))
    model.load_state_dict(payload["state_dict"], strict=True)
    if model.text_kind != payload["text_kind"]:
        raise ValueError(
            f"{path}: state dict text kind {model.text_kind!r} != header {payload['text_kind']!r}"
        )
    return model.to(map_location)
