"""The corpus's STAC catalog (STAC 1.1.0): a root Collection, sensor × level child Collections, one Item
per source product, and a stac-geoparquet patch index with one row per sample.

Layout written by :func:`build_catalog` under ``out_dir`` (relative links throughout, so the folder can
be moved or published as is)::

    catalog.json                                   root Collection (metadata from catalog/collection.yaml)
    patches.parquet                                stac-geoparquet, one row per sample (root asset "patches")
    hyper400k-aviris-ng-l1/collection.json         child Collection per sensor × level
    hyper400k-aviris-ng-l1/<product_id>/<product_id>.json   one Item per source product

With a ``generation`` (what the dataset build writes), everything but ``catalog.json`` sits under
``generations/<N>/`` instead, and ``catalog.json``, renamed into place last, is the commit of generation N.

The root is a Collection stored as ``catalog.json``: STAC does not tie the object type to the file
name, it validates as a Collection, and tools that open ``<dataset>/catalog.json`` find the root.
Only those entries are written; other files in ``out_dir`` (shards, reports) are never touched.

Items carry the full per-band list (centre wavelength and FWHM in **micrometres**, as the eo extension
requires), the rotated affine as ``proj:transform`` in rasterio order ``[a, b, c, d, e, f]``, file sizes
and multihash checksums, the split (``ml-aoi:split``: the build's split names are the extension's),
sun/view angles where an ``obs`` companion gave them, and ``hyper400k:*`` QA counts. Source files are
referenced by absolute path: they live outside the catalog folder.

:func:`validate_catalog` checks every object against the offline schema set in ``../shared/stac-schemas``
(or ``$HYPER400K_STAC_SCHEMAS``); it never touches the network.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import operator
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pa_ds
import pyarrow.parquet as pq
import pyproj
import pystac
import shapely
import stac_geoparquet.arrow
import stac_geoparquet.arrow._to_arrow as _stac_arrow
import yaml
from pystac.layout import BestPracticesLayoutStrategy, CustomLayoutStrategy
from pystac.validation import GetSchemaError, validate_dict
from shapely.geometry import Polygon, shape
from shapely.geometry.polygon import orient

from hyper400k import storage
from hyper400k.scene import REFLECTANCE_UNITS
from hyper400k.sensors import sensor as sensor_spec
from hyper400k.splits import SPLITS, canonical_split
from hyper400k.storage import Location, as_location

EXT_EO = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
EXT_PROJ = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
EXT_FILE = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
EXT_ML_AOI = "https://stac-extensions.github.io/ml-aoi/v0.2.0/schema.json"
EXT_PROCESSING = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
EXT_VIEW = "https://stac-extensions.github.io/view/v1.1.0/schema.json"

CATALOG_FILE = "catalog.json"
PATCH_INDEX_FILE = "patches.parquet"
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
SCHEMAS_ENV = "HYPER400K_STAC_SCHEMAS"
DEFAULT_COLLECTION_CONFIG = Path(__file__).resolve().parents[1] / "catalog" / "collection.yaml"
# Our product levels as the processing extension names them: L1 is calibrated at-sensor radiance (L1B),
# L2 is surface reflectance (L2A).
PROCESSING_LEVEL = {"L1": "L1B", "L2": "L2A"}
# Custom link relations (STAC allows any rel; these name what they point at).
REL_PATCHES = "hyper400k:patches"
REL_SHARD_INDEX = "hyper400k:shard-index"
GENERATION_FIELD = "hyper400k:generation"
GENERATIONS_DIR = "generations"
STAGING_PREFIX = ".stac-staging-"

_EPSG_CODE = re.compile(r"^EPSG:\d+$", re.IGNORECASE)
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_MULTIHASH_SHA256 = re.compile(r"^1220[0-9a-f]{64}$")
_ASSET_TITLES = {
    "data": "Product data",
    "header": "ENVI header",
    "loc": "Per-pixel location companion (lon, lat, elevation)",
    "obs": "Per-pixel observation-geometry companion (sun and view angles)",
}


@dataclass
class ProductRecord:
    """One source product as the catalog needs it.

    ``meta`` is :meth:`hyper400k.scene.SceneMeta.to_json_dict`. ``sizes`` and ``checksums`` are keyed like
    ``meta["files"]`` (``data``, ``header``, ``loc``, ``obs``); a checksum is a SHA-256 hex digest or an
    already encoded sha2-256 multihash. A missing size is read from the file when it exists; a missing
    checksum is left out (hashing terabytes only to describe them is the downloader's job).
    ``drop_reasons`` counts reasons, and a dropped tile may have several, so ``tiles_dropped`` is separate.
    """

    meta: dict[str, Any]
    flight_line: str
    split: str
    sizes: dict[str, int] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    tiles_kept: int = 0
    tiles_dropped: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)
    source_url: str | None = None
    segment: str | None = None  # the numbered piece of the flight line, when the archive cuts it
    # Files read from a download that was deleted after tiling, by role: where they are distributed
    # (``href``, and ``member``: the file's name inside the archive at ``href``, when it came in one).
    distributed_as: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def product_id(self) -> str:
        return str(self.meta["product_id"])


@dataclass(slots=True)  # 400,000 of them at Hyper-400K size: no per-instance __dict__
class PatchRecord:
    """One sample as the patch index needs it.

    ``shard`` is the href of the shard holding the sample, relative to the catalog folder (``out_dir``).
    ``footprint`` is the patch polygon in WGS-84 (GeoJSON) or None when the product has no map grid;
    the index then uses the product's footprint and says so in ``hyper400k:footprint``.
    """

    key: str
    shard: str
    product_id: str
    sensor: str
    level: str
    split: str
    row: int
    col: int
    datetime: str
    footprint: dict[str, Any] | None = None
    qa: dict[str, Any] = field(default_factory=dict)
    flight_line: str | None = None
    segment: str | None = None

    @classmethod
    def from_sample_meta(cls, meta: dict[str, Any], shard: str) -> PatchRecord:
        """The record of a sample from its ``meta.json`` (see :mod:`hyper400k.sample`)."""
        return cls(
            key=meta["key"],
            shard=shard,
            product_id=meta["product"],
            sensor=meta["sensor"],
            level=meta["level"],
            split=meta["split"],
            row=meta["row"],
            col=meta["col"],
            datetime=meta["datetime"],
            footprint=meta.get("footprint"),
            qa=dict(meta.get("qa", {})),
            flight_line=meta.get("flight_line"),
            segment=meta.get("segment"),
        )


@dataclass
class ShardAsset:
    """One WebDataset shard as an asset of its sensor × level collection. ``href`` is relative to the
    catalog folder (``out_dir``), like :attr:`PatchRecord.shard`."""

    href: str
    sensor: str
    level: str
    split: str
    samples: int
    size: int
    sha256: str


# ----------------------------------------------------------------------------------------------- build


def load_collection_config(path: Path | None = None) -> dict[str, Any]:
    """The root collection's metadata (``catalog/collection.yaml`` by default), checked for required keys."""
    path = DEFAULT_COLLECTION_CONFIG if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"collection metadata {path} not found; pass collection_config=<yaml file>")
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    missing = [key for key in ("id", "description", "license") if not config.get(key)]
    if missing:
        raise ValueError(f"{path}: missing {missing}")
    return config


