"""Downstream use of SpecAware: dataset adapters and sampling protocols, segmentation / change-detection /
scene-classification heads, fine-tuning, linear probing, spectral baselines and evaluation metrics.

Entry points: :func:`finetune`, :func:`probe`, :func:`baseline`, :func:`evaluate` (each takes a
:class:`DownstreamConfig`, usually read from ``pipelines/configs/finetune_*.yaml`` / ``probe_*.yaml``),
:func:`run_seeds` (mean ± std over seeded splits), and the command line
``specaware {finetune,probe,baseline,evaluate} CONFIG [--seeds N]``.

The names are loaded from :mod:`specaware.downstream.runner` on first use (PEP 562), so importing the command
line module does not import torch and DeepSpeed.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DownstreamConfig", "baseline", "evaluate", "finetune", "probe", "run", "run_seeds"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("specaware.downstream.runner"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
