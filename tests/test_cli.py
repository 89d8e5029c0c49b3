"""The hyper400k command line as a user types it: synth -> inspect -> tile -> build -> stats."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


def test_synth_inspect_tile_build_stats(tmp_path):
    out = runner.invoke(
        app,
        ["synth", "--sensor", "aviris-classic", "--level", "L1", "--lines", "150", "--samples", "100",
         "--output", str(tmp_path / "in"), "--seed", "3"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    product = out.stdout.strip()
    assert product.endswith("rdn_c_sc01_ort_img")
    meta = json.loads(runner.invoke(app, ["inspect", "--json", product]).stdout)
    assert meta["sensor"] == "aviris-classic" and meta["shape"] == [150, 100, 224] and meta["gsd_m"] > 0
    assert meta["geometry"]["solar_zenith"] is not None  # from the obs companion the generator writes
    tiled = runner.invoke(app, ["tile", product, str(tmp_path / "tiles"), "--size", "48"])
    assert tiled.exit_code == 0, tiled.output
    assert "tiles kept" in tiled.stdout and list((tmp_path / "tiles").glob("*.tar"))
    built = runner.invoke(
        app,
        ["build", str(tmp_path / "in"), str(tmp_path / "build"), "--tile", "48", "--scheduler", "synchronous",
         "--no-progress", "--shard-mb", "5"],
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    stats = runner.invoke(app, ["stats", str(tmp_path / "build")])
    assert stats.exit_code == 0 and "aviris-classic-L1" in stats.stdout


def test_build_exits_non_zero_when_a_product_fails(tmp_path):
    runner.invoke(
        app,
        ["synth", "--sensor", "aviris-ng", "--level", "L2", "--lines", "80", "--samples", "60",
         "--output", str(tmp_path / "in")],
    )  # fmt: skip
    broken = next((tmp_path / "in").glob("*_rfl_v2p9_img"))
    broken.write_bytes(broken.read_bytes()[:1000])
    built = runner.invoke(
        app, ["build", str(tmp_path / "in"), str(tmp_path / "b"), "--tile", "32", "--scheduler", "synchronous",
              "--no-progress"],
    )  # fmt: skip
    assert built.exit_code == 1 and "truncated" in built.output


def test_unknown_preset_and_sensor_are_clear_errors(tmp_path):
    bad = runner.invoke(app, ["build", str(tmp_path), str(tmp_path / "o"), "--preset", "nope"])
    assert bad.exit_code == 2 and "unknown preset 'nope'" in bad.output
    bad = runner.invoke(
        app,
        [
            "synth",
            "--sensor",
            "hymap",
            "--level",
            "L1",
            "--lines",
            "4",
            "--samples",
            "4",
            "--output",
            str(tmp_path),
        ],
    )
    assert bad.exit_code == 2 and "hymap" in bad.output
