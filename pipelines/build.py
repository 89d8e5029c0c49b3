"""The dataset build on dask.distributed: products -> spools -> windows of shards -> a committed generation.

Every product is a tiling task and every window (a few products of one sensor × level) a packing task,
all on the Dask workers; the client plans and commits. A window's spools are deleted once its shards are
durable, and at most one window per worker thread is in flight, so the disk holds the corpus plus those
windows. A re-run under other settings (preset, tile, stride, shard size, seed, splits) would replace every
shard, so it is refused unless forced. The output is a generation (see
:mod:`pipelines.generation`): a re-run keeps every intact window byte-identical, packs only new products,
rewrites only the windows that held a removed product, and repairs missing or damaged shards (size always,
sha256 with ``verify``), re-tiling their products when the spools are gone.

The output is a local folder or an object-store prefix (``s3://``, ``gs://``): a remote build runs in a
local work folder and publishes shards as they are packed and the generation's files with ``catalog.json``
last (see :mod:`pipelines.remote`).

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dask.distributed import Client, Future, LocalCluster, as_completed

from hyper400k import storage
from hyper400k.discovery import list_input
from hyper400k.download import fetch_all
from hyper400k.envi_header import find_data_file
from hyper400k.errors import ProductError
from hyper400k.manifest import ManifestEntry, load_manifest
from hyper400k.presets import Preset
from hyper400k.product import is_product_file
from hyper400k.progress import progress_bar
from hyper400k.readers.metadata import product_id_of
from hyper400k.sensors import ProductName, identify
from hyper400k.shards import ShardError
from hyper400k.splits import DEFAULT_FRACTIONS, split_flight_lines
from hyper400k.stac import CATALOG_FILE
from pipelines.catalog import write_catalog
from pipelines.downloads import deferrable, fetched_files
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
from pipelines.remote import (
    collect_remote_garbage,
    default_work_dir,
    pull_committed,
    push_generation,
    push_report,
)
from pipelines.report import write_report

log = logging.getLogger(__name__)
DOWNLOADS = "downloads"  # under the output: what a manifest build fetches
WORKER_PRELOAD = "pipelines.worker"  # imported by every worker as it starts: see that module


@dataclass
class BuildConfig:
    """What to build and how; every field has a CLI option of the same name."""

    input: Path
    output: Path | str  # a folder, or an object-store URL (s3://bucket/prefix, gs://bucket/prefix)
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
    keep_downloads: bool = False  # keep what a manifest build fetched after its product is tiled
    force: bool = False  # rebuild an existing build under other settings (else that is refused)
    work: Path | None = None  # local work folder of a remote output (default: one per URL in the user cache)
    storage_options: dict[str, Any] = field(default_factory=dict)  # fsspec options of a remote output


@dataclass
class BuildResult:
    records: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    report_path: Path
    catalog_path: storage.Location | None
    ignored: list[dict[str, str]] = field(default_factory=list)  # files under INPUT that are no product

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class Inputs:
    """What a build's INPUT holds (see :func:`discover`)."""

    paths: list[Path]  # product files on disk: under the folder, or fetched from the manifest up front
    failures: list[dict[str, Any]]  # unreadable files and folders, data without a header, failed downloads
    sources: dict[Path, str]  # the URL every file fetched up front came from (STAC provenance)
    ignored: list[dict[str, str]]  # files under the folder that are no product, with the reason
    deferred: list[ManifestEntry]  # manifest entries the tiling tasks fetch (:mod:`pipelines.downloads`)


def discover(input_path: Path, download_dir: Path, progress: bool) -> Inputs:
    """The products of a folder (:mod:`hyper400k.discovery`), or of a manifest: entries that can be planned
    from their product identifier are deferred to the tiling tasks, the rest are fetched now."""
    if input_path.is_dir():
        listing = list_input(input_path)
        return Inputs(listing.products, listing.failures, {}, listing.ignored, [])
    entries = load_manifest(input_path)
    deferred = [entry for entry in entries if deferrable(entry)]
    now = [entry for entry in entries if not deferrable(entry)]
    results = fetch_all(now, download_dir, progress=progress) if now else []
    failures = [
        {
            "status": "failed",
            "product_id": r.entry.product or r.entry.name,
            "path": r.entry.url,
            "reason": r.reason,
        }
        for r in results
        if not r.ok
    ]
    sources: dict[Path, str] = {}  # every fetched file (a data file and its header may come apart)
    for result in results:
        if result.ok:
            for path in fetched_files(result):
                sources[path.resolve()] = result.entry.url
    return Inputs(sorted(p for p in sources if is_product_file(p)), failures, sources, [], deferred)


