"""The tiling task of a dataset build: one product -> a spool of its kept samples + a record.

A task is idempotent: its outputs live in ``work/products/<product_id>/`` and ``record.json`` is
written last (atomically), so a product whose record exists is finished and is never redone, and a
task killed midway leaves only temporary files that the next attempt overwrites.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hyper400k.download import FetchError
from hyper400k.errors import EmptyProductError, ProductError
from hyper400k.manifest import ManifestEntry
from hyper400k.patches import ProductSummary, TileOutcome, iter_outcomes
from hyper400k.presets import Preset
from hyper400k.product import open_product
from hyper400k.quicklook import QuicklookSampler, true_colour
from hyper400k.sample import sample_key
from hyper400k.scene import SceneMeta
from hyper400k.shards import ShardError, ShardWriter
from pipelines.downloads import Download, fetch_product

SPOOL_BYTES = 1 << 62  # one spool file per product: its window's packing task mixes it into the shards
QUICKLOOKS_KEPT = 3  # per product, a random sample of its kept tiles
QUICKLOOKS_DROPPED = 2  # and of its dropped ones
RECORD = "record.json"
_STATS_STEP = 4
# The output cannot take writes: every product would fail alike, so the build stops instead.
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


@dataclass(frozen=True)
class ProductJob:
    """Everything a worker needs to process one product (plain data, so it pickles to any worker)."""

    path: str
    product_id: str
    flight_line: str
    split: str
    preset: Preset
    work_dir: str
    source_url: str | None = None  # where the product was downloaded from (STAC provenance), if it was
    segment: str | None = None  # the numbered piece of the flight line (``003``), when the name has one
    # A manifest entry fetched by the task itself, into ``download_dir``, just before tiling (``path`` is then
    # its URL until it is fetched); the download is deleted once the record is durable unless ``keep_download``.
    download: ManifestEntry | None = None
    download_dir: str | None = None
    keep_download: bool = False

    @property
    def deletes_download(self) -> bool:
        """The task fetches its product itself and deletes the download once the record is durable."""
        return self.download is not None and self.download_dir is not None and not self.keep_download


def product_dir(work_dir: Path, product_id: str) -> Path:
    return work_dir / "products" / product_id


def load_record(work_dir: Path, product_id: str) -> dict[str, Any] | None:
    path = product_dir(work_dir, product_id) / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def output_refused(exc: BaseException) -> bool:
    """The output cannot take more writes (disk full, quota, read-only), seen directly or as the cause of a
    shard error: the whole build must stop, not one product or window fail."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    return isinstance(cause, OSError) and cause.errno in OUTPUT_ERRNOS


def run_product(job: ProductJob) -> dict[str, Any]:
    """Process one product; never raises for a bad product: failures come back as ``{"status": "failed"}``."""
    out = product_dir(Path(job.work_dir), job.product_id)
    fetched: Download | None = None
    try:
        if job.download is not None and job.download_dir is not None:
            fetched = fetch_product(job.download, Path(job.download_dir), job.product_id)
        origins = (
            fetched.origins(Path(job.download_dir)) if fetched is not None and job.deletes_download else {}
        )
        record = _process(replace(job, path=str(fetched.data)) if fetched else job, out, origins)
    except FetchError as exc:
        return failed_record(job, str(exc))
    except (OSError, ProductError, ShardError, ValueError) as exc:
        shutil.rmtree(out, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in OUTPUT_ERRNOS and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(out)) from exc  # name the folder when the OS did not
        if output_refused(exc):  # a full or read-only output stops the build: it is no fault of this product
            raise
        return failed_record(job, str(exc))
    except Exception as exc:  # a bug must not stop the other products; keep the traceback for the report
        shutil.rmtree(out, ignore_errors=True)
        return failed_record(job, f"{exc!r}\n{traceback.format_exc(limit=3)}")
    if fetched is not None and job.deletes_download:
        fetched.discard(Path(job.download_dir))  # the record is durable: the spool now stands for the product
    return record


def failed_record(job: ProductJob, reason: str) -> dict[str, Any]:
    """The record of a product that failed (or whose task did not come back), with the reason."""
    return {"status": "failed", "product_id": job.product_id, "path": job.path, "reason": reason}


