"""Products of instruments hyper400k does not know: stated once in a sidecar, read alike by every command;
their companions are companions; what nothing states is refused, naming the option to pass."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from cli_process import error_lines, run_cli

from hyper400k.errors import HeaderError, ProductError
from hyper400k.manifest import load_manifest
from hyper400k.overrides import sidecar_path
from hyper400k.presets import get_preset
from hyper400k.product import open_product
from hyper400k.synth import generate
from pipelines.build import BuildConfig, build

ENMAP = "enmap-potsdam/images/enmap_potsdam_tile_128_0.tif"
WHEN = "2018-08-19T18:04:15Z"


def foreign_line(folder: Path) -> Path:
    """An AVIRIS-NG radiance line with its loc/obs companions, renamed as a PRISM-style line no sensor claims."""
    generate("aviris-ng", "L1", 96, 64, folder / "synth", seed=7)
    for path in (folder / "synth").iterdir():
        path.rename(folder / path.name.replace("ang", "prm", 1))
    (folder / "synth").rmdir()
    return next(folder.glob("prm*_rdn_v2p9_img"))


def build_config(input_dir: Path, output: Path) -> BuildConfig:
    return BuildConfig(
        input=input_dir, output=output, preset=get_preset("hyper400k", tile=32), scheduler="synchronous",
        progress=False,
    )  # fmt: skip


def test_geotiff_without_stated_level_or_scale_is_refused_naming_the_option(realdata, tmp_path):
    tif = tmp_path / Path(ENMAP).name
    shutil.copyfile(realdata / ENMAP, tif)
    with pytest.raises(HeaderError, match="pass --level L1 or --level L2"):
        open_product(tif)
    meta = open_product(tif, level="L2").meta  # float32 with GDAL's band scale 0.0001: stated, so used
    assert "values multiplied by the raster's scale 0.0001" in meta.notes
    sidecar_path(tif).write_text("level: L2\nscale: 0.0001\ndatetime: 2021-06-01T10:00:00Z\n")
    meta = open_product(tif).meta
    assert (meta.level, meta.datetime.year) == ("L2", 2021)
    assert "values multiplied by 0.0001 as requested" in meta.notes


def test_integer_geotiff_without_scale_is_refused(tmp_path):
    path = tmp_path / "scene_rfl.tif"
    profile = dict(driver="GTiff", width=4, height=4, count=3, dtype="int16", crs="EPSG:32633",
                   transform=rasterio.Affine(30, 0, 380000, 0, -30, 5820000))  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.full((3, 4, 4), 1200, dtype="int16"))
        ds.update_tags(start_time="2021-06-01T10:00:00")
        for band, wavelength in enumerate((500.0, 600.0, 700.0), start=1):
            ds.update_tags(band, wavelength=wavelength, wavelength_units="nm")
    with pytest.raises(HeaderError, match="integer values and nothing states their scale: pass --scale"):
        open_product(path)
    assert open_product(path, scale=1e-4).read_all().max() == pytest.approx(0.12)


def test_tile_takes_the_facts_a_geotiff_does_not_state(realdata, tmp_path):
    tif = tmp_path / Path(ENMAP).name
    shutil.copyfile(realdata / ENMAP, tif)
    refused = run_cli("pipelines.cli", "tile", "--size", "16", tif, tmp_path / "refused")
    assert refused.returncode == 2, refused.stderr
    assert error_lines(refused) == [
        f"error: {tif}: nothing states whether it holds radiance or reflectance: pass --level L1 or --level L2"
    ]
    assert not (tmp_path / "refused").exists()
    process = run_cli(
        "pipelines.cli", "tile", "--size", "16", "--level", "L2", "--json", tif, tmp_path / "out"
    )
    assert process.returncode == 0, process.stderr
    report = json.loads(process.stdout)
    assert report["kept"] + report["dropped_tiles"] == 4 and report["kept"] > 0  # a 32 x 32 tile, in 16 x 16
    shards = list((tmp_path / "out").glob("*.tar"))
    assert len(shards) == 1 and shards[0].stat().st_size > report["kept"] * 16 * 16 * 224 * 2


def test_inspect_error_names_the_option(realdata, tmp_path):
    tif = tmp_path / Path(ENMAP).name
    shutil.copyfile(realdata / ENMAP, tif)
    process = run_cli("pipelines.cli", "inspect", tif)
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert error_lines(process) == [
        f"error: {tif}: nothing states whether it holds radiance or reflectance: pass --level L1 or --level L2"
    ]


def test_sidecar_applies_alike_in_inspect_tile_and_build(tmp_path):
    data = foreign_line(tmp_path / "in")
    with pytest.raises(HeaderError, match="no acquisition time.*pass --datetime"):
        open_product(data)
    companions = {"loc": data.name.replace("_img", "_loc"), "obs": data.name.replace("_img", "_obs_ort")}
    sidecar_path(data).write_text(yaml.safe_dump({"datetime": WHEN, "companions": companions}))
    meta = open_product(data).meta
    assert (meta.sensor, meta.level) == ("other", "L1")
    assert meta.geometry.solar_zenith is not None  # from the stated obs companion
    inspected = run_cli("pipelines.cli", "inspect", "--json", data)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["datetime"] == WHEN
    tiled = run_cli("pipelines.cli", "tile", data, tmp_path / "tiles", "--size", "32")
    assert tiled.returncode == 0, tiled.stderr
    result = build(build_config(tmp_path / "in", tmp_path / "out"))
    assert result.ok, result.failures  # the loc/obs companions are not failed products
    assert [r["product_id"] for r in result.records] == [data.name]
    assert result.records[0]["meta"]["datetime"] == WHEN
    assert result.ignored == []


def test_manifest_overrides_become_the_sidecar(tmp_path):
    data = foreign_line(tmp_path / "src")
    manifest = tmp_path / "manifest.yaml"
    entries = [
        {"url": str(p), "overrides": {"datetime": WHEN}} if p == data else {"url": str(p)}
        for p in sorted((tmp_path / "src").iterdir())
    ]
    manifest.write_text(yaml.safe_dump({"products": entries}))
    result = build(build_config(manifest, tmp_path / "out"))
    assert result.ok, result.failures
    assert result.records[0]["meta"]["datetime"] == WHEN
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump([{"url": str(data), "overrides": {"colour": "red"}}]))
    with pytest.raises(ValueError, match="entry 0: unknown override\\(s\\) colour"):
        load_manifest(bad)


def test_bad_sidecar_is_a_clear_error(tmp_path):
    data = foreign_line(tmp_path / "in")
    sidecar_path(data).write_text("scale: -2\n")
    with pytest.raises(ProductError, match=r"overrides.yaml: 'scale' must be a positive number"):
        open_product(data)


@pytest.mark.parametrize(
    "text, problem",
    [
        # PyYAML builds an unquoted date and fails on an impossible one with a bare ValueError
        (
            "level: L1\ndatetime: 2018-13-40\n",
            r"not valid YAML: a value cannot be read \(month must be in 1\.\.12\)",
        ),
        ("sensor: avirisng\n", r"unknown sensor 'avirisng'; known: aviris-ng"),
    ],
    ids=["impossible-date", "unknown-sensor"],
)
def test_sidecar_with_an_impossible_value_names_the_sidecar(realdata, tmp_path, text, problem):
    tile = tmp_path / Path(ENMAP).name
    shutil.copyfile(realdata / ENMAP, tile)
    sidecar_path(tile).write_text(text)
    with pytest.raises(HeaderError, match=rf"^{sidecar_path(tile)}: {problem}"):
        open_product(tile)


def test_manifest_and_rule_set_with_an_impossible_date_name_their_file(tmp_path):
    from hyper400k.quality import RuleSet

    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("- url: https://example.org/a.tar.gz\n  added: 2020-02-30\n")
    with pytest.raises(ValueError, match=rf"^{manifest}: not valid YAML: .*day is out of range"):
        load_manifest(manifest)
    rules = tmp_path / "rules.yaml"
    rules.write_text("name: clear\nreviewed: 0000-01-01\nrules: []\n")
    with pytest.raises(ValueError, match=rf"^{rules}: cannot read rule set: .*year 0 is out of range"):
        RuleSet.from_yaml(rules)


@dataclass
class NamedConfig:
    name: str = ""


def test_user_files_that_are_not_utf8_name_the_file(realdata, tmp_path):
    """A binary or Latin-1 file given as a sidecar, manifest, rule set, id list or config: one line naming it."""
    from hyper400k.archive.product_list import read_ids
    from hyper400k.quality import RuleSet
    from specaware.yaml_config import dataclass_from_yaml

    latin1 = "name: Zürich\n".encode("latin-1")
    tile = tmp_path / Path(ENMAP).name
    shutil.copyfile(realdata / ENMAP, tile)
    sidecar_path(tile).write_bytes(latin1)
    readers = {
        sidecar_path(tile): lambda: open_product(tile),
        tmp_path / "manifest.yaml": lambda: load_manifest(tmp_path / "manifest.yaml"),
        tmp_path / "rules.yaml": lambda: RuleSet.from_yaml(tmp_path / "rules.yaml"),
        tmp_path / "ids.txt": lambda: read_ids(tmp_path / "ids.txt"),
        tmp_path / "config.yaml": lambda: dataclass_from_yaml(NamedConfig, tmp_path / "config.yaml", "test"),
    }
    for path, read in readers.items():
        path.write_bytes(latin1)
        with pytest.raises(ValueError, match=rf"^{path}: not UTF-8 text \(invalid start byte at byte 7\)"):
            read()
