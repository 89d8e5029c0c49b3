"""The DS-Sync hook: group-wise parameter averaging after each optimizer step, installed on DeepSpeed.

Attachment point (DeepSpeed 0.19.8 has no communication-hook API): the engine's gradient all-reduce is
switched off with ``engine.enable_backward_allreduce = False`` (checked in ``_backward_epilogue`` and in
unmanaged ``step()``), and the engine's post-step method ``_take_model_step`` is wrapped on the instance,
accepting ``*args, **kwargs`` because its signature changed between releases. That method runs once per
gradient-accumulation boundary, after the optimizer step, the low-precision refresh and ``zero_grad``, on
every rank - so every rank issues the same collectives in the same order. It runs whether or not an fp16 step
was skipped for overflow: averaging parameters that did not move is still correct, and the schedule position
stays identical on all ranks. Wrapping the instance (rather than asking users to construct an engine subclass,
which ``deepspeed.initialize`` does not let them choose) works on any engine ``deepspeed.initialize`` returns.
``save_checkpoint`` is wrapped too, so that every checkpoint holds the consensus (globally averaged) model;
DeepSpeed already requires all ranks to call it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch.distributed as dist
from torch import nn

from specaware.dssync.buckets import FlatBuckets
from specaware.dssync.compat import check_engine
from specaware.dssync.config import DSSyncConfig, Group
from specaware.dssync.groups import ProcessGroups
from specaware.dssync.replica import ReplicaState
from specaware.dssync.schedule import build_schedule

logger = logging.getLogger(__name__)


class DSSyncHook:
    """Averages a replica's parameters (masters) and buffers within its schedule group after each step.

    ``step`` counts averaging rounds (one per optimizer boundary); ``disagreements`` records ``(step, max
    relative distance to the mean)`` each time :meth:`disagreement` runs from :meth:`after_step`. Constructing
    the hook creates every process group of the schedule, so it is a collective: all ranks construct it, in
    the same order relative to their other collectives.
    """

    def __init__(self, replica: ReplicaState, config: DSSyncConfig) -> None:
        if not dist.is_initialized():
            raise RuntimeError(
                "DS-Sync needs torch.distributed initialised (deepspeed.init_distributed) first"
            )
        self.config = config
        self.replica = replica
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.schedule = build_schedule(self.world, config)
        self.groups = ProcessGroups(self.schedule)
        self.buckets = FlatBuckets(replica.averaged, int(config.bucket_mb * 2**20))
        self.step = 0
        self.disagreements: list[tuple[int, float]] = []

    def average(self) -> Group:
        """Average within this rank's group for the current step, advance the schedule; return the group."""
        group = self.schedule.group_of(self.rank, self.step)
        if len(group) > 1:
            self.buckets.average(self.groups.handle(group), len(group))
            self.replica.refresh()
        self.step += 1
        return group

    def global_average(self) -> None:
        """Average over the whole world (all ranks must call it): use before evaluation and checkpointing."""
        if self.world > 1:
            self.buckets.average(dist.group.WORLD, self.world)
            self.replica.refresh()

    def disagreement(self) -> float:
        """max over ranks of ||theta_r - mean|| / ||mean|| (all ranks must call it; one world all-reduce)."""
        return self.buckets.disagreement()

    def after_step(self) -> None:
        """Runs after each optimizer boundary: the group average (or the periodic global one), then health."""
        every = self.config.global_average_every
        if every and (self.step + 1) % every == 0:
            self.global_average()
            self.step += 1
        else:
            self.average()
        if self.config.disagreement_every and self.step % self.config.disagreement_every == 0:
            value = self.disagreement()
            self.disagreements.append((self.step, value))
            if self.rank == 0:
                logger.info("dssync step %d: replica disagreement %.3e", self.step, value)


def attach_dssync(engine: nn.Module, config: DSSyncConfig | Mapping[str, Any] | None) -> DSSyncHook | None:
    """Install DS-Sync on a DeepSpeed engine; ``None`` (nothing installed) when ``config`` is not enabled.

    ``config`` is a :class:`DSSyncConfig` or the ``dssync`` section of a training config. Refuses ZeRO stages
    1-3 and pipeline/tensor/sequence/expert parallelism
    (:class:`~specaware.dssync.compat.DSSyncUnsupportedError`). Collective: every rank calls it, right after
    ``deepspeed.initialize`` (which made the replicas identical).
    """
    parsed = config if isinstance(config, DSSyncConfig) else DSSyncConfig.from_dict(config)
    if not parsed.enabled:
        return None
    check_engine(engine)
    if getattr(engine, "dssync_hook", None) is not None:
        raise RuntimeError("DS-Sync is already attached to this engine")
    hook = DSSyncHook(ReplicaState.from_engine(engine), parsed)
    engine.enable_backward_allreduce = False
    engine._take_model_step = _then(engine._take_model_step, hook.after_step)
    engine.save_checkpoint = _first(engine.save_checkpoint, hook.global_average)
    engine.dssync_hook = hook
    return hook


def _then(method: Callable[..., Any], after: Callable[[], None]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        after()
        return result

    return wrapped


def _first(method: Callable[..., Any], before: Callable[[], None]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        before()
        return method(*args, **kwargs)

    return wrapped
