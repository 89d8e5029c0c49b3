"""The dataset build on dask.distributed: products -> spools (one task each) -> mixed shards -> STAC + report.

Resumable by construction: a product whose ``record.json`` exists is never redone; a failed product
is recorded with its reason and retried by the next run; shards are packed into a temporary folder
and swapped in, so a crash never leaves a half shard set behind.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dask.distributed import Client, LocalCluster, as_completed

from hyper400k.download import fetch_all
from hyper400k.envi_header import find_data_file
from hyper400k.errors import ProductError
from hyper400k.manifest import load_manifest
from hyper400k.presets import Preset
from hyper400k.product import is_product_file
from hyper400k.progress import progress_bar
from hyper400k.readers.metadata import product_id_of
from hyper400k.sensors import identify
from hyper400k.splits import split_flight_lines
from pipelines.catalog import write_catalog
from pipelines.pack import pack_shards
from pipelines.product_task import ProductJob, load_record, run_product
from pipelines.report import write_report

log = logging.getLogger(__name__)
DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


@dataclass
class BuildConfig:
    """What to build and how; every field has a CLI option of the same name."""

    input: Path
    output: Path
    preset: Preset
    scheduler: str | None = (
        None  # address of a running dask scheduler, "synchronous", or None for a LocalCluster
    )
    workers: int | None = None
    split_fractions: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FRACTIONS))
    seed: int = 0
    shard_bytes: int = 1_000_000_000
    progress: bool = True


@dataclass
class BuildResult:
    records: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    report_path: Path
    catalog_path: Path | None

    @property
    def ok(self) -> bool:
        return not self.failures


def discover(
    input_path: Path, download_dir: Path, progress: bool
) -> tuple[list[Path], list[dict[str, Any]], dict[Path, str]]:
    """Product files under a folder, or fetched from a manifest; failures (downloads that failed); and the URL
    every downloaded file came from (provenance for the STAC items)."""
    if input_path.is_dir():
        return (
            sorted(p.resolve() for p in input_path.rglob("*") if p.is_file() and is_product_file(p)),
            [],
            {},
        )
    entries = load_manifest(input_path)
    results = fetch_all(entries, download_dir, progress=progress)
    failures = [
        {"status": "failed", "product_id": r.entry.name, "path": r.entry.url, "reason": r.reason}
        for r in results
        if not r.ok
    ]
    sources: dict[Path, str] = {}
    for result in results:
        if result.ok:
            for path in result.extracted or (result.path,):
                sources[path.resolve()] = result.entry.url
    return sorted(p for p in sources if is_product_file(p)), failures, sources


def plan_jobs(
    paths: Iterable[Path], config: BuildConfig, sources: dict[Path, str] | None = None
) -> tuple[list[ProductJob], list[dict[str, Any]]]:
    """One job per product, splits assigned by flight line; duplicates and headers without data are failures."""
    work = config.output / "work"
    seen: dict[str, Path] = {}
    refused: list[dict[str, Any]] = []  # products refused before tiling: duplicates, missing data files
    staged: list[tuple[Path, str, str, Path]] = []  # data file, product id, flight line, path as found
    for path in paths:
        try:
            data_path = find_data_file(path) if path.suffix.lower() == ".hdr" else path
        except ProductError as exc:  # e.g. a header whose data file failed to download
            refused.append(
                {"status": "failed", "product_id": product_id_of(path), "path": str(path), "reason": str(exc)}
            )
            continue
        name = identify(data_path)
        product_id = product_id_of(data_path)
        if product_id in seen:
            refused.append(
                {
                    "status": "failed",
                    "product_id": product_id,
                    "path": str(path),
                    "reason": f"duplicate of {seen[product_id]}",
                }
            )
            continue
        seen[product_id] = path
        staged.append((data_path, product_id, name.flight_line if name else product_id, path))
    splits = split_flight_lines(sorted({fl for _, _, fl, _ in staged}), config.split_fractions, config.seed)
    sources = sources or {}
    jobs = [
        ProductJob(
            str(p), pid, fl, splits[fl], config.preset, str(work), sources.get(p) or sources.get(given)
        )
        for p, pid, fl, given in staged
    ]
    return jobs, refused


@contextmanager
def dask_client(scheduler: str | None, workers: int | None, stage: Callable[[str], None]):
    """A client on the given scheduler address, or on a fresh LocalCluster (one thread per process), whose
    dashboard link is reported once through ``stage`` (the dashboard needs bokeh; without it there is none)."""
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    n = workers or max(1, (os.cpu_count() or 2))
    quiet = logging.INFO if log.isEnabledFor(logging.INFO) else logging.WARNING
    dashboard = importlib.util.find_spec("bokeh") is not None
    with LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0" if dashboard else None,  # any free port: machines are shared
        silence_logs=quiet,
    ) as cluster:
        stage(
            f"dask: {n} local workers, dashboard at {cluster.dashboard_link}"
            if dashboard
            else f"dask: {n} local workers (no dashboard: install bokeh>=3.1 for one)"
        )
        with Client(cluster) as client:
            yield client


def run_jobs(
    jobs: list[ProductJob], config: BuildConfig, stage: Callable[[str], None] = log.info
) -> list[dict[str, Any]]:
    """Run the jobs not yet finished; finished ones are read back from their records."""
    done = {job.product_id: load_record(Path(job.work_dir), job.product_id) for job in jobs}
    todo = [
        job
        for job in jobs
        if done[job.product_id] is None or done[job.product_id].get("preset") != job.preset.name
    ]
    results = [r for r in done.values() if r is not None and r.get("preset") == config.preset.name]
    if todo:
        log.info("%d products to process, %d already done", len(todo), len(jobs) - len(todo))
    bar = progress_bar(total=len(todo), desc="products", unit="product", disable=not config.progress)
    if config.scheduler == "synchronous":
        for job in todo:
            results.append(run_product(job))
            bar.update()
    elif todo:
        with dask_client(config.scheduler, config.workers, stage) as client:
            futures = client.map(
                run_product, todo, pure=False, retries=1, key=[f"product-{j.product_id}" for j in todo]
            )
            by_key = {f.key: job for f, job in zip(futures, todo, strict=True)}
            for future in as_completed(futures):
                job = by_key[future.key]
                try:
                    results.append(future.result())
                except Exception as exc:  # a worker died twice on this product (KilledWorker) or similar
                    results.append(
                        {
                            "status": "failed",
                            "product_id": job.product_id,
                            "path": job.path,
                            "reason": repr(exc),
                        }
                    )
                bar.update()
    bar.close()
    return results


def build(config: BuildConfig, on_stage: Callable[[str], None] | None = None) -> BuildResult:
    """Run the whole build; see the module docstring for the guarantees."""
    stage = on_stage or (lambda message: log.info(message))
    config.output.mkdir(parents=True, exist_ok=True)
    stage("discovering products")
    paths, failures, sources = discover(config.input, config.output / "downloads", config.progress)
    jobs, refused = plan_jobs(paths, config, sources)
    failures += refused
    stage(f"tiling {len(jobs)} products")
    results = run_jobs(jobs, config, stage)
    records = [r for r in results if r.get("status") == "ok"]
    failures += [r for r in results if r.get("status") != "ok"]
    _record_failures(config.output, failures)
    stage("packing shards")
    shard_index = pack_shards(config.output, records, config.shard_bytes, config.seed)
    stage("writing the STAC catalog")
    catalog_path = write_catalog(config.output, records, shard_index) if records else None
    stage("writing the report")
    report_path = write_report(config.output, records, failures, shard_index)
    return BuildResult(records, failures, report_path, catalog_path)


def _record_failures(output: Path, failures: list[dict[str, Any]]) -> None:
    path = output / "failures.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(failures, indent=2))
    os.replace(tmp, path)
