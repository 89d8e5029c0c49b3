"""A build to, and training streams from, object storage: a real S3-compatible server (moto in server mode)
on loopback, reached through s3fs, and a static HTTP server for https-style streaming.

The endpoint and dummy credentials are set in the environment (what a user's ``AWS_*`` settings do); the
project code has no test hooks. Products are tiny (a few 32 x 32 tiles) and packed two per window.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import fsspec
import fsspec.config
import moto.server as moto_server  # the test extra installs moto[server] and s3fs: never skipped
import pytest
from typer.testing import CliRunner

from hyper400k.console import EXIT_SYSTEM
from hyper400k.presets import get_preset
from hyper400k.shards import read_index
from hyper400k.stac import catalog_generation, read_patch_index
from hyper400k.storage import as_location, is_url, join, parent, parse_storage_options
from hyper400k.synth import generate
from hyper400k.verify import verify_build
from pipelines.build import BuildConfig, build
from pipelines.cli import app
from specaware.data import LoaderConfig, ShardDataset, TransformConfig, open_shards

TILE = 32
BUCKET = "corpus"
PLAIN = TransformConfig(crop=None, flips=False, rot90=False)


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with one bucket; the environment points AWS clients at it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        fsspec.get_filesystem_class("s3").clear_instance_cache()
        fsspec.filesystem("s3").mkdir(BUCKET)
        yield endpoint
        fsspec.get_filesystem_class("s3").clear_instance_cache()
    server.stop()


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two AVIRIS-NG flight lines (L1 + L2) and one AVIRIS-Classic L1, 96 x 64 pixels, a folder each."""
    folder = tmp_path_factory.mktemp("products")
    for seed in (1, 2):
        for level in ("L1", "L2"):
            generate("aviris-ng", level, 96, 64, folder / f"ng-{seed}-{level}", seed=seed)
    generate("aviris-classic", "L1", 96, 64, folder / "classic-3-L1", seed=3)
    return folder


def config(inputs: Path, output: str, work: Path, **changes: object) -> BuildConfig:
    base = dict(
        input=inputs,
        output=output,
        work=work,
        preset=get_preset("hyper400k", tile=TILE),
        scheduler="synchronous",
        shard_bytes=8_000_000,  # a few samples per shard, so resuming seeks inside one
        progress=False,
        window_products=2,
    )
    return BuildConfig(**(base | changes))


def subset(products: Path, destination: Path, names: list[str]) -> Path:
    for name in names:
        shutil.copytree(products / name, destination / name)
    return destination


def objects(url: str) -> dict[str, str]:
    """``{key: ETag}`` of every object under ``url`` (an ETag is the object's MD5 for a single PUT)."""
    fs, root = fsspec.core.url_to_fs(url)
    return {path[len(root) + 1 :]: info["ETag"] for path, info in fs.find(root, detail=True).items()}


