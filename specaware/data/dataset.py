"""``ShardDataset``: the streaming ``IterableDataset`` that feeds SpecAware (and any PyTorch training job).

Two modes of iteration:

* **resampled** (default, for training): every epoch yields exactly ``batches_per_epoch`` batches on every
  rank (DeepSpeed needs every rank to take the same number of steps). Each batch's group is drawn from the
  mixing probabilities; its samples come from that group's endless stream over the shards dealt to this rank
  and worker for this epoch (see :mod:`specaware.data.plan`). Everything is a function of ``(seed, epoch,
  rank, batch)``, so a run is reproducible, and resuming at step ``k`` (:meth:`ShardDataset.set_state`)
  starts every stream where the uninterrupted run would be: the positions are counts of earlier draws,
  whole shards are skipped by their sample counts, and the one shard a position falls in is entered by a
  header walk that seeks over member data. Nothing before step ``k`` is read or decoded.
* **single pass** (``resampled=False``, for evaluation): each rank reads its share of the shards once;
  samples go into one bucket per group (one bucket in pad mode) and a batch is emitted when a bucket fills;
  partial buckets are emitted at the end unless ``drop_last``. Ranks may get different batch counts.

The iterator yields ready batches, so use it with ``DataLoader(dataset, batch_size=None, num_workers=n)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from hyper400k.sample import Sample
from specaware.data.plan import (
    TAG_PASS,
    TAG_TRANSFORM,
    assign,
    group_draws,
    probabilities,
    rng,
    worker_batches,
)
from specaware.data.reader import ShardReader
from specaware.data.report import LoadReport, SkipCounters
from specaware.data.source import Shard, ShardSet, Source, open_shards
from specaware.data.streams import GroupStream
from specaware.data.transforms import Batch, BatchAssembler, TransformConfig

log = logging.getLogger("specaware.data")


@dataclass(frozen=True)
class LoaderConfig:
    """How batches are drawn.

    ``batch_size``: samples per batch. ``mode``: ``"bucket"`` (every batch from one sensor × level group,
    so one band count) or ``"pad"`` (groups mixed, bands padded to the batch's largest count, ``band_mask``
    marks the real ones). ``resampled``: endless sampling with a fixed epoch length (training) or one pass
    (evaluation). ``batches_per_epoch``: per rank, resampled mode; default: the selected samples divided by
    ``world_size * batch_size``. ``weights``: group mixing, see :func:`specaware.data.plan.probabilities`
    (e.g. ``"sensors"`` for equal sampling per sensor). ``seed``: all randomness. ``shuffle``: shard order in
    single-pass mode (resampled mode always shuffles). ``drop_last``: drop partial batches in single-pass
    mode. ``verify``: check each shard's sha256 against the index before first reading it (a full read of the
    shard). ``on_bad_shard``: ``"raise"`` or ``"skip"`` (log and count) a shard failing its checksum or
    unreadable or truncated. ``on_bad_sample``: ``"skip"`` (log and count) or ``"raise"`` a sample violating
    the sample schema.
    """

    batch_size: int = 8
    mode: Literal["bucket", "pad"] = "bucket"
    resampled: bool = True
    batches_per_epoch: int | None = None
    weights: str | Mapping[str, float] = "samples"
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = False
    verify: bool = False
    on_bad_shard: Literal["raise", "skip"] = "raise"
    on_bad_sample: Literal["skip", "raise"] = "skip"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.mode not in ("bucket", "pad"):
            raise ValueError(f"mode must be 'bucket' or 'pad', got {self.mode!r}")
        if self.batches_per_epoch is not None and self.batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be positive, got {self.batches_per_epoch}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        if self.on_bad_shard not in ("raise", "skip") or self.on_bad_sample not in ("raise", "skip"):
            raise ValueError("on_bad_shard and on_bad_sample must be 'raise' or 'skip'")


class ShardDataset(IterableDataset[Batch]):
    """Batches of hyper400k samples, ready for SpecAware.

    Each batch is a dict: ``image`` float32 (B, C, h, w) in physical units (or normalised), ``valid`` bool
    (B, h, w), ``wavelength`` and ``fwhm`` float32 (B, C) in nm, ``good_bands`` and ``band_mask`` bool (B, C)
    (``band_mask`` is all True in bucket mode, False on padding in pad mode), ``gsd`` float32 (B,) in metres
    (NaN when unknown), ``sensor``, ``level`` and ``key`` lists of B strings.

    ``rank`` and ``world_size`` default to the ``RANK`` and ``WORLD_SIZE`` environment variables (set by
    torchrun and the deepspeed launcher), else 0 and 1. Call :meth:`set_epoch` before each epoch (or
    :meth:`set_state` to resume); the state is shared with DataLoader workers, persistent ones included.
    Resuming reproduces the uninterrupted run exactly when seed, world size, ``num_workers``, batch size and
    the shard set are the same, and no sample was skipped as schema-violating before the resume point.
    """

    def __init__(
        self,
        shards: ShardSet | Source,
        config: LoaderConfig | None = None,
        transforms: TransformConfig | None = None,
        *,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        self.shards = shards if isinstance(shards, ShardSet) else open_shards(shards)
        self.config = config or LoaderConfig()
        self.transforms = transforms or TransformConfig()
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        if not self.shards.shards:
            raise ValueError("the shard set is empty")
        if self.config.verify:
            unverifiable = [str(s.path) for s in self.shards.shards if s.sha256 is None]
            if unverifiable:
                raise ValueError(f"verify=True but no index.json gives the sha256 of {unverifiable[:3]} ...")
        self._groups = self.shards.by_group()
        self.probabilities = probabilities(self.config.weights, self.shards.group_samples())
        self._assemble = BatchAssembler(self.transforms, self.shards.band_stats)
        self._assemble.require_stats(list(self.probabilities))
        drawn = sum(self.shards.group_samples()[group] for group in self.probabilities)
        self.batches_per_epoch = self.config.batches_per_epoch or max(
            1, drawn // (self.world_size * self.config.batch_size)
        )
        self._counters = SkipCounters()
        self._state = torch.zeros(2, dtype=torch.int64).share_memory_()
        self._warned_sharing = False

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch."""
        self.set_state(epoch, 0)

    def set_state(self, epoch: int, step: int) -> None:
        """Resume: the next iteration yields batches ``step ..`` of ``epoch`` (``step`` counts this rank's
        batches consumed in that epoch; resampled mode only)."""
        if epoch < 0 or step < 0:
            raise ValueError(f"epoch and step must be non-negative, got {epoch}, {step}")
        if step and not self.config.resampled:
            raise ValueError("resuming mid-epoch needs resampled=True (a single pass has no fixed schedule)")
        if step > self.batches_per_epoch:
            raise ValueError(f"step {step} is past the end of an epoch of {self.batches_per_epoch} batches")
        self._state[0], self._state[1] = epoch, step

    def report(self) -> LoadReport:
        """Samples and shards skipped so far, summed over this dataset's DataLoader workers."""
        return self._counters.report()

    def __len__(self) -> int:
        """Batches per epoch on this rank (resampled mode; a single pass has no length known in advance)."""
        if not self.config.resampled:
            raise TypeError("a single-pass ShardDataset has no length known in advance")
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, step = (int(v) for v in self._state)
        reader = ShardReader(
            self._counters,
            verify=self.config.verify,
            on_bad_shard=self.config.on_bad_shard,
            on_bad_sample=self.config.on_bad_sample,
        )
        if self.config.resampled:
            return self._resampled(reader, epoch, step, worker, workers)
        return self._single_pass(reader, epoch, worker, workers)

    def _resampled(
        self, reader: ShardReader, epoch: int, step: int, worker: int, workers: int
    ) -> Iterator[Batch]:
        config = self.config
        # After resuming at ``step``, DataLoader asks worker 0 first, so worker 0 plays the part of the worker
        # that owns batch ``step`` in the uninterrupted run, worker 1 the next one, and so on.
        logical = (worker + step) % workers
        first = worker_batches(step, logical, workers)
        last = worker_batches(self.batches_per_epoch, logical, workers)
        groups = {g: shards for g, shards in self._groups.items() if g in self.probabilities}
        readers = self.world_size * workers
        shared = [g for g, shards in groups.items() if len(shards) < readers]
        if shared and worker == 0 and not self._warned_sharing:
            log.warning(
                "groups %s have fewer shards than ranks x workers (%d): readers share them", shared, readers
            )
            self._warned_sharing = True
        dealt = assign(
            groups,
            seed=config.seed,
            epoch=epoch,
            rank=self.rank,
            world=self.world_size,
            worker=logical,
            workers=workers,
            shuffle=True,
            wrap=True,
        )
        seeds = {"seed": config.seed, "epoch": epoch, "rank": self.rank, "worker": logical}
        bucket = config.mode == "bucket"
        names, draws = group_draws(
            self.probabilities, batches=last, per_batch=1 if bucket else config.batch_size, **seeds
        )
        take = config.batch_size if bucket else 1
        consumed = np.bincount(draws[:first].ravel(), minlength=len(names)) * take
        streams: dict[int, GroupStream] = {}
        try:
            for j in range(first, last):
                samples: list[Sample] = []
                for index in draws[j]:
                    if index not in streams:
                        streams[index] = GroupStream(
                            dealt[names[index]],
                            reader,
                            group=names[index],
                            start=int(consumed[index]),
                            **seeds,
                        )
                    samples += streams[index].take(take)
                batch_index = j * workers + logical
                yield self._assemble(
                    samples,
                    rng(config.seed, TAG_TRANSFORM, epoch, self.rank, batch_index),
                    homogeneous=bucket,
                )
        finally:
            for stream in streams.values():
                stream.close()

    def _single_pass(self, reader: ShardReader, epoch: int, worker: int, workers: int) -> Iterator[Batch]:
        config = self.config
        dealt = assign(
            self._groups,
            seed=config.seed,
            epoch=epoch,
            rank=self.rank,
            world=self.world_size,
            worker=worker,
            workers=workers,
            shuffle=config.shuffle,
            wrap=False,
        )
        shards: list[Shard] = [shard for group in sorted(dealt) for shard in dealt[group]]
        if config.shuffle:
            order = rng(config.seed, TAG_PASS, epoch, self.rank, worker).permutation(len(shards))
            shards = [shards[i] for i in order]
        bucket = config.mode == "bucket"
        buckets: dict[str, list[Sample]] = {}
        emitted = 0

        def emit(samples: list[Sample]) -> Batch:
            nonlocal emitted
            seed = rng(config.seed, TAG_PASS, TAG_TRANSFORM, epoch, self.rank, worker, emitted)
            emitted += 1
            return self._assemble(samples, seed, homogeneous=bucket)

        for shard in shards:
            for sample in reader.samples(shard):
                name = f"{sample.meta['sensor']}-{sample.meta['level']}" if bucket else ""
                pending = buckets.setdefault(name, [])
                pending.append(sample)
                if len(pending) == config.batch_size:
                    yield emit(pending)
                    buckets[name] = []
        if not config.drop_last:
            for name in sorted(buckets):
                if buckets[name]:
                    yield emit(buckets[name])


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit values, else ``RANK`` / ``WORLD_SIZE`` from the environment, else 0 / 1; checked."""
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} / world size {world_size} is not a valid rank of the world")
    return rank, world_size
