"""Sensor and processing-level text embeddings: six fixed 384-d vectors kept as buffers in the model.

The paper embeds a descriptive name of the sensor and of the processing level with a frozen sentence encoder
(all-MiniLM-L6-v2). Upstream recomputes them whenever the model is built, which needs the encoder weights (a hub
download). We compute the six vectors once and store them in the model's state dict, so building or loading a model
never touches the network:

- :func:`sentence_vectors` computes them with ``sentence-transformers`` when the package *and* the weights are
  available locally (hub access is forced offline);
- :func:`placeholder_vectors` gives documented fixed vectors otherwise.

Which kind is stored travels with the state dict (``TextEmbedding``'s extra state), so any checkpoint says whether it
carries the real sentence embeddings or the placeholders.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
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

SENTENCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
KIND_SENTENCE = "sentence-transformers/all-MiniLM-L6-v2"
KIND_PLACEHOLDER = "placeholder-sha256-unit-gaussian"
TEXT_DIM = 384


def placeholder_vectors(descriptions: Sequence[str], dim: int = TEXT_DIM) -> Tensor:
    """Fixed stand-ins for the sentence embeddings: one unit vector per description, (len, dim) float32.

    Each vector is a standard-normal draw from NumPy's PCG64 seeded with the first 8 bytes of the SHA-256 of the
    UTF-8 description, scaled to unit length (MiniLM embeddings are unit vectors too). They are placeholders: they
    carry no language semantics, only a distinct, reproducible (platform-independent) code per name; in 384
    dimensions any two are nearly orthogonal.
    """
    rows = []
    for text in descriptions:
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
        draw = np.random.default_rng(seed).standard_normal(dim)
        rows.append(draw / np.linalg.norm(draw))
    return torch.from_numpy(np.stack(rows).astype(np.float32))


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Hugging Face hub and transformers switched offline for the block; the environment is restored after."""
    saved = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(dict.fromkeys(saved, "1"))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def sentence_vectors(descriptions: Sequence[str], model_name: str = SENTENCE_MODEL) -> Tensor | None:
    """The real all-MiniLM-L6-v2 embeddings, (len, 384) float32, or ``None`` when the package or weights are absent.

    Never downloads: the lazy import and the model load run with the hub switched offline and ``local_files_only``,
    so a missing cache means ``None`` rather than a network request.
    """
    with _hub_offline():
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            return None
        try:
            encoder = SentenceTransformer(model_name, device="cpu", local_files_only=True)
        except (OSError, ValueError):
            return None
        vectors = encoder.encode(list(descriptions), convert_to_numpy=True, normalize_embeddings=True)
    return torch.from_numpy(np.asarray(vectors, dtype=np.float32))


def text_vectors(source: str = "auto") -> tuple[Tensor, Tensor, str]:
    """(sensor vectors (4, 384), level vectors (2, 384), kind) from ``source``.

    ``source``: ``"sentence-transformers"`` (error when unavailable), ``"placeholder"``, or ``"auto"`` (the sentence
    encoder when available locally, the placeholders otherwise).
    """
    if source not in ("auto", "sentence-transformers", "placeholder"):
        raise ValueError(
            f"unknown text-embedding source {source!r}; use auto, sentence-transformers or placeholder"
        )
    names = [*SENSOR_DESCRIPTIONS.values(), *LEVEL_DESCRIPTIONS.values()]
    if source != "placeholder":
        vectors = sentence_vectors(names)
        if vectors is not None:
            return vectors[: len(SENSORS)], vectors[len(SENSORS) :], KIND_SENTENCE
        if source == "sentence-transformers":
            raise RuntimeError(
                f"sentence-transformers or the {SENTENCE_MODEL} weights are not available locally "
                "(they are never downloaded); use source='placeholder'"
            )
    vectors = placeholder_vectors(names)
    return vectors[: len(SENSORS)], vectors[len(SENSORS) :], KIND_PLACEHOLDER


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
    """Sensor and level conditions: stored vectors -> one shared Linear 384 -> d/2 each -> concatenated (B, d)."""

    def __init__(self, dim: int, sensor_vectors: Tensor, level_vectors: Tensor, kind: str) -> None:
        super().__init__()
        self.register_buffer("sensor_vectors", sensor_vectors.clone())
        self.register_buffer("level_vectors", level_vectors.clone())
        self.kind = kind
        self.sensor_proj = nn.Linear(sensor_vectors.shape[1], dim // 2)
        self.level_proj = nn.Linear(level_vectors.shape[1], dim - dim // 2)

    def forward(self, sensor: Tensor, level: Tensor) -> Tensor:
        """``sensor``, ``level``: (B,) indices into :data:`SENSORS` / :data:`LEVELS` -> (B, d)."""
        return torch.cat(
            [self.sensor_proj(self.sensor_vectors[sensor]), self.level_proj(self.level_vectors[level])],
            dim=-1,
        )

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