def plan_jobs(
    paths: Iterable[Path],
    config: BuildConfig,
    sources: dict[Path, str] | None = None,
    pinned: dict[str, str] | None = None,
    deferred: Iterable[ManifestEntry] = (),
) -> tuple[list[ProductJob], list[dict[str, Any]]]:
    """One job per product, splits assigned by flight line; duplicates and headers without data are failures.

    ``paths`` are product files on disk; ``deferred`` manifest entries are planned from the product they name
    and fetched by their tiling task. ``pinned`` holds the splits of flight lines an earlier generation
    committed: they keep them, so adding flight lines to a small build never moves the ones already packed."""
    sources = sources or {}
    staged: list[_Staged] = []
    refused: list[dict[str, Any]] = []  # products refused before tiling: duplicates, missing data files
    for path in paths:
        try:
            data_path = find_data_file(path) if path.suffix.lower() == ".hdr" else path
        except ProductError as exc:  # e.g. a header whose data file failed to download
            refused.append(
                {"status": "failed", "product_id": product_id_of(path), "path": str(path), "reason": str(exc)}
            )
            continue
        source = sources.get(data_path) or sources.get(path)
        staged.append(
            _Staged(str(data_path), product_id_of(data_path), identify(data_path), str(path), source)
        )
    for entry in deferred:
        assert entry.product is not None  # deferrable() entries name their product
        staged.append(_Staged(entry.url, entry.product, identify(entry.product), entry.url, entry.url, entry))
    seen: dict[str, str] = {}
    unique: list[_Staged] = []
    for item in staged:
        if item.product_id in seen:
            reason = f"duplicate of {seen[item.product_id]}"
            refused.append(
                {"status": "failed", "product_id": item.product_id, "path": item.given, "reason": reason}
            )
            continue
        seen[item.product_id] = item.given
        unique.append(item)
    splits = split_flight_lines(sorted({i.flight_line for i in unique}), config.split_fractions, config.seed)
    splits.update({line: split for line, split in (pinned or {}).items() if line in splits})
    work, downloads = Path(config.output) / "work", Path(config.output) / DOWNLOADS
    jobs = [
        ProductJob(
            item.location,
            item.product_id,
            item.flight_line,
            splits[item.flight_line],
            config.preset,
            str(work),
            item.source,
            item.name.segment if item.name else None,
            item.entry,
            str(downloads) if item.entry else None,
            config.keep_downloads,
        )
        for item in unique
    ]
    return jobs, refused


@dataclass(frozen=True)
class _Staged:
    """A product found in the input, before splits: where it is (a path, or the URL it is fetched from)."""

    location: str
    product_id: str
    name: ProductName | None
    given: str  # the path or URL as the input named it
    source: str | None  # the URL it was fetched from (STAC provenance), if it was
    entry: ManifestEntry | None = None  # the manifest entry its tiling task fetches, when deferred

    @property
    def flight_line(self) -> str:
        return self.name.flight_line if self.name else self.product_id


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
        preload=[WORKER_PRELOAD],
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
    url = str(config.output).rstrip("/") if storage.is_url(config.output) else ""
    if url:
        storage.configure(url, config.storage_options)
        storage.check_writable(url)
        config = replace(config, output=config.work or default_work_dir(url))
        stage(f"building in {config.output}, publishing to {url}")
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    if url:
        pull_committed(url, output)
    shards_url = str(storage.join(url, SHARDS)) if url else ""
    settings = build_settings(config)
    committed = load_committed(output)
    check_settings(output, committed, settings, config.force)
    stage("discovering products")
    inputs = discover(config.input, output / DOWNLOADS, config.progress)
    failures, ignored = inputs.failures, inputs.ignored
    work = output / "work"
    pinned = committed_splits(work, committed, settings)
    jobs, refused = plan_jobs(inputs.paths, config, inputs.sources, pinned, inputs.deferred)
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
            shards_url=shards_url,
        )
        if url:
            _publish_to(plan, shards_url, config.storage_options)
        for window, problems in sorted(plan.repaired.items()):
            log.warning("window %s is damaged (%s): packing it again", window, "; ".join(problems))
        stage(f"tiling and packing {len(plan.fresh) + len(plan.derived)} windows of {len(jobs)} products")
        packed, failed = run_plan(plan, records, config, stage, shards_url)
        failures += failed
        windows = [window for window in plan.kept + packed if window.products]  # not windows of failures only
        built = [records[p] for w in windows for p in w.products if records.get(p)]
        catalog_path: storage.Location | None = output / CATALOG_FILE if committed else None
        if windows and (plan.changed or committed is None):
            stage(f"writing generation {plan.generation}")
            write_generation_index(output, plan.generation, windows, built, settings)
            stage(f"writing the STAC catalog of generation {plan.generation}")
            catalog_path = write_catalog(output, built, windows, plan.generation)
            if url:
                stage(f"uploading generation {plan.generation}, catalog.json last")
                push_generation(output, url, plan.generation)
            stage(f"committed generation {plan.generation}")
            committed = load_committed(output)
        if committed is not None:
            stage("removing files no generation uses")
            collect_garbage(output, committed)
            if url:
                collect_remote_garbage(url, committed)
        stage("writing the report")
        report_path = write_report(output, built, failures, committed.index if committed else {}, ignored)
        _record_failures(output, failures)  # last: a build that stops midway leaves the previous one whole
        if url:
            push_report(output, url)
            catalog_path = storage.join(url, CATALOG_FILE) if catalog_path is not None else None
        return BuildResult(built, failures, report_path, catalog_path, ignored)


