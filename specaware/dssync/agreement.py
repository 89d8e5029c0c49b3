"""At attach, every rank proves it runs the same DS-Sync config and schedule before any group is used.

Ranks that disagree (a different seed, group size or world view) would issue collectives on different
groups and hang forever, with nothing in the log. So each rank hashes its parsed config together with the
schedule it derived, the ranks gather the digests once (one small collective over the job, at attach only),
and a mismatch raises :class:`DSSyncMismatchError` on every rank naming the ranks that differ and the keys in
which they differ from rank 0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import torch.distributed as dist

from specaware.dssync.config import DSSyncConfig


class DSSyncMismatchError(RuntimeError):
    """Ranks attached DS-Sync with different configs or schedules; the message names the ranks and keys."""


def fingerprint(config: DSSyncConfig, schedule: Any) -> dict[str, Any]:
    """What every rank must agree on: the config's fields and a digest of the schedule's partitions."""
    fields = json.loads(json.dumps(dataclasses.asdict(config), default=list))
    partitions = repr((schedule.kind, schedule.world, schedule.partitions)).encode()
    fields["schedule_digest"] = hashlib.sha256(partitions).hexdigest()[:16]
    return fields


def digest(fields: dict[str, Any]) -> str:
    """A short stable hash of :func:`fingerprint`'s output."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def check_agreement(config: DSSyncConfig, schedule: Any) -> str:
    """Gather every rank's fingerprint; return the common digest or raise :class:`DSSyncMismatchError`."""
    mine = fingerprint(config, schedule)
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (digest(mine), mine))
    reference_digest, reference = gathered[0]
    differing = [rank for rank, (other, _) in enumerate(gathered) if other != reference_digest]
    if differing:
        keys = sorted(
            {
                key
                for rank in differing
                for key in set(reference) | set(gathered[rank][1])
                if reference.get(key) != gathered[rank][1].get(key)
            }
        )
        detail = "; ".join(
            f"rank {rank}: " + ", ".join(f"{key}={gathered[rank][1].get(key)!r}" for key in keys)
            for rank in differing[:8]
        )
        raise DSSyncMismatchError(
            f"DS-Sync config differs between ranks: ranks {differing} disagree with rank 0 on "
            f"{', '.join(keys)} (rank 0: "
            + ", ".join(f"{key}={reference.get(key)!r}" for key in keys)
            + f"; {detail})"
        )
    return reference_digest
