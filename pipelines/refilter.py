"""``hyper400k filter``: a new, complete build from a committed build and a rule set, without reading a product.

The rules are judged on the QA every sample carries (the build's product records in ``work/products/`` hold the
same scalar QA for every kept tile), so no product is read again and no tile is cut again: the kept samples are
copied as raw tar members from the source's committed generation, window by window, into the same shard sets
(``shards/<sensor>-<level>/<split>/``, one split per shard; every flight line stays in its split). The output is
a build like any other, written by the build's own writers: generation 1 with its shard index (per-band
statistics recomputed over the kept samples), patch table, STAC catalog and report, and product records in
``work/products/`` so that it can be filtered again. Its report has a ``filter`` section (the source build and
generation, the rules and the sha256 of their file, what each rule dropped per product), and its catalog root
records the same provenance as ``hyper400k:filter``.

Everything is written into a hidden folder beside the output and renamed to the output last: the output either
does not exist or is complete, and a killed filter leaves only ``.<name>.filtering-*`` beside it (safe to delete).
The source build is only read.

There is no in-place mode, by design: a build's product records describe what it kept from its products, and the
next ``hyper400k build`` on the folder extends them; a filtered generation there would contradict them, and the
samples it dropped could only come back by tiling the products again. A filtered build is a new folder (move it
over the source when that is what you want). Running ``build`` into a filtered build re-tiles its products with
the preset alone: its settings record the filter, so none of its windows is taken for an unfiltered one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hyper400k.progress import progress_bar
from hyper400k.quality import RuleSet
from hyper400k.sample import Sample
from hyper400k.shards import index_root, iter_encoded
from hyper400k.stac import CATALOG_FILE
from pipelines.catalog import write_catalog
from pipelines.generation import Committed, load_committed, write_generation_index
from pipelines.pack import Route, WindowRecord, write_window_shards
from pipelines.product_task import RECORD, BandStats, load_record, product_dir
from pipelines.report import write_report

FILTER_FIELD = "hyper400k:filter"  # the catalog root's provenance of a filtered build
GENERATION = 1  # a filtered build is a new build: its first generation


@dataclass
class FilterResult:
    """What a filter kept and dropped (``dropped`` per reason: a sample may break several rules) and where."""

    output: Path
    kept: int = 0
    dropped_samples: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> kept_before, kept, dropped
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def report_path(self) -> Path:
        return self.output / "report" / "report.md"

    @property
    def catalog_path(self) -> Path:
        return self.output / CATALOG_FILE


def filter_build(
    source: Path,
    rules: RuleSet,
    output: Path,
    *,
    rules_file: Path | None = None,
    shard_bytes: int | None = None,
    progress: bool = False,
) -> FilterResult:
    """Write at ``output`` (which must not exist) the build of the samples of ``source`` that ``rules`` keep.

    ``rules_file`` is the YAML the rules came from (its name, text and sha256 go into the provenance);
    ``shard_bytes`` defaults to the source build's shard size. See the module docstring for the guarantees."""
    source, output = Path(source), Path(output)
    if shard_bytes is not None and shard_bytes <= 0:
        raise ValueError(f"the shard size must be positive, got {shard_bytes} bytes")
    committed = _committed(source)
    _check_output(source, output)
    records = _source_records(source, committed)
    _check_fields(rules, records, rules_file, source)
    verdicts = _verdicts(rules, records, source)
    settings = dict(committed.index.get("settings", {}))
    if shard_bytes is None:
        shard_bytes = int(settings.get("shard_bytes", 1_000_000_000))
    rules_info = _rules_info(rules, rules_file)
    provenance = {
        "source": str(source.resolve()),
        "source_generation": committed.generation,
        "rules": {key: rules_info[key] for key in ("name", "rules", "file", "sha256")},
    }
    settings |= {"shard_bytes": shard_bytes, "filter": provenance}
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.filtering-", dir=output.parent))
    try:
        result = _write(
            staging, source, committed, records, verdicts, settings, provenance, rules_info, progress
        )
        os.rename(staging, output)  # the commit: before it there is no output, after it a complete one
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.output = output
    return result


def _committed(source: Path) -> Committed:
    """The committed generation of ``source``, or a one-line error saying why it is no build to filter."""
    catalog = source / CATALOG_FILE
    if not catalog.is_file():
        raise FileNotFoundError(
            errno.ENOENT, "no build here (filter reads a build folder's catalog.json)", str(catalog)
        )
    committed = load_committed(source)
    if committed is None:
        raise ValueError(
            f"{catalog}: commits no readable generation (an older layout or a damaged build); rebuild it"
        )
    return committed


