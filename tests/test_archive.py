"""From product identifiers to downloads: URL rules per era, the manifest command, and the build plan."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hyper400k.archive.manifests import make_manifest, parse_mirrors
from hyper400k.archive.plan import TYPICAL, plan_build
from hyper400k.archive.product_list import identify_id, load_preset
from hyper400k.archive.sources import Download, Unavailable, locate
from hyper400k.manifest import ManifestEntry, load_manifest
from pipelines.cli import app

runner = CliRunner()

# Hand-checked: one product per era, the URL and login the rules must give.
URLS = [
    ("f080709t01p00r11rdn_c_sc01_ort_img", "https://popo.jpl.nasa.gov/avcl/y08_data/f080709t01p00r11.tar.gz", "none"),
    ("f130410t01p00r12rdn_refl_img_corr", "https://popo.jpl.nasa.gov/avcl/y13_data/f130410t01p00r12_refl.tar.gz", "none"),
    ("ang20170827t200007_rdn_v2p10_img", "https://popo.jpl.nasa.gov/avng/y17/ang20170827t200007.tar.gz", "none"),
    ("ang20151218t105122_corr_v2m2_img", "https://popo.jpl.nasa.gov/avng/y15/ang20151218t105122rfl.tar.gz", "none"),
    (
        "AV320230705t195254_000_L1B_RDN_cbeae6f8_RDN",
        "https://data.ornldaac.earthdata.nasa.gov/protected/aviris/AV3_L1B_RDN/data/AV320230705t195254_000_L1B_RDN_cbeae6f8_RDN.nc",
        "earthdata",
    ),
    (
        "AV320250123t200630_000_L2A_OE_f576f24d_RFL_ORT",
        "https://data.ornldaac.earthdata.nasa.gov/protected/aviris/AV3_L2A_RFL/data/AV320250123t200630_000_L2A_OE_f576f24d_RFL_ORT.nc",
        "earthdata",
    ),
]  # fmt: skip


@pytest.mark.parametrize("product_id, url, auth", URLS)
def test_url_and_login_per_era(product_id: str, url: str, auth: str) -> None:
    found = locate(identify_id(product_id))
    assert isinstance(found, Download)
    assert (found.url, found.auth, found.name) == (url, auth, url.rsplit("/", 1)[1])


def _kept(patterns: tuple[str, ...], members: list[str]) -> list[str]:
    return [m for m in members if any(fnmatchcase(m, p) for p in patterns)]


def test_members_chosen_from_real_archive_layouts() -> None:
    # AVIRIS-Classic run archive, member names as in the portal's distribution (scene 01 of run r07).
    classic = [
        "f080611t01p00r07rdn_c/f080611t01p00r07rdn_c_sc01_ort_img",
        "f080611t01p00r07rdn_c/f080611t01p00r07rdn_c_sc01_ort_img.hdr",
        "f080611t01p00r07rdn_c/f080611t01p00r07rdn_c_sc02_ort_img",
        "f080611t01p00r07rdn_c/f080611t01p00r07rdn_c_obs_ort",
        "f080611t01p00r07rdn_c/f080611t01p00r07rdn_c_obs_ort.hdr",
        "f080611t01p00r07rdn_c/f080611t01p00r07rdn_c_obs",
        "f080611t01p00r07rdn_c/f080611t01p00r07rdn_c_ort_glt",
        "f080611t01p00r07rdn_c/f080611t01p00r07rdn_c_ort_glt.hdr",
        "f080611t01p00r07rdn_c/f080611t01p00r07rdn_c_ort_igm",
        "f080611t01p00r07rdn_c/f080611t01p00r07rdn_c.gain",
        "f080611t01p00r07rdn_c/f080611t01p00r07rdn_c_geo.readme",
    ]
    found = locate(identify_id("f080611t01p00r07rdn_c_sc01_ort_img"))
    assert [m.rsplit("/", 1)[1] for m in _kept(found.extract, classic)] == [
        "f080611t01p00r07rdn_c_sc01_ort_img",
        "f080611t01p00r07rdn_c_sc01_ort_img.hdr",
        "f080611t01p00r07rdn_c_obs_ort",
        "f080611t01p00r07rdn_c_obs_ort.hdr",
        "f080611t01p00r07rdn_c_ort_glt",
        "f080611t01p00r07rdn_c_ort_glt.hdr",
        "f080611t01p00r07rdn_c.gain",
    ]
    # AVIRIS-NG flight-line archive (the v02 distribution document's layout).
    stem = "ang20170827t200007_rdn_v2p10"
    ng = [
        f"{stem}/{stem}_{kind}"
        for kind in ("img", "img.hdr", "loc", "loc.hdr", "obs", "obs.hdr", "glt", "igm", "igm.hdr")
    ]
    ng.append(f"{stem}/ang20170827t200007_README_v2p10.txt")
    found = locate(identify_id(f"{stem}_img"))
    assert [m.rsplit("_", 1)[1] for m in _kept(found.extract, ng)] == [
        "img", "img.hdr", "loc", "loc.hdr", "obs", "obs.hdr", "glt"
    ]  # fmt: skip
    # L2: the reflectance and its header only; AVIRIS-3 NetCDF: no archive.
    found = locate(identify_id("ang20170714t213741_corr_v2p9_img"))
    tar = [
        "ang20170714t213741_rfl_v2p9/ang20170714t213741_corr_v2p9_img",
        "ang20170714t213741_rfl_v2p9/ang20170714t213741_h2o_v2p9",
    ]
    assert _kept(found.extract, tar + [tar[0] + ".hdr"]) == [tar[0], tar[0] + ".hdr"]
    assert locate(identify_id(URLS[4][0])).extract == ()


def test_products_without_a_url_are_listed_with_the_reason() -> None:
    found = locate(identify_id("ang20231022t094938_021_L2A_OE_main_27577724_RFL_ORT"))
    assert isinstance(found, Unavailable) and "no published URL rule" in found.reason
    old = locate(identify_id("f950620t01p02r05_refl"))
    assert isinstance(old, Unavailable) and "before 2006" in old.reason


def test_every_listed_product_has_a_url_or_a_reason() -> None:
    products = load_preset()
    plan = make_manifest(products)
    assert len(plan.downloads) + len(plan.unavailable) == 13_040
    assert {u.era for u in plan.unavailable} == {"aviris-ng-segment"} and len(plan.unavailable) == 2010
    assert len({d.url for d in plan.downloads}) == len(plan.downloads)  # one download per product


def test_manifest_command_writes_what_build_loads(tmp_path: Path) -> None:
    out = tmp_path / "m.yaml"
    result = runner.invoke(
        app,
        ["manifest", str(out), "--sensor", "aviris-classic", "--level", "L2", "--years", "2023-2024",
         "--mirror", "https://popo.jpl.nasa.gov=https://mirror.example.org/jpl"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    entries = load_manifest(out)
    assert len(entries) == 16 + 10 and {e.auth for e in entries} == {"none"}
    assert all(e.url.startswith("https://mirror.example.org/jpl/avcl/y2") for e in entries)
    assert all(e.product and e.extract == (f"*{e.product}", f"*{e.product}.hdr") for e in entries)
    assert "aviris-classic" in result.output

    ids = tmp_path / "ids.txt"
    ids.write_text(
        "AV320230705t195254_000_L1B_RDN_cbeae6f8_RDN\nang20231022t094938_021_L2A_OE_main_27577724_RFL_ORT\n"
    )
    result = runner.invoke(app, ["manifest", str(out), "--ids", str(ids)])
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(out.read_text())
    assert [e["auth"] for e in document["products"]] == ["earthdata"]
    assert document["unavailable"][0]["product"].startswith("ang20231022t094938_021")
    assert len(load_manifest(out)) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sensor", "hymap"], "unknown sensor 'hymap'"),
        (["--level", "L3"], "level must be L1 or L2"),
        (["--years", "soon"], "'soon' is not a year"),
        (["--preset", "other"], "unknown preset 'other'"),
        (["--mirror", "popo=elsewhere"], "expected FROM=TO"),
    ],
)
def test_manifest_command_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["manifest", str(tmp_path / "m.yaml"), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.yaml").exists()


def test_plan_on_a_generated_set_with_known_figures(tmp_path: Path) -> None:
    """Three AVIRIS-3 L1 segments of known size (a NetCDF raster: size = lines x 1234 x 284 x 4) and one
    AVIRIS-NG archive of unknown size: every figure follows from these by hand."""
    shape = TYPICAL["aviris-3", "L1"]
    line_bytes = 1234 * 284 * 4
    lines = [512, 700, 256]
    entries = [
        ManifestEntry(url=f"https://x.org/{i}.nc", name=f"AV320240701t20121{i}_00{i}_L1B_RDN_abcdef12_RDN.nc",
                      size=n * line_bytes, product=f"AV320240701t20121{i}_00{i}_L1B_RDN_abcdef12_RDN")
        for i, n in enumerate(lines)
    ]  # fmt: skip
    entries.append(ManifestEntry(url="https://x.org/ang.tar.gz", name="ang20170827t200007.tar.gz",
                                 product="ang20170827t200007_rdn_v2p10_img"))  # fmt: skip
    plan = plan_build(entries, unavailable=2, cores=4, etl_mb_s_per_core=100.0)
    av3 = plan.groups["aviris-3-L1"]
    tiles = (2 + 3 + 1) * 5  # ceil(lines / 256) x ceil(1234 / 256)
    assert (av3.products, av3.download_bytes, av3.raster_bytes) == (
        3,
        sum(lines) * line_bytes,
        sum(lines) * line_bytes,
    )
    assert not av3.download_estimated and av3.extracted_bytes == 0
    assert av3.patches == pytest.approx(tiles * shape.kept_share)
    assert av3.shard_bytes == pytest.approx(
        tiles * shape.kept_share * (284 * 65536 * 2 + 65536 + 284 * 60 + 4096)
    )
    ng = plan.groups["aviris-ng-L1"]
    ng_shape = TYPICAL["aviris-ng", "L1"]
    assert ng.download_estimated and ng.download_bytes == ng_shape.archive_bytes
    assert ng.extracted_bytes == round(ng_shape.raster_bytes * (1 + ng_shape.companion_share))
    total = plan.total
    assert total.products == 4 and total.download_bytes == av3.download_bytes + ng.download_bytes
    # Peak disk: the packed shards, plus per core one product's download with its extracted members (the
    # NG archive is the largest) and a window of 8 spools of the largest product (an AVIRIS-3 segment's).
    largest_fetch = ng.download_bytes + ng.extracted_bytes
    largest_spool = max(av3.shard_bytes * 15 / 30, ng.shard_bytes)  # 700 lines: 3 x 5 of the 30 AV3 tiles
    assert plan.total.largest_fetch_bytes == largest_fetch
    assert plan.peak_disk_bytes == pytest.approx(total.shard_bytes + 4 * largest_fetch + 4 * 8 * largest_spool)
    kept = plan_build(entries, unavailable=2, cores=4, etl_mb_s_per_core=100.0, keep_downloads=True)
    assert kept.peak_disk_bytes == pytest.approx(
        total.shard_bytes + total.download_bytes + total.extracted_bytes + 4 * 8 * largest_spool
    )
    assert plan.build_hours == pytest.approx(total.raster_bytes / 400e6 / 3600)

    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"products": [
        {"url": e.url, "name": e.name, "product": e.product, **({"size": e.size} if e.size else {})} for e in entries
    ], "unavailable": [{"product": "a", "reason": "r"}, {"product": "b", "reason": "r"}]}))  # fmt: skip
    result = runner.invoke(app, ["plan", str(manifest), "--json", "--cores", "4", "--etl-mb-s", "100"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["groups"]["aviris-3-L1"]["download_bytes"] == sum(lines) * line_bytes
    assert figures["groups"]["aviris-3-L1"]["download_estimated"] is False
    assert figures["total"]["patches"] == round(total.patches) and figures["unavailable_products"] == 2
    text = runner.invoke(app, ["plan", str(manifest), "--cores", "4"]).output
    assert "aviris-3-L1" in text and "~" in text and "peak disk" in text and "build time" in text


def test_plan_of_a_bad_manifest_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("products: [{url: 'ftp://x/y'}]\n")
    result = runner.invoke(app, ["plan", str(bad)])
    assert result.exit_code == 2 and "entry 0" in result.output and "Traceback" not in result.output


def test_mirrors_replace_the_longest_prefix() -> None:
    mirrors = parse_mirrors(
        ["https://popo.jpl.nasa.gov=http://a/jpl", "https://popo.jpl.nasa.gov/avng=http://b/ng"]
    )
    plan = make_manifest(
        [identify_id("ang20170827t200007_rdn_v2p10_img"), identify_id("f230412t01p00r07_rfl")], mirrors
    )
    assert [d.url for d in plan.downloads] == [
        "http://b/ng/y17/ang20170827t200007.tar.gz",
        "http://a/jpl/avcl/y23_data/f230412t01p00r07_refl.tar.gz",
    ]
