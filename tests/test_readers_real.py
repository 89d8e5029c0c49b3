"""Every real product in ../shared/realdata opens with correct metadata and values equal to GDAL's and spectral's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import spectral
from typer.testing import CliRunner

from hyper400k.envi_header import EnviHeader
from hyper400k.errors import UnsupportedProductError
from hyper400k.product import open_product
from pipelines.cli import app

NG_RDN = "aviris-ng/ang20170323t202244_rdn_7000-7010"
NG_CORR = "aviris-ng/ang20140912t192359_corr_v1c_img_2580-2590_540-550.img"
NG_FILL = "aviris-ng/ang20140912t192359_corr_v1c_img_400-410_10-20.img"
CLASSIC = "aviris-classic/f080702t01p00r08rdn_c_sc01_ort_img_123_456.img"
AV3 = "aviris-3/AV320250308t200738_rdn.img"
ENMAP = "enmap-potsdam/images/enmap_potsdam_tile_128_0.tif"


def gdal_cube(path: Path, scale: np.ndarray | float = 1.0, nodata: float | None = None) -> np.ndarray:
    with rasterio.open(path) as ds:
        raw = ds.read()
    cube = raw.astype(np.float32) * np.asarray(scale, dtype=np.float32).reshape(-1, 1, 1)
    if nodata is not None:
        cube[raw == nodata] = np.nan
    return cube


@pytest.mark.parametrize(
    "rel, sensor, level, bands, interleave",
    [
        (NG_RDN, "aviris-ng", "L1", 425, "bil"),
        (NG_CORR, "aviris-ng", "L2", 432, "bip"),
        (AV3, "aviris-3", "L1", 284, "bsq"),
    ],
)
def test_float_products_match_gdal_and_spectral(realdata, rel, sensor, level, bands, interleave):
    path = realdata / rel
    with open_product(path) as scene:
        meta, ours = scene.meta, scene.read_all()
    assert (meta.sensor, meta.level, meta.bands) == (sensor, level, bands)
    assert scene.interleave == interleave
    np.testing.assert_array_equal(ours, gdal_cube(path, nodata=-9999.0))
    header = Path(meta.files["header"])
    spy = spectral.envi.open(str(header), str(path)).load()  # (lines, samples, bands)
    np.testing.assert_array_equal(ours, np.asarray(spy, dtype=np.float32).transpose(2, 0, 1))


def test_aviris_ng_l1_metadata(realdata):
    meta = open_product(realdata / NG_RDN).meta
    assert meta.wavelength_nm[0] == 376.86 and meta.fwhm_nm[0] == pytest.approx(5.57)
    assert meta.datetime.isoformat() == "2017-03-23T20:22:44+00:00"
    # unprojected L1B: footprint and GSD come from the loc companion, angles from obs
    assert meta.crs is None and meta.transform is None
    lon, lat = np.array(meta.footprint["coordinates"][0]).T
    assert -114.9 < lon.min() < lon.max() < -114.88 and 32.62 < lat.min() < lat.max() < 32.64
    assert 10.0 < meta.gsd_m < 30.0
    assert meta.geometry.solar_zenith == pytest.approx(32.46, abs=0.5)
    assert set(meta.files) == {"data", "header", "loc", "obs"}
    # deep water-vapour bands are bad by wavelength window
    assert not meta.good_bands[np.argmin(np.abs(meta.wavelength_nm - 1400))]
    assert meta.good_bands[np.argmin(np.abs(meta.wavelength_nm - 1000))]


def test_aviris_ng_l2_v1_rotated_affine_matches_gdal(realdata):
    path = realdata / NG_CORR
    meta = open_product(path).meta
    with rasterio.open(path) as ds:
        assert meta.crs == ds.crs.to_string() == "EPSG:32613"
        np.testing.assert_allclose(meta.transform, tuple(ds.transform)[:6], rtol=0, atol=1e-9)
    assert meta.transform[1] != 0  # rotated=53 degrees
    assert meta.gsd_m == pytest.approx(3.1)
    bbl = EnviHeader.read(path.with_suffix(".hdr")).floats("bbl")
    assert not meta.good_bands[bbl == 0].any()  # header bbl merged in
    assert meta.processing_version == "v1c"
    assert len(meta.footprint["coordinates"][0]) == 5


def test_all_fill_crop_reads_as_all_nan(realdata):
    with open_product(realdata / NG_FILL) as scene:
        assert np.isnan(scene.read_all()).all()


def test_aviris_classic_dn_divided_by_default_gains(realdata, caplog):
    path = realdata / CLASSIC
    with open_product(path) as scene:
        meta, ours = scene.meta, scene.read_all()
    assert "default gains" in caplog.text
    gains = np.r_[np.full(110, 300.0), np.full(50, 600.0), np.full(64, 1200.0)]
    np.testing.assert_allclose(ours, gdal_cube(path, 1.0 / gains), rtol=1e-6)
    assert 0 < np.nanmax(ours) < 30  # radiance, not DN
    # non-monotonic at spectrometer joins: order kept, never sorted
    assert (np.diff(meta.wavelength_nm) < 0).sum() == 3
    with rasterio.open(path) as ds:
        np.testing.assert_allclose(meta.transform, tuple(ds.transform)[:6], atol=1e-9)
    assert meta.gsd_m == pytest.approx(16.4)


def test_aviris_classic_gain_file_is_used(realdata, tmp_path):
    for src in (realdata / CLASSIC, (realdata / CLASSIC).with_suffix(".hdr")):
        (tmp_path / src.name).write_bytes(src.read_bytes())
    gains = np.linspace(250, 1300, 224)
    np.savetxt(tmp_path / "f080702t01p00r08rdn_c.gain", np.c_[gains, np.arange(1, 225)], fmt="%.4f %d")
    with open_product(tmp_path / CLASSIC.split("/")[1]) as scene:
        ours = scene.read_all()
    np.testing.assert_allclose(ours, gdal_cube(realdata / CLASSIC, 1.0 / gains), rtol=1e-6)


def test_aviris3_micrometres_and_side_file_fwhm(realdata):
    meta = open_product(realdata / AV3).meta
    assert meta.wavelength_nm[0] == pytest.approx(389.75)  # header µm, to nm at header precision
    side = np.loadtxt(realdata / "aviris-3/wavelengths.txt")
    np.testing.assert_allclose(meta.fwhm_nm, side[:, 2] * 1000)
    assert meta.fwhm_source.startswith("side file")
    assert meta.geometry.solar_zenith is not None


def test_enmap_geotiff_as_other_sensor(realdata):
    path = realdata / ENMAP
    with open_product(path, level="L2", scale=1e-4) as scene:
        meta, ours = scene.meta, scene.read_all()
    assert (meta.sensor, meta.bands, meta.crs, meta.gsd_m) == ("other", 224, "EPSG:32633", 30.0)
    assert meta.fwhm_source == "band tags" and meta.nodata == -32768
    with rasterio.open(path) as ds:
        raw = ds.read()
        bbl = np.array([float(ds.tags(b)["bbl"]) for b in range(1, 225)])
    expected = raw.astype(np.float32) * np.float32(1e-4)
    expected[raw == -32768] = np.nan
    np.testing.assert_array_equal(ours, expected)
    assert not meta.good_bands[bbl == 0].any()
    assert np.isfinite(ours[meta.good_bands]).all() and 0 < np.nanmax(ours) < 1


def test_companion_and_library_are_refused(realdata):
    with pytest.raises(UnsupportedProductError, match="companion"):
        open_product(realdata / "aviris-ng/ang20170323t202244_obs_7000-7010")
    with pytest.raises(UnsupportedProductError, match="spectral library"):
        open_product(realdata / "speclib/s07_AV95_envi.hdr")


def test_inspect_json_cli(realdata):
    result = CliRunner().invoke(app, ["inspect", "--json", str(realdata / NG_CORR)])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    for key in ("sensor", "level", "product_id", "shape", "wavelength_nm", "fwhm_nm", "good_bands", "units",
                "nodata", "gsd_m", "crs", "transform", "footprint", "datetime"):  # fmt: skip
        assert key in record
    assert record["shape"] == [10, 10, 432] and len(record["transform"]) == 6
    assert record["footprint"]["type"] == "Polygon" and record["datetime"] == "2014-09-12T19:23:59Z"


def test_inspect_cli_reports_bad_input(tmp_path):
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "missing_rdn")])
    assert result.exit_code == 2 and "missing_rdn: no such file" in "".join(result.output.split("\n"))