def _publish_to(plan: Plan, shards_url: str, options: dict[str, Any]) -> None:
    """Make every packing task of ``plan`` upload its shards to ``shards_url`` (and read the shards of
    derived windows from there)."""
    remote = {"shards_url": shards_url, "storage_options": tuple(sorted(options.items()))}
    for window in plan.fresh:
        window.spec = replace(window.spec, **remote)
    plan.derived = [replace(spec, **remote) for spec in plan.derived]


def run_plan(
    plan: Plan,
    records: dict[str, dict[str, Any] | None],
    config: BuildConfig,
    stage: Callable[[str], None] = log.info,
    shards_url: str = "",
) -> tuple[list[WindowRecord], list[dict[str, Any]]]:
    """Tile the products that need it and pack every window of ``plan``, as Dask tasks (or in this
    process with the synchronous scheduler). Windows a killed run already packed are read back.

    ``records`` is updated with every product tiled. Returns the packed windows and the failures (products
    whose tiling failed, or whose window could not be packed: the next build retries them). ``shards_url``
    is where the committed shards are when the output is an object store.
    """
    output = Path(config.output)
    root: storage.Location = shards_url or output / SHARDS
    packed: list[WindowRecord] = []
    fresh: list[FreshWindow] = []
    derived: list[WindowSpec] = []
    for window in plan.fresh:
        done = _finished(output, window.spec.window_id, root)
        if done:
            packed.append(done)
        else:
            fresh.append(window)
    for spec in plan.derived:
        done = _finished(output, spec.window_id, root)
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


def _finished(output: Path, window_id: str, root: storage.Location) -> WindowRecord | None:
    """The record of a window a previous (killed) run packed, if its shards are all there (under ``root``)."""
    record = load_window_record(output, window_id)
    if record is None:
        return None
    intact = all(storage.size(storage.join(root, s["name"])) == s["bytes"] for s in record.shards)
    return record if intact else None


def _has_spool(job: ProductJob, record: dict[str, Any] | None) -> bool:
    """The product's record is current and its spool (if it kept any tile) is still on disk (a filtered
    build's records have none: see :mod:`pipelines.refilter`)."""
    if record is None or record.get("preset") != job.preset.name or record.get("split") != job.split:
        return False
    if record.get("grid") != [job.preset.grid.size, job.preset.grid.stride]:
        return False
    spool = record.get("spool_path")
    return not record["kept"] or (spool is not None and Path(spool).is_file())


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
    opens when it is packed. Spools live about one window long and never pile up ahead of packing.

    A packing task is given the futures of its products' tiling tasks rather than their records, so the
    records go from worker to worker: the client, which shares the machine's cores with the workers on a
    small cluster, neither walks nor serialises them into the task graph again."""
    outcomes: list[Outcome] = []
    if not fresh and not derived:
        return outcomes
    with dask_client(config.scheduler, config.workers, stage) as client:
        running = as_completed()
        window_of: dict[str, FreshWindow] = {}
        waiting: dict[str, set[str]] = {}
        products_of: dict[str, list[str]] = {}
        # product -> its tiling task, done and successful, until its window's packing task is submitted
        tiled: dict[str, Future] = {}

        def submit_pack(spec: WindowSpec, members: list[Any], products: list[str]) -> None:
            key = f"pack-{spec.window_id}"
            products_of[key] = products
            running.add(client.submit(pack_window, spec, *members, key=key, priority=10, retries=1))

        def window_ready(window: FreshWindow) -> None:
            members = [
                tiled.pop(job.product_id) if job.product_id in tiled else records[job.product_id]
                for job in window.jobs
            ]
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
                tiled[job.product_id] = future
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
