"""Shared benchmark plumbing: cached generated products, best-of timing, peak RSS sampling."""

from __future__ import annotations

import json
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


class PeakRss:
    """Samples this process's RSS every 10 ms while the block runs; ``peak_mb`` is the growth over the start."""

    def __enter__(self) -> PeakRss:
        self._process = psutil.Process()
        self._start = self._process.memory_info().rss
        self._peak = self._start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return (self._peak - self._start) / 1e6
