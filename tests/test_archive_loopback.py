"""Build end to end from a manifest served by archive-shaped loopback servers (127.0.0.1 only).

One server mimics the three layouts at once: JPL portal flight-line tarballs (AVIRIS-NG with
rdn/loc/obs/glt members, AVIRIS-Classic with its .gain and ortho companions), an Earthdata data host that
redirects to a login host on another name, a directory listing where an archive was expected, and a
product that is missing. The manifest comes from `hyper400k manifest --mirror`, as a user with a local
copy of the archives would make it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback_http import Route, Server, serve
from typer.testing import CliRunner

from hyper400k.download import fetch
from hyper400k.manifest import ManifestEntry
from hyper400k.presets import get_preset
from hyper400k.stac import read_patch_index
from hyper400k.synth import generate
from pipelines import downloads
from pipelines.build import BuildConfig, build
from pipelines.cli import app

pytestmark = pytest.mark.timeout(120)

TOKEN = "edl-token-123"
NG = "ang20200814t201229_rdn_v2p9_img"
CLASSIC = "f100514t01p00r05rdn_c_sc01_ort_img"
AV3 = "AV320250627t172850_001_L1B_RDN_7cd6b162_RDN"
NG_L2_MISSING = "ang20200814t201229_rfl_v2p9_img"


def _tarball(folder: str, files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mtime = len(data), 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _product_files(sensor: str, fmt: str, root: Path) -> dict[str, bytes]:
    folder = root / sensor
    folder.mkdir(parents=True)
    generate(sensor, "L1", 64, 48, folder, seed=3, fmt=fmt)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Server, Path]]:
    monkeypatch.setenv("NETRC", str(tmp_path / "absent-netrc"))
    monkeypatch.setenv("EARTHDATA_TOKEN", TOKEN)
    ng = _product_files("aviris-ng", "envi", tmp_path / "src")
    assert {f"{NG}", f"{NG}.hdr"} <= set(ng) and any(n.endswith("_loc") for n in ng)
    ng |= {"ang20200814t201229_rdn_v2p9_glt": b"\0" * 64, "ang20200814t201229_rdn_v2p9_igm": b"\1" * 64}
    ng["ang20200814t201229_README_v2p9.txt"] = b"distribution document"
    classic = _product_files("aviris-classic", "envi", tmp_path / "src")
    assert CLASSIC in classic and "f100514t01p00r05rdn_c.gain" in classic
    classic["f100514t01p00r05rdn_c_ort_igm"] = b"\2" * 64
    (nc,) = _product_files("aviris-3", "netcdf", tmp_path / "src").values()
    with serve() as server:
        server.routes["/jpl/avng/y20/ang20200814t201229.tar.gz"] = Route(
            _tarball("ang20200814t201229_rdn_v2p9", ng)
        )
        server.routes["/jpl/avcl/y10_data/f100514t01p00r05.tar.gz"] = Route(
            _tarball("f100514t01p00r05rdn_c", classic)
        )
        data = f"/ornl/AV3_L1B_RDN/data/{AV3}.nc"
        login = server.url("/oauth/authorize?client_id=ornl", host="localhost")
        server.routes[data] = Route(location=login)
        server.routes["/oauth/authorize?client_id=ornl"] = Route(location=server.url(data + "?code=granted"))
        server.routes[data + "?code=granted"] = Route(nc)
        listing = b'<html><body><h1>Index of /avcl/y10_data</h1><a href="f100514t01p00r05.tar.gz">f100514t01p00r05.tar.gz</a></body></html>'
        server.routes["/jpl/avcl/y10_data/"] = Route(listing)
        yield server, tmp_path


def _manifest_of(server: Server, tmp_path: Path, ids: list[str]) -> Path:
    """``hyper400k manifest --ids`` for ``ids``, with the loopback server as the mirror of both archives."""
    listed = tmp_path / "ids.txt"
    listed.write_text("\n".join(ids) + "\n")
    manifest = tmp_path / "manifest.yaml"
    result = CliRunner().invoke(app, [
        "manifest", str(manifest), "--ids", str(listed),
        "--mirror", f"https://popo.jpl.nasa.gov={server.url('/jpl')}",
        "--mirror", f"https://data.ornldaac.earthdata.nasa.gov/protected/aviris={server.url('/ornl')}",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return manifest


def test_manifest_from_ids_builds_end_to_end(archive: tuple[Server, Path]) -> None:
    server, tmp_path = archive
    manifest = _manifest_of(server, tmp_path, [NG, CLASSIC, AV3, NG_L2_MISSING])
    # A hand-added entry whose URL answers with a directory listing instead of the archive.
    text = manifest.read_text().replace("unavailable: []", "")
    text += f"- product: f100514t01p00r05_refl\n  url: {server.url('/jpl/avcl/y10_data/')}\n"
    text += "  name: f100514t01p00r05_refl.tar.gz\n  extract: ['*f100514t01p00r05_refl', '*f100514t01p00r05_refl.hdr']\n"
    manifest.write_text(text)

    out = tmp_path / "build"
    config = BuildConfig(input=manifest, output=out, preset=get_preset("hyper400k", 16), scheduler="synchronous",
                         progress=False, keep_downloads=True)  # fmt: skip
    built = build(config)

    assert sorted(r["product_id"] for r in built.records) == sorted([NG, CLASSIC, AV3])
    reasons = {f["product_id"]: f["reason"] for f in built.failures}
    assert set(reasons) == {NG_L2_MISSING, "f100514t01p00r05_refl"}  # named by the product they hold
    assert "404" in reasons[NG_L2_MISSING]
    assert "cannot extract" in reasons["f100514t01p00r05_refl"]
    records = {r["product_id"]: r for r in built.records}
    assert records[AV3]["segment"] == "001" and records[AV3]["flight_line"] == "AV320250627t172850"
    assert records[NG]["segment"] is None and records[CLASSIC]["segment"] == "01"
    assert records[NG]["source_url"] == server.url("/jpl/avng/y20/ang20200814t201229.tar.gz")
    assert all(r["kept"] > 0 for r in built.records)

    # Only the data, its header and the companions the readers use came out of the tarballs.
    downloads = out / "downloads"
    ng_files = sorted(p.name for p in (downloads / "ang20200814t201229_rdn_v2p9").iterdir())
    assert not any(n.endswith(("_igm", "README_v2p9.txt")) for n in ng_files)
    assert {f"{NG}", f"{NG}.hdr", "ang20200814t201229_rdn_v2p9_glt"} <= set(ng_files)
    assert any(n.endswith("_loc") for n in ng_files) and any("_obs" in n for n in ng_files)
    classic_files = {p.name for p in (downloads / "f100514t01p00r05rdn_c").iterdir()}
    assert (
        "f100514t01p00r05rdn_c.gain" in classic_files and "f100514t01p00r05rdn_c_ort_igm" not in classic_files
    )

    # The token went to the data host on every hop there, never to the login host.
    data = f"/ornl/AV3_L1B_RDN/data/{AV3}.nc"
    assert server.requests_to(data)[0].headers.get("Authorization") == f"Bearer {TOKEN}"
    assert server.requests_to("/oauth/authorize?client_id=ornl")[0].headers.get("Authorization") is None
    # The missing product was asked for once per attempt and reported, not guessed elsewhere.
    assert server.requests_to("/jpl/avng/y20/ang20200814t201229rfl.tar.gz")

    (index,) = out.rglob("patches.parquet")
    rows = read_patch_index(index).to_pylist()
    av3_rows = [r for r in rows if r["hyper400k:product"] == AV3]
    assert av3_rows and {(r["hyper400k:flight_line"], r["hyper400k:segment"]) for r in av3_rows} == {
        ("AV320250627t172850", "001")
    }
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["products_ok"] == 3 and report["products_failed"] >= 1


def test_earthdata_entry_without_credentials_fails_before_any_request(
    archive: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, tmp_path = archive
    monkeypatch.delenv("EARTHDATA_TOKEN")
    url = server.url(f"/ornl/AV3_L1B_RDN/data/{AV3}.nc")
    entry = ManifestEntry(url=url, name=f"{AV3}.nc", product=AV3, auth="earthdata")
    result = fetch(entry, tmp_path / "dl", progress=False, retries=1, backoff=0.01)
    assert (
        not result.ok
        and "needs a NASA Earthdata login" in result.reason
        and "EARTHDATA_TOKEN" in result.reason
    )
    assert server.requests_to(f"/ornl/AV3_L1B_RDN/data/{AV3}.nc") == []


def test_tarball_without_the_listed_product_fails(archive: tuple[Server, Path]) -> None:
    server, tmp_path = archive
    body = _tarball("x", {"ang20200814t201229_rdn_v2p9_loc": b"\0" * 8})
    server.routes["/other.tar.gz"] = Route(body)
    entry = ManifestEntry(url=server.url("/other.tar.gz"), name="other.tar.gz", sha256=hashlib.sha256(body).hexdigest(),
                          extract=(f"*{NG}", "*_loc"), product=NG)  # fmt: skip
    result = fetch(entry, tmp_path / "dl", progress=False)
    assert not result.ok and f"holds no member named {NG}" in result.reason


def test_downloads_live_only_while_their_product_is_tiled(
    archive: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each download is fetched by its tiling task and deleted once the product's record is durable; a re-run
    fetches nothing already tiled, and a product whose spool and shards are gone is fetched again."""
    server, tmp_path = archive
    manifest = _manifest_of(server, tmp_path, [NG, CLASSIC, AV3])
    out = tmp_path / "build"
    config = BuildConfig(input=manifest, output=out, preset=get_preset("hyper400k", 16), scheduler="synchronous",
                         progress=False)  # fmt: skip
    seen: list[set[str]] = []
    original = downloads.fetch

    def fetch_and_look(entry: ManifestEntry, dest: Path, **options: object) -> object:
        seen.append({p.name for p in dest.rglob("*") if p.is_file()} if dest.is_dir() else set())
        return original(entry, dest, **options)

    monkeypatch.setattr(downloads, "fetch", fetch_and_look)
    built = build(config)
    monkeypatch.undo()
    assert built.ok and sorted(r["product_id"] for r in built.records) == sorted([NG, CLASSIC, AV3])
    assert seen == [set(), set(), set()]  # no product's download is still there when the next one is fetched
    assert not any(p.is_file() for p in (out / "downloads").rglob("*"))
    # The downloads are gone, so the source assets name where the files are distributed, with the sizes they
    # had when they were tiled: a tarball's member by the archive's URL and its name inside it, a single
    # file by its own URL. No asset points into the deleted downloads.
    (ng_item,) = out.glob(f"generations/*/*/{NG}/{NG}.json")
    ng_assets = json.loads(ng_item.read_text())["assets"]
    archive_url = server.url("/jpl/avng/y20/ang20200814t201229.tar.gz")
    assert ng_assets["data"]["href"] == ng_assets["header"]["href"] == archive_url
    assert ng_assets["data"]["type"] == "application/gzip" and "file:size" not in ng_assets["data"]
    assert ng_assets["data"]["hyper400k:archive_member"] == f"ang20200814t201229_rdn_v2p9/{NG}"
    assert ng_assets["header"]["hyper400k:archive_member"] == f"ang20200814t201229_rdn_v2p9/{NG}.hdr"
    assert ng_assets["data"]["hyper400k:member_size"] == 64 * 48 * 425 * 4
    assert ng_assets["data"]["bands"]  # the band list stays on the data asset
    (av3_item,) = out.glob(f"generations/*/*/{AV3}/{AV3}.json")
    av3_data = json.loads(av3_item.read_text())["assets"]["data"]
    assert av3_data["href"] == server.url(f"/ornl/AV3_L1B_RDN/data/{AV3}.nc")
    assert av3_data["type"] == "application/netcdf" and av3_data["file:size"] > 0
    hrefs = [asset["href"] for item in out.glob("generations/*/*/*/*.json") for asset in
             json.loads(item.read_text()).get("assets", {}).values()]  # fmt: skip
    assert hrefs and not [href for href in hrefs if "downloads" in href]

    tarball = "/jpl/avng/y20/ang20200814t201229.tar.gz"
    assert len(server.requests_to(tarball)) == 1
    assert build(config).ok
    assert len(server.requests_to(tarball)) == 1  # the re-run fetched nothing: every product is in the shards

    # Lose NG's spool and its shards: the next run fetches NG (only NG) again and repairs the build.
    for shard in out.rglob("shards/aviris-ng-L1/*/*.tar"):
        shard.unlink()
    classic_before = len(server.requests_to("/jpl/avcl/y10_data/f100514t01p00r05.tar.gz"))
    repaired = build(config)
    assert repaired.ok and len(server.requests_to(tarball)) == 2
    assert len(server.requests_to("/jpl/avcl/y10_data/f100514t01p00r05.tar.gz")) == classic_before
    assert not any(p.is_file() for p in (out / "downloads").rglob("*"))
    result = CliRunner().invoke(app, ["verify", str(out)])
    assert result.exit_code == 0, result.output
