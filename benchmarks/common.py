"""Shared benchmark plumbing: cached generated products, best-of timing, peak RSS and disk sampling."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from hyper400k.synth import generate

OUT = Path(__file__).resolve().parent / "out"


def cached_product(sensor: str, level: str, lines: int, samples: int, seed: int = 7) -> Path:
    """A generated product reused across runs (benchmarks/out is git-ignored)."""
    folder = OUT / f"{sensor}-{level}-{lines}x{samples}-s{seed}"
    marker = folder / "product.json"
    if marker.is_file():
        path = Path(json.loads(marker.read_text())["path"])
        if path.exists():
            return path
    path = generate(sensor, level, lines, samples, folder, seed=seed)
    marker.write_text(json.dumps({"path": str(path)}))
    return path


def warm_page_cache(path: Path) -> None:
    """Read the file once so every contender reads from the page cache (the shared machine's disk is noisy)."""
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


class Sampler:
    """Peak memory (and optionally disk) while a block runs, sampled on a thread every ``interval`` seconds.

    ``peak_rss``: the highest RSS seen, in bytes: of this process, or with ``children`` of this process plus
    every process it started (a local Dask cluster's workers). ``peak_mb``: that peak's growth over the RSS at
    the start, in MB (what a call costs beyond what the process already held). ``peak_disk``: with a
    ``folder``, the most bytes seen under it (files being written and renamed included)."""

    def __init__(self, *, children: bool = False, folder: Path | None = None, interval: float = 0.01) -> None:
        self.children = children
        self.folder = folder
        self.interval = interval
        self.peak_rss = 0
        self.peak_disk = 0
        self._start = 0
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._start = self._rss()
        self.peak_rss = self._start
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak_mb(self) -> float:
        return (self.peak_rss - self._start) / 1e6

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self._rss())
        if self.folder is not None:
            self.peak_disk = max(self.peak_disk, bytes_under(self.folder))

    def _rss(self) -> int:
        processes = (
            [self._process, *self._process.children(recursive=True)] if self.children else [self._process]
        )
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue  # a child that exited between the listing and the read holds no memory
        return total


def bytes_under(folder: Path) -> int:
    """Bytes of every file under ``folder`` (files renamed or deleted during the walk are skipped)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue  # renamed or deleted since the walk listed it (temp files, spools)
    return total
