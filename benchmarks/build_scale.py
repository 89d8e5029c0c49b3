"""The build at scale: wall time per stage, products/s, peak RSS, disk ÷ corpus; and the metadata path at
Hyper-400K size.

    python -m benchmarks.build_scale [--quick] [--sizes N ...] [--rounds R]

Part 1 builds N generated AVIRIS-NG L1 products (N = 12, 48, 192; ``--quick``: 12, 48) on a LocalCluster of
1 and 2 workers, started before the build with the build's worker preload (its start-up, imports included,
is reported apart). Each N is built ``R`` times (default 2) on 1 and on 2 workers, alternately, and the
faster build of each is kept: on a shared machine the neighbours' load changes by the minute, and the
fastest run is the one they disturbed least (every run's wall time is reported too). Per kept run: seconds
per stage (from the build's stage messages), products/s, the mean seconds of a tiling and a packing task and
each worker's busy share (the scheduler's task stream), the load average before the run, the share of
worker time spent packing (sum of the packing tasks' seconds ÷ wall time × workers), the CPU seconds of the
client process (planning, scheduling, routing records, the catalog and the report), and the bytes the
finished build holds ÷ the bytes of its shards.

One more build per N × workers, whose time is not kept, samples every 0.05 s the peak RSS of the client plus
its workers (process tree) and the peak bytes under the build folder ÷ the bytes of the finished shards
(the "no second copy" figure). The sampling is kept out of the timed runs: its walk of the process tree and
the build folder costs the client ~10 ms a sample, CPU the workers share on a small machine.

The ceiling: the tiling of the first 48 products (fewer when every N is smaller), by one plain process and
then split between two running at once (no Dask, no packing, no catalog), the faster of ``R`` alternating
rounds each. Its ratio is the most two workers can get out of this machine for this work; the build's
speedup is set against it.

Part 2 writes one generation's index, patch table and catalog for 13,040 products and 400,000 patches from
synthetic records (a real product's metadata, renamed and moved, each patch its own footprint; no pixels),
in a fresh process whose own peak RSS is reported (the records included, as a build holds them), always at
full size.

Last line: one JSON object with ``runs`` (the kept run per N × workers), ``speedup_2_workers`` (per N, of the
kept runs' wall times), ``walls_s`` (every run's wall time), ``parallel_ceiling``, ``metadata``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.common import OUT, Sampler, bytes_under

LINES, SAMPLES, TILE = 128, 96, 32
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # set to 1 by dask's nanny
HYPER400K_PRODUCTS, HYPER400K_PATCHES = 13_040, 400_000
SAMPLE_INTERVAL = 0.05  # seconds between RSS and disk samples: a window's packing lasts ~0.3 s here
CEILING_PRODUCTS = 48  # products tiled for the two-process ceiling: ~10 s of work for one process here


def products(n: int) -> Path:
    """A folder holding the first ``n`` of a cached set of generated products (one folder each, hard-linked)."""
    from hyper400k.synth import generate

    pool = OUT / "build-scale-products"
    for seed in range(n):
        folder = pool / f"p{seed:04d}"
        if not (folder / "done").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            generate("aviris-ng", "L1", LINES, SAMPLES, folder, seed=1000 + seed)
            (folder / "done").write_text("")
    chosen = OUT / f"build-scale-input-{n}"
    shutil.rmtree(chosen, ignore_errors=True)
    chosen.mkdir(parents=True)
    for seed in range(n):
        (chosen / f"p{seed:04d}").mkdir()
        for path in (pool / f"p{seed:04d}").iterdir():
            os.link(path, chosen / f"p{seed:04d}" / path.name)
    return chosen


def run_build(n: int, workers: int, *, sample: bool = False) -> dict[str, Any]:
    """One build of ``n`` products on ``workers`` workers; its figures. With ``sample``, also its peak RSS and
    disk, sampled every SAMPLE_INTERVAL seconds (a run whose time is not kept: the sampling costs CPU)."""
    from dask.distributed import Client, LocalCluster, get_task_stream

    from hyper400k.presets import get_preset
    from pipelines.build import WORKER_PRELOAD, BuildConfig, build
    from pipelines.generation import load_committed

    inputs = products(n)
    output = OUT / f"build-scale-{n}-{workers}"
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    marks: list[tuple[str, float]] = []
    began = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            preload=[WORKER_PRELOAD],  # as the build's own cluster does: imports are paid at start-up
        ) as cluster,
        Client(cluster) as client,
        (
            Sampler(children=True, folder=output, interval=SAMPLE_INTERVAL)
            if sample
            else contextlib.nullcontext()
        ) as sampler,
    ):
        threads_env = client.run(lambda: {k: os.environ.get(k) for k in THREAD_ENV})
        config = BuildConfig(
            input=inputs,
            output=output,
            preset=get_preset("hyper400k", tile=TILE),
            scheduler=cluster.scheduler_address,
            shard_bytes=50_000_000,
            progress=False,
            window_products=8,
        )
        load_before = os.getloadavg()[0]
        start, start_epoch, client_cpu = time.perf_counter(), time.time(), time.process_time()
        with get_task_stream(client) as stream:
            result = build(config, on_stage=lambda message: marks.append((message, time.perf_counter())))
        wall, client_cpu = time.perf_counter() - start, time.process_time() - client_cpu
    if not result.ok:
        raise RuntimeError(f"build failed: {result.failures[:2]}")
    stages: dict[str, float] = {}
    ends = [t for _, t in marks[1:]] + [start + wall]
    for (message, stage_start), stage_end in zip(marks, ends, strict=True):
        name = _stage_name(message)
        stages[name] = round(stages.get(name, 0.0) + stage_end - stage_start, 3)
    committed = load_committed(output)
    assert committed is not None
    corpus = committed.index["total_bytes"]
    pack_seconds = sum(
        json.loads((output / "work" / "windows" / f"{w['id']}.json").read_text()).get("seconds", 0.0)
        for w in committed.windows
    )
    figures = {
        "products": n,
        "workers": workers,
        "cluster_start_s": round(start - began, 2),
        "wall_s": round(wall, 2),
        "stages_s": stages,
        "products_per_s": round(n / wall, 2),
        "client_cpu_s": round(client_cpu, 2),
        "packing_share_of_worker_time": round(pack_seconds / (wall * workers), 3),
        "packing_s": round(pack_seconds, 2),
        **_task_figures(stream.data, start_epoch, wall, workers),
        "load_average_before": round(load_before, 1),
        "worker_thread_env": sorted({json.dumps(env, sort_keys=True) for env in threads_env.values()}),
        "corpus_mb": round(corpus / 1e6, 1),
        "disk_end_over_corpus": round(bytes_under(output) / corpus, 3),
    }
    if sample:
        figures["peak_rss_mb_client_and_workers"] = round(sampler.peak_rss / 1e6)
        figures["disk_peak_over_corpus"] = round(sampler.peak_disk / corpus, 3)
    shutil.rmtree(output)  # the next build's disk figures must not count this one (and N = 192 is ~2 GB)
    return figures


def _tile_all(jobs: list[Any]) -> float:
    """Seconds this process takes to tile ``jobs`` one after the other (a pool process of the ceiling)."""
    from pipelines.product_task import run_product

    start = time.perf_counter()
    for job in jobs:
        run_product(job)
    return time.perf_counter() - start


def parallel_ceiling(n: int, rounds: int) -> dict[str, Any]:
    """What two processes get out of this machine against one, for the build's own tiling work: the first
    ``n`` products tiled by one plain process, then split between two running at once (spawned and warmed
    beforehand, no Dask, no packing, no catalog). Alternating ``rounds`` times, the faster of each is kept.
    Its ratio is the most any two-worker build can reach here: where the machine's two CPUs share execution
    units or memory bandwidth (or its neighbours take some), it falls short of 2."""
    from hyper400k.presets import get_preset
    from pipelines.product_task import ProductJob

    inputs = products(n)
    data = sorted(
        p for folder in sorted(inputs.iterdir()) for p in folder.iterdir() if p.name.endswith("_img")
    )
    work = OUT / "build-scale-ceiling"
    preset = get_preset("hyper400k", tile=TILE)
    jobs = [ProductJob(str(path), path.name, path.name[:18], "train", preset, str(work)) for path in data]
    context = multiprocessing.get_context("spawn")
    walls: dict[int, list[float]] = {1: [], 2: []}
    with context.Pool(2) as pool:
        pool.map(_tile_all, [jobs[:1], jobs[1:2]])  # imports and first-call set-up, in both processes
        for _ in range(rounds):
            start = time.perf_counter()
            pool.apply(_tile_all, (jobs,))
            walls[1].append(time.perf_counter() - start)
            start = time.perf_counter()
            pool.map(_tile_all, [jobs[0::2], jobs[1::2]], chunksize=1)
            walls[2].append(time.perf_counter() - start)
    shutil.rmtree(work, ignore_errors=True)
    best = {workers: min(seconds) for workers, seconds in walls.items()}
    return {
        "products": n,
        "one_process_s": round(best[1], 2),
        "two_processes_s": round(best[2], 2),
        "ratio": round(best[1] / best[2], 2),
        "walls_s": {str(k): [round(v, 2) for v in seconds] for k, seconds in walls.items()},
    }


def _task_figures(tasks: list[dict[str, Any]], start: float, wall: float, workers: int) -> dict[str, Any]:
    """What the workers did, from the scheduler's task stream: the mean compute seconds of a tiling and of a
    packing task, and the share of the wall time each worker spent computing. Busy workers whose tasks take
    longer with two than with one are sharing cores; idle ones would be waiting on something serial. Also when
    the first task started, counted from the build's start (the scheduler's clock is wall time, ``start`` is
    converted to it by the caller)."""
    seconds: dict[str, list[float]] = {"product": [], "pack": []}
    busy: dict[str, float] = {}
    first = min(
        (s["start"] for t in tasks for s in t["startstops"] if s["action"] == "compute"), default=start
    )
    for task in tasks:
        compute = sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")
        kind = str(task["key"]).split("-", 1)[0]
        if kind in seconds:
            seconds[kind].append(compute)
        busy[task["worker"]] = busy.get(task["worker"], 0.0) + compute
    return {
        "tile_task_mean_s": round(sum(seconds["product"]) / max(len(seconds["product"]), 1), 3),
        "pack_task_mean_s": round(sum(seconds["pack"]) / max(len(seconds["pack"]), 1), 3),
        "worker_busy_share": sorted(round(b / wall, 3) for b in busy.values()),
        "workers_seen": len(busy) or workers,
        "first_task_after_s": round(first - start, 2),
    }


def _stage_name(message: str) -> str:
    """A stage message without its counts: ``tiling and packing 6 windows of 48 products`` -> ``tile_and_pack``."""
    for prefix, name in (
        ("discovering", "discover"),
        ("tiling and packing", "tile_and_pack"),
        ("writing generation", "write_index"),
        ("writing the STAC catalog", "write_catalog"),
        ("committed generation", "remove_unused"),
        ("removing files", "remove_unused"),
        ("writing the report", "report"),
    ):
        if message.startswith(prefix):
            return name
    return message


# ------------------------------------------------------------------------------------- metadata path


def synthetic_records(products: int, patches: int) -> list[dict[str, Any]]:
    """``products`` build records from one real product's record, renamed, moved and re-dated, with
    ``patches`` patch rows in all (no pixels: only what the metadata path reads)."""
    from hyper400k.presets import get_preset
    from hyper400k.sample import sample_key
    from pipelines.product_task import ProductJob, run_product

    source = products_one()
    work = OUT / "build-scale-record"
    shutil.rmtree(work, ignore_errors=True)
    job = ProductJob(str(source), source.name, "fl", "train", get_preset("hyper400k", tile=TILE), str(work))
    base = run_product(job)
    qa = base["patches"][0]["qa"]
    per_product = patches // products
    splits = ("train", "validate", "test")
    records = []
    for i in range(products):
        product_id = f"ang2019{(i % 12) + 1:02d}{(i % 28) + 1:02d}t{i:06d}_rdn_v2p9_img"
        dx, dy = (i % 100) * 0.05, (i // 100) * 0.02
        footprint = _square(-120 + dx, 35 + dy, 0.01)
        meta = dict(
            base["meta"],
            product_id=product_id,
            footprint=footprint,
            datetime=f"2019-{(i % 12) + 1:02d}-{(i % 28) + 1:02d}T18:00:00",
        )
        count = per_product + (1 if i < patches % products else 0)
        rows = [
            {
                "key": sample_key(product_id, 32 * r, 0),
                "row": 32 * r,
                "col": 0,
                "footprint": _square(-120 + dx, 35 + dy + r * 0.0003, 0.0003),  # each patch its own polygon
                "qa": dict(qa),
            }
            for r in range(count)
        ]
        records.append(
            dict(
                base,
                product_id=product_id,
                flight_line=product_id[:18],
                split=splits[i % 3],
                meta=meta,
                patches=rows,
                kept=count,
                quicklooks=[],
            )
        )
    return records


def _square(x: float, y: float, size: float) -> dict[str, Any]:
    """A GeoJSON square with its lower-left corner at (x, y), counter-clockwise, as a build writes a footprint."""
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def products_one() -> Path:
    from benchmarks.common import cached_product

    return cached_product("aviris-ng", "L1", LINES, SAMPLES)


def metadata_path(products: int, patches: int, queue: Any) -> None:
    """Write one generation's index, patch table and catalog from synthetic records; report to ``queue``."""
    import resource

    from pipelines.catalog import write_catalog
    from pipelines.generation import write_generation_index
    from pipelines.pack import WindowRecord

    records = synthetic_records(products, patches)
    output = OUT / "build-scale-metadata"
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    windows = []
    for start in range(0, len(records), 8):
        members = records[start : start + 8]
        window_id = f"w{start:012d}"
        keys = [p["key"] for r in members for p in r["patches"]]
        shard = {
            "name": f"aviris-ng-L1/train/aviris-ng-L1-train-{window_id}-000000.tar",
            "samples": len(keys),
            "bytes": 1,
            "sha256": "0" * 64,
            "keys": keys,
        }
        windows.append(WindowRecord(window_id, [r["product_id"] for r in members], [shard]))
    settings = {"preset": "hyper400k"}
    began = time.perf_counter()
    write_generation_index(output, 1, windows, records, settings)
    indexed = time.perf_counter()
    write_catalog(output, records, windows, 1)
    done = time.perf_counter()
    queue.put(
        {
            "products": products,
            "patches": sum(len(r["patches"]) for r in records),
            "index_s": round(indexed - began, 1),
            "catalog_and_patch_table_s": round(done - indexed, 1),
            "total_s": round(done - began, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3),
            "catalog_mb": round(bytes_under(output) / 1e6, 1),
        }
    )


