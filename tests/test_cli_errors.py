"""Every command reports failure as one plain line and a documented exit code, never a traceback.

The commands run as separate processes, as a user (or CI: no TTY, 40 columns) runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cli_process import ROOT, error_lines, run_cli
from rasterio.errors import RasterioIOError

from hyper400k.console import EXIT_INPUT, EXIT_INTERNAL, EXIT_SYSTEM, exit_code_for, report_exception
from hyper400k.errors import ProductError
from hyper400k.shards import ShardError


def assert_one_error(process, code: int, *fragments: str) -> str:
    assert process.returncode == code, process.stderr
    assert "Traceback" not in process.stderr
    lines = error_lines(process)
    assert len(lines) == 1, process.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_missing_product_is_one_line_input_error(tmp_path):
    missing = tmp_path / "nothing_here.hdr"
    assert_one_error(
        run_cli("pipelines.cli", "inspect", missing), EXIT_INPUT, f"error: {missing}: no such file"
    )


def test_unreadable_data_file_is_a_system_error_naming_it(ng_copy):
    process = run_cli("pipelines.cli", "inspect", ng_copy, deny=[ng_copy])
    assert_one_error(process, EXIT_SYSTEM, f"error: {ng_copy}: Permission denied")


def test_unreadable_header_is_a_system_error_naming_it(ng_copy):
    header = ng_copy.with_name(ng_copy.name + ".hdr")
    process = run_cli("pipelines.cli", "inspect", header, deny=[header])
    assert_one_error(process, EXIT_SYSTEM, f"error: {header}:", "Permission denied")


def test_usage_error_is_one_line_pointing_at_help():
    line = assert_one_error(run_cli("pipelines.cli", "tile"), EXIT_INPUT, "Missing argument")
    assert line.endswith("tile --help')")


def test_debug_adds_the_traceback_before_the_error_line(tmp_path):
    missing = tmp_path / "nothing_here"
    process = run_cli("pipelines.cli", "--debug", "inspect", missing)
    assert process.returncode == EXIT_INPUT
    assert "Traceback (most recent call last)" in process.stderr
    assert process.stderr.strip().splitlines()[-1] == f"error: {missing}: no such file"


def test_specaware_downstream_missing_config_is_one_line(tmp_path):
    missing = tmp_path / "missing.yaml"
    assert_one_error(run_cli("specaware.cli", "finetune", missing), EXIT_INPUT, str(missing))


@pytest.mark.parametrize(
    "exc, code, text",
    [
        (
            RuntimeError("projection went wrong"),
            EXIT_INTERNAL,
            "error: internal error: RuntimeError: projection went wrong",
        ),
        (
            OSError(28, "No space left on device", "/out/shard.tar"),
            EXIT_SYSTEM,
            "error: /out/shard.tar: No space left on device",
        ),
        (PermissionError(13, "Permission denied", "/out"), EXIT_SYSTEM, "error: /out: Permission denied"),
        (OSError(30, "Read-only file system"), EXIT_SYSTEM, "error: Read-only file system"),
        (ValueError("bad\n  value"), EXIT_INPUT, "error: bad value"),
    ],
)
def test_exit_code_and_line_of_each_kind_of_failure(capsys, exc, code, text):
    assert report_exception(exc, debug=False) == code
    assert capsys.readouterr().err.splitlines()[0].startswith(text)


def test_aviris_ng_header_with_braced_esri_wkt_inspects(tmp_path):
    """The ISOFIT-written AVIRIS-NG radiance header whose WKT once ended `inspect` in a pyproj traceback."""
    import json

    from test_conformance import ENTRIES, stage

    entry = next(e for e in ENTRIES if e["header"] == "ang20160910t185702_2rdn_img.hdr")
    header = stage(entry, tmp_path)
    process = run_cli(
        "pipelines.cli", "inspect", "--json", "--sensor", "aviris-ng", "--level", "L1",
        "--datetime", "2016-09-10T18:57:02", header,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    meta = json.loads(process.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert meta["crs"] == "EPSG:32611" and meta["shape"] == [25, 30, 425]


ENMAP_TILE = "enmap-potsdam/images/enmap_potsdam_tile_128_96.tif"


def _caused(error: Exception, cause: BaseException) -> Exception:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    "exc, code",
    [
        # a library's OSError without an OS errno: the file is damaged, which is bad input
        (
            _caused(ProductError("/in/x.tif", "not a readable raster"), RasterioIOError("TIFFReadDirectory")),
            2,
        ),
        (
            _caused(
                ProductError("/in/x.nc", "not a readable NetCDF file"), OSError(-101, "NetCDF: HDF error")
            ),
            2,
        ),
        # the system's refusals keep their own codes
        (_caused(ProductError("/in/x.hdr", "cannot read"), PermissionError(13, "Permission denied")), 3),
        (_caused(ShardError("/out/a.tar", "disk full"), OSError(28, "No space left on device")), 3),
        (_caused(ProductError("/in/x.hdr", "cannot read"), FileNotFoundError(2, "No such file")), 2),
    ],
)
def test_a_product_error_takes_its_code_from_an_os_refusal_only(exc, code):
    assert exit_code_for(exc) == code


def test_damaged_geotiff_is_a_one_line_input_error(realdata, tmp_path):
    damaged = tmp_path / "enmap_tile.tif"
    damaged.write_bytes((realdata / ENMAP_TILE).read_bytes()[:200])  # the first directory lies past the end
    process = run_cli("pipelines.cli", "inspect", "--level", "L2", damaged)
    assert_one_error(process, EXIT_INPUT, f"error: {damaged}: not a readable raster")


def test_damaged_netcdf_is_a_one_line_input_error(tmp_path):
    from hyper400k.synth import generate

    product = generate("aviris-3", "L1", 16, 16, tmp_path, seed=3, fmt="netcdf")
    product.write_bytes(product.read_bytes()[: product.stat().st_size // 2])
    process = run_cli("pipelines.cli", "inspect", product)
    assert_one_error(process, EXIT_INPUT, f"error: {product}: not a readable NetCDF file")


def test_unreadable_geotiff_is_a_system_error_naming_it(realdata, tmp_path):
    tile = tmp_path / "enmap_tile.tif"
    tile.write_bytes((realdata / ENMAP_TILE).read_bytes())
    process = run_cli("pipelines.cli", "inspect", "--level", "L2", tile, deny=[tile])
    assert_one_error(process, EXIT_SYSTEM, f"error: {tile}: Permission denied")


def _undecodable_gdal_message_tile(realdata, tmp_path):
    """The real EnMAP tile with one byte of its GDAL metadata XML damaged (same length, so every offset holds):
    GDAL's XML parser quotes the byte, which is not UTF-8, in its message."""
    data = (realdata / ENMAP_TILE).read_bytes()
    assert b'<Item name="' in data
    damaged = tmp_path / "enmap_tile.tif"
    damaged.write_bytes(data.replace(b'<Item name="', b'<Item \xd5m   "', 1))
    return damaged


