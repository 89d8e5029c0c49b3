"""Counting what the loader skipped, across DataLoader worker processes.

Workers run on copies of the dataset, so plain attributes would stay in the workers. The counts live in a small
shared-memory tensor instead (one row per process, so no two processes ever write the same cell): the
dataset object in the training process sums them, whatever ``num_workers`` is. Each skip is also logged with
the shard and the reason (logger ``specaware.data``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch.utils.data import get_worker_info

log = logging.getLogger("specaware.data")

# Row 0 is the process that owns the dataset; worker w writes row 1 + w. Counts stay exact for up to
# _ROWS - 1 workers per DataLoader (beyond that, rows are shared and increments may race).
_ROWS = 1024
_SAMPLES, _SHARDS = 0, 1


@dataclass(frozen=True)
class LoadReport:
    """What the loader skipped so far: samples violating the sample schema, and shards that failed (checksum
    mismatch, truncation, unreadable) under ``on_bad_shard="skip"``."""

    skipped_samples: int
    skipped_shards: int


class SkipCounters:
    """Skip counts shared between a dataset object and the DataLoader workers that copy it."""

    def __init__(self) -> None:
        self._table = torch.zeros((_ROWS, 2), dtype=torch.int64).share_memory_()

    def sample_skipped(self, shard: str, problem: str) -> None:
        log.warning("skipped a sample of %s: %s", shard, problem)
        self._add(_SAMPLES)

    def shard_skipped(self, shard: str, problem: str) -> None:
        log.warning("skipped (the rest of) shard %s: %s", shard, problem)
        self._add(_SHARDS)

    def report(self) -> LoadReport:
        totals = self._table.sum(dim=0)
        return LoadReport(skipped_samples=int(totals[_SAMPLES]), skipped_shards=int(totals[_SHARDS]))

    def _add(self, column: int) -> None:
        info = get_worker_info()
        row = 0 if info is None else 1 + info.id % (_ROWS - 1)
        self._table[row, column] += 1
