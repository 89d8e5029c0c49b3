"""Which DeepSpeed settings DS-Sync can run under, and the error that names the setting when it cannot.

DS-Sync replaces the gradient all-reduce of plain data parallelism: every rank keeps a full replica that
drifts slightly from the others between group averages. So it needs ZeRO stage 0 (stages 1-3 partition
optimizer state, gradients or parameters across ranks, reduce gradients themselves, and assume identical
replicas) and no model split across ranks (pipeline, tensor, sequence or expert parallelism keep their own
collectives over the world).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn


class DSSyncUnsupportedError(RuntimeError):
    """DS-Sync cannot run with this DeepSpeed setting; the message names the setting to change."""


def _raise(reasons: list[str]) -> None:
    if reasons:
        raise DSSyncUnsupportedError(
            "DS-Sync needs plain data parallelism at ZeRO stage 0; unsupported: " + "; ".join(reasons)
        )


def check_deepspeed_config(ds_config: Mapping[str, Any]) -> None:
    """Refuse a DeepSpeed config dict before ``deepspeed.initialize`` (fail fast, before building the model).

    Pipeline parallelism is a property of the model (a ``PipelineModule``), so :func:`check_engine` catches
    it.
    """
    reasons = []
    stage = int((ds_config.get("zero_optimization") or {}).get("stage", 0))
    if stage:
        reasons.append(f"ZeRO stage {stage} (set zero_optimization.stage to 0)")
    autotp = int((ds_config.get("tensor_parallel") or {}).get("autotp_size", 0) or 0)
    if autotp > 1:
        reasons.append(f"tensor parallelism (tensor_parallel.autotp_size={autotp})")
    sequence = int(ds_config.get("sequence_parallel_size", 1) or 1)
    if sequence > 1:
        reasons.append(f"sequence parallelism (sequence_parallel_size={sequence})")
    if (ds_config.get("compile") or {}).get("deepcompile"):
        reasons.append("DeepCompile (compile.deepcompile), which reduces gradients inside the compiled graph")
    _raise(reasons)


def check_engine(engine: nn.Module) -> None:
    """Refuse a DeepSpeed engine DS-Sync cannot drive, naming every offending setting."""
    reasons = []
    stage = int(engine.zero_optimization_stage())
    if stage:
        reasons.append(f"ZeRO stage {stage} (set zero_optimization.stage to 0)")
    if engine.pipeline_parallelism:
        reasons.append("pipeline parallelism (the model is a PipelineModule)")
    if engine.mp_world_size > 1:
        reasons.append(f"tensor/model parallelism (mpu model-parallel size {engine.mp_world_size})")
    autotp = int(engine.autotp_size() or 0)
    if autotp > 1:
        reasons.append(f"tensor parallelism (tensor_parallel.autotp_size={autotp})")
    if engine.sequence_parallel_size > 1:
        reasons.append(f"sequence parallelism (sequence_parallel_size={engine.sequence_parallel_size})")
    if engine.has_moe_layers:
        reasons.append("expert parallelism (the model has MoE layers)")
    if engine.is_deepcompile_active():
        reasons.append("DeepCompile (compile.deepcompile), which reduces gradients inside the compiled graph")
    _raise(reasons)