def _process(job: ProductJob, out: Path, origins: dict[Path, dict[str, str]]) -> dict[str, Any]:
    """Tile one product into its spool and write its record. ``origins``: where the files of a download that
    is deleted after tiling are distributed (see :meth:`Download.origins`), kept in the record by role."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    summary = ProductSummary()
    stats = BandStats()
    patches: list[dict[str, Any]] = []
    quicklooks = QuicklookSampler(job.product_id, kept=QUICKLOOKS_KEPT, dropped=QUICKLOOKS_DROPPED)
    qa_values: dict[str, list[float]] = {}
    with open_product(job.path) as scene, ShardWriter(out, "spool", SPOOL_BYTES, checksum=False) as writer:
        meta = scene.meta
        any_data = False
        for outcome in iter_outcomes(
            scene,
            job.preset,
            split=job.split,
            flight_line=job.flight_line,
            segment=job.segment,
            reuse_buffers=True,  # each sample is written (and its statistics taken) before the next tile
        ):
            summary.add(outcome)
            any_data = any_data or "no_data" not in outcome.quality.reasons
            for name, value in outcome.quality.qa.items():
                if isinstance(value, int | float | bool):
                    qa_values.setdefault(name, []).append(float(value))
            _offer_quicklook(quicklooks, outcome, meta)
            if outcome.sample is None:
                continue
            sample = outcome.sample
            writer.write(sample)
            stats.add(sample.data, sample.valid)
            patches.append(_patch_row(sample.meta))
        if not any_data:
            raise EmptyProductError(job.path, "holds no valid pixel: every value is fill / nodata")
    looks = quicklooks.save(out)
    sizes = {role: Path(p).stat().st_size for role, p in meta.files.items()}
    record = {
        "status": "ok",
        "product_id": job.product_id,
        "path": job.path,
        "flight_line": job.flight_line,
        "segment": job.segment,
        "split": job.split,
        "preset": job.preset.name,
        "grid": [job.preset.grid.size, job.preset.grid.stride],
        "source_url": job.source_url,
        "meta": meta.to_json_dict(),
        "kept": summary.kept,
        "dropped": dict(summary.dropped),
        "dropped_tiles": summary.dropped_tiles,
        "qa_values": qa_values,
        "band_stats": stats.to_dict(),
        "patches": patches,
        "quicklooks": [look.name for look in looks if not look.reasons],
        "dropped_quicklooks": [
            {"name": look.name, "reasons": look.reasons} for look in looks if look.reasons
        ],
        "spool_path": str(out / writer.shards[0].name) if writer.shards else None,
        "sizes": sizes,
        "input_bytes": sum(sizes.values()),
    }
    if origins:  # the local files go once the record is durable: the catalog names these instead
        resolved = {role: Path(p).resolve() for role, p in meta.files.items()}
        record["distributed_as"] = {role: origins[path] for role, path in resolved.items() if path in origins}
    tmp = out / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, allow_nan=False))
    os.replace(tmp, out / RECORD)
    return record


def _patch_row(meta: dict[str, Any]) -> dict[str, Any]:
    """What the patch index needs of a sample (its scalar QA, not the per-band lists)."""
    return {
        "key": meta["key"],
        "row": meta["row"],
        "col": meta["col"],
        "footprint": meta["footprint"],
        "qa": {k: v for k, v in meta["qa"].items() if not isinstance(v, list)},
    }


def _offer_quicklook(sampler: QuicklookSampler, outcome: TileOutcome, meta: SceneMeta) -> None:
    """Offer a tile to the product's quicklook sample: kept ones as stored, dropped ones as read."""
    key = sample_key(meta.product_id, outcome.row, outcome.col)
    if outcome.sample is not None:
        sample = outcome.sample
        sampler.offer(
            key, outcome.row, outcome.col, lambda: true_colour(sample.data, meta.wavelength_nm, sample.valid)
        )
    elif outcome.data is not None and outcome.quality.valid.any():  # an all-fill tile has nothing to show
        data, valid = outcome.data, outcome.quality.valid
        sampler.offer(
            key,
            outcome.row,
            outcome.col,
            lambda: true_colour(data, meta.wavelength_nm, valid),
            outcome.quality.reasons,
        )


class BandStats:
    """Per-band sums over valid pixels, merged across products for per-band normalisation.

    Taken on every 4th line and column: a 1/16 sample pins per-band means and deviations to far better
    than normalisation needs, at a sixteenth of the cost."""

    def __init__(self) -> None:
        self.count = 0
        self.total: np.ndarray | None = None
        self.total_sq: np.ndarray | None = None

    def add(self, data: np.ndarray, valid: np.ndarray) -> None:
        """Add one sample's float16 ``data``, whose invalid pixels are 0 (the sample contract): summing every
        sampled pixel then equals summing the valid ones, with no gather of them. A float16 value's square
        is exact in float32; the sums are float64."""
        pixels = data[:, ::_STATS_STEP, ::_STATS_STEP].astype(np.float32).reshape(data.shape[0], -1)
        if self.total is None:
            self.total = np.zeros(data.shape[0])
            self.total_sq = np.zeros(data.shape[0])
        self.count += int(np.count_nonzero(valid[::_STATS_STEP, ::_STATS_STEP]))
        self.total += pixels.sum(axis=1, dtype=np.float64)
        self.total_sq += np.square(pixels).sum(axis=1, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        if self.total is None:
            return {"count": 0, "sum": [], "sum_sq": []}
        return {"count": self.count, "sum": self.total.tolist(), "sum_sq": self.total_sq.tolist()}
