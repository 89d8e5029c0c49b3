"""The process groups a rank's DS-Sync schedule needs: only the ones it joins, with the job's timeout.

A plain ``torch.distributed.new_group`` is a collective over the whole job: every rank must call it for every
group, members or not. The hypercube at W = 1024, K = 2 has 10 rounds of 512 pairs, so that would be 5,120
job-wide calls at attach. Instead each rank creates only the groups it belongs to, with
``use_local_synchronization=True`` (only the members meet, in a barrier of their own): 10 groups per rank in
that example. Members must create their common groups in the same relative order, and every rank walks the
schedule's groups in one canonical order, which is deadlock-free (the earliest group still pending in that
order has all its members waiting on it).

Subgroups get the job's timeout (the one given to ``init_process_group``/``deepspeed.init_distributed``):
``new_group`` otherwise falls back to the library default (30 min for gloo), so a rank that dies would leave
its group partners hanging long after the job should have failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import torch
import torch.distributed as dist

from specaware.dssync.config import Group


def job_timeout() -> timedelta:
    """The timeout the default process group was created with (the library default if it cannot be read)."""
    from torch.distributed import distributed_c10d as c10d

    default = c10d._get_default_group()
    device = torch.device("cuda" if dist.get_backend(default) == "nccl" else "cpu")
    try:
        return default._get_backend(device).options._timeout
    except (AttributeError, RuntimeError):  # a backend without readable options (e.g. MPI)
        return c10d._get_default_timeout(dist.get_backend(default))


def groups_joined(groups: Iterable[Group], rank: int) -> list[Group]:
    """The groups of two or more ranks that contain ``rank``, in canonical order, without duplicates."""
    seen: dict[Group, None] = {}
    for group in groups:
        if len(group) > 1 and rank in group:
            seen.setdefault(group, None)
    return list(seen)


class ProcessGroups:
    """The process groups this rank joins among ``groups``; :attr:`created` counts its ``new_group`` calls.

    A group spanning the whole world reuses the default group instead of creating a second communicator.
    """

    def __init__(self, groups: Iterable[Group], world: int) -> None:
        if not dist.is_initialized():
            raise RuntimeError(
                "DS-Sync needs torch.distributed initialised (deepspeed.init_distributed) first"
            )
        if dist.get_world_size() != world:
            raise ValueError(f"the schedule is for {world} ranks but the world has {dist.get_world_size()}")
        self.rank = dist.get_rank()
        self.timeout = job_timeout()
        self.created = 0
        self._handles: dict[Group, dist.ProcessGroup] = {}
        whole_world = tuple(range(world))
        for group in groups_joined(groups, self.rank):
            if group == whole_world:
                self._handles[group] = dist.group.WORLD
                continue
            self._handles[group] = dist.new_group(
                list(group), timeout=self.timeout, use_local_synchronization=True
            )
            self.created += 1

    def handle(self, group: Group) -> dist.ProcessGroup:
        """The process group for ``group``, which must contain this rank."""
        try:
            return self._handles[group]
        except KeyError:
            raise ValueError(
                f"rank {self.rank} is not a member of group {group} (or it is not in the schedule)"
            ) from None