def build_catalog(
    out_dir: Path,
    products: Sequence[ProductRecord],
    patches: Sequence[PatchRecord],
    *,
    collection_config: Path | None = None,
    shard_index: str | None = None,
    generation: int | None = None,
    shards: Sequence[ShardAsset] = (),
    root_fields: dict[str, Any] | None = None,
) -> Path:
    """Write the catalog and patch index under ``out_dir`` and return the path of ``catalog.json``.

    ``shard_index`` is the href of the shards' ``index.json`` relative to ``out_dir``; when given, the
    root and every Item link to it. ``shards`` become assets of their sensor × level collection (size,
    checksum, split, sample count), so a STAC client finds the files to stream without the shard index. Everything is written to a staging folder inside ``out_dir`` first
    and then moved into place with ``catalog.json`` last, so readers see the old or the new catalog,
    and a failed build leaves the old one. Entries the previous catalog owned and the new one does not
    (a child collection of a sensor no longer present) are removed; nothing else in ``out_dir`` is.

    With ``generation``, everything but ``catalog.json`` goes to ``generations/<generation>/`` (see
    :func:`generation_dir`), a folder no earlier generation uses, and the root records the number as
    ``hyper400k:generation``: the small ``catalog.json``, renamed into place last, is then the one switch
    from the previous generation to this one, and the previous generation stays whole until it is removed.
    ``root_fields`` are added to the root (e.g. ``hyper400k:filter``, the provenance of a filtered build).
    """
    config = load_collection_config(collection_config)
    _check_records(products, patches)
    _real_folder.cache_clear()  # folders resolved afresh by every build
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = "" if generation is None else generation_dir(generation)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
    try:
        root = _root_collection(
            config, products, has_patches=bool(patches), shard_index=shard_index, prefix=prefix
        )
        if generation is not None:
            root.extra_fields[GENERATION_FIELD] = int(generation)
        root.extra_fields.update(root_fields or {})
        groups = _groups(root.id, products)
        for child in _child_collections(config, groups):
            root.add_child(child)
        # Only the root and its few children are a pystac tree; Items are made, written and dropped one at a
        # time (13,040 Items with 425 bands each do not fit in memory together, and a collection holding
        # thousands of linked Items makes pystac's link lookups quadratic).
        # Normalised against the catalog file, not the folder: pystac takes a folder whose name has a dot (a
        # staging folder such as ``.out.filtering-x1y2``) for a file and would lay everything out beside it.
        root.normalize_hrefs(str(out_dir / CATALOG_FILE), strategy=_layout(prefix))
        root.catalog_type = pystac.CatalogType.SELF_CONTAINED  # links written relative (what save() sets)
        patch_index = out_dir / prefix / PATCH_INDEX_FILE
        for child in root.get_children():
            _write_items(
                child, groups[child.id], out_dir, staging, patch_index if patches else None, shard_index
            )
        _add_shard_assets(root, out_dir, shards)
        # the root and children; the Items' links are hrefs (unresolved), which save() leaves alone
        root.save(pystac.CatalogType.SELF_CONTAINED, dest_href=str(staging))
        if patches:
            footprints = {
                record.product_id: _clean_geometry(record.meta.get("footprint")) for record in products
            }
            collection_of = {record.product_id: cid for cid, members in groups.items() for record in members}
            (staging / prefix).mkdir(parents=True, exist_ok=True)
            _write_patch_index(staging / prefix / PATCH_INDEX_FILE, patches, footprints, collection_of, root)
        _install(staging, out_dir, prefix)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / CATALOG_FILE


def generation_dir(generation: int) -> str:
    """The folder, relative to the catalog, holding everything of one generation but ``catalog.json``."""
    return f"{GENERATIONS_DIR}/{generation:06d}"


def catalog_generation(catalog_path: Location) -> tuple[int | None, Location | None, Location | None]:
    """What a root ``catalog.json`` commits: its generation number (None for a catalog written without one),
    and the locations of its patch index and shard index (None where it links none). ``catalog_path`` is a
    local path (the results are absolute paths) or a URL (the results are URLs, hrefs followed from it)."""
    catalog_path = as_location(catalog_path)
    text = storage.read_text(catalog_path)  # an OS error (permission, I/O) stays one, naming the file
    try:
        root = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"cannot read the catalog {catalog_path}: {exc}") from exc
    if not isinstance(root, dict):
        raise ValueError(f"{catalog_path}: not a STAC catalog (not a JSON object)")
    patches_href = root.get("assets", {}).get("patches", {}).get("href")
    index_href = next(
        (link["href"] for link in root.get("links", []) if link.get("rel") == REL_SHARD_INDEX), None
    )
    base = storage.parent(catalog_path)
    generation = root.get(GENERATION_FIELD)
    return (
        int(generation) if isinstance(generation, int) else None,
        _follow(base, patches_href) if patches_href else None,
        _follow(base, index_href) if index_href else None,
    )


def _follow(base: Location, href: str) -> Location:
    return (base / href).resolve() if isinstance(base, Path) else storage.join(base, href)


def find_catalog(source: Location | str) -> Location | None:
    """The root ``catalog.json`` of a build given as its folder (or prefix/URL), its ``shards/`` folder,
    or the catalog itself; None when ``source`` is none of these. The one resolver from "a build" to
    its committed generation: pass the result to :func:`catalog_generation`."""
    source = as_location(source)
    name = storage.name_of(source)
    if name == CATALOG_FILE:
        return source if storage.is_file(source) else None
    if name.endswith((".json", ".parquet", ".tar")) or (isinstance(source, Path) and not source.is_dir()):
        return None  # another file of a build (no request is spent on probing below it)
    for folder in (source, storage.parent(source)):
        if storage.is_file(candidate := storage.join(folder, CATALOG_FILE)):
            return candidate
        if storage.name_of(source) != "shards":
            break  # only a build's own shards/ folder stands for the build above it
    return None


