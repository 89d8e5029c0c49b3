"""The loader's schedule as pure arithmetic: no I/O, the same answer on every rank and worker.

* Shards are dealt per group: each epoch permutes a group's shards (seeded by seed, epoch, group) and deals
  them to ranks, then each rank's share to its DataLoader workers, so ranks and workers read disjoint
  shards. In resampled mode a group with fewer shards than readers is shared instead (every reader needs
  every group it may be asked for).
* A rank's batches ``0 .. N-1`` are split round-robin over its workers (batch ``i`` is worker ``i % W``'s),
  which is the order in which ``DataLoader`` collects them.
* Each worker draws, up front for the whole epoch, the group of every batch (bucket mode) or of every sample
  (pad mode) from the mixing probabilities; so the position of every group's stream at any batch is a count.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")

# Stream tags: every random decision draws from its own stream, so changing one never shifts another.
TAG_SHARDS, TAG_GROUPS, TAG_CYCLE, TAG_TRANSFORM, TAG_PASS = 1, 2, 3, 4, 5

WEIGHTINGS = ("samples", "groups", "sensors")


def rng(*words: int) -> np.random.Generator:
    """A generator seeded by a tuple of non-negative integers (NumPy's SeedSequence mixes them)."""
    return np.random.default_rng(np.random.SeedSequence(list(words)))


def group_id(group: str) -> int:
    """A stable integer for a group name (so seeds do not depend on which other groups are present)."""
    return zlib.crc32(group.encode())


def deal(items: Sequence[T], part: int, parts: int, *, wrap: bool) -> list[T]:
    """Part ``part`` of ``parts`` of ``items`` (every ``parts``-th item). With ``wrap`` and fewer items than
    parts, part ``p`` gets item ``p % len(items)`` instead of nothing."""
    if wrap and 0 < len(items) < parts:
        return [items[part % len(items)]]
    return list(items[part::parts])


def assign(
    groups: Mapping[str, Sequence[T]],
    *,
    seed: int,
    epoch: int,
    rank: int,
    world: int,
    worker: int,
    workers: int,
    shuffle: bool,
    wrap: bool,
) -> dict[str, list[T]]:
    """The shards of each group that ``worker`` of ``rank`` reads in ``epoch`` (groups it gets none of are
    left out)."""
    mine = {}
    for name, shards in groups.items():
        order = list(shards)
        if shuffle:
            permutation = rng(seed, TAG_SHARDS, epoch, group_id(name)).permutation(len(order))
            order = [order[i] for i in permutation]
        share = deal(deal(order, rank, world, wrap=wrap), worker, workers, wrap=wrap)
        if share:
            mine[name] = share
    return mine


def worker_batches(total: int, worker: int, workers: int) -> int:
    """How many of the batches ``0 .. total-1`` are ``worker``'s (batch ``i`` belongs to ``i % workers``)."""
    return (total - worker + workers - 1) // workers


def probabilities(weights: str | Mapping[str, float], samples: Mapping[str, int]) -> dict[str, float]:
    """Each group's share of draws.

    ``weights`` is ``"samples"`` (proportional to the group's sample count: every sample equally likely),
    ``"groups"`` (every sensor × level group equally), ``"sensors"`` (every sensor equally, its levels by
    sample count), or a mapping from group (``"aviris-ng-L1"``) or sensor (``"aviris-ng"``, shared by its
    levels in proportion to their samples) to a non-negative weight; groups the mapping does not name get 0.
    """
    sensor_of = {group: group.rpartition("-")[0] for group in samples}
    sensor_samples: dict[str, int] = {}
    for group, count in samples.items():
        sensor_samples[sensor_of[group]] = sensor_samples.get(sensor_of[group], 0) + count
    if weights == "samples":
        raw = {group: float(count) for group, count in samples.items()}
    elif weights == "groups":
        raw = {group: 1.0 for group in samples}
    elif weights == "sensors":
        raw = {group: samples[group] / sensor_samples[sensor_of[group]] for group in samples}
    elif isinstance(weights, str):
        raise ValueError(
            f"weights {weights!r}: use one of {WEIGHTINGS} or a mapping of group/sensor to weight"
        )
    else:
        unknown = sorted(set(weights) - set(samples) - set(sensor_samples))
        if unknown:
            raise ValueError(
                f"weights name {unknown}, which are neither groups {sorted(samples)} nor sensors"
            )
        if any(not np.isfinite(w) or w < 0 for w in weights.values()):
            raise ValueError(f"weights must be finite and non-negative, got {dict(weights)}")
        raw = {
            group: float(weights.get(group, 0.0))
            + float(weights.get(sensor_of[group], 0.0)) * samples[group] / sensor_samples[sensor_of[group]]
            for group in samples
        }
    raw = {group: weight for group, weight in raw.items() if weight > 0 and samples[group] > 0}
    total = sum(raw.values())
    if not total:
        raise ValueError(f"weights {weights!r} leave no group with samples to draw from")
    return {group: weight / total for group, weight in sorted(raw.items())}


def group_draws(
    probs: Mapping[str, float],
    *,
    seed: int,
    epoch: int,
    rank: int,
    worker: int,
    batches: int,
    per_batch: int,
) -> tuple[list[str], np.ndarray]:
    """The group names and a ``(batches, per_batch)`` array of indices into them: which group each batch
    (``per_batch`` = 1) or each sample of each batch is drawn from, for one worker's whole epoch."""
    names = sorted(probs)
    p = np.array([probs[name] for name in names])
    draws = rng(seed, TAG_GROUPS, epoch, rank, worker).choice(len(names), size=(batches, per_batch), p=p)
    return names, draws


def cycle_order(
    shards: Sequence[T], *, seed: int, epoch: int, rank: int, worker: int, group: str, cycle: int
) -> list[T]:
    """The order in which a worker reads its shards of a group in the ``cycle``-th pass over them (the first
    pass keeps the dealt order, which is already a permutation)."""
    if cycle == 0:
        return list(shards)
    permutation = rng(seed, TAG_CYCLE, epoch, rank, worker, group_id(group), cycle).permutation(len(shards))
    return [shards[i] for i in permutation]
