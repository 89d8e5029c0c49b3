"""The build on a real dask LocalCluster (a worker killed mid-build) and from a manifest served on loopback."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from hyper400k.presets import get_preset
from hyper400k.synth import generate
from hyper400k.verify import verify_build
from pipelines.build import BuildConfig, build


@pytest.fixture(scope="module")
def ng_products(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ng")
    for seed in range(40, 44):
        generate("aviris-ng", "L1", 640, 160, folder, seed=seed)
    return folder


def test_killed_worker_loses_only_its_product(ng_products, tmp_path):
    output = tmp_path / "out"
    config = BuildConfig(
        input=ng_products, output=output, preset=get_preset("hyper400k", tile=64), workers=2, progress=False
    )
    outcome: dict[str, object] = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("result", build(config)))
    runner.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and runner.is_alive() and time.monotonic() < deadline:
        started = list((output / "work" / "products").glob("*")) if (output / "work").exists() else []
        if started:
            # dask workers are grandchildren of this process (nanny -> worker); kill one that is busy
            busy = [p for p in psutil.Process().children(recursive=True) if p.cpu_percent(interval=0.05) > 10]
            if busy:
                killed = busy[-1]
                records_before = len(list((output / "work" / "products").glob("*/record.json")))
                killed.kill()
        time.sleep(0.05)
    runner.join(timeout=300)
    assert killed is not None, "no busy worker was found to kill"
    assert records_before < 4  # the kill happened while products were still in flight
    result = outcome["result"]
    assert len(result.records) + len(result.failures) == 4
    assert len(result.records) >= 3  # at most the product in flight on the killed worker is lost
    rerun = build(config)
    assert rerun.ok and len(rerun.records) == 4  # and the next run finishes it


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


def test_manifest_build_goes_on_past_404_and_corrupt_file(ng_products, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    data = sorted(ng_products.glob("*_rdn_v2p9_img"))[:2]
    files = [p for d in data for p in (d, d.with_name(d.name + ".hdr"))]
    for path in files:
        (served / path.name).write_bytes(path.read_bytes())
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(served))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        entries = [
            {"url": f"{base}/{p.name}", "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in files
        ]
        entries[2]["sha256"] = (
            "0" * 64
        )  # the second product's data file is served corrupt (checksum mismatch)
        entries.append({"url": f"{base}/ang20990101t000000_rdn_v2p9_img.hdr"})  # 404
        manifest = tmp_path / "manifest.yaml"
        manifest.write_text(yaml.safe_dump({"products": entries}))
        config = BuildConfig(
            input=manifest,
            output=tmp_path / "out",
            preset=get_preset("hyper400k", tile=64),
            scheduler="synchronous",
            progress=False,
        )
        result = build(config)
    finally:
        server.shutdown()
    reasons = " | ".join(f["reason"] for f in result.failures)
    assert [r["product_id"] for r in result.records] == [data[0].name]
    assert (
        "404" in reasons
        and "sha256 mismatch" in reasons
        and "no data file found beside the header" in reasons
    )
    assert not result.ok and verify_build(tmp_path / "out").ok  # what did download is built
    item = json.loads(
        next(
            (tmp_path / "out").glob(
                f"generations/*/hyper400k-aviris-ng-l1/{data[0].name}/{data[0].name}.json"
            )
        ).read_text()
    )
    assert f"{base}/{data[0].name}" in [
        link["href"] for link in item["links"] if link["rel"] == "via"
    ]  # provenance


def test_windows_in_flight_never_outnumber_worker_threads(tmp_path, monkeypatch):
    """Products of a window start only once a window before it is packed (its spools deleted), at most one
    window per worker thread: even when packing is slow, spools never pile up ahead of it, and the disk holds
    the corpus plus those windows. (The in-process cluster runs the slowed packing task given here.)"""
    from dask.distributed import Client, LocalCluster, get_task_stream

    import pipelines.build

    inputs = tmp_path / "input"
    for seed in range(6):
        generate("aviris-ng", "L1", 96, 64, inputs / f"p{seed}", seed=seed)
    pack = pipelines.build.pack_window

    def slow_pack(*args, **kwargs):
        time.sleep(0.5)  # slower than tiling: the old scheduling ran every product ahead of packing
        return pack(*args, **kwargs)

    monkeypatch.setattr(pipelines.build, "pack_window", slow_pack)
    output = tmp_path / "out"
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
        get_task_stream(client) as stream,
    ):
        config = BuildConfig(
            input=inputs,
            output=output,
            preset=get_preset("hyper400k", tile=32),
            scheduler=cluster.scheduler_address,
            progress=False,
            window_products=1,
            shard_bytes=400_000,
        )
        assert build(config).ok
    windows = json.loads(next(output.glob("generations/*/index.json")).read_text())["windows"]
    window_of = {product: w["id"] for w in windows for product in w["products"]}
    starts: dict[str, list[float]] = {}
    stops: dict[str, list[float]] = {}
    for task in stream.data:
        compute = next(s for s in task["startstops"] if s["action"] == "compute")
        kind, _, name = str(task["key"]).partition("-")
        window = name if kind == "pack" else window_of[name]
        starts.setdefault(window, []).append(compute["start"])
        stops.setdefault(window, []).append(compute["stop"])
    assert len(starts) == len(windows) == 6
    # A window is in flight from its first task's start to its last task's stop (its packing). Sweep those
    # intervals (a stop before a start at the same instant): two threads, so never more than two at once,
    # whichever window happens to finish first.
    events = sorted([(min(starts[w]), 1) for w in starts] + [(max(stops[w]), -1) for w in starts])
    in_flight = [sum(change for _, change in events[: i + 1]) for i in range(len(events))]
    assert max(in_flight) <= 2 and min(in_flight) >= 0


def test_the_builds_own_cluster_starts_its_workers_with_the_tiling_stack_imported():
    """A worker of the build's LocalCluster has imported the tiling and packing code before any task reaches
    it, so no build pays the ~3 s import on its first task (``pipelines.worker``)."""
    import sys

    from pipelines.build import dask_client

    def loaded() -> list[str]:
        return [name for name in ("pipelines.product_task", "pipelines.pack", "torch") if name in sys.modules]

    with dask_client(None, 1, lambda message: None) as client:
        assert list(client.run(loaded).values()) == [["pipelines.product_task", "pipelines.pack", "torch"]]
