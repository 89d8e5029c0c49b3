"""Every process group a DS-Sync schedule needs, created once, collectively, in the same order on every rank.

``torch.distributed.new_group`` is a collective over the whole world: every rank must call it for every group,
members or not, in the same order, or ranks deadlock or pair up with the wrong communicator. Creating groups
on the fly per step is therefore impossible (and a random partition per step could need all C(W, K) groups),
so DS-Sync creates the schedule's fixed, finite set of groups here, at attach time, in the schedule's
canonical order.
"""

from __future__ import annotations

import torch.distributed as dist

from specaware.dssync.config import Group
from specaware.dssync.schedule import Schedule


class ProcessGroups:
    """The process groups of ``schedule``; :attr:`created` counts the ``new_group`` calls (one per group).

    A group spanning the whole world reuses the default group instead of creating a second communicator.
    """

    def __init__(self, schedule: Schedule) -> None:
        if not dist.is_initialized():
            raise RuntimeError(
                "DS-Sync needs torch.distributed initialised (deepspeed.init_distributed) first"
            )
        if dist.get_world_size() != schedule.world:
            raise ValueError(
                f"the schedule is for {schedule.world} ranks but the world has {dist.get_world_size()}"
            )
        self.rank = dist.get_rank()
        self.created = 0
        self._handles: dict[Group, dist.ProcessGroup] = {}
        whole_world = tuple(range(schedule.world))
        for group in schedule.groups():
            if group == whole_world:
                handle = dist.group.WORLD
            else:
                handle = dist.new_group(list(group))
                self.created += 1
            if self.rank in group:
                self._handles[group] = handle

    def handle(self, group: Group) -> dist.ProcessGroup:
        """The process group for ``group``, which must contain this rank."""
        try:
            return self._handles[group]
        except KeyError:
            raise ValueError(
                f"rank {self.rank} is not a member of group {group} (or it is not in the schedule)"
            ) from None
