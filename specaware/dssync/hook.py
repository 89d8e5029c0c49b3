"""The DS-Sync hook: group-wise parameter averaging after each optimizer step, installed on DeepSpeed.

Attachment point (DeepSpeed 0.19.8 has no communication-hook API): the engine's gradient all-reduce is
switched off with ``engine.enable_backward_allreduce = False`` (checked in ``_backward_epilogue`` and in
unmanaged ``step()``), the clipping norm and overflow decision are made per replica
(:mod:`specaware.dssync.local`), and the engine's post-step method ``_take_model_step`` is wrapped on the
instance, accepting ``*args, **kwargs`` because its signature changed between releases. That method runs once
per gradient-accumulation boundary, after the optimizer step, the low-precision refresh and ``zero_grad``, on
every rank - so every rank issues the same collectives in the same order. It runs whether or not a step was
skipped for overflow: averaging parameters that did not move is still correct, and the schedule position stays
identical on all ranks. Wrapping the instance (rather than asking users to construct an engine subclass, which
``deepspeed.initialize`` does not let them choose) works on any engine ``deepspeed.initialize`` returns.

Exports hold the consensus: ``save_checkpoint``, ``save_16bit_model`` (and its alias ``save_fp16_model``)
average over the whole job first (DeepSpeed already requires every rank to call them). ``save_checkpoint``
also writes each rank's optimizer state and the schedule position (:mod:`specaware.dssync.checkpoint`), and
``load_checkpoint`` restores them, so a resumed run continues exactly where the uninterrupted one would be.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch.distributed as dist
from torch import nn

from specaware.dssync.agreement import check_agreement
from specaware.dssync.buckets import FlatBuckets
from specaware.dssync.compat import check_engine
from specaware.dssync.config import DSSyncConfig, Group
from specaware.dssync.groups import ProcessGroups
from specaware.dssync.local import make_step_local
from specaware.dssync.replica import ReplicaState
from specaware.dssync.schedule import HierarchicalSchedule, build_schedule

logger = logging.getLogger(__name__)


class DSSyncCommError(RuntimeError):
    """A DS-Sync collective failed or timed out; the message names the step, the stage and the group."""


class DSSyncHook:
    """Averages a replica's parameters (masters) and buffers within its schedule group after each step.

    ``step`` counts averaging rounds (one per optimizer boundary); ``disagreements`` records ``(step, max
    relative distance to the mean)`` each time :meth:`disagreement` runs from :meth:`after_step`. Constructing
    the hook checks that every rank has the same config and schedule (:attr:`digest`) and creates the process
    groups this rank joins, so it is a collective: all ranks construct it, in the same order relative to their
    other collectives.
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
        self.digest = check_agreement(config, self.schedule)
        self.groups = ProcessGroups(self.schedule.groups_of(self.rank), self.world)
        shards = self.schedule.ranks_per_node if isinstance(self.schedule, HierarchicalSchedule) else 1
        self.buckets = FlatBuckets(replica.averaged, int(config.bucket_mb * 2**20), shards)
        self.step = 0
        self.disagreements: list[tuple[int, float]] = []

    def average(self) -> Group:
        """Average for the current step, advance the schedule; return the group this rank averaged with.

        Under ``hierarchical`` the returned group is the cross-node one (the rail group of this step).
        """
        if isinstance(self.schedule, HierarchicalSchedule):
            node = self.schedule.node_group(self.rank)
            group = self.schedule.rail_group(self.rank, self.step)
            with self._context("hierarchical average", f"node {list(node)}, rail {list(group)}"):
                self.buckets.average_sharded(
                    self.groups.handle(node) if len(node) > 1 else None,
                    len(node),
                    self.groups.handle(group) if len(group) > 1 else None,
                    len(group),
                )
                self.replica.refresh()
        else:
            group = self.schedule.group_of(self.rank, self.step)
            if len(group) > 1:
                with self._context("group average", str(list(group))):
                    self.buckets.average(self.groups.handle(group), len(group))
                    self.replica.refresh()
        self.step += 1
        return group

    def global_average(self) -> None:
        """Average over the whole world (all ranks must call it): use before evaluation and checkpointing."""
        if self.world > 1:
            with self._context("global average", "the whole job"):
                self.buckets.average(dist.group.WORLD, self.world)
                self.replica.refresh()

    def disagreement(self) -> float:
        """max over ranks of ||theta_r - mean|| / ||mean|| (all ranks must call it; one world all-reduce)."""
        with self._context("disagreement measurement", "the whole job"):
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

    @contextmanager
    def _context(self, stage: str, group: str) -> Iterator[None]:
        """Re-raise a failed collective with the DS-Sync step, stage, rank and group it belonged to."""
        try:
            yield
        except RuntimeError as error:  # gloo/NCCL errors and timeouts (DistBackendError is a RuntimeError)
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DSSyncCommError(
                f"DS-Sync step {self.step}: {stage} on rank {self.rank} in group {group} failed "
                f"(timeout {self.groups.timeout}): {first_line}"
            ) from error


def attach_dssync(engine: nn.Module, config: DSSyncConfig | Mapping[str, Any] | None) -> DSSyncHook | None:
    """Install DS-Sync on a DeepSpeed engine; ``None`` (nothing installed) when ``config`` is not enabled.

    ``config`` is a :class:`DSSyncConfig` or the ``dssync`` section of a training config. Refuses ZeRO stages
    1-3 and pipeline/tensor/sequence/expert parallelism
    (:class:`~specaware.dssync.compat.DSSyncUnsupportedError`). Collective: every rank calls it, right after
    ``deepspeed.initialize`` (which made the replicas identical) and before ``load_checkpoint``.
    """
    from specaware.dssync.checkpoint import load_rank_state, save_rank_state

    parsed = config if isinstance(config, DSSyncConfig) else DSSyncConfig.from_dict(config)
    if not parsed.enabled:
        return None
    check_engine(engine)
    if getattr(engine, "dssync_hook", None) is not None:
        raise RuntimeError("DS-Sync is already attached to this engine")
    hook = DSSyncHook(ReplicaState.from_engine(engine), parsed)
    engine.enable_backward_allreduce = False
    make_step_local(engine)
    engine._take_model_step = _then(engine._take_model_step, hook.after_step)

    save_checkpoint = engine.save_checkpoint
    load_checkpoint = engine.load_checkpoint

    @functools.wraps(save_checkpoint)
    def save_consensus_checkpoint(*args: Any, **kwargs: Any) -> Any:
        bound = inspect.signature(save_checkpoint).bind(*args, **kwargs)
        hook.global_average()
        tag = bound.arguments.get("tag")
        tag = f"global_step{engine.global_steps}" if tag is None else str(tag)
        save_rank_state(engine, hook, bound.arguments["save_dir"], tag)
        return save_checkpoint(*args, **kwargs)

    @functools.wraps(load_checkpoint)
    def load_with_rank_state(*args: Any, **kwargs: Any) -> Any:
        bound = inspect.signature(load_checkpoint).bind(*args, **kwargs)
        path, client_state = load_checkpoint(*args, **kwargs)
        if path is not None:
            load_rank_state(
                engine,
                hook,
                path,
                optimizer=bound.arguments.get("load_optimizer_states", True)
                and not bound.arguments.get("load_module_only", False),
                lr_scheduler=bound.arguments.get("load_lr_scheduler_states", True)
                and not bound.arguments.get("load_module_only", False),
            )
        return path, client_state

    engine.save_checkpoint = save_consensus_checkpoint
    engine.load_checkpoint = load_with_rank_state
    engine.save_16bit_model = _first(engine.save_16bit_model, hook.global_average)
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