@pytest.fixture(scope="module")
def remote_build(s3: str, products: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Generation 1 at s3://corpus/build of all products but the AVIRIS-Classic one (URL, work folder)."""
    root = tmp_path_factory.mktemp("remote")
    inputs = subset(products, root / "input", ["ng-1-L1", "ng-1-L2", "ng-2-L1", "ng-2-L2"])
    url = f"s3://{BUCKET}/build"
    result = build(config(inputs, url, root / "work"))
    assert result.ok, result.failures
    assert result.catalog_path == f"{url}/catalog.json"
    return url, root / "work"


def test_build_to_s3_publishes_a_generation_that_verifies(remote_build: tuple[str, Path]) -> None:
    url, work = remote_build
    stored = objects(url)
    assert "catalog.json" in stored
    generation, patches, index = catalog_generation(f"{url}/catalog.json")
    assert generation == 1 and index == f"{url}/generations/000001/index.json"
    assert patches == f"{url}/generations/000001/patches.parquet"
    shards = {name for name in stored if name.startswith("shards/") and name.endswith(".tar")}
    assert shards == {f"shards/{entry['name']}" for entry in read_index(index)["shards"]}
    assert all(name.split("/")[2] in ("train", "validate", "test") for name in shards)
    assert not list((work / "shards").rglob("*.tar")), "uploaded shards must not stay on local disk"
    assert "report/report.json" in stored and "failures.json" in stored
    report = verify_build(url)
    assert report.ok, report.problems
    assert (
        report.shards_checked == len(shards) and report.samples_checked == read_index(index)["total_samples"]
    )
    table = read_patch_index(url, columns=["id", "hyper400k:shard"])
    assert table.num_rows == read_index(index)["total_samples"]


def a_split(url: str) -> str:
    """The split of the build's first shard (two flight lines need not give every split)."""
    return read_index(catalog_generation(f"{url}/catalog.json")[2])["shards"][0]["name"].split("/")[1]


def test_training_stream_from_s3(remote_build: tuple[str, Path]) -> None:
    url, _ = remote_build
    split = a_split(url)
    shards = open_shards(url, split=split)
    assert shards.shards and all(str(s.path).startswith(f"{url}/shards/") for s in shards.shards)
    assert {str(s.path).split("/")[-2] for s in shards.shards} == {split}
    dataset = ShardDataset(shards, LoaderConfig(batch_size=2, batches_per_epoch=3, seed=1), PLAIN)
    batches = list(dataset)
    assert len(batches) == 3
    for batch in batches:
        assert len(batch["key"]) == 2 and batch["image"].shape[0] == 2 and batch["image"].shape[-1] == TILE


def test_incremental_add_keeps_published_shards(
    s3: str, products: Path, remote_build: tuple[str, Path], tmp_path: Path
) -> None:
    url, first_work = remote_build
    target = f"s3://{BUCKET}/incremental"
    fsspec.filesystem("s3").copy(f"{BUCKET}/build", f"{BUCKET}/incremental", recursive=True)
    work = tmp_path / "work"
    shutil.copytree(first_work, work)
    before = {k: v for k, v in objects(target).items() if k.startswith("shards/")}
    inputs = subset(products, tmp_path / "input", ["ng-1-L1", "ng-1-L2", "ng-2-L1", "ng-2-L2"])
    subset(products, inputs, ["classic-3-L1"])
    result = build(config(inputs, target, work))
    assert result.ok
    after = objects(target)
    generation, _, index = catalog_generation(f"{target}/catalog.json")
    assert generation == 2
    kept = {name: tag for name, tag in before.items() if name in after}
    assert kept == before, "adding a product must leave every published shard byte-identical"
    added = {name for name in after if name.startswith("shards/")} - set(before)
    assert added and all("aviris-classic" in name for name in added)
    assert not [name for name in after if name.startswith("generations/") and "/000002/" not in name]
    assert verify_build(target).ok


def test_a_deleted_remote_shard_is_repaired_by_a_rerun(
    s3: str, products: Path, remote_build: tuple[str, Path], tmp_path: Path
) -> None:
    url, work = remote_build
    fs = fsspec.filesystem("s3")
    fs.copy(f"{BUCKET}/build", f"{BUCKET}/repair", recursive=True)
    target = f"s3://{BUCKET}/repair"
    local_work = tmp_path / "work"
    shutil.copytree(work, local_work)
    index = read_index(catalog_generation(f"{target}/catalog.json")[2])
    deleted, corrupted = index["shards"][0]["name"], index["shards"][-1]["name"]
    fs.rm_file(f"{BUCKET}/repair/shards/{deleted}")
    data = bytearray(fs.cat_file(f"{BUCKET}/repair/shards/{corrupted}"))
    data[len(data) // 2] ^= 0xFF  # same size: only the streamed sha256 (--verify) sees it
    fs.pipe_file(f"{BUCKET}/repair/shards/{corrupted}", bytes(data))
    problems = verify_build(target).problems
    assert any(deleted in p and "missing" in p for p in problems)
    assert any(corrupted in p and "sha256" in p for p in problems)
    inputs = tmp_path / "input"
    subset(products, inputs, ["ng-1-L1", "ng-1-L2", "ng-2-L1", "ng-2-L2"])
    assert build(config(inputs, target, local_work, verify=True)).ok
    report = verify_build(target)
    assert report.ok, report.problems
    assert catalog_generation(f"{target}/catalog.json")[0] == 2
    stored = objects(target)
    assert f"shards/{deleted}" not in stored and f"shards/{corrupted}" not in stored  # repacked, new names


def test_training_stream_over_plain_http(remote_build: tuple[str, Path], tmp_path: Path) -> None:
    """A build copied to a static web server (no range requests) streams like a local one."""
    url, _ = remote_build
    folder = tmp_path / "site"
    fsspec.filesystem("s3").get(f"{BUCKET}/build", str(folder), recursive=True)
    handler = functools.partial(_QuietHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}"
            shards = open_shards(f"{base}/catalog.json", split=a_split(url))
            assert all(str(s.path).startswith(f"{base}/shards/") for s in shards.shards)
            config_ = LoaderConfig(batch_size=2, batches_per_epoch=2, seed=1)
            web_set = ShardDataset(shards, config_, PLAIN)
            s3_set = ShardDataset(open_shards(url, split=a_split(url)), config_, PLAIN)
            web, s3_batches = list(web_set), list(s3_set)
            assert [b["key"] for b in web] == [b["key"] for b in s3_batches]
            assert all((a["image"] == b["image"]).all() for a, b in zip(web, s3_batches, strict=True))
            for dataset in (web_set, s3_set):  # resuming: range reads on S3, read-and-drop over plain HTTP
                dataset.set_state(0, 1)
                assert [b["key"] for b in dataset] == [b["key"] for b in web[1:]]
            assert verify_build(base).ok
        finally:
            server.shutdown()
            thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.mark.parametrize(
    ("problem", "env", "expected"),
    [
        ("no bucket", (), "no such bucket"),
        ("no credentials", ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "NoCredentialsError"),
    ],
)
def test_output_problems_are_one_line_naming_the_url(
    s3: str, products: Path, tmp_path: Path, problem: str, env: tuple[str, ...], expected: str, monkeypatch
) -> None:
    for name in env:  # and no credentials file either
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    fsspec.get_filesystem_class("s3").clear_instance_cache()  # the cached one holds the old credentials
    url = "s3://missing-bucket/build" if problem == "no bucket" else f"s3://{BUCKET}/denied"
    try:
        result = CliRunner().invoke(app, ["build", str(products), url, "--work", str(tmp_path / "work")])
    finally:
        fsspec.get_filesystem_class("s3").clear_instance_cache()
    assert result.exit_code == EXIT_SYSTEM, result.output
    # other stderr lines are the in-process moto server's request log
    (line,) = [text for text in result.stderr.splitlines() if text.startswith("error:")]
    assert "Traceback" not in result.stderr
    assert line.startswith(f"error: {url}: ") and expected in line
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").rglob("*.tar"))


def test_an_unreachable_endpoint_is_named(s3: str, products: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    url = f"s3://{BUCKET}/unreachable"
    args = ["build", str(products), url, "--storage-option", f"endpoint_url=http://127.0.0.1:{closed}"]
    try:
        result = CliRunner().invoke(app, args + ["--work", str(tmp_path / "work")])
    finally:
        fsspec.config.conf.pop("s3", None)
        fsspec.get_filesystem_class("s3").clear_instance_cache()
    assert result.exit_code == EXIT_SYSTEM, result.output
    (line,) = [text for text in result.stderr.splitlines() if text.startswith("error:")]
    assert line.startswith(f"error: {url}: EndpointConnectionError")


def test_work_is_refused_for_a_local_output(products: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["build", str(products), str(tmp_path / "out"), "--work", str(tmp_path)])
    assert result.exit_code == 2 and "--work" in result.stderr
    assert not (tmp_path / "out").exists()


def test_build_cli_takes_storage_options(s3: str, products: Path, tmp_path: Path, monkeypatch) -> None:
    """``--storage-option endpoint_url=...`` reaches the server without AWS_ENDPOINT_URL."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    inputs = subset(products, tmp_path / "input", ["classic-3-L1"])
    url = f"s3://{BUCKET}/cli"
    options = ["--storage-option", f"endpoint_url={s3}"]
    runner = CliRunner()
    try:
        done = runner.invoke(
            app,
            [
                "build",
                str(inputs),
                url,
                "--work",
                str(tmp_path / "work"),
                "--no-progress",
                "--tile",
                str(TILE),
            ]
            + ["--scheduler", "synchronous", *options],
        )
        assert done.exit_code == 0, done.output
        checked = runner.invoke(app, ["verify", url, *options])
    finally:
        fsspec.config.conf.pop("s3", None)  # the options are process-wide fsspec defaults
        fsspec.get_filesystem_class("s3").clear_instance_cache()
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.startswith("OK: ")


def test_storage_options_and_hrefs_are_parsed_as_a_user_writes_them() -> None:
    options = parse_storage_options(
        ["endpoint_url=http://minio:9000", "anon=true", "client_kwargs={region_name: eu-west-1}", "profile="]
    )
    assert options == {
        "endpoint_url": "http://minio:9000",
        "anon": True,
        "client_kwargs": {"region_name": "eu-west-1"},
        "profile": "",
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_storage_options(["endpoint_url"])
    index = "s3://bucket/build/generations/000002/index.json"
    assert join(parent(index), "../../shards", "aviris-ng-L1/train/a.tar") == (
        "s3://bucket/build/shards/aviris-ng-L1/train/a.tar"
    )
    assert join("https://host:8000/catalog.json", "..") == "https://host:8000"
    assert isinstance(as_location("file:///data/build"), Path) and not is_url("file:///data/build")
