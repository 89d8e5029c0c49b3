"""Each replica its own optimizer: gradient clipping and the overflow decision taken on the rank, not the job.

Under DS-Sync a replica's gradient is its own (nothing reduces gradients), so the quantities DeepSpeed derives
from it must be too. DeepSpeed 0.19.8 at ZeRO stage 0 still runs a collective across the whole job in two
places every step, which would make every step a barrier over all W ranks again:

- fp32 with ``gradient_clipping`` > 0: ``engine.clip_fp32_gradients`` calls ``deepspeed.runtime.utils.
  clip_grad_norm_``, which all-reduces the norm over the data-parallel group (the world);
- bf16/fp16 (``FP16_Optimizer``, ``FP16_UnfusedOptimizer``): ``CheckOverflow.has_overflow`` all-reduces the
  overflow flag over the world *because* ``enable_backward_allreduce`` is off (0.19.8 ``runtime/utils.py``),
  and ``check_using_norm`` (fused Adam path) all-reduces it unconditionally. Their clipping norm
  (``get_weight_norm`` without an mpu) is already local.

:func:`make_step_local` replaces both on the engine instance with their local equivalents. A replica that
overflows skips its own step (and, under fp16, lowers its own loss scale); the others step. The DS-Sync
average still runs on every rank after every boundary, so the collectives stay aligned, and the skipped
replica is pulled back by the next average.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def make_step_local(engine: nn.Module) -> None:
    """Swap the engine's world-wide clipping norm and overflow check for per-replica ones (see module doc)."""
    from deepspeed.runtime.fp16.fused_optimizer import FP16_Optimizer
    from deepspeed.runtime.fp16.unfused_optimizer import FP16_UnfusedOptimizer

    max_norm = float(engine.gradient_clipping())
    module = engine.module

    def clip_local_gradients() -> torch.Tensor:
        # torch's clip_grad_norm_ is the same 2-norm DeepSpeed computes, minus the all-reduce.
        return nn.utils.clip_grad_norm_(module.parameters(), max_norm)

    engine.clip_fp32_gradients = clip_local_gradients
    optimizer = engine.optimizer
    if isinstance(optimizer, FP16_Optimizer | FP16_UnfusedOptimizer):
        optimizer.overflow_checker = _local_overflow_check(optimizer.overflow_checker)


def _local_overflow_check(checker: Any) -> Any:
    """A ``CheckOverflow`` of the same parameters whose decisions use only this rank's gradients."""
    from deepspeed.runtime.utils import CheckOverflow, is_invalid_grad_norm

    class LocalOverflowCheck(CheckOverflow):
        """``CheckOverflow`` without its all-reduces: DS-Sync replicas decide alone."""

        def has_overflow(self, params: Any, has_moe_params: Any = None) -> bool:
            return bool(self.has_overflow_serial(params))

        def check_using_norm(self, norm_group: Any, reduce_overflow: bool = True) -> bool:
            return any(is_invalid_grad_norm(norm) for norm in norm_group)

    local = LocalOverflowCheck.__new__(LocalOverflowCheck)
    local.__dict__.update(checker.__dict__)
    return local