def _check_records(products: Sequence[ProductRecord], patches: Sequence[PatchRecord]) -> None:
    """Refuse inputs that would make an inconsistent catalog (duplicate ids, patch/product disagreement)."""
    by_id: dict[str, ProductRecord] = {}
    line_split: dict[str, str] = {}  # every segment and level of a flight line share its split
    for record in products:
        if record.product_id in by_id:
            raise ValueError(f"duplicate product id {record.product_id!r}")
        if record.split not in SPLITS:
            raise ValueError(f"product {record.product_id}: split {record.split!r} not in {SPLITS}")
        if line_split.setdefault(record.flight_line, record.split) != record.split:
            raise ValueError(
                f"product {record.product_id}: flight line {record.flight_line} is in both "
                f"{line_split[record.flight_line]!r} and {record.split!r} (splits are by flight line)"
            )
        by_id[record.product_id] = record
    keys: set[str] = set()
    for patch in patches:
        if patch.key in keys:
            raise ValueError(f"duplicate patch key {patch.key!r}")
        keys.add(patch.key)
        product = by_id.get(patch.product_id)
        if product is None:
            raise ValueError(f"patch {patch.key}: product {patch.product_id!r} is not among the products")
        expected = (product.meta["sensor"], product.meta["level"], product.split)
        if (patch.sensor, patch.level, patch.split) != expected:
            raise ValueError(
                f"patch {patch.key}: sensor/level/split {(patch.sensor, patch.level, patch.split)} differ from "
                f"its product's {expected} (splits are by flight line, never by patch)"
            )


def _layout(prefix: str = "") -> CustomLayoutStrategy:
    """pystac's best-practice layout, except that the root Collection is ``catalog.json`` and child
    collections sit under ``prefix`` (a generation's folder) when one is given."""

    def root_as_catalog_json(collection: pystac.Collection, parent_dir: str, is_root: bool) -> str | None:
        if is_root:
            return os.path.join(parent_dir, CATALOG_FILE)
        return os.path.join(parent_dir, prefix, collection.id, "collection.json") if prefix else None

    return CustomLayoutStrategy(
        collection_func=root_as_catalog_json, fallback_strategy=BestPracticesLayoutStrategy()
    )


def _root_collection(
    config: dict[str, Any],
    products: Sequence[ProductRecord],
    *,
    has_patches: bool,
    shard_index: str | None,
    prefix: str = "",
) -> pystac.Collection:
    root = pystac.Collection(
        id=config["id"],
        description=config["description"],
        extent=_extent([_item_extent(r) for r in products]),
        title=config.get("title"),
        license=config["license"],
        keywords=config.get("keywords"),
        providers=_providers(config),
    )
    for link in _config_links(config):
        root.add_link(link)
    if has_patches:
        root.add_asset(
            "patches",
            pystac.Asset(
                href="./" + (f"{prefix}/" if prefix else "") + PATCH_INDEX_FILE,
                title="Patch index: one stac-geoparquet row per sample (shard, key, footprint, QA, split)",
                media_type=PARQUET_MEDIA_TYPE,
                roles=["stac-items"],
            ),
        )
    if shard_index is not None:
        root.add_link(pystac.Link(REL_SHARD_INDEX, shard_index, "application/json", "WebDataset shard index"))
    return root


def _providers(config: dict[str, Any]) -> list[pystac.Provider] | None:
    providers = [
        pystac.Provider(
            name=p["name"], description=p.get("description"), roles=p.get("roles"), url=p.get("url")
        )
        for p in config.get("providers", [])
    ]
    return providers or None


def _config_links(config: dict[str, Any], rels: Iterable[str] | None = None) -> list[pystac.Link]:
    """The links listed in the collection metadata (only those of ``rels`` when given)."""
    return [
        pystac.Link(link["rel"], link["href"], media_type=link.get("type"), title=link.get("title"))
        for link in config.get("links", [])
        if rels is None or link["rel"] in rels
    ]


def _groups(root_id: str, products: Sequence[ProductRecord]) -> dict[str, list[ProductRecord]]:
    """Products per child collection id (``<root>-<sensor>-<level>``), in (sensor, level) then id order."""
    groups: dict[tuple[str, str], list[ProductRecord]] = {}
    for record in products:
        groups.setdefault((record.meta["sensor"], record.meta["level"]), []).append(record)
    return {
        f"{root_id}-{sensor}-{level.lower()}": sorted(members, key=lambda r: r.product_id)
        for (sensor, level), members in sorted(groups.items())
    }


def _child_collections(
    config: dict[str, Any], groups: dict[str, list[ProductRecord]]
) -> Iterator[pystac.Collection]:
    """One Collection per (sensor, level) present, in a stable order (its Items are written apart)."""
    titles = config.get("sensors", {})
    for collection_id, records in groups.items():
        sensor, level = records[0].meta["sensor"], records[0].meta["level"]
        spec = sensor_spec(sensor)
        level_name = "at-sensor radiance" if level == "L1" else "surface reflectance"
        gsds = [r.meta["gsd_m"] for r in records if _positive(r.meta.get("gsd_m"))]
        summaries: dict[str, Any] = {
            "instruments": sorted({spec.instrument}),
            "platform": sorted({spec.platform}),
            "processing:level": [PROCESSING_LEVEL[level]],
            "ml-aoi:split": sorted({r.split for r in records}),
            "hyper400k:band_count": sorted({int(r.meta["bands"]) for r in records}),
        }
        if gsds:
            summaries["gsd"] = {"minimum": min(gsds), "maximum": max(gsds)}
        child = pystac.Collection(
            id=collection_id,
            title=f"{titles.get(sensor, sensor)} {PROCESSING_LEVEL[level]} {level_name}",
            description=(
                f"{titles.get(sensor, sensor)} {level} products ({level_name}): one Item per source product "
                f"with its full band list, map geometry, files and split."
            ),
            extent=_extent([_item_extent(r) for r in records]),
            license=config["license"],
            providers=_providers(config),
            summaries=pystac.Summaries(summaries),
            stac_extensions=[EXT_PROCESSING, EXT_ML_AOI],
        )
        for link in _config_links(config, rels=("license",)):
            child.add_link(link)
        yield child


