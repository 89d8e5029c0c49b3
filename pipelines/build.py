"""The dataset build on dask.distributed: products -> spools -> windows of shards -> a committed generation.

Every product is a tiling task and every window (a few products of one sensor × level) a packing task,
all on the Dask workers; the client plans and commits. A window's spools are deleted once its shards are
durable, and at most one window per worker thread is in flight, so the disk holds the corpus plus those
windows. A re-run under other settings (preset, tile, stride, shard size, seed, splits) would replace every
shard, so it is refused unless forced. The output is a generation (see
:mod:`pipelines.generation`): a re-run keeps every intact window byte-identical, packs only new products,
rewrites only the windows that held a removed product, and repairs missing or damaged shards (size always,
sha256 with ``verify``), re-tiling their products when the spools are gone.

Resumable: a product whose ``record.json`` exists is not tiled again while its spool is needed and there;
a window whose record exists is not packed again; a failed product is recorded with its reason and retried by
the next run; a killed build leaves the previous generation readable and the next run completes the new one.
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

from hyper400k.discovery import list_input
from hyper400k.download import fetch_all
from hyper400k.envi_header import find_data_file
from hyper400k.errors import ProductError
from hyper400k.manifest import load_manifest
from hyper400k.overrides import write_sidecar
from hyper400k.presets import Preset
from hyper400k.product import is_product_file
from hyper400k.progress import progress_bar
from hyper400k.readers.metadata import product_id_of
from hyper400k.sensors import file_role, identify
from hyper400k.shards import ShardError
from hyper400k.splits import DEFAULT_FRACTIONS, split_flight_lines
from hyper400k.stac import CATALOG_FILE
from pipelines.catalog import write_catalog
from pipelines.generation import (
    Committed,
    FreshWindow,
    Plan,
    collect_garbage,
    load_committed,
    plan_generation,
    write_generation_index,
)
from pipelines.pack import SHARDS, WindowRecord, WindowSpec, load_window_record, pack_window
from pipelines.product_task import ProductJob, failed_record, load_record, output_refused, run_product
from pipelines.report import write_report

log = logging.getLogger(__name__)


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
    window_products: int = 8  # products per packing task (and the most spools on disk per worker)
    verify: bool = False  # also check committed shards' sha256 (reads every byte), not only their sizes
    force: bool = False  # rebuild an existing build under other settings (else that is refused)


@dataclass
class BuildResult:
    records: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    report_path: Path
    catalog_path: Path | None
    ignored: list[dict[str, str]] = field(default_factory=list)  # files under INPUT that are no product

    @property
    def ok(self) -> bool:
        return not self.failures


def discover(
    input_path: Path, download_dir: Path, progress: bool
) -> tuple[list[Path], list[dict[str, Any]], dict[Path, str], list[dict[str, str]]]:
    """Product files under a folder, or fetched from a manifest; failures (unreadable files and folders, data
    without a header, downloads that failed); the URL every downloaded file came from (provenance for the STAC
    items); and the files under a folder that are no product, with the reason (:mod:`hyper400k.discovery`)."""
    if input_path.is_dir():
        listing = list_input(input_path)
        return listing.products, listing.failures, {}, listing.ignored
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
                if result.entry.overrides and file_role(path) == "data":  # the data file or its header
                    write_sidecar(path, result.entry.overrides)
    return sorted(p for p in sources if is_product_file(p)), failures, sources, []


def plan_jobs(
    paths: Iterable[Path],
    config: BuildConfig,
    sources: dict[Path, str] | None = None,
    pinned: dict[str, str] | None = None,
) -> tuple[list[ProductJob], list[dict[str, Any]]]:
    """One job per product, splits assigned by flight line; duplicates and headers without data are failures.

    ``pinned`` holds the splits of flight lines an earlier generation committed: they keep them, so adding
    flight lines to a small build never moves the ones already packed."""
    work = config.output / "work"
    seen: dict[str, Path] = {}
    refused: list[dict[str, Any]] = []  # products refused before tiling: duplicates, missing data files
    staged: list[tuple[Path, str, str, Path]] = []  # data file, product id, flight line, path as found
    segments: dict[str, str | None] = {}  # product id -> segment of its flight line
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
        segments[product_id] = name.segment if name else None
        staged.append((data_path, product_id, name.flight_line if name else product_id, path))
    splits = split_flight_lines(sorted({fl for _, _, fl, _ in staged}), config.split_fractions, config.seed)
    splits.update({line: split for line, split in (pinned or {}).items() if line in splits})
    sources = sources or {}
    jobs = [
        ProductJob(
            str(p),
            pid,
            fl,
            splits[fl],
            config.preset,
            str(work),
            sources.get(p) or sources.get(given),
            segments[pid],
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


def build_settings(config: BuildConfig) -> dict[str, Any]:
    """What makes two builds' windows interchangeable: a committed window is kept only under equal settings."""
    grid = config.preset.grid
    return {
        "preset": config.preset.name,
        "tile": grid.size,
        "stride": grid.stride,
        "shard_bytes": config.shard_bytes,
        "seed": config.seed,
        "split_fractions": dict(sorted(config.split_fractions.items())),
    }


