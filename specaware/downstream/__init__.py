"""Downstream use of SpecAware: dataset adapters and sampling protocols, segmentation / change-detection /
scene-classification heads, fine-tuning, linear probing, spectral baselines and evaluation metrics.

Entry points: :func:`finetune`, :func:`probe`, :func:`baseline`, :func:`evaluate` (each takes a
:class:`DownstreamConfig`, usually read from ``pipelines/configs/finetune_*.yaml`` / ``probe_*.yaml``),
:func:`run_seeds` (mean ± std over seeded splits), and the command line
``specaware {finetune,probe,baseline,evaluate} CONFIG [--seeds N]``.
"""

from specaware.downstream.runner import (
    DownstreamConfig,
    baseline,
    evaluate,
    finetune,
    probe,
    run,
    run_seeds,
)

__all__ = ["DownstreamConfig", "baseline", "evaluate", "finetune", "probe", "run", "run_seeds"]