def _write_items(
    child: pystac.Collection,
    records: Sequence[ProductRecord],
    out_dir: Path,
    staging: Path,
    patch_index: Path | None,
    shard_index: str | None,
) -> None:
    """Write the Items of one child collection under ``staging`` one at a time, and link them from the
    collection by href (before its parent link, where ``add_item`` puts them).

    Each file is what pystac writes for an Item added to the collection (same fields, links and order; a
    test reads them back with pystac), but the links are made once per collection: they are the same for
    every Item but its own title. Through pystac's object graph (``add_item``, ``save_object``) the link
    bookkeeping costs more than the rest of an Item: minutes at Hyper-400K's 13,040 products."""
    folder = os.path.dirname(child.get_self_href() or "")
    layout = BestPracticesLayoutStrategy()
    io = pystac.StacIO.default()
    shared = _collection_links(child, records[0]) if records else []
    item_links = []
    for record in records:
        item = _product_item(record)
        item.collection_id = child.id
        href = layout.get_item_href(item, folder)
        data = item.to_dict(include_self_link=False, transform_hrefs=False)  # its own links: ``via``
        data["links"] += shared + _item_links(
            item.id, os.path.dirname(href), out_dir, patch_index, shard_index
        )
        path = staging / os.path.relpath(href, out_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(io.json_dumps(data), encoding="utf-8")
        relative = "./" + Path(os.path.relpath(href, folder)).as_posix()
        item_links.append(pystac.Link(pystac.RelType.ITEM, relative, pystac.MediaType.GEOJSON))
    at = next(i for i, link in enumerate(child.links) if link.rel == pystac.RelType.PARENT)
    child.links[at:at] = item_links


def _collection_links(child: pystac.Collection, record: ProductRecord) -> list[dict[str, Any]]:
    """The root, collection and parent links of an Item of ``child``, as pystac writes them (relative)."""
    probe = pystac.Item(record.product_id, None, None, _parse_datetime(record.meta["datetime"]), {})
    child.add_item(probe)  # sets the probe's root, parent, collection and self href per the layout
    child.links.pop()  # the collection's link to the probe
    probe.set_parent(child)  # the parent link after the collection link, as normalize_hrefs leaves them
    rels = (pystac.RelType.ROOT, pystac.RelType.COLLECTION, pystac.RelType.PARENT)
    return [link.to_dict() for link in probe.links if link.rel in rels]


def _item_links(
    item_id: str, item_dir: str, out_dir: Path, patch_index: Path | None, shard_index: str | None
) -> list[dict[str, Any]]:
    """Links from an Item to the patch index and shard index, relative to the Item's folder."""
    links = []
    if patch_index is not None:
        href = os.path.relpath(patch_index, item_dir)
        title = f"Patches of this product: rows with hyper400k:product = {item_id}"
        links.append(pystac.Link(REL_PATCHES, href, PARQUET_MEDIA_TYPE, title))
    if shard_index is not None:
        href = os.path.relpath(out_dir / shard_index, item_dir)
        links.append(pystac.Link(REL_SHARD_INDEX, href, "application/json", "WebDataset shard index"))
    return [link.to_dict(transform_href=False) for link in links]


def _add_shard_assets(root: pystac.Collection, out_dir: Path, shards: Sequence[ShardAsset]) -> None:
    """Each shard as an asset of its group's collection, with an href relative to that collection."""
    by_id = {child.id: child for child in root.get_children()}  # ids are <root>-<sensor>-<level>
    for shard in shards:
        child = by_id.get(f"{root.id}-{shard.sensor}-{shard.level.lower()}")
        if child is None:
            raise ValueError(f"shard {shard.href}: no collection for {shard.sensor} {shard.level}")
        folder = os.path.dirname(child.get_self_href() or "")
        child.add_asset(
            Path(shard.href).stem,
            pystac.Asset(
                href=os.path.relpath(out_dir / shard.href, folder),
                title=f"WebDataset shard ({shard.split}, {shard.samples} samples)",
                media_type="application/x-tar",
                roles=["data"],
                extra_fields={
                    "file:size": int(shard.size),
                    "file:checksum": sha256_multihash(shard.sha256),
                    "hyper400k:split": shard.split,
                    "hyper400k:samples": int(shard.samples),
                },
            ),
        )
        if EXT_FILE not in child.stac_extensions:
            child.stac_extensions.append(EXT_FILE)


def _install(staging: Path, out_dir: Path, prefix: str = "") -> None:
    """Move the staged catalog into ``out_dir``: children and the patch index first, ``catalog.json`` last.

    With ``prefix`` (a generation's folder), the staged entries go into ``out_dir/prefix``, which only this
    generation uses; entries already there (an earlier attempt at it, or its shard index) are replaced or kept.
    """
    trash = Path(tempfile.mkdtemp(prefix=".replaced-", dir=staging))
    source, target = staging / prefix, out_dir / prefix
    source.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    new_entries = [p for p in source.iterdir() if p.name != CATALOG_FILE and not p.name.startswith(".")]
    top = Path(prefix).parts[0] if prefix else None
    stale = _owned_entries(out_dir / CATALOG_FILE) - ({top} if top else {p.name for p in new_entries})
    for entry in new_entries:
        dest = target / entry.name
        if dest.exists():
            os.rename(dest, trash / entry.name)
        os.rename(entry, dest)
    for name in stale:
        if (out_dir / name).exists():
            os.rename(out_dir / name, trash / name)
    os.replace(staging / CATALOG_FILE, out_dir / CATALOG_FILE)


def _owned_entries(catalog_path: Path) -> set[str]:
    """Top-level entries an existing ``catalog.json`` owns: child folders holding a ``collection.json``
    and the patch index. Anything else it may link to (shards, reports) is never treated as stale."""
    try:
        root = json.loads(catalog_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(root, dict):
        return set()
    hrefs = [link.get("href") for link in root.get("links", []) if link.get("rel") == "child"]
    hrefs += [asset.get("href") for asset in root.get("assets", {}).values()]
    names = set()
    for href in hrefs:
        if isinstance(href, str) and "://" not in href and not os.path.isabs(href):
            first = Path(os.path.normpath(href)).parts[0]
            entry = catalog_path.parent / first
            if first == PATCH_INDEX_FILE or (first != os.pardir and (entry / "collection.json").is_file()):
                names.add(first)
    return names


# ------------------------------------------------------------------------------------------------ items


def _product_item(record: ProductRecord) -> pystac.Item:
    """The STAC Item of one source product."""
    meta = record.meta
    geometry, bbox = _clean_geometry(meta.get("footprint"))
    spec = sensor_spec(meta["sensor"])
    properties: dict[str, Any] = {
        "platform": spec.platform,
        "instruments": [spec.instrument],
        "processing:level": PROCESSING_LEVEL[meta["level"]],
        "ml-aoi:split": record.split,
        **_projection(meta),
        "hyper400k:sensor": meta["sensor"],
        "hyper400k:level": meta["level"],
        "hyper400k:flight_line": record.flight_line,
        "hyper400k:segment": record.segment,
        "hyper400k:units": meta["units"],
        "hyper400k:good_band_count": int(sum(bool(g) for g in meta["good_bands"])),
        "hyper400k:fwhm_source": meta.get("fwhm_source"),
        "hyper400k:tiles_kept": int(record.tiles_kept),
        "hyper400k:tiles_dropped": int(record.tiles_dropped),
        "hyper400k:drop_reasons": {str(k): int(v) for k, v in record.drop_reasons.items()},
    }
    if meta.get("processing_version"):
        properties["processing:version"] = str(meta["processing_version"])
    if _positive(meta.get("gsd_m")):
        properties["gsd"] = float(meta["gsd_m"])
    if meta.get("notes"):
        properties["hyper400k:notes"] = list(meta["notes"])
    angles = meta.get("geometry") or {}
    if angles.get("earth_sun_distance_au") is not None:
        properties["hyper400k:earth_sun_distance_au"] = float(angles["earth_sun_distance_au"])
    view = _view(angles)
    properties.update(view)
    extensions = [EXT_EO, EXT_PROJ, EXT_FILE, EXT_ML_AOI, EXT_PROCESSING] + ([EXT_VIEW] if view else [])
    item = pystac.Item(
        id=record.product_id,
        geometry=geometry,
        bbox=bbox,
        datetime=_parse_datetime(meta["datetime"]),
        properties=properties,
        stac_extensions=extensions,
    )
    for role, path in meta.get("files", {}).items():
        item.add_asset(role, _asset(record, role, path))
    if record.source_url:
        item.add_link(pystac.Link("via", record.source_url, title="Source product as distributed"))
    return item


def _asset(record: ProductRecord, role: str, path: str) -> pystac.Asset:
    """A source file as an Asset: absolute href, media type, size, checksum; the data file gets the bands.

    A file whose download was deleted after tiling is named where it is distributed instead: its URL, or
    for a member of a tarball the archive's URL (of the archive's media type) with the member's name in
    ``hyper400k:archive_member`` and its size in ``hyper400k:member_size`` (``file:size`` would describe
    the archive)."""
    file_path = _real_path(path)
    origin = record.distributed_as.get(role)
    extra: dict[str, Any] = {}
    size = record.sizes.get(role)
    if size is None and file_path.is_file():
        size = file_path.stat().st_size
    href, media_type = file_path.as_posix(), _media_type(file_path)
    if origin is not None:
        href = origin["href"]
        if "member" in origin:  # a single file keeps the type its name (the URL's, or the manifest's) gives
            media_type = _archive_type(href)
            extra["hyper400k:archive_member"] = origin["member"]
            if size is not None:
                extra["hyper400k:member_size"] = int(size)
            size = None
    if size is not None:
        extra["file:size"] = int(size)
    if role in record.checksums:
        extra["file:checksum"] = sha256_multihash(record.checksums[role])
    if role == "data":
        meta = record.meta
        extra["ml-aoi:role"] = "feature"
        extra["bands"] = _bands(meta)
        if meta.get("nodata") is not None and math.isfinite(meta["nodata"]):
            extra["nodata"] = meta["nodata"]
        if meta["units"] != REFLECTANCE_UNITS:
            extra["unit"] = meta["units"]
    return pystac.Asset(
        href=href,
        title=_ASSET_TITLES.get(role, f"{role} companion"),
        media_type=media_type,
        roles=["data"] if role == "data" else ["metadata"],
        extra_fields=extra,
    )


def _real_path(path: str) -> Path:
    """``Path(path).resolve()``, resolving each folder once: products of an archive share their folders, and
    ``resolve`` checks every component of every path (a quarter of an Item's cost at 13,040 products)."""
    if os.path.islink(path):
        return Path(path).resolve()
    folder, name = os.path.split(os.path.abspath(path))
    return Path(_real_folder(folder)) / name


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _bands(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Every band, in file order, with centre wavelength and FWHM in micrometres (non-finite values left out).

    Products of one sensor and processing version share their band table, so tables are built once per
    distinct table (at archive scale this is most of an Item's cost). The band dicts are shared, not copied:
    :func:`build_catalog` only serialises an Item and drops it, and a copy per Item cost 1 ms (13 s at 13,040)."""
    table = _band_table(tuple(meta["wavelength_nm"]), tuple(meta["fwhm_nm"]), tuple(meta["good_bands"]))
    return list(table)


@functools.lru_cache(maxsize=64)
def _band_table(
    wavelengths: tuple[float, ...], fwhms: tuple[float, ...], goods: tuple[bool, ...]
) -> tuple[dict[str, Any], ...]:
    width = max(3, len(str(len(wavelengths))))
    bands = []
    for i, (wl, fwhm, good) in enumerate(zip(wavelengths, fwhms, goods, strict=True)):
        band: dict[str, Any] = {"name": f"b{i + 1:0{width}d}"}
        if _positive(wl):
            band["eo:center_wavelength"] = round(float(wl) / 1000.0, 12)
        if _positive(fwhm):
            band["eo:full_width_half_max"] = round(float(fwhm) / 1000.0, 12)
        band["hyper400k:good"] = bool(good)
        bands.append(band)
    return tuple(bands)


def _projection(meta: dict[str, Any]) -> dict[str, Any]:
    """``proj:*`` fields: code (or WKT2 when the CRS has no EPSG code), shape, rotated transform, bbox."""
    out: dict[str, Any] = {"proj:shape": [int(meta["lines"]), int(meta["samples"])]}
    crs = meta.get("crs")
    if crs is None:
        out["proj:code"] = None  # raw sensor geometry (located by a loc companion): no CRS
    elif _EPSG_CODE.match(crs):
        out["proj:code"] = crs.upper()
    else:
        parsed = pyproj.CRS.from_user_input(crs)
        epsg = parsed.to_epsg()
        out["proj:code"] = f"EPSG:{epsg}" if epsg is not None else None
        if epsg is None:
            out["proj:wkt2"] = parsed.to_wkt()
    transform = meta.get("transform")
    if transform is not None:
        a, b, c, d, e, f = (float(v) for v in transform)
        out["proj:transform"] = [a, b, c, d, e, f]
        lines, samples = int(meta["lines"]), int(meta["samples"])
        corners = [(col, row) for col in (0, samples) for row in (0, lines)]
        xs = [a * col + b * row + c for col, row in corners]
        ys = [d * col + e * row + f for col, row in corners]
        out["proj:bbox"] = [min(xs), min(ys), max(xs), max(ys)]
    return out


def _view(angles: dict[str, Any]) -> dict[str, float]:
    """``view:*`` fields from scene-mean angles (degrees); only those known and in the extension's ranges."""
    out: dict[str, float] = {}
    sz, sa = angles.get("solar_zenith"), angles.get("solar_azimuth")
    vz, va = angles.get("view_zenith"), angles.get("view_azimuth")
    if sa is not None and math.isfinite(sa):
        out["view:sun_azimuth"] = float(sa) % 360.0
    if sz is not None and 0.0 <= sz <= 180.0:
        out["view:sun_elevation"] = 90.0 - float(sz)
    if vz is not None and 0.0 <= vz <= 90.0:
        out["view:incidence_angle"] = float(vz)
    if va is not None and math.isfinite(va):
        out["view:azimuth"] = float(va) % 360.0
    return out


def sha256_multihash(checksum: str) -> str:
    """A SHA-256 digest as the file extension's multihash (``1220`` + hex); multihashes pass through."""
    value = checksum.strip().lower()
    if _SHA256_HEX.match(value):
        return "1220" + value
    if _MULTIHASH_SHA256.match(value):
        return value
    raise ValueError(f"not a SHA-256 hex digest or sha2-256 multihash: {checksum!r}")


def _archive_type(url: str) -> str:
    """The media type of a tarball by its name: gzip-compressed (``.tar.gz``, ``.tgz``) or plain."""
    name = urllib.parse.urlsplit(url).path.lower()
    return "application/gzip" if name.endswith((".gz", ".tgz")) else "application/x-tar"


def _media_type(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".hdr":
        return "text/plain"
    if suffix in (".tif", ".tiff"):
        return str(pystac.MediaType.GEOTIFF)
    if suffix in (".nc", ".nc4"):
        return "application/netcdf"
    return "application/octet-stream"  # ENVI binary (BIL/BIP/BSQ)


def _clean_geometry(footprint: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[float] | None]:
    """A GeoJSON footprint made valid and counter-clockwise (RFC 7946), with its bbox; ``(None, None)``
    without one. A one-pixel product's polygon (four equal corners) becomes a Point."""
    if footprint is None:
        return None, None
    quad = _convex_quad(footprint)
    if quad is not None:
        return quad
    geometry = shape(footprint)
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    if geometry.is_empty:
        return None, None
    if isinstance(geometry, Polygon):
        geometry = orient(geometry, sign=1.0)
    return json.loads(shapely.to_geojson(geometry)), list(geometry.bounds)


def _convex_quad(footprint: dict[str, Any]) -> tuple[dict[str, Any], list[float]] | None:
    """The common case without shapely: a closed ring of four corners forming a strictly convex polygon (a
    tile's or product's corners under an affine map), returned counter-clockwise with its bbox; None for
    anything else. Shapely's parse / validate / orient costs ~1 ms per polygon: 7 minutes at 400k patches."""
    if footprint.get("type") != "Polygon" or len(footprint.get("coordinates", ())) != 1:
        return None
    ring = footprint["coordinates"][0]
    if len(ring) != 5 or list(ring[0]) != list(ring[-1]):
        return None
    points = [(float(x), float(y)) for x, y in ring[:4]]
    turns = [
        (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0])
        for a, b, c in zip(points, points[1:] + points[:1], points[2:] + points[:2], strict=True)
    ]
    if not (all(t > 0 for t in turns) or all(t < 0 for t in turns)) or not all(map(math.isfinite, turns)):
        return None
    if turns[0] < 0:
        points.reverse()
    xs, ys = [x for x, _ in points], [y for _, y in points]
    coordinates = [[x, y] for x, y in points] + [[points[0][0], points[0][1]]]
    return {"type": "Polygon", "coordinates": [coordinates]}, [min(xs), min(ys), max(xs), max(ys)]


def _item_extent(record: ProductRecord) -> tuple[list[float] | None, datetime]:
    return _clean_geometry(record.meta.get("footprint"))[1], _parse_datetime(record.meta["datetime"])


def _extent(parts: Sequence[tuple[list[float] | None, datetime]]) -> pystac.Extent:
    """Union bbox and [first, last] datetime; the whole globe and an open interval when nothing is known."""
    boxes = [bbox for bbox, _ in parts if bbox is not None]
    times = [when for _, when in parts]
    if boxes:
        bbox = [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ]
    else:
        bbox = [-180.0, -90.0, 180.0, 90.0]
    interval = [min(times), max(times)] if times else [None, None]
    return pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([interval]))


def _parse_datetime(text: str) -> datetime:
    """ISO 8601 to an aware UTC datetime (naive values are taken as UTC, as scene metadata writes them)."""
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


# ---------------------------------------------------------------------------------------- patch index


def _write_patch_index(
    path: Path,
    patches: Sequence[PatchRecord],
    product_footprints: dict[str, tuple[dict[str, Any] | None, list[float] | None]],
    collection_of: dict[str, str | None],
    root: pystac.Collection,
) -> None:
    """Write the stac-geoparquet patch index: one row per sample (see :func:`_patch_columns` for a row).

    The table is built column by column, the patch footprints as one vectorised shapely call, and written by
    stac-geoparquet (its GeoParquet and collection metadata). Handing stac-geoparquet one dict per row instead
    gives the same table, but it deep-copies and parses every row, about 1 ms each: minutes at Hyper-400K's
    400,000 patches. Row groups of 65,536 rows (what its row-by-row path writes) keep filters pushed down."""
    table = _patch_columns(patches, product_footprints, collection_of)
    batches = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=_ROW_GROUP))
    collections = {root.id: _bare(root), **{child.id: _bare(child) for child in root.get_children()}}
    stac_geoparquet.arrow.to_parquet(batches, path, collections=collections)


def _bare(collection: pystac.Catalog) -> dict[str, Any]:
    """A collection's JSON without links, for the parquet file's ``stac-geoparquet`` metadata."""
    data = collection.to_dict(include_self_link=False, transform_hrefs=False)
    data["links"] = []
    return data


def _patch_columns(
    patches: Sequence[PatchRecord],
    product_footprints: dict[str, tuple[dict[str, Any] | None, list[float] | None]],
    collection_of: dict[str, str | None],
) -> pa.Table:
    """The patch index as stac-geoparquet lays out a lightweight STAC Item per sample: ``type``,
    ``stac_version``, ``stac_extensions``, ``id``, ``collection``, ``geometry`` (WKB), ``bbox`` (struct),
    ``links``, ``assets`` (the shard), then the properties: ``datetime``, ``hyper400k:*``, ``ml-aoi:split`` and
    the scalar QA as ``qa:<name>``.

    stac-geoparquet needs a geometry and a bbox on every row: a patch without its own footprint gets its
    product's (``hyper400k:footprint`` = ``product``), and one whose product has none an empty polygon
    with a NaN bbox (``none``), which no spatial filter matches.
    """
    n = len(patches)
    wkb, boxes, source = [], [], []
    for start in range(0, n, _ROW_GROUP):  # a chunk at a time: GEOS objects for every patch at once are large
        chunk_wkb, chunk_bbox, chunk_source = _patch_geometries(
            patches[start : start + _ROW_GROUP], product_footprints
        )
        wkb.append(pa.array(chunk_wkb, pa.binary()))
        boxes.append(chunk_bbox)
        source += chunk_source
    bbox = np.concatenate(boxes)
    when = {
        text: _parse_datetime(text).strftime("%Y-%m-%dT%H:%M:%SZ") for text in {p.datetime for p in patches}
    }
    qa_names: dict[str, None] = {}
    for patch in patches:
        qa_names.update(dict.fromkeys(patch.qa))
    qa_columns = {}
    for name in qa_names:  # scalar QA only (per-band lists stay in meta.json); a row without it is null
        values = [patch.qa.get(name, _MISSING) for patch in patches]
        kinds = set(map(type, values))
        if kinds & _SCALAR_QA:  # some row has it as a scalar (or null)
            qa_columns[f"qa:{name}"] = pa.array([v if type(v) in _SCALAR_QA else None for v in values])
    shards = pa.array([p.shard for p in patches])
    asset = pa.StructArray.from_arrays(
        [shards, pa.array(["application/x-tar"] * n), pa.array([["data"]] * n, pa.list_(pa.string()))],
        names=["href", "type", "roles"],
    )
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "type": pa.array(["Feature"] * n),
        "stac_version": pa.array([pystac.get_stac_version()] * n),
        "stac_extensions": pa.array([[EXT_ML_AOI]] * n, pa.list_(pa.string())),
        "id": pa.array([p.key for p in patches]),
        "collection": pa.array([collection_of[p.product_id] for p in patches], pa.string()),
        "geometry": pa.chunked_array(wkb, pa.binary()),
        "bbox": pa.StructArray.from_arrays(list(bbox.T), names=["xmin", "ymin", "xmax", "ymax"]),
        "links": pa.array([[]] * n, pa.list_(pa.null())),
        "assets": pa.StructArray.from_arrays([asset], names=["shard"]),
        "datetime": pa.array(pa.array([when[p.datetime] for p in patches]), pa.timestamp("us", tz="UTC")),
        "hyper400k:shard": shards,
        "hyper400k:product": pa.array([p.product_id for p in patches]),
        "hyper400k:sensor": pa.array([p.sensor for p in patches]),
        "hyper400k:level": pa.array([p.level for p in patches]),
        "hyper400k:flight_line": pa.array([p.flight_line for p in patches]),
        "hyper400k:segment": pa.array([p.segment for p in patches]),
        "ml-aoi:split": pa.array([p.split for p in patches]),
        "hyper400k:row": pa.array([int(p.row) for p in patches], pa.int64()),
        "hyper400k:col": pa.array([int(p.col) for p in patches], pa.int64()),
        "hyper400k:footprint": pa.array(source),
        **qa_columns,
    }
    # the geometry column tagged as stac-geoparquet tags it (geoarrow WKB in WGS-84), by its own function
    return pa.Table.from_batches(
        [_stac_arrow.assign_geoarrow_metadata(batch) for batch in pa.table(columns).to_batches()]
    )