def _assert_logged_not_printed(stderr: str) -> None:
    for printed in ("Traceback", "Exception ignored", "UnicodeDecodeError"):
        assert printed not in stderr, stderr
    warnings = [line for line in stderr.splitlines() if line.startswith("WARNING rasterio._env:")]
    assert any("for value of attribute" in line for line in warnings), stderr


def test_gdal_message_that_is_not_utf8_is_one_warning_line_not_a_traceback(realdata, tmp_path):
    damaged = _undecodable_gdal_message_tile(realdata, tmp_path)
    process = run_cli("pipelines.cli", "inspect", "--level", "L2", damaged)
    _assert_logged_not_printed(process.stderr)
    assert_one_error(process, EXIT_INPUT, f"error: {damaged}:")


def test_build_workers_log_gdal_messages_that_are_not_utf8_too(realdata, tmp_path):
    """A Dask worker preloads ``pipelines.worker``, which installs the same hooks as the command lines."""
    damaged = _undecodable_gdal_message_tile(realdata, tmp_path)
    script = (
        "import logging, sys; logging.basicConfig(format='%(levelname)s %(name)s: %(message)s')\n"
        "import pipelines.worker\n"
        "from hyper400k.errors import ProductError\n"
        "from hyper400k.product import open_product\n"
        "try:\n    open_product(sys.argv[1], level='L2')\n"
        "except ProductError as exc:\n    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.run(
        [sys.executable, "-c", script, str(damaged)], capture_output=True, text=True, env=env, timeout=300
    )
    assert process.returncode == 0, process.stderr
    _assert_logged_not_printed(process.stderr)
    assert str(damaged) in process.stdout


def test_netcdf_with_a_damaged_crs_is_a_one_line_input_error(tmp_path):
    import netCDF4

    from hyper400k.synth import generate

    product = generate("aviris-3", "L1", 16, 16, tmp_path, seed=3, fmt="netcdf")
    with netCDF4.Dataset(product, "a") as root:
        group = root.groups["radiance"]
        mapping = group.variables[group.variables["radiance"].grid_mapping]
        names = [name for name in ("spatial_ref", "crs_wkt") if name in mapping.ncattrs()]
        assert names, mapping.ncattrs()
        for name in names:
            mapping.setncattr(name, 'PROJCRS["damaged')
    process = run_cli("pipelines.cli", "inspect", product)
    assert_one_error(process, EXIT_INPUT, f"error: {product}:", "holds no WKT CRS")
