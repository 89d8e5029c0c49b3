"""An endless stream of one group's samples for one worker in one epoch, startable at any position.

The stream passes over the worker's shards of the group again and again (each pass in a new seeded order).
Starting at sample ``n`` (resuming) costs no reading: whole passes and whole shards are skipped by their
sample counts, and within the one shard where ``n`` falls the reader seeks over member data by the headers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial

from hyper400k.sample import Sample
from specaware.data.plan import cycle_order
from specaware.data.reader import ShardReader
from specaware.data.source import Shard


class GroupStream:
    """Samples of ``shards`` (one group, one worker, one epoch) from position ``start`` on."""

    def __init__(
        self,
        shards: Sequence[Shard],
        reader: ShardReader,
        *,
        group: str,
        start: int,
        seed: int,
        epoch: int,
        rank: int,
        worker: int,
    ) -> None:
        self.shards = list(shards)
        self.group = group
        self._reader = reader
        self._order = partial(
            cycle_order, self.shards, seed=seed, epoch=epoch, rank=rank, worker=worker, group=group
        )
        self._samples = self._generate(start)

    def take(self, count: int) -> list[Sample]:
        return [next(self._samples) for _ in range(count)]

    def close(self) -> None:
        """Close the shard being read (the generator's open file)."""
        self._samples.close()

    def _generate(self, start: int) -> Iterator[Sample]:
        per_pass = sum(shard.samples for shard in self.shards)
        if per_pass == 0:
            raise ValueError(f"group {self.group}: the shards dealt to this worker hold no samples")
        cycle, skip = divmod(start, per_pass)
        while True:
            full_pass, found = skip == 0, 0
            for shard in self._order(cycle=cycle):
                if skip >= shard.samples:
                    skip -= shard.samples
                    continue
                for sample in self._reader.samples(shard, skip):
                    found += 1
                    yield sample
                skip = 0
            if full_pass and not found:
                names = ", ".join(str(shard.path) for shard in self.shards)
                raise RuntimeError(f"group {self.group}: a full pass over {names} gave no readable sample")
            cycle += 1