def run_metadata(products: int, patches: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=metadata_path, args=(products, patches, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 12 and 48 only.")
    parser.add_argument("--sizes", type=int, nargs="+", help="N to build (default 12 48 192; --quick 12 48).")
    parser.add_argument(
        "--rounds", type=int, default=2, help="builds of each N × workers; the faster is kept"
    )
    args = parser.parse_args()
    sizes = tuple(args.sizes or ((12, 48) if args.quick else (12, 48, 192)))
    runs, walls = [], {}
    for n in sizes:
        tried: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for _ in range(args.rounds):
            for workers in (1, 2):  # alternately, so both meet the same spells of the neighbours' load
                run = run_build(n, workers)
                print(json.dumps(run))
                tried[workers].append(run)
        for workers, attempts in tried.items():
            sampled = run_build(n, workers, sample=True)
            print(json.dumps(sampled))
            memory_and_disk = {
                key: sampled[key] for key in ("peak_rss_mb_client_and_workers", "disk_peak_over_corpus")
            }
            runs.append(min(attempts, key=lambda run: run["wall_s"]) | memory_and_disk)
            walls[f"{n}x{workers}"] = [run["wall_s"] for run in attempts]
    speedup = {
        str(n): round(
            next(r["wall_s"] for r in runs if r["products"] == n and r["workers"] == 1)
            / next(r["wall_s"] for r in runs if r["products"] == n and r["workers"] == 2),
            2,
        )
        for n in sizes
    }
    ceiling = parallel_ceiling(min(max(sizes), CEILING_PRODUCTS), args.rounds)
    print(json.dumps(ceiling))
    metadata = run_metadata(HYPER400K_PRODUCTS, HYPER400K_PATCHES)
    print(json.dumps(metadata))
    print(
        json.dumps(
            {
                "runs": runs,
                "speedup_2_workers": speedup,
                "walls_s": walls,
                "parallel_ceiling": ceiling,
                "metadata": metadata,
            }
        )
    )


if __name__ == "__main__":
    main()
