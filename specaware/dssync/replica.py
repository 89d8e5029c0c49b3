"""Which tensors DS-Sync averages for one model replica, and which copies must follow them.

DS-Sync averages the tensors the optimizer *updates*. In fp32 those are the model's parameters. Under
DeepSpeed's bf16/fp16 at ZeRO stage 0 (0.19.8: ``FP16_Optimizer`` with a fused Adam, ``FP16_UnfusedOptimizer``
otherwise, both also used for bf16) the optimizer updates fp32 *master* copies and then copies them into the
low-precision model parameters. Averaging the low-precision parameters instead would be overwritten by the
next master-to-model copy, and rounding the masters to bf16 would erase every update smaller than bf16's
resolution. So the masters are averaged, and the low-precision copies are refreshed from them afterwards
exactly as the optimizer does after its step. Floating-point module buffers (BatchNorm running statistics) are
averaged too; integer buffers (batch counters) are identical on every rank and left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class ReplicaState:
    """``averaged``: the tensors to average; ``copies``: (model tensor, master) pairs refreshed afterwards."""

    averaged: list[torch.Tensor]
    copies: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def refresh(self) -> None:
        """Copy each averaged master into its low-precision model tensor."""
        with torch.no_grad():
            for model_tensor, master in self.copies:
                model_tensor.copy_(master.view_as(model_tensor))

    @classmethod
    def from_module(cls, module: nn.Module) -> ReplicaState:
        """A plain (fp32 or autocast) module: its trainable parameters and floating-point buffers."""
        return cls(_unique([p for p in module.parameters() if p.requires_grad]) + _float_buffers(module))

    @classmethod
    def from_engine(cls, engine: nn.Module) -> ReplicaState:
        """A DeepSpeed engine at ZeRO stage 0: the master weights its optimizer updates, plus module buffers.

        Raises ``TypeError`` for an optimizer wrapper whose master weights this module does not know.
        """
        from deepspeed.runtime.fp16.fused_optimizer import FP16_Optimizer
        from deepspeed.runtime.fp16.unfused_optimizer import FP16_UnfusedOptimizer

        optimizer = engine.optimizer
        buffers = _float_buffers(engine.module)
        if isinstance(optimizer, FP16_Optimizer):
            masters = list(optimizer.fp32_groups_flat)
            return cls(masters + buffers, list(zip(optimizer.fp16_groups_flat, masters, strict=True)))
        if isinstance(optimizer, FP16_UnfusedOptimizer):
            pairs = [
                (model_param, master)
                for model_group, master_group in zip(
                    optimizer.fp16_groups, optimizer.fp32_groups, strict=True
                )
                for model_param, master in zip(model_group, master_group, strict=True)
            ]
            return cls([master for _, master in pairs] + buffers, pairs)
        if isinstance(optimizer, torch.optim.Optimizer):
            params = _unique(
                [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
            )
            return cls(params + buffers)
        raise TypeError(
            f"DS-Sync does not know where {type(optimizer).__name__} keeps the weights it updates; "
            "supported at "
            "ZeRO stage 0: a torch.optim.Optimizer (fp32 or torch autocast), FP16_Optimizer and "
            "FP16_UnfusedOptimizer (DeepSpeed fp16/bf16)"
        )


def _unique(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    seen: dict[int, torch.Tensor] = {}
    for tensor in tensors:
        seen.setdefault(id(tensor), tensor)
    return list(seen.values())


def _float_buffers(module: nn.Module) -> list[torch.Tensor]:
    return _unique([b for b in module.buffers() if b.is_floating_point()])
