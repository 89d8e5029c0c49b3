"""STAC catalog, stac-geoparquet patch index and flight-line splits, on the real products in ../shared/realdata.

The catalog is validated offline against ../shared/stac-schemas (skipped with a reason when absent), and
deliberately broken copies must be rejected, so the validator is shown to check what it claims to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pystac
import pytest
import shapely
import stac_geoparquet.arrow
from shapely.geometry import shape

from hyper400k.product import open_product
from hyper400k.sensors import identify
from hyper400k.splits import (
    SPLITS,
    assign_split,
    check_fractions,
    split_flight_lines,
)
from hyper400k.stac import (
    CATALOG_FILE,
    PATCH_INDEX_FILE,
    PatchRecord,
    ProductRecord,
    build_catalog,
    find_schemas_dir,
    read_patch_index,
    sha256_multihash,
    validate_catalog,
)

# (path under realdata, bands); the two AVIRIS-NG L2 crops share flight line ang20140912t192359.
REAL_PRODUCTS = {
    "aviris-ng/ang20140912t192359_corr_v1c_img_2580-2590_540-550.img": 432,  # L2, rotated UTM
    "aviris-ng/ang20140912t192359_corr_v1c_img_400-410_10-20.img": 432,  # L2, same flight line
    "aviris-ng/ang20170323t202244_rdn_7000-7010": 425,  # L1, unprojected, footprint from loc
    "aviris-classic/f080702t01p00r08rdn_c_sc01_ort_img_123_456.img": 224,  # L1, rotated
    "aviris-3/AV320250308t200738_rdn.img": 284,  # L1, one pixel: degenerate footprint
}
SHARDS = ["shards/mix-000000.tar", "shards/mix-000001.tar"]
SHARD_INDEX = "shards/index.json"


@pytest.fixture(scope="module")
def schemas() -> Path:
    try:
        return find_schemas_dir()
    except FileNotFoundError as exc:
        pytest.skip(f"offline STAC schemas unavailable: {exc}")


@pytest.fixture(scope="module")
def products(realdata: Path) -> list[ProductRecord]:
    paths = [realdata / rel for rel in REAL_PRODUCTS]
    missing = [p for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"real products missing: {missing}")
    metas = [open_product(p).meta.to_json_dict() for p in paths]
    flight_lines = [identify(p).flight_line for p in paths]
    splits = split_flight_lines(flight_lines)
    records = []
    for path, meta, flight_line in zip(paths, metas, flight_lines, strict=True):
        data = Path(meta["files"]["data"])
        records.append(
            ProductRecord(
                meta=meta,
                flight_line=flight_line,
                split=splits[flight_line],
                checksums={"data": hashlib.sha256(data.read_bytes()).hexdigest()},
                tiles_kept=3,
                tiles_dropped=1,
                drop_reasons={"valid_fraction": 1, "cloud_score": 1},
                source_url=f"https://example.org/aviris/{path.stem}.tar.gz",
            )
        )
    return records


def _patches(products: list[ProductRecord]) -> list[PatchRecord]:
    """Three patches per product; the third has no footprint of its own (as unprojected tiles)."""
    patches = []
    for i, record in enumerate(products):
        meta = record.meta
        for j, (row, col) in enumerate([(0, 0), (0, 256), (256, 0)]):
            patches.append(
                PatchRecord(
                    key=f"{meta['product_id']}_r{row}_c{col}",
                    shard=SHARDS[(i + j) % 2],
                    product_id=meta["product_id"],
                    sensor=meta["sensor"],
                    level=meta["level"],
                    split=record.split,
                    row=row,
                    col=col,
                    datetime=meta["datetime"],
                    footprint=meta["footprint"] if j < 2 else None,
                    qa={
                        "valid_fraction": 0.5 + 0.2 * j,
                        "cloud_score": 0.01 * i,
                        "snr_median": 150.0,
                        "snr": [100.0] * 3,
                        "dead_detector": False,
                        "stripe": j == 1,
                    },
                )
            )
    return patches


@pytest.fixture(scope="module")
def patches(products: list[ProductRecord]) -> list[PatchRecord]:
    return _patches(products)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory, products, patches) -> Path:
    out = tmp_path_factory.mktemp("dataset")
    (out / "shards").mkdir()
    (out / SHARD_INDEX).write_text("{}")
    return build_catalog(out, products, patches, shard_index=SHARD_INDEX)


def _items(catalog: Path) -> dict[str, pystac.Item]:
    return {item.id: item for item in pystac.read_file(catalog).get_items(recursive=True)}


def _by_id(products: list[ProductRecord]) -> dict[str, ProductRecord]:
    return {p.product_id: p for p in products}


# ------------------------------------------------------------------------------------------ catalog


def test_catalog_validates_offline(catalog: Path, schemas: Path) -> None:
    assert catalog == catalog.parent / CATALOG_FILE
    assert validate_catalog(catalog, schemas) == []


def test_hierarchy_root_children_items(catalog: Path, products: list[ProductRecord]) -> None:
    root = pystac.read_file(catalog)
    assert isinstance(root, pystac.Collection) and root.id == "hyper400k"
    assert root.license == "other" and {"producer", "licensor"} <= set(root.providers[0].roles)
    children = {child.id: child for child in root.get_children()}
    assert set(children) == {
        "hyper400k-aviris-ng-l1",
        "hyper400k-aviris-ng-l2",
        "hyper400k-aviris-classic-l1",
        "hyper400k-aviris-3-l1",
    }
    assert all(isinstance(child, pystac.Collection) for child in children.values())
    for child_id, child in children.items():
        assert list(child.get_children()) == []
        for item in child.get_items():
            assert item.collection_id == child_id
            meta = _by_id(products)[item.id].meta
            assert child_id == f"hyper400k-{meta['sensor']}-{meta['level'].lower()}"
    assert len(_items(catalog)) == len(products)
    assert len(list(children["hyper400k-aviris-ng-l2"].get_items())) == 2
    # Self-contained: every link inside the catalog is relative.
    for path in catalog.parent.rglob("*.json"):
        if path.name == "index.json":
            continue
        for link in json.loads(path.read_text())["links"]:
            if link["rel"] in ("root", "parent", "child", "item", "collection", "hyper400k:patches"):
                assert not link["href"].startswith(("/", "http")), (path, link)


def test_bands_in_micrometres_and_complete(catalog: Path, products: list[ProductRecord]) -> None:
    items = _items(catalog)
    for rel, n_bands in REAL_PRODUCTS.items():
        record = next(p for p in products if Path(p.meta["files"]["data"]).name == Path(rel).name)
        bands = items[record.product_id].assets["data"].extra_fields["bands"]
        assert len(bands) == n_bands == len(record.meta["wavelength_nm"])
        centres = [b["eo:center_wavelength"] for b in bands]
        widths = [b["eo:full_width_half_max"] for b in bands]
        assert centres == pytest.approx([w / 1000 for w in record.meta["wavelength_nm"]], rel=1e-12)
        assert widths == pytest.approx([w / 1000 for w in record.meta["fwhm_nm"]], rel=1e-12)
        assert 0.3 < min(centres) and max(centres) < 2.6  # micrometres, not nanometres
        assert [b["hyper400k:good"] for b in bands] == record.meta["good_bands"]


def test_projection_keeps_rotated_transform(catalog: Path, products: list[ProductRecord]) -> None:
    items = _items(catalog)
    for record in products:
        props = items[record.product_id].properties
        meta = record.meta
        assert props["proj:shape"] == [meta["lines"], meta["samples"]]
        if meta["transform"] is None:
            assert props["proj:code"] is None and "proj:transform" not in props
            continue
        assert props["proj:code"] == meta["crs"]
        assert props["proj:transform"] == meta["transform"]
        a, b, c, d, e, f = meta["transform"]
        assert b != 0 and d != 0  # the ortho products are rotated
        xmin, ymin, xmax, ymax = props["proj:bbox"]
        corners = [
            (a * x + b * y + c, d * x + e * y + f) for x in (0, meta["samples"]) for y in (0, meta["lines"])
        ]
        assert xmin == min(x for x, _ in corners) and ymax == max(y for _, y in corners)


def test_item_properties_assets_and_links(catalog: Path, products: list[ProductRecord]) -> None:
    items = _items(catalog)
    for record in products:
        item = items[record.product_id]
        meta, props = record.meta, item.properties
        assert item.datetime is not None
        assert item.datetime.strftime("%Y-%m-%dT%H:%M:%SZ") == meta["datetime"]
        assert props["instruments"] == [meta["sensor"]] and props["platform"]
        assert props["processing:level"] == {"L1": "L1B", "L2": "L2A"}[meta["level"]]
        assert props["ml-aoi:split"] == record.split
        assert props["hyper400k:flight_line"] == record.flight_line
        assert props["hyper400k:segment"] == record.segment
        assert (props["hyper400k:tiles_kept"], props["hyper400k:tiles_dropped"]) == (3, 1)
        angles = meta["geometry"]
        if angles["solar_zenith"] is not None:
            assert props["view:sun_elevation"] == pytest.approx(90 - angles["solar_zenith"])
            assert props["view:incidence_angle"] == pytest.approx(angles["view_zenith"])
        else:
            assert not any(key.startswith("view:") for key in props)
        data = item.assets["data"]
        assert data.roles == ["data"] and Path(data.href).is_absolute()
        assert data.extra_fields["file:size"] == Path(meta["files"]["data"]).stat().st_size
        assert data.extra_fields["file:checksum"] == sha256_multihash(record.checksums["data"])
        assert data.extra_fields["file:checksum"].startswith("1220")
        assert item.assets["header"].roles == ["metadata"]
        assert set(item.assets) == set(meta["files"])
        rels = {link.rel: link for link in item.links}
        assert rels["via"].href == record.source_url
        patches_href = (Path(item.get_self_href()).parent / rels["hyper400k:patches"].href).resolve()
        assert patches_href == catalog.parent / PATCH_INDEX_FILE
        shard_index = (Path(item.get_self_href()).parent / rels["hyper400k:shard-index"].href).resolve()
        assert shard_index == catalog.parent / SHARD_INDEX
    # A one-pixel product's degenerate polygon becomes a Point; real footprints stay polygons.
    one_pixel = next(r for r in products if r.meta["sensor"] == "aviris-3")
    assert items[one_pixel.product_id].geometry["type"] == "Point"
    rotated = next(r for r in products if r.meta["sensor"] == "aviris-classic")
    geometry = shape(items[rotated.product_id].geometry)
    assert geometry.equals(shape(rotated.meta["footprint"])) and geometry.exterior.is_ccw


def test_same_flight_line_same_split(catalog: Path, products: list[ProductRecord]) -> None:
    items = _items(catalog)
    by_line: dict[str, set[str]] = {}
    for record in products:
        by_line.setdefault(record.flight_line, set()).add(items[record.product_id].properties["ml-aoi:split"])
    assert len(by_line["ang20140912t192359"]) == 1
    assert all(len(splits) == 1 for splits in by_line.values())


# ---------------------------------------------------------------------------------------- rejection


def _item_path(catalog: Path, sensor_level: str) -> Path:
    return next((catalog.parent / f"hyper400k-{sensor_level}").glob("*/*.json"))


BREAKAGES = {
    "center wavelength as string": (
        "aviris-ng-l2",
        lambda d: d["assets"]["data"]["bands"][7].update({"eo:center_wavelength": "0.3813"}),
        "eo/v2.0.0",
    ),
    "proj:transform with 5 numbers": (
        "aviris-classic-l1",
        lambda d: d["properties"].update({"proj:transform": d["properties"]["proj:transform"][:5]}),
        "projection/v2.0.0",
    ),
    "split outside the ml-aoi enum": (
        "aviris-ng-l1",
        lambda d: d["properties"].update({"ml-aoi:split": "val"}),
        "ml-aoi/v0.2.0",
    ),
    "extension missing from the offline set": (
        "aviris-3-l1",
        lambda d: d["stac_extensions"].append("https://stac-extensions.github.io/mlm/v1.4.0/schema.json"),
        "not in the offline set",
    ),
}


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_broken_item_is_rejected(catalog: Path, schemas: Path, tmp_path: Path, case: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(catalog.parent, copy)
    sensor_level, mutate, expected = BREAKAGES[case]
    path = _item_path(copy / CATALOG_FILE, sensor_level)
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    problems = validate_catalog(copy / CATALOG_FILE, schemas)
    assert len(problems) == 1, problems
    assert path.name in problems[0] and expected in problems[0]


def test_missing_child_is_reported(catalog: Path, schemas: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(catalog.parent, copy)
    shutil.rmtree(copy / "hyper400k-aviris-3-l1")
    problems = validate_catalog(copy / CATALOG_FILE, schemas)
    assert len(problems) == 1 and "cannot read" in problems[0]


# --------------------------------------------------------------------------------------- rebuilding


def test_rebuild_replaces_only_catalog_entries(
    tmp_path: Path, products: list[ProductRecord], schemas: Path
) -> None:
    out = tmp_path / "dataset"
    (out / "shards").mkdir(parents=True)
    (out / "shards" / "mix-000000.tar").write_bytes(b"not touched")
    (out / "report").mkdir()
    build_catalog(out, products, _patches(products))
    assert (out / "hyper400k-aviris-3-l1").is_dir()
    kept = [p for p in products if p.meta["sensor"] != "aviris-3"]
    catalog = build_catalog(out, kept, [])
    assert not (out / "hyper400k-aviris-3-l1").exists() and not (out / PATCH_INDEX_FILE).exists()
    assert (out / "shards" / "mix-000000.tar").read_bytes() == b"not touched" and (out / "report").is_dir()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    assert validate_catalog(catalog, schemas) == []
    assert len(_items(catalog)) == len(kept)


def test_inconsistent_records_are_refused(tmp_path: Path, products: list[ProductRecord]) -> None:
    patch = _patches(products)[0]
    other = next(s for s in SPLITS if s != patch.split)
    bad = dataclasses.replace(patch, split=other)
    with pytest.raises(ValueError, match="never by patch"):
        build_catalog(tmp_path, products, [bad])
    with pytest.raises(ValueError, match="duplicate product id"):
        build_catalog(tmp_path, [products[0], products[0]], [])
    first, second = products[0], products[1]
    leaked = ProductRecord(
        **{**second.__dict__, "flight_line": first.flight_line, "split": other_split(first)}
    )
    with pytest.raises(ValueError, match="splits are by flight line"):
        build_catalog(tmp_path, [first, leaked], [])
    assert list(tmp_path.iterdir()) == []


def other_split(record: ProductRecord) -> str:
    return next(s for s in SPLITS if s != record.split)


def test_product_without_footprint(tmp_path: Path, products: list[ProductRecord], schemas: Path) -> None:
    """No map grid and no loc: a null-geometry Item, and index rows no spatial filter can match."""
    record = products[2]
    meta = {**record.meta, "footprint": None, "crs": None, "transform": None}
    unlocated = ProductRecord(meta=meta, flight_line=record.flight_line, split=record.split)
    patches = [p for p in _patches(products) if p.product_id == record.product_id]
    catalog = build_catalog(tmp_path, [unlocated], [dataclasses.replace(p, footprint=None) for p in patches])
    assert validate_catalog(catalog, schemas) == []
    item = _items(catalog)[record.product_id]
    assert item.geometry is None and item.bbox is None
    table = read_patch_index(tmp_path / PATCH_INDEX_FILE)
    assert set(table.column("hyper400k:footprint").to_pylist()) == {"none"}
    assert all(shapely.from_wkb(g).is_empty for g in table.column("geometry").to_pylist())


def test_empty_catalog_validates(tmp_path: Path, schemas: Path) -> None:
    catalog = build_catalog(tmp_path, [], [])
    assert validate_catalog(catalog, schemas) == []


# -------------------------------------------------------------------------------------- patch index


def test_patch_index_rows_and_filters(catalog: Path, patches: list[PatchRecord]) -> None:
    path = catalog.parent / PATCH_INDEX_FILE
    table = read_patch_index(path)
    assert table.num_rows == len(patches)
    assert set(table.column_names) >= {
        "id",
        "geometry",
        "bbox",
        "datetime",
        "hyper400k:shard",
        "hyper400k:product",
        "hyper400k:sensor",
        "hyper400k:level",
        "ml-aoi:split",
        "hyper400k:row",
        "hyper400k:col",
        "qa:valid_fraction",
        "qa:stripe",
    }
    assert "qa:snr" not in table.column_names  # per-band lists stay in meta.json
    assert b"geo" in pq.read_metadata(path).metadata  # GeoParquet metadata for geopandas / duckdb
    for split, count in Counter(p.split for p in patches).items():
        assert read_patch_index(path, split=split).num_rows == count
        assert read_patch_index(path, split=split).num_rows == count
    ng = read_patch_index(path, sensor="aviris-ng", level=["L1", "L2"])
    assert ng.num_rows == sum(p.sensor == "aviris-ng" for p in patches)
    assert set(ng.column("hyper400k:sensor").to_pylist()) == {"aviris-ng"}
    good = read_patch_index(path, min_valid_fraction=0.8, columns=["id", "qa:valid_fraction"])
    assert good.column_names == ["id", "qa:valid_fraction"]
    assert sorted(good.column("id").to_pylist()) == sorted(
        p.key for p in patches if p.qa["valid_fraction"] >= 0.8
    )
    striped = read_patch_index(path, sensor="aviris-classic", expression=pc.field("qa:stripe"))
    assert striped.column("id").to_pylist() == [
        p.key for p in patches if p.sensor == "aviris-classic" and p.qa["stripe"]
    ]


def test_patch_index_geometry_and_round_trip(catalog: Path, patches: list[PatchRecord]) -> None:
    table = read_patch_index(catalog.parent / PATCH_INDEX_FILE)
    rows = {row["id"]: row for row in table.to_pylist()}
    for patch in patches:
        row = rows[patch.key]
        assert row["hyper400k:shard"] == patch.shard and row["hyper400k:product"] == patch.product_id
        assert (row["hyper400k:row"], row["hyper400k:col"]) == (patch.row, patch.col)
        geometry = shapely.from_wkb(row["geometry"])
        product_geometry = shape(patch.footprint) if patch.footprint else None
        assert row["hyper400k:footprint"] == ("patch" if patch.footprint else "product")
        if product_geometry is not None and product_geometry.is_valid:
            assert geometry.equals(product_geometry)
        assert geometry.bounds == pytest.approx(
            (row["bbox"]["xmin"], row["bbox"]["ymin"], row["bbox"]["xmax"], row["bbox"]["ymax"])
        )
    items = list(stac_geoparquet.arrow.stac_table_to_items(table))
    assert {item["id"] for item in items} == {p.key for p in patches}


def test_patch_index_is_what_stac_geoparquet_makes_of_the_same_items(catalog: Path) -> None:
    """The columnar patch table equals stac-geoparquet's own row-by-row parse of the Items it holds (same
    columns, types, geometry metadata and values), so building it by columns changes nothing a reader sees.
    (The round trip moves ``datetime`` to the end, and parquet names list items ``element``.)"""
    ours = pq.read_table(catalog.parent / PATCH_INDEX_FILE)
    items = list(stac_geoparquet.arrow.stac_table_to_items(ours))
    theirs = stac_geoparquet.arrow.parse_stac_items_to_arrow(items).read_all()
    assert sorted(theirs.column_names) == sorted(ours.column_names)
    theirs = theirs.select(ours.column_names)
    assert theirs.schema.field("geometry").metadata == ours.schema.field("geometry").metadata
    for name in ours.column_names:  # the same types, not merely castable ones
        assert str(theirs.schema.field(name).type).replace("<item:", "<element:") == str(
            ours.schema.field(name).type
        )
    assert theirs.cast(ours.schema.remove_metadata()).equals(ours.replace_schema_metadata(None))
    geometries = shapely.from_wkb(ours.column("geometry").to_pylist())
    polygons = [g for g in geometries if g.geom_type == "Polygon" and not g.is_empty]
    assert polygons and all(g.exterior.is_ccw for g in polygons)  # RFC 7946: exterior rings counter-clockwise


def test_items_written_one_at_a_time_are_what_pystac_writes(catalog: Path) -> None:
    """Items are written apart from the pystac tree; reading each back with pystac and serialising it again
    gives the same file, and its root, parent and collection links lead to the catalog and its collection."""
    paths = sorted(catalog.parent.glob("*/*/*.json"))
    assert paths
    for path in paths:
        item = pystac.Item.from_file(str(path))
        item.get_root().catalog_type = pystac.CatalogType.SELF_CONTAINED
        assert item.to_dict(include_self_link=False) == json.loads(path.read_text())
        collection = path.parent.parent / "collection.json"
        assert Path(item.get_parent().get_self_href()) == collection
        assert Path(item.get_collection().get_self_href()) == collection
        assert Path(item.get_root().get_self_href()) == catalog
        items = json.loads(collection.read_text())["links"]
        assert {
            "rel": "item",
            "href": f"./{path.parent.name}/{path.name}",
            "type": "application/geo+json",
        } in items


def test_patch_record_from_sample_meta() -> None:
    meta: dict[str, Any] = {
        "key": "prod_r0_c256",
        "product": "prod",
        "sensor": "aviris-ng",
        "level": "L1",
        "split": "validate",
        "row": 0,
        "col": 256,
        "datetime": "2017-03-23T20:22:44Z",
        "footprint": None,
        "qa": {"valid_fraction": 1.0},
        "flight_line": "AV320231008t172522",
        "segment": "005",
    }
    record = PatchRecord.from_sample_meta(meta, "shards/mix-000003.tar")
    assert (record.flight_line, record.segment) == ("AV320231008t172522", "005")
    assert (record.key, record.product_id, record.split, record.col) == (
        "prod_r0_c256",
        "prod",
        "validate",
        256,
    )
    assert record.shard == "shards/mix-000003.tar" and record.qa == {"valid_fraction": 1.0}


def test_sha256_multihash() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert sha256_multihash(digest.upper()) == "1220" + digest
    assert sha256_multihash("1220" + digest) == "1220" + digest
    with pytest.raises(ValueError):
        sha256_multihash("md5:abc")


# ------------------------------------------------------------------------------------------- splits

NAMES = [f"ang2019{i // 1000:02d}{i % 28 + 1:02d}t{i:06d}" for i in range(20000)]


def test_assign_split_respects_fractions_and_is_deterministic() -> None:
    fractions = {"train": 0.7, "validate": 0.2, "test": 0.1}
    counts = Counter(assign_split(name, fractions, seed=3) for name in NAMES)
    for split, fraction in fractions.items():
        assert counts[split] / len(NAMES) == pytest.approx(fraction, abs=0.015)
    assert [assign_split(n, fractions, seed=3) for n in NAMES[:500]] == [
        assign_split(n, fractions, seed=3) for n in NAMES[:500]
    ]
    other_seed = [assign_split(n, fractions, seed=4) for n in NAMES[:500]]
    assert other_seed != [assign_split(n, fractions, seed=3) for n in NAMES[:500]]
    assert "validate" not in {assign_split(n, {"train": 0.5, "test": 0.5}) for n in NAMES[:2000]}
    assert {assign_split(n, {"test": 1.0}) for n in NAMES[:100]} == {"test"}


def test_split_flight_lines_large_sets_follow_the_hash() -> None:
    mapping = split_flight_lines(NAMES[:3000] + NAMES[:10], seed=1)
    assert len(mapping) == 3000
    assert mapping == {name: assign_split(name, seed=1) for name in NAMES[:3000]}
    # Adding flight lines never moves the ones already assigned.
    grown = split_flight_lines(NAMES[:4000], seed=1)
    assert all(grown[name] == split for name, split in mapping.items())


@pytest.mark.parametrize("n", range(3, 13))
def test_split_flight_lines_small_sets_cover_every_split(n: int) -> None:
    for offset in range(0, 200, 20):
        lines = NAMES[offset : offset + n]
        mapping = split_flight_lines(lines)
        assert set(mapping) == set(lines)
        counts = Counter(mapping.values())
        assert set(counts) == set(SPLITS), (lines, mapping)
        assert counts["train"] >= max(counts["validate"], counts["test"])
        assert split_flight_lines(list(reversed(lines))) == mapping


def test_split_flight_lines_edge_cases() -> None:
    assert set(split_flight_lines(NAMES[:2]).values()) <= set(SPLITS)  # fewer lines than splits: no guarantee
    assert split_flight_lines([]) == {}
    only_two = split_flight_lines(NAMES[:2], {"train": 0.9, "test": 0.1})
    assert sorted(only_two.values()) == ["test", "train"]


@pytest.mark.parametrize(
    "fractions",
    [{"train": 0.5}, {"train": 0.8, "validation": 0.2}, {"train": 1.2, "val": -0.2}, {"train": float("nan")}],
)
def test_bad_fractions_are_refused(fractions: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        check_fractions(fractions)
    with pytest.raises(ValueError):
        assign_split("ang20190101t000000", fractions)
