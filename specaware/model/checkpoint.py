"""Save and load a SpecAware MAE with its configuration: a bit-exact round trip that never touches the network.

The file is a ``torch.save`` dict: format tag, the config as plain values, the text-embedding kind and the state dict
(which includes the six sensor/level vectors as buffers). Loading builds the model from the stored config with
placeholder vectors and then loads the stored tensors over them, strictly. A model imported from a published
checkpoint also records where it came from (``origin``: file name, SHA-256, form).

:func:`load_model` reads either our checkpoints or the published ones (converted on the fly,
:mod:`specaware.model.published`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from specaware.config import ModelConfig
from specaware.model.mae import SpecAwareMAE
from specaware.model.text import text_vectors

FORMAT = "specaware-mae/1"


def save_checkpoint(model: SpecAwareMAE, path: str | Path, origin: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (weights, buffers, config, text kind[, origin]) to ``path`` via a temporary name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "text_kind": model.text_kind,
        "state_dict": model.state_dict(),
    }
    if origin:
        payload["origin"] = origin
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_payload(path: Path) -> object:
    """The contents of a checkpoint file (tensors on the CPU); a clear error for a missing or unreadable file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle/zip errors of many types for a file that is not a checkpoint
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__})") from None


def _from_payload(payload: dict[str, Any], path: Path) -> SpecAwareMAE:
    model = SpecAwareMAE(ModelConfig.from_dict(payload["config"]), text_vectors("placeholder"))
    model.load_state_dict(payload["state_dict"], strict=True)
    if model.text_kind != payload["text_kind"]:
        raise ValueError(
            f"{path}: state dict text kind {model.text_kind!r} != header {payload['text_kind']!r}"
        )
    return model


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> SpecAwareMAE:
    """The model saved at ``path``, in training mode as a freshly built one would be."""
    path = Path(path)
    payload = read_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: not a {FORMAT} checkpoint (format {found!r})")
    return _from_payload(payload, path).to(map_location)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> SpecAwareMAE:
    """A model from our checkpoint or from a published SpecAware checkpoint (MAE or encoder-only form)."""
    from specaware.model.published import model_from_published

    path = Path(path)
    payload = read_payload(path)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return _from_payload(payload, path).to(map_location)
    model, _ = model_from_published(payload, path)
    return model.to(map_location)