def _check_output(source: Path, output: Path) -> None:
    if output.exists() or output.is_symlink():
        raise FileExistsError(
            errno.EEXIST, "already exists (filter writes a new build; choose another output)", str(output)
        )
    resolved, built = output.resolve(), source.resolve()
    if resolved == built or built in resolved.parents:
        raise ValueError(f"{output}: inside the source build {source}; write the filtered build elsewhere")


def _source_records(source: Path, committed: Committed) -> dict[str, dict[str, Any]]:
    """The product record of every product of the committed generation, by id."""
    records = {}
    for window in committed.windows:
        for product_id in window["products"]:
            record = load_record(source / "work", product_id)
            if record is None or record.get("status") != "ok":
                path = product_dir(source / "work", product_id) / RECORD
                raise FileNotFoundError(
                    errno.ENOENT,
                    "product record missing (filter needs the build's work/products records)",
                    str(path),
                )
            records[product_id] = record
    return records


def _check_fields(
    rules: RuleSet, records: dict[str, dict[str, Any]], rules_file: Path | None, source: Path
) -> None:
    """Every rule names a QA field the samples have (judged on the first sample holding any QA)."""
    known = next((set(p["qa"]) for r in records.values() for p in r["patches"] if p["qa"]), None)
    if known is None:
        return  # no sample at all: nothing to judge
    for number, rule in enumerate(rules.rules):
        if rule.field not in known:
            raise ValueError(
                f"{rules_file or rules.name}: rule {number} names the QA field '{rule.field}', which the samples of "
                f"{source} lack (known: {', '.join(sorted(known))})"
            )


def _verdicts(rules: RuleSet, records: dict[str, dict[str, Any]], source: Path) -> dict[str, list[str]]:
    """Every sample key of the source -> the rules it breaks (empty: kept)."""
    verdicts = {}
    for record in records.values():
        for patch in record["patches"]:
            try:
                verdicts[patch["key"]] = rules.evaluate(patch["qa"])
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{source}: sample {patch['key']}: {exc}") from exc
    return verdicts


def _rules_info(rules: RuleSet, rules_file: Path | None) -> dict[str, Any]:
    """The rules as data, and the file they came from: its name, text and sha256 (else that of the rules' JSON)."""
    listed = [{k: v for k, v in asdict(rule).items() if v is not None} for rule in rules.rules]
    text = rules_file.read_text(encoding="utf-8") if rules_file is not None else None
    digest = hashlib.sha256(
        (text if text is not None else json.dumps(listed, sort_keys=True)).encode()
    ).hexdigest()
    return {
        "name": rules.name,
        "rules": listed,
        "file": str(rules_file) if rules_file is not None else None,
        "sha256": digest,
        "text": text,
    }


def _write(
    staging: Path,
    source: Path,
    committed: Committed,
    records: dict[str, dict[str, Any]],
    verdicts: dict[str, list[str]],
    settings: dict[str, Any],
    provenance: dict[str, Any],
    rules_info: dict[str, Any],
    progress: bool,
) -> FilterResult:
    """Write the whole filtered build into ``staging``: shards, records, index, catalog, report."""
    product_of = {patch["key"]: pid for pid, record in records.items() for patch in record["patches"]}
    restat = {  # products losing samples get per-band statistics over what they keep
        pid: BandStats()
        for pid, record in records.items()
        if any(verdicts[p["key"]] for p in record["patches"])
    }
    seen: set[str] = set()
    root = index_root(committed.index_path, committed.index)
    windows: list[WindowRecord] = []
    with progress_bar(
        total=len(committed.index["shards"]), desc="shards", unit="shard", disable=not progress
    ) as bar:
        for window in sorted(committed.windows, key=lambda w: w["id"]):
            window_id = _window_id(window["id"], settings)
            route = _kept_samples(root, window["shards"], verdicts, product_of, restat, seen, bar)
            shards = write_window_shards(staging, window_id, settings["shard_bytes"], route)
            windows.append(WindowRecord(window_id, list(window["products"]), shards))
    unseen = sorted(set(product_of) - seen)
    if unseen:
        raise ValueError(
            f"{source}: {len(unseen)} samples of its product records (e.g. {unseen[0]}) are in no shard of generation "
            f"{committed.generation}: the records are newer than the shards (an unfinished build?); run the build again"
        )
    result = FilterResult(staging)
    filtered = []
    for pid, record in sorted(records.items()):
        stats = restat[pid].to_dict() if pid in restat else record["band_stats"]
        new, counts = _filtered_record(record, verdicts, stats)
        new["filters"] = record.get("filters", []) + [
            {"name": rules_info["name"], "rules": rules_info["rules"]}
        ]
        _save_record(staging, source, new)
        filtered.append(new)
        result.products[pid] = {
            "kept_before": record["kept"],
            "kept": new["kept"],
            "dropped": dict(sorted(counts.items())),
        }
        result.kept += new["kept"]
        result.dropped_samples += record["kept"] - new["kept"]
        result.dropped.update(counts)
    result.provenance = provenance
    _, index = write_generation_index(staging, GENERATION, windows, filtered, settings)
    write_catalog(staging, filtered, windows, GENERATION, root_fields={FILTER_FIELD: provenance})
    section = provenance | {
        "rules": rules_info,
        "kept": result.kept,
        "dropped_samples": result.dropped_samples,
        "dropped": dict(sorted(result.dropped.items())),
        "products": result.products,
    }
    write_report(staging, filtered, [], index, filtered=section)
    return result