class SettingsChangedError(ValueError):
    """A build folder holds a generation built with other settings, and ``force`` was not given."""


def check_settings(output: Path, committed: Committed | None, settings: dict[str, Any], force: bool) -> None:
    """Refuse to build into ``output`` under settings other than its committed generation's, unless forced.

    Other settings keep no committed window: the new generation replaces every shard (and one that keeps no
    tile, an 8-pixel build re-run at 256, say, empties the build). That is a rebuild, so it must be asked for."""
    before = committed.index.get("settings") if committed is not None else None
    if force or before is None or before == settings:
        return
    changes = ", ".join(
        f"{name} {before.get(name)!r} -> {settings.get(name)!r}"
        for name in sorted(set(before) | set(settings))
        if before.get(name) != settings.get(name)
    )
    raise SettingsChangedError(
        f"{output}: built with other settings ({changes}); rerun with the same settings, "
        "or pass --force to rebuild it under the new ones"
    )


def committed_splits(work: Path, committed: Committed | None, settings: dict[str, Any]) -> dict[str, str]:
    """``{flight line: split}`` of the products the committed generation holds, when it was built with the
    same settings (other split fractions or seed re-split everything, as asked)."""
    if committed is None or committed.index.get("settings") != settings:
        return {}
    pinned = {}
    for window in committed.windows:
        for product_id in window["products"]:
            record = load_record(work, product_id)
            if record is not None:
                pinned[record["flight_line"]] = record["split"]
    return pinned


def build(config: BuildConfig, on_stage: Callable[[str], None] | None = None) -> BuildResult:
    """Run the whole build; see the module docstring for the guarantees."""
    stage = on_stage or (lambda message: log.info(message))
    output = config.output
    output.mkdir(parents=True, exist_ok=True)
    settings = build_settings(config)
    committed = load_committed(output)
    check_settings(output, committed, settings, config.force)
    stage("discovering products")
    paths, failures, sources, ignored = discover(config.input, output / "downloads", config.progress)
    work = output / "work"
    jobs, refused = plan_jobs(paths, config, sources, committed_splits(work, committed, settings))
    failures += refused
    with _naming(output):  # a full disk or read-only output is named; the last generation stays whole
        records = {job.product_id: load_record(work, job.product_id) for job in jobs}
        plan = plan_generation(
            output,
            jobs,
            records,
            committed,
            settings,
            window_products=config.window_products,
            checksum=config.verify,
        )
        for window, problems in sorted(plan.repaired.items()):
            log.warning("window %s is damaged (%s): packing it again", window, "; ".join(problems))
        stage(f"tiling and packing {len(plan.fresh) + len(plan.derived)} windows of {len(jobs)} products")
        packed, failed = run_plan(plan, records, config, stage)
        failures += failed
        windows = [window for window in plan.kept + packed if window.products]  # not windows of failures only
        built = [records[p] for w in windows for p in w.products if records.get(p)]
        catalog_path: Path | None = output / CATALOG_FILE if committed else None
        if windows and (plan.changed or committed is None):
            stage(f"writing generation {plan.generation}")
            write_generation_index(output, plan.generation, windows, built, settings)
            stage(f"writing the STAC catalog of generation {plan.generation}")
            catalog_path = write_catalog(output, built, windows, plan.generation)
            stage(f"committed generation {plan.generation}")
            committed = load_committed(output)
        if committed is not None:
            stage("removing files no generation uses")
            collect_garbage(output, committed)
        stage("writing the report")
        report_path = write_report(output, built, failures, committed.index if committed else {}, ignored)
        _record_failures(output, failures)  # last: a build that stops midway leaves the previous one whole
        return BuildResult(built, failures, report_path, catalog_path, ignored)


