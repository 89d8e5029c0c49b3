"""Read a generated ≥1 GB AVIRIS-NG L1 product strip by strip: ours vs. np.memmap (limit) vs. rasterio tiles (peer).

    python benchmarks/read.py [--quick]

All three read the same bytes from the page cache (warmed first), best of N runs, in one process:
- limit: ``np.memmap`` copy of the same strips (the raw bytes, no conversion: the physical limit);
- ours: ``Scene.read_lines`` into one reused strip buffer: band-first float32, fill -> NaN, scale;
- peer: rasterio windowed reads of every 256 x 256 tile, all bands (the per-tile-window approach).
Last line: one JSON object with ``ours_mb_s, limit_mb_s, peer_mb_s`` and the ratios.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import rasterio
from rasterio.windows import Window

from benchmarks.common import Sampler, best_seconds, cached_product, warm_page_cache
from hyper400k.product import open_product

STRIP = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two timing repeats (≤ 60 s here)")
    parser.add_argument("--lines", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=640)
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    path = cached_product("aviris-ng", "L1", args.lines, args.samples)
    warm_page_cache(path)
    meta = open_product(path).meta
    size_mb = path.stat().st_size / 1e6
    strips = [(s, min(s + STRIP, meta.lines)) for s in range(0, meta.lines, STRIP)]
    buffer = np.empty((meta.bands, STRIP, meta.samples), dtype=np.float32)

    # Each repeat maps the file afresh, so both pay the same page-mapping cost of a first read.
    def ours() -> None:
        with open_product(path) as fresh:
            for start, stop in strips:
                fresh.read_lines(start, stop, out=buffer[:, : stop - start])

    def limit() -> None:
        raw = np.memmap(path, dtype="<f4", mode="r", shape=(meta.lines, meta.bands, meta.samples))
        for start, stop in strips:
            np.array(raw[start:stop])
        del raw

    def peer() -> None:
        with rasterio.open(path) as ds:
            for row in range(0, meta.lines, STRIP):
                for col in range(0, meta.samples, STRIP):
                    ds.read(
                        window=Window(col, row, min(STRIP, meta.samples - col), min(STRIP, meta.lines - row))
                    )

    limit_s, ours_s = best_seconds(limit, repeats), float("inf")
    with Sampler() as rss:
        ours_s = best_seconds(ours, repeats)
    limit_s = min(
        limit_s, best_seconds(limit, repeats)
    )  # interleaved, so drift on a shared machine hits both
    peer_s = best_seconds(peer, repeats)
    result = {
        "product_mb": round(size_mb, 1),
        "ours_mb_s": round(size_mb / ours_s, 1),
        "limit_mb_s": round(size_mb / limit_s, 1),
        "peer_mb_s": round(size_mb / peer_s, 1),
        "ours_over_limit": round(limit_s / ours_s, 3),
        "ours_over_peer": round(peer_s / ours_s, 3),
        "ours_peak_rss_growth_mb": round(rss.peak_mb, 1),
        "strip_buffer_mb": round(buffer.nbytes / 1e6, 1),
    }
    print(
        f"{path.name}: {size_mb:.0f} MB, {meta.lines} lines x {meta.samples} samples x {meta.bands} bands (BIL float32)"
    )
    for name in ("limit", "ours", "peer"):
        print(f"  {name:<6} {result[f'{name}_mb_s']:>8.1f} MB/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