def _window_id(source_window: str, settings: dict[str, Any]) -> str:
    """A new window's id: a digest of the source window and of the filter's settings (rules included)."""
    text = json.dumps([source_window, settings], sort_keys=True)
    return "w" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _kept_samples(
    root: Path,
    shard_names: list[str],
    verdicts: dict[str, list[str]],
    product_of: dict[str, str],
    restat: dict[str, BandStats],
    seen: set[str],
    bar: Any,
) -> Route:
    """The kept samples of a window's source shards, in order, routed to their own group and split."""

    def route() -> Iterator[tuple[tuple[str, str], str, dict[str, bytes]]]:
        for name in shard_names:
            group, split, _ = name.split("/", 2)
            for key, members in iter_encoded(root / name):
                if key not in product_of:
                    raise ValueError(f"{root / name}: sample {key} is in no product record of the build")
                seen.add(key)
                if verdicts[key]:
                    continue
                if product_of[key] in restat:
                    sample = Sample.decode(key, members)
                    restat[product_of[key]].add(sample.data, sample.valid)
                yield (group, split), key, members
            bar.update()

    return route()


def _filtered_record(
    record: dict[str, Any], verdicts: dict[str, list[str]], band_stats: dict[str, Any]
) -> tuple[dict[str, Any], Counter[str]]:
    """A product's record as the filtered build holds it, and what each rule dropped of it.

    Dropped samples join the tiles the build dropped (with the rules' reasons), so an Item's kept + dropped
    still counts every tile of its product; a quicklook of a sample the rules dropped moves to the dropped ones."""
    counts: Counter[str] = Counter()
    for patch in record["patches"]:
        counts.update(verdicts[patch["key"]])
    patches = [p for p in record["patches"] if not verdicts[p["key"]]]
    looks, dropped_looks = [], list(record.get("dropped_quicklooks", []))
    for name in record.get("quicklooks", []):
        reasons = verdicts.get(name.removeprefix("quicklook_").removesuffix(".png"), [])
        if reasons:
            dropped_looks.append({"name": name, "reasons": reasons})
        else:
            looks.append(name)
    new = record | {
        "kept": len(patches),
        "patches": patches,
        "dropped": dict(Counter(record["dropped"]) + counts),
        "dropped_tiles": record["dropped_tiles"] + record["kept"] - len(patches),
        "band_stats": band_stats,
        "quicklooks": looks,
        "dropped_quicklooks": dropped_looks,
        "spool_path": None,  # a filtered build keeps no spool: its samples live in its shards only
    }
    return new, counts


def _save_record(staging: Path, source: Path, record: dict[str, Any]) -> None:
    """Write the record and copy its quicklooks to ``work/products/<id>/`` (the report and a later filter read them)."""
    folder = product_dir(staging / "work", record["product_id"])
    folder.mkdir(parents=True, exist_ok=True)
    origin = product_dir(source / "work", record["product_id"])
    names = record["quicklooks"] + [look["name"] for look in record["dropped_quicklooks"]]
    for name in names:
        if (origin / name).is_file():
            shutil.copyfile(origin / name, folder / name)
    (folder / RECORD).write_text(json.dumps(record, allow_nan=False))