_ROW_GROUP = 65_536  # rows per parquet row group (what stac-geoparquet's row-by-row path writes)
_MISSING = object()  # a QA field a patch lacks
_SCALAR_QA = {type(None), bool, int, float, str}


def _patch_geometries(
    patches: Sequence[PatchRecord],
    product_footprints: dict[str, tuple[dict[str, Any] | None, list[float] | None]],
) -> tuple[list[bytes], np.ndarray, list[str]]:
    """Every patch's footprint as ISO WKB, its bbox (n × 4) and where it came from (``patch``, ``product``,
    ``none``). Footprints that are convex quadrilaterals (a tile's corners under an affine map: nearly all)
    are oriented counter-clockwise and encoded in one vectorised pass, exactly as :func:`_convex_quad` does
    one at a time; any other goes through :func:`_clean_geometry`."""
    n = len(patches)
    rings = np.full((n, 5, 2), np.nan)
    quad = np.zeros(n, dtype=bool)
    found, coordinates = [], []
    for i, patch in enumerate(patches):
        footprint = patch.footprint
        if footprint is None or footprint.get("type") != "Polygon":
            continue
        parts = footprint.get("coordinates", ())
        ring = parts[0] if len(parts) == 1 else ()
        if len(ring) == 5 and list(ring[0]) == list(ring[-1]) and all(len(point) == 2 for point in ring):
            found.append(i)
            coordinates.append(ring)
    if found:
        rings[found] = np.array(coordinates, dtype=float)
        quad[found] = True
    a, b, c = rings[:, 0:4], np.roll(rings[:, 0:4], -1, axis=1), np.roll(rings[:, 0:4], -2, axis=1)
    turns = (b[..., 0] - a[..., 0]) * (c[..., 1] - b[..., 1]) - (b[..., 1] - a[..., 1]) * (
        c[..., 0] - b[..., 0]
    )
    with np.errstate(invalid="ignore"):
        convex = quad & np.isfinite(turns).all(axis=1) & ((turns > 0).all(axis=1) | (turns < 0).all(axis=1))
    clockwise = convex & (turns[:, 0] < 0)
    rings[clockwise, 0:4] = rings[clockwise, 3::-1]
    rings[convex, 4] = rings[convex, 0]
    wkb: list[bytes] = [b""] * n
    encoded = shapely.to_wkb(shapely.polygons(rings[convex]), flavor="iso")
    for i, value in zip(np.flatnonzero(convex), encoded, strict=True):
        wkb[i] = value
    bbox = np.empty((n, 4))
    bbox[:, 0:2] = rings[:, 0:4].min(axis=1)
    bbox[:, 2:4] = rings[:, 0:4].max(axis=1)
    source = ["patch"] * n
    for i in np.flatnonzero(~convex):
        patch = patches[i]
        (geometry, box), source[i] = _clean_geometry(patch.footprint), "patch"
        if geometry is None:
            (geometry, box), source[i] = product_footprints[patch.product_id], "product"
        if geometry is None:
            geometry, box, source[i] = {"type": "Polygon", "coordinates": []}, [math.nan] * 4, "none"
        wkb[i] = shapely.to_wkb(shape(geometry), flavor="iso")
        bbox[i] = box
    return wkb, bbox, source