def run_plan(
    plan: Plan,
    records: dict[str, dict[str, Any] | None],
    config: BuildConfig,
    stage: Callable[[str], None] = log.info,
) -> tuple[list[WindowRecord], list[dict[str, Any]]]:
    """Tile the products that need it and pack every window of ``plan``, as Dask tasks (or in this
    process with the synchronous scheduler). Windows a killed run already packed are read back.

    ``records`` is updated with every product tiled. Returns the packed windows and the failures (products
    whose tiling failed, or whose window could not be packed: the next build retries them).
    """
    output = config.output
    packed: list[WindowRecord] = []
    fresh: list[FreshWindow] = []
    derived: list[WindowSpec] = []
    for window in plan.fresh:
        done = _finished(output, window.spec.window_id)
        if done:
            packed.append(done)
        else:
            fresh.append(window)
    for spec in plan.derived:
        done = _finished(output, spec.window_id)
        if done:
            packed.append(done)
        else:
            derived.append(spec)
    tile = [job for w in fresh for job in w.jobs if not _has_spool(job, records.get(job.product_id))]
    if tile:
        log.info("%d products to tile, %d windows to pack", len(tile), len(fresh) + len(derived))
    failures: list[dict[str, Any]] = []
    bar = progress_bar(total=len(tile), desc="products", unit="product", disable=not config.progress)
    try:
        if config.scheduler == "synchronous":
            outcomes = _run_here(fresh, derived, {j.product_id for j in tile}, records, bar)
        else:
            outcomes = _run_on_cluster(
                fresh, derived, {j.product_id for j in tile}, records, config, bar, stage
            )
    finally:
        bar.close()
    for spec_products, outcome in outcomes:
        if isinstance(outcome, dict):
            packed.append(WindowRecord(**outcome))
        else:
            failures += [
                {"status": "failed", "product_id": p, "path": p, "reason": f"packing failed: {outcome!r}"}
                for p in spec_products
            ]
    for product_id, record in list(records.items()):
        if record is not None and record.get("status") != "ok":
            failures.append(record)
            records[product_id] = None
    return packed, failures


def _finished(output: Path, window_id: str) -> WindowRecord | None:
    """The record of a window a previous (killed) run packed, if its shards are all there."""
    record = load_window_record(output, window_id)
    if record is None:
        return None
    intact = all(
        (output / SHARDS / s["name"]).is_file() and (output / SHARDS / s["name"]).stat().st_size == s["bytes"]
        for s in record.shards
    )
    return record if intact else None


def _has_spool(job: ProductJob, record: dict[str, Any] | None) -> bool:
    """The product's record is current and its spool (if it kept any tile) is still on disk."""
    if record is None or record.get("preset") != job.preset.name or record.get("split") != job.split:
        return False
    if record.get("grid") != [job.preset.grid.size, job.preset.grid.stride]:
        return False
    return not record["kept"] or Path(record["spool_path"]).is_file()


Outcome = tuple[list[str], dict[str, Any] | BaseException]


