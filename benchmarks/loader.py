"""Streaming loader throughput on generated AVIRIS-NG L1 256 x 256 tiles: ours vs. raw tar read vs. one .npz per tile.

    python -m benchmarks.loader [--quick]

The shard set is a real dataset build (``hyper400k`` preset) of a generated AVIRIS-NG L1 product, cached under
``benchmarks/out/`` with the peer's files. Every file is evicted from the page cache and read back first (the
state in which a job finds files it reads from storage). Every contender delivers the same tiles as float32
tensors, whole (no crop), in one pass, through a ``DataLoader`` with 0, 1 and 2 workers (persistent, started
before timing):

- ours: ``ShardDataset`` in single-pass bucket mode, ``DataLoader(batch_size=None)``;
- limit: every shard file read raw into memory (``Path.read_bytes``) in this process: the bytes the loader
  must at least move, with no decoding. Expressed as the float32 MB/s it would deliver if decoding were free
  (tiles/s x float32 tile size), so all columns count the same output;
- peer: the published layout, one ``np.savez_compressed`` float16 file per tile, read by a map-style
  ``Dataset`` (``np.load`` + ``astype(float32)``) and a ``DataLoader`` with default collation.

Also shown (not in the ratios): ours with the training transforms (random 224 crop, flips, rot90), and the page
cache copied into one reused buffer (the memcpy ceiling: no page faults, which any fresh output pays). Ours
can beat the limit in-process: it maps the page cache instead of copying it into fresh memory. With workers,
every batch crosses to the training process in fresh shared memory, for ours and the peer alike.
Last line: one JSON object with ``ours_mb_s, limit_mb_s, peer_mb_s`` (best over worker counts), the ratios
and the per-worker figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import OUT, cached_product, warm_page_cache
from hyper400k.presets import get_preset
from hyper400k.sample import Sample
from hyper400k.shards import iter_encoded
from pipelines.build import BuildConfig, build
from specaware.data import LoaderConfig, ShardDataset, ShardSet, TransformConfig, open_shards

BATCH = 2
WORKERS = (0, 1, 2)
WHOLE_TILES = TransformConfig(crop=None, flips=False, rot90=False)


def shard_set(lines: int, samples: int) -> Path:
    """The build folder (re-running the build on an unchanged product redoes nothing)."""
    product = cached_product("aviris-ng", "L1", lines, samples)
    output = OUT / f"loader-build-{lines}x{samples}"
    config = BuildConfig(
        input=product.parent,
        output=output,
        preset=get_preset("hyper400k"),
        scheduler="synchronous",
        shard_bytes=200_000_000,
        progress=False,
    )
    if not build(config).ok:
        raise RuntimeError(f"the benchmark build in {output} failed")
    return output


def peer_files(shards: ShardSet, folder: Path) -> list[Path]:
    """One compressed float16 ``.npz`` per tile, written once from the same samples."""
    marker = folder / "files.json"
    if marker.is_file():
        return [folder / name for name in json.loads(marker.read_text())]
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for shard in shards.shards:
        for key, members in iter_encoded(shard.path):
            sample = Sample.decode(key, members)
            np.savez_compressed(folder / f"{key}.npz", data=sample.data, valid=sample.valid)
            names.append(f"{key}.npz")
    marker.write_text(json.dumps(names))
    return [folder / name for name in names]


def reread(path: Path) -> None:
    """Evict a file from the page cache and read it back: the state in which a training job finds shards it
    reads from storage (a file written moments ago sits in the cache in small pages, slower to map)."""
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())  # dirty pages cannot be evicted
        os.posix_fadvise(stream.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    warm_page_cache(path)


class NpzTiles(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The peer: a map-style dataset over one ``.npz`` per tile."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        with np.load(self.files[index]) as archive:
            return torch.from_numpy(archive["data"].astype(np.float32)), torch.from_numpy(archive["valid"])


def consume(batches: Iterable[Any]) -> tuple[int, int]:
    """Batches and float32 image bytes delivered (the data is not touched: as a training loop before .cuda())."""
    count = nbytes = 0
    for batch in batches:
        image = batch["image"] if isinstance(batch, dict) else batch[0]
        count += 1
        nbytes += image.numel() * image.element_size()
    return count, nbytes


@dataclass
class Contender:
    """One row of the table: ``run`` makes one full pass and returns (batches, float32 bytes) delivered."""

    name: str
    workers: str
    run: Callable[[], tuple[int, int]]
    rounds: int
    seconds: float = float("inf")
    delivered: tuple[int, int] = (0, 0)

    def time_once(self) -> None:
        start = time.perf_counter()
        self.delivered = self.run()
        self.seconds = min(self.seconds, time.perf_counter() - start)

    @property
    def batches_s(self) -> float:
        return self.delivered[0] / self.seconds

    @property
    def mb_s(self) -> float:
        return self.delivered[1] / 1e6 / self.seconds


def loader_run(
    dataset: Dataset[Any], workers: int, batch_size: int | None = None
) -> Callable[[], tuple[int, int]]:
    """One pass of a DataLoader whose (persistent) workers are started now. ``batch_size=None`` for ours (it
    yields batches), ``BATCH`` for the peer (default collation)."""
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0)
    next(iter(loader))
    return lambda: consume(loader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timing rounds (≤ 60 s here)")
    parser.add_argument("--lines", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=640)
    args = parser.parse_args()
    # Best of several rounds, every contender once per round, so that the shared machine's noise (which only
    # ever slows a run down) and memory-state effects hit all of them alike. The peer is ~10x slower per pass,
    # so it runs in fewer rounds.
    rounds, peer_rounds = (5, 2) if args.quick else (10, 4)
    started = time.perf_counter()
    build_dir = shard_set(args.lines, args.samples)
    shards = open_shards(build_dir)
    files = peer_files(shards, OUT / f"loader-peer-{args.lines}x{args.samples}")
    for path in [s.path for s in shards.shards] + files:
        reread(path)
    tiles = shards.samples
    bands, height, width = Sample.decode(*next(iter_encoded(shards.shards[0].path))).data.shape
    tile_bytes = bands * height * width * 4
    tar_mb = sum(s.path.stat().st_size for s in shards.shards) / 1e6
    buffer = np.empty(max(s.path.stat().st_size for s in shards.shards), dtype=np.uint8)

    def read_raw() -> tuple[int, int]:
        for shard in shards.shards:
            shard.path.read_bytes()
        return tiles // BATCH, tiles * tile_bytes

    def read_reused() -> tuple[int, int]:
        for shard in shards.shards:
            with open(shard.path, "rb", buffering=0) as stream:
                stream.readinto(memoryview(buffer))
        return tiles // BATCH, tiles * tile_bytes

    single_pass = LoaderConfig(batch_size=BATCH, resampled=False, shuffle=False)
    limit = Contender("limit: tar bytes read raw (float32-equivalent)", "-", read_raw, rounds)
    contenders = [limit, Contender("ceiling: page cache -> reused buffer (info)", "-", read_reused, rounds)]
    ours, peer = {}, {}
    for workers in WORKERS:
        dataset = ShardDataset(shards, single_pass, WHOLE_TILES)
        ours[workers] = Contender(
            "ours: ShardDataset, whole tiles", str(workers), loader_run(dataset, workers), rounds
        )
        run_peer = loader_run(NpzTiles(files), workers, batch_size=BATCH)
        peer[workers] = Contender("peer: one .npz per tile", str(workers), run_peer, peer_rounds)
        contenders += [ours[workers], peer[workers]]
    train_run = loader_run(ShardDataset(shards, single_pass, TransformConfig()), 0)
    contenders.append(Contender("ours: training transforms (info)", "0", train_run, rounds))
    prepared = time.perf_counter() - started
    for round_index in range(rounds):
        for contender in contenders:
            if round_index < contender.rounds:
                contender.time_once()

    print(
        f"{tiles} tiles of {bands}x{height}x{width} ({tile_bytes / 1e6:.0f} MB float32 each) in "
        f"{len(shards.shards)} shards ({tar_mb:.0f} MB); batch {BATCH}; best of {rounds} rounds "
        f"(peer {peer_rounds}); setup {prepared:.1f} s"
    )
    print(f"{'contender':<48}{'workers':>8}{'batches/s':>11}{'MB/s':>9}{'x limit':>9}")
    for contender in contenders:
        print(
            f"{contender.name:<48}{contender.workers:>8}{contender.batches_s:>11.2f}{contender.mb_s:>9.0f}"
            f"{contender.mb_s / limit.mb_s:>9.2f}"
        )
    best_ours = max(c.mb_s for c in ours.values())
    best_peer = max(c.mb_s for c in peer.values())
    summary = {
        "ours_mb_s": round(best_ours, 1),
        "limit_mb_s": round(limit.mb_s, 1),
        "peer_mb_s": round(best_peer, 1),
        "ours_vs_limit": round(best_ours / limit.mb_s, 3),
        "ours_vs_peer": round(best_ours / best_peer, 2),
        "limit_raw_tar_mb_s": round(tar_mb / limit.seconds, 1),
        "ceiling_mb_s": round(contenders[1].mb_s, 1),
        "per_workers": {
            str(w): {
                "ours_mb_s": round(ours[w].mb_s, 1),
                "ours_batches_s": round(ours[w].batches_s, 2),
                "peer_mb_s": round(peer[w].mb_s, 1),
                "peer_batches_s": round(peer[w].batches_s, 2),
            }
            for w in WORKERS
        },
        "ours_train_transforms_mb_s": round(contenders[-1].mb_s, 1),
        "tiles": tiles,
        "batch": BATCH,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