def read_patch_index(
    path: Path | str,
    *,
    sensor: str | Iterable[str] | None = None,
    level: str | Iterable[str] | None = None,
    split: str | Iterable[str] | None = None,
    product: str | Iterable[str] | None = None,
    min_valid_fraction: float | None = None,
    expression: pc.Expression | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """Rows of the patch index matching every filter given. ``path`` is a build folder or its ``catalog.json``
    (the committed generation's table is read), a ``patches.parquet`` file, or a folder of such files.

    Filters are pushed down to the parquet scan, so shards are never opened. ``split`` takes the ml-aoi
    names the build uses (``train``/``validate``/``test``; ``val`` is read as ``validate``). ``expression`` is any further pyarrow
    filter, e.g. ``pc.field("qa:cloud_score") < 0.1``. Call ``.to_pandas()`` on the result for pandas.
    """
    conditions = []
    for column, wanted in (
        ("hyper400k:sensor", sensor),
        ("hyper400k:level", level),
        ("hyper400k:product", product),
        ("ml-aoi:split", None if split is None else [canonical_split(s) for s in _as_list(split)]),
    ):
        if wanted is not None:
            conditions.append(pc.field(column).isin(_as_list(wanted)))
    if min_valid_fraction is not None:
        conditions.append(pc.field("qa:valid_fraction") >= min_valid_fraction)
    if expression is not None:
        conditions.append(expression)
    where = functools.reduce(operator.and_, conditions) if conditions else None
    table = _patch_table_of(as_location(path))
    if isinstance(table, Path):
        return pa_ds.dataset(table, format="parquet").to_table(filter=where, columns=columns)
    if not storage.can_seek(table):  # a plain web server need not answer the range reads parquet makes
        return pq.read_table(pa.BufferReader(storage.read_bytes(table)), filters=where, columns=columns)
    with storage.naming(table):
        fs, inner = fsspec.core.url_to_fs(table)
        return pa_ds.dataset(inner, format="parquet", filesystem=fs).to_table(filter=where, columns=columns)


def _patch_table_of(path: Location) -> Location:
    """The patch table a build folder or root catalog commits; any other path as it is."""
    catalog = find_catalog(path)
    if catalog is None:
        return path
    _, patches, _ = catalog_generation(catalog)
    if patches is None:
        raise ValueError(f"{catalog}: the catalog links no patch index (the build kept no tile)")
    return patches


def _as_list(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


# ----------------------------------------------------------------------------------------- validation


def find_schemas_dir(schemas_dir: Path | str | None = None) -> Path:
    """The offline STAC schema folder: the argument, else ``$HYPER400K_STAC_SCHEMAS``, else the
    project's ``../shared/stac-schemas`` beside the repository. Raises ``FileNotFoundError`` if none."""
    if schemas_dir is not None:
        candidates = [Path(schemas_dir)]
    elif os.environ.get(SCHEMAS_ENV):
        candidates = [Path(os.environ[SCHEMAS_ENV])]
    else:
        candidates = [Path(__file__).resolve().parents[2] / "shared" / "stac-schemas"]
    for candidate in candidates:
        if (candidate / "schema_map.py").is_file():
            return candidate.resolve()
    raise FileNotFoundError(
        f"no offline STAC schema set (schema_map.py) at {candidates[0]}; pass schemas_dir or set {SCHEMAS_ENV}"
    )


@functools.cache
def _validator_for(schemas_dir: Path) -> Any:
    spec = importlib.util.spec_from_file_location("_hyper400k_schema_map", schemas_dir / "schema_map.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {schemas_dir / 'schema_map.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.offline_validator(strict=True)


def offline_validator(schemas_dir: Path | str | None = None) -> Any:
    """A pystac validator over the offline schema set that raises instead of fetching unknown schemas."""
    return _validator_for(find_schemas_dir(schemas_dir))


def validate_catalog(catalog_path: Path, schemas_dir: Path | str | None = None) -> list[str]:
    """Validate every object reachable from ``catalog_path`` by child/item links against the offline schemas.

    Returns one line per problem (empty when the catalog is valid): an object failing its core or any
    extension schema (with the JSON path of the offending value), an unreadable or missing file, a link
    that is not relative, or a schema the offline set lacks. Never uses the network.
    """
    validator = offline_validator(schemas_dir)
    catalog_path = Path(catalog_path).resolve()
    base = catalog_path.parent
    problems: list[str] = []
    seen: set[Path] = set()
    pending = [catalog_path]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        name = os.path.relpath(path, base)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{name}: cannot read: {exc}")
            continue
        problems += [f"{name}: {p}" for p in _validate_object(data, str(path), validator)]
        for link in data.get("links", []) if isinstance(data, dict) else []:
            if not isinstance(link, dict) or link.get("rel") not in ("child", "item"):
                continue
            href = link.get("href")
            if not isinstance(href, str) or "://" in href or os.path.isabs(href):
                problems.append(f"{name}: {link.get('rel')} link {href!r} is not a relative href")
                continue
            pending.append((path.parent / href).resolve())
    return problems


def _validate_object(data: Any, href: str, validator: Any) -> list[str]:
    """Problems of one STAC object (core + declared extension schemas); empty when valid."""
    try:
        validate_dict(data, href=href, validator=validator)
    except pystac.STACValidationError as exc:
        # pystac raises from jsonschema's best-matching error, which knows where the bad value sits.
        summary = str(exc).splitlines()[0].replace(f"at {href} ", "")
        best = exc.__cause__
        if best is None:
            return [summary]
        return [f"{summary}: {getattr(best, 'json_path', '$')}: {getattr(best, 'message', best)}"]
    except GetSchemaError as exc:
        return [f"schema not in the offline set: {exc}"]
    except (pystac.STACTypeError, KeyError, TypeError, ValueError) as exc:
        return [f"not a STAC object: {exc}"]
    return []