def _run_here(
    fresh: list[FreshWindow],
    derived: list[WindowSpec],
    tile: set[str],
    records: dict[str, dict[str, Any] | None],
    bar: Any,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for window in fresh:
        for job in window.jobs:
            if job.product_id in tile:
                records[job.product_id] = run_product(job)
                bar.update()
        members = [records[job.product_id] for job in window.jobs]
        outcomes.append(_pack_safely(window.spec, [j.product_id for j in window.jobs], members))
    for spec in derived:
        outcomes.append(_pack_safely(spec, list(spec.keep), []))
    return outcomes


def _pack_safely(spec: WindowSpec, products: list[str], members: list[Any]) -> Outcome:
    """Pack one window; a bad window is retried by the next build, but a full or read-only output stops it."""
    try:
        return products, pack_window(spec, *members)
    except (OSError, ShardError, ValueError) as exc:
        if output_refused(exc):
            raise
        return products, exc


def _run_on_cluster(
    fresh: list[FreshWindow],
    derived: list[WindowSpec],
    tile: set[str],
    records: dict[str, dict[str, Any] | None],
    config: BuildConfig,
    bar: Any,
    stage: Callable[[str], None],
) -> list[Outcome]:
    """Product tasks in window order, one window per worker thread at a time; each window's packing task is
    submitted (ahead of any waiting product task) as soon as its last product is tiled, and the next window
    opens when it is packed. Spools live about one window long and never pile up ahead of packing."""
    outcomes: list[Outcome] = []
    if not fresh and not derived:
        return outcomes
    with dask_client(config.scheduler, config.workers, stage) as client:
        running = as_completed()
        window_of: dict[str, FreshWindow] = {}
        waiting: dict[str, set[str]] = {}
        products_of: dict[str, list[str]] = {}

        def submit_pack(spec: WindowSpec, members: list[Any], products: list[str]) -> None:
            key = f"pack-{spec.window_id}"
            products_of[key] = products
            running.add(client.submit(pack_window, spec, *members, key=key, priority=10, retries=1))

        def window_ready(window: FreshWindow) -> None:
            members = [records[job.product_id] for job in window.jobs]
            submit_pack(window.spec, members, [job.product_id for job in window.jobs])

        queue = iter(fresh)
        fresh_keys = {f"pack-{window.spec.window_id}" for window in fresh}

        def open_next() -> None:
            """Start tiling the next window (or pack it at once when its spools are all there)."""
            window = next(queue, None)
            if window is None:
                return
            waiting[window.spec.window_id] = set()
            for job in window.jobs:
                if job.product_id in tile:
                    key = f"product-{job.product_id}"
                    window_of[key] = window
                    waiting[window.spec.window_id].add(job.product_id)
                    running.add(client.submit(run_product, job, key=key, pure=False, retries=1))
            if not waiting[window.spec.window_id]:
                window_ready(window)

        # At most one window in flight per worker thread: spools exist only for windows being tiled or
        # packed, so the disk holds the corpus plus those windows however many products wait.
        for _ in range(max(1, sum(client.nthreads().values()))):
            open_next()
        for spec in derived:
            submit_pack(spec, [], list(spec.keep))
        for future in running:
            if future.key in products_of:
                try:
                    outcomes.append((products_of[future.key], future.result()))
                except Exception as exc:  # noqa: BLE001 - a window that cannot be packed is retried next run
                    if output_refused(exc):
                        raise
                    outcomes.append((products_of[future.key], exc))
                if future.key in fresh_keys:  # its spools are gone: the next window may start
                    open_next()
                continue
            window = window_of[future.key]
            job = next(j for j in window.jobs if f"product-{j.product_id}" == future.key)
            try:
                records[job.product_id] = future.result()
            except Exception as exc:  # a worker died twice on this product (KilledWorker) or similar
                if output_refused(exc):
                    raise
                records[job.product_id] = failed_record(
                    job, str(exc) if isinstance(exc, OSError) else repr(exc)
                )
            bar.update()
            pending = waiting[window.spec.window_id]
            pending.discard(job.product_id)
            if not pending:
                window_ready(window)
    return outcomes


@contextmanager
def _naming(folder: Path):
    """An OS error without a file name (a full disk, say, seen by a write) names the output folder."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(folder)) from exc


def _record_failures(output: Path, failures: list[dict[str, Any]]) -> None:
    path = output / "failures.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(failures, indent=2, allow_nan=False))
    os.replace(tmp, path)
