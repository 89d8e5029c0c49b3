"""A single-node spawner: W local processes joined by gloo over the loopback interface.

For tests, benchmarks and CPU experiments where ``deepspeed``/``torchrun`` launchers are overkill. Each
process gets the environment those launchers set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR=127.0.0.1``, ``MASTER_PORT``), so ``deepspeed.init_distributed(dist_backend="gloo")`` or
``torch.distributed.init_process_group("gloo")`` works unchanged inside ``fn``. Only the loopback address is
used.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.multiprocessing as mp

R = TypeVar("R")

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port that was free on the loopback interface a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _entry(
    rank: int,
    fn: Callable[..., Any],
    world_size: int,
    port: int,
    threads: int,
    results: Any,
    args: tuple[Any, ...],
) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR=LOOPBACK,
        MASTER_PORT=str(port),
    )
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    torch.set_num_threads(threads)
    results.put((rank, fn(*args)))  # SimpleQueue writes synchronously: the result is out once this returns
    # Skip the interpreter's teardown once the result is out. A rank whose collective failed (a timeout, a
    # vanished peer) holds a gloo communicator in an error state, and destroying it at exit can end in
    # std::terminate (SIGABRT) when a peer's socket closes meanwhile: gloo has no abort for its pairs
    # (pytorch/pytorch#130345). That would turn a reported, expected failure into a crashed rank.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn(
    fn: Callable[..., R],
    world_size: int,
    *args: Any,
    timeout_s: float = 600.0,
    threads_per_rank: int = 1,
) -> list[R]:
    """Run ``fn(*args)`` in ``world_size`` fresh processes (rank = process index); return results by rank.

    ``fn`` and ``args`` must be picklable (a module-level function). A failing rank re-raises here with its
    traceback; after ``timeout_s`` every rank still running is terminated and ``TimeoutError`` raised, so a
    mismatched collective cannot hang the caller forever. ``threads_per_rank`` caps intra-op threads per
    process.
    """
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    processes = mp.start_processes(
        _entry,
        args=(fn, world_size, free_port(), threads_per_rank, results, args),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )
    collected: dict[int, R] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            while not results.empty():
                rank, value = results.get()
                collected[rank] = value
            if processes.join(timeout=0.05):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{world_size} spawned ranks did not finish within {timeout_s:.0f} s")
    finally:
        for process in processes.processes:
            if process.is_alive():
                process.terminate()
                process.join(5)
    while not results.empty():
        rank, value = results.get()
        collected[rank] = value
    missing = sorted(set(range(world_size)) - set(collected))
    if missing:
        raise RuntimeError(f"ranks {missing} exited without a result")
    return [collected[rank] for rank in range(world_size)]
