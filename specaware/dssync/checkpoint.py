"""Per-rank DS-Sync state in a DeepSpeed checkpoint, so a resumed run equals the uninterrupted one.

At ZeRO stage 0 DeepSpeed writes one model-and-optimizer file from rank 0 and loads it into every rank. Under
DS-Sync that loses state: each replica steps its own optimizer on its own gradients, so the Adam moments
(and, with per-replica overflow decisions, the skipped-step count, the loss scale and the learning-rate
schedule position) differ between ranks, and the schedule position must continue where it stopped. So each
rank writes ``dssync_rank{RANK:05d}.pt`` next to DeepSpeed's files in the tag folder (written to a temporary
name, then renamed) and reads it back after DeepSpeed's own load. The model itself needs no per-rank file: the
checkpoint is taken after a global average, so every replica equals the saved consensus.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from specaware.dssync.hook import DSSyncHook

logger = logging.getLogger(__name__)


class DSSyncCheckpointError(RuntimeError):
    """A checkpoint's DS-Sync state cannot be restored here; the message names the file and the problem."""


def rank_state_path(tag_dir: str | Path, rank: int) -> Path:
    """Where rank ``rank`` keeps its DS-Sync state inside a checkpoint's tag folder."""
    return Path(tag_dir) / f"dssync_rank{rank:05d}.pt"


def save_rank_state(engine: Any, hook: DSSyncHook, save_dir: str | Path, tag: str) -> Path:
    """Write this rank's optimizer, scheduler and schedule position into ``save_dir/tag`` (atomically)."""
    path = rank_state_path(Path(save_dir) / tag, hook.rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "world": hook.world,
        "rank": hook.rank,
        "digest": hook.digest,
        "step": hook.step,
        "skipped_steps": int(engine.skipped_steps),
        "optimizer": engine.optimizer.state_dict(),
        "lr_scheduler": None if engine.lr_scheduler is None else engine.lr_scheduler.state_dict(),
    }
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)
    return path


def load_rank_state(
    engine: Any, hook: DSSyncHook, model_file: str | Path, *, optimizer: bool, lr_scheduler: bool
) -> None:
    """Restore what :func:`save_rank_state` wrote, next to DeepSpeed's ``model_file`` (after its load).

    A checkpoint without DS-Sync files (written by an all-reduce run, whose replicas and optimizers were
    identical) keeps DeepSpeed's state and starts the schedule at 0. A different world size or schedule is an
    error: the per-rank states would not belong to the same replicas.
    """
    path = rank_state_path(Path(model_file).parent, hook.rank)
    if not path.is_file():
        if not any(Path(model_file).parent.glob("dssync_rank*.pt")):
            logger.warning(
                "%s has no DS-Sync state (an all-reduce checkpoint): every replica starts from rank 0's "
                "optimizer state and the schedule from step 0",
                Path(model_file).parent,
            )
            return
        raise DSSyncCheckpointError(f"{path}: missing; the checkpoint was written by fewer ranks")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["world"] != hook.world:
        raise DSSyncCheckpointError(
            f"{path}: written by a DS-Sync run of {state['world']} ranks, this run has {hook.world}"
        )
    if state["digest"] != hook.digest:
        raise DSSyncCheckpointError(
            f"{path}: written with another DS-Sync config or schedule (digest {state['digest']}, "
            f"now {hook.digest}); resume with the same dssync section"
        )
    hook.step = int(state["step"])
    engine.skipped_steps = int(state["skipped_steps"])
    if optimizer:
        engine.optimizer.load_state_dict(state["optimizer"])
    if lr_scheduler and engine.lr_scheduler is not None and state["lr_scheduler"] is not None:
        engine.lr_scheduler.load_state_dict(state["lr_scheduler"])
