"""The synthetic product generator: real on-disk formats, checked with independent tools.

Formats are decoded with rasterio (GDAL's ENVI driver), ``spectral``'s header parser + ``np.fromfile``,
and netCDF4/xarray, never with the generator's own code; content is checked for physical plausibility
(red edge, absorption bands, ranges), defects (saturation, dead column), ortho fill, seamless strips,
determinism and bounded memory.
"""

from __future__ import annotations

import hashlib
import tracemalloc
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import rasterio
import xarray as xr
from pyproj import CRS, Transformer
from spectral.io.envi import read_envi_header

from hyper400k.envi_header import EnviHeader
from hyper400k.geo import parse_map_info
from hyper400k.sensors import good_band_mask, identify, sensor
from hyper400k.synth import generate
from hyper400k.synth.scenario import Scenario
from hyper400k.synth.surface import Surface
from hyper400k.synth.writers import EnviWriter

LINES, SAMPLES, STRIP, SEED = 64, 48, 16, 3
CASES = [
    ("aviris-ng", "L1", "envi"),
    ("aviris-ng", "L2", "envi"),
    ("aviris-classic", "L1", "envi"),
    ("aviris-classic", "L2", "envi"),
    ("aviris-3", "L1", "envi"),
    ("aviris-3", "L2", "envi"),
    ("aviris-3", "L1", "netcdf"),
    ("aviris-3", "L2", "netcdf"),
]
ENVI_CASES = [c for c in CASES if c[2] == "envi"]
IDS = [f"{s}-{lv}-{f}" for s, lv, f in CASES]
ENVI_IDS = [f"{s}-{lv}-{f}" for s, lv, f in ENVI_CASES]


@dataclass(frozen=True)
class Decoded:
    """A product decoded independently: stored values, physical values and the fill mask."""

    stored: np.ndarray  # (lines, samples, bands) as on disk
    physical: np.ndarray  # (lines, samples, bands) float64 in radiance / reflectance units
    fill: np.ndarray  # (lines, samples) bool


def envi_header(path: Path) -> dict:
    return read_envi_header(str(path.with_name(path.name + ".hdr")))


def decode(path: Path) -> Decoded:
    """Decode a product with np.fromfile (ENVI) or netCDF4 (NetCDF) only."""
    if path.suffix == ".nc":
        with netCDF4.Dataset(path) as ds:
            group = next(iter(ds.groups.values()))
            var = group.variables[group.name]
            var.set_auto_mask(False)
            stored = np.asarray(var[:])
        fill = (stored == -9999).all(axis=-1)
        return Decoded(stored, stored.astype(np.float64), fill)
    header = envi_header(path)
    lines, samples, bands = int(header["lines"]), int(header["samples"]), int(header["bands"])
    dtype = {"2": "i2", "4": "f4", "5": "f8"}[header["data type"]]
    dtype = np.dtype((">" if header["byte order"] == "1" else "<") + dtype)
    raw = np.fromfile(path, dtype=dtype)
    if header["interleave"].lower() == "bil":
        stored = raw.reshape(lines, bands, samples).transpose(0, 2, 1)
    else:
        stored = raw.reshape(lines, samples, bands)
    physical = stored.astype(np.float64)
    if dtype.kind == "i":
        if "reflectance scale factor" in header:
            physical /= float(header["reflectance scale factor"])
        else:
            gain_file = next(path.parent.glob("*.gain"))
            physical /= np.loadtxt(gain_file)[:, 0]
        fill = (stored == 0).all(axis=-1)
    else:
        fill = (stored == float(header["data ignore value"])).all(axis=-1)
    return Decoded(stored, physical, fill)


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], Path]:
    """One small product per sensor × level (× NetCDF), each in its own folder."""
    out = {}
    for case in CASES:
        folder = tmp_path_factory.mktemp("-".join(case))
        out[case] = generate(
            case[0], case[1], LINES, SAMPLES, folder, seed=SEED, fmt=case[2], strip_lines=STRIP
        )
    return out


def band(wavelength_nm: np.ndarray, target: float) -> int:
    return int(np.argmin(np.abs(wavelength_nm - target)))


# --- names and files -------------------------------------------------------------------------------------


def expected_files(sensor_name: str, level: str, fmt: str, data: str) -> set[str]:
    name = identify(data)
    assert name is not None
    stamp = name.datetime.strftime("%Y%m%dt%H%M%S")
    if sensor_name == "aviris-ng":
        stem = f"ang{stamp}_rdn_v2p9"
        main = f"{stem}_img" if level == "L1" else f"ang{stamp}_rfl_v2p9_img"
        return {
            main,
            f"{main}.hdr",
            f"{stem}_loc",
            f"{stem}_loc.hdr",
            f"{stem}_obs_ort",
            f"{stem}_obs_ort.hdr",
        }
    if sensor_name == "aviris-classic":
        fl = name.flight_line
        kind = "rdn" if level == "L1" else "rfl"
        files = {
            f"{fl}{kind}_c_sc01_ort_img",
            f"{fl}{kind}_c_sc01_ort_img.hdr",
            f"{fl}rdn_c_obs_ort",
            f"{fl}rdn_c_obs_ort.hdr",
        }
        return files | ({f"{fl}rdn_c.gain"} if level == "L1" else set())
    product = "L1B_RDN" if level == "L1" else "L2A_OE"
    base = f"AV3{stamp}_001_{product}_{name.version}"
    if fmt == "netcdf":
        return {f"{base}.nc"}
    main = f"{base}_{'RDN' if level == 'L1' else 'RFL'}_ORT"
    obs = f"AV3{stamp}_001_L1B_RDN_{name.version}_OBS_ORT"
    return {main, f"{main}.hdr", f"{main}_wavelengths.txt", obs, f"{obs}.hdr"}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_file_names_follow_the_sensor_conventions(products: dict, case: tuple[str, str, str]) -> None:
    path = products[case]
    sensor_name, level, fmt = case
    assert {p.name for p in path.parent.iterdir()} == expected_files(sensor_name, level, fmt, path.name)
    name = identify(path)
    assert name is not None
    assert (name.sensor, name.level, name.role) == (sensor_name, level, "data")
    for companion in path.parent.iterdir():
        if companion.suffix in (".hdr", ".txt", ".gain") or companion == path:
            continue
        other = identify(companion)
        assert other is not None and other.flight_line == name.flight_line, companion.name
        assert other.role in ("loc", "obs"), companion.name


def test_l1_and_l2_of_one_seed_are_one_flight_line(products: dict) -> None:
    for sensor_name in ("aviris-ng", "aviris-classic", "aviris-3"):
        l1, l2 = (identify(products[(sensor_name, lv, "envi")]) for lv in ("L1", "L2"))
        assert l1 is not None and l2 is not None
        assert l1.flight_line == l2.flight_line and l1.datetime == l2.datetime


# --- on-disk format --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ENVI_CASES, ids=ENVI_IDS)
def test_rasterio_reads_what_was_written(products: dict, case: tuple[str, str, str]) -> None:
    path = products[case]
    decoded = decode(path)
    grid, _ = sensor(case[0]).grid()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            assert ds.driver == "ENVI"
            assert (ds.count, ds.height, ds.width) == (grid.size, LINES, SAMPLES)
            assert ds.dtypes[0] == ("int16" if case[0] == "aviris-classic" else "float32")
            values = ds.read()
            transform, crs = tuple(ds.transform)[:6], ds.crs
    np.testing.assert_array_equal(values.transpose(1, 2, 0), decoded.stored)
    georef = parse_map_info(EnviHeader.read(path.with_name(path.name + ".hdr")))
    assert georef is not None
    np.testing.assert_allclose(transform, georef.transform, rtol=0, atol=1e-6)
    assert crs.to_epsg() == CRS.from_user_input(georef.crs).to_epsg()
    a, b, _, d, e, _ = transform
    assert abs(b) > 0.1 and abs(d) > 0.1, "ortho grid must be rotated"
    assert 3.0 < np.hypot(a, d) < 18.0


@pytest.mark.parametrize("case", ENVI_CASES, ids=ENVI_IDS)
def test_header_keys_as_jpl_writes_them(products: dict, case: tuple[str, str, str]) -> None:
    sensor_name, level, _ = case
    path = products[case]
    header = envi_header(path)
    grid, fwhm = sensor(sensor_name).grid()
    text = path.with_name(path.name + ".hdr").read_text()
    keys = [line.split("=")[0].strip() for line in text.splitlines()[1:]]
    assert keys[:10] == [
        "description", "samples", "lines", "bands", "header offset", "file type",
        "data type", "interleave", "byte order", "map info",
    ]  # fmt: skip
    assert "rotation=" in header["map info"][-1] and header["map info"][0] == "UTM"
    if sensor_name == "aviris-classic":
        assert (header["data type"], header["interleave"], header["byte order"]) == ("2", "bip", "1")
        assert "data ignore value" not in header
        assert header["wavelength units"] == "Nanometers"
        np.testing.assert_array_equal(np.array(header["wavelength"], dtype=float), grid)  # join order kept
        if level == "L2":
            assert header["reflectance scale factor"] == "10000"
        return
    assert (header["data type"], header["interleave"], header["byte order"]) == ("4", "bil", "0")
    assert header["data ignore value"] == "-9999"
    if sensor_name == "aviris-ng":
        assert header["wavelength units"] == "Nanometers"
        np.testing.assert_array_equal(np.array(header["wavelength"], dtype=float), grid)
        np.testing.assert_array_equal(np.array(header["fwhm"], dtype=float), fwhm)
    else:
        assert header["wavelength units"] == "Micrometers"
        assert "fwhm" not in header
        np.testing.assert_allclose(np.array(header["wavelength"], dtype=float) * 1000, grid, rtol=1e-12)
        table = np.loadtxt(path.with_name(path.name + "_wavelengths.txt"))
        np.testing.assert_array_equal(table[:, 0], np.arange(grid.size))
        np.testing.assert_allclose(table[:, 1:] * 1000, np.column_stack([grid, fwhm]), rtol=1e-12)
    if level == "L2":
        np.testing.assert_array_equal(np.array(header["bbl"], dtype=int), good_band_mask(grid).astype(int))


def test_classic_gain_file_matters(products: dict) -> None:
    path = products[("aviris-classic", "L1", "envi")]
    table = np.loadtxt(next(path.parent.glob("*.gain")))
    assert table.shape == (224, 2)
    np.testing.assert_array_equal(table[:, 1], np.arange(1, 225))
    nominal = np.repeat([300.0, 600.0, 1200.0], [110, 50, 64])
    assert np.all(np.abs(table[:, 0] / nominal - 1) < 0.05)
    assert np.any(table[:, 0] != nominal), "per-channel gains should differ from the defaults"


@pytest.mark.parametrize("level", ["L1", "L2"])
def test_netcdf_layout(products: dict, level: str) -> None:
    path = products[("aviris-3", level, "netcdf")]
    group = "radiance" if level == "L1" else "reflectance"
    grid, fwhm = sensor("aviris-3").grid()
    with netCDF4.Dataset(path) as ds:
        assert ds.sensor == "AVIRIS-3" and ds.title and ds.processing_version
        start = datetime.fromisoformat(ds.time_coverage_start.replace("Z", "+00:00"))
        assert start == identify(path).datetime
        g = ds.groups[group]
        var = g.variables[group]
        assert var.dimensions == ("y", "x", "wavelength") and var.dtype == np.float32
        assert var.shape == (LINES, SAMPLES, grid.size)
        assert var.getncattr("_FillValue") == -9999
        assert var.units == ("uW cm-2 sr-1 nm-1" if level == "L1" else "1")
        assert var.grid_mapping == "transverse_mercator"
        np.testing.assert_array_equal(g.variables["wavelength"][:], grid)
        np.testing.assert_array_equal(g.variables["fwhm"][:], fwhm)
        mapping = g.variables["transverse_mercator"]
        assert CRS.from_wkt(mapping.spatial_ref).to_epsg() // 100 in (326, 327)
        c, a, b, f, d, e = (float(v) for v in mapping.GeoTransform.split())
        assert abs(b) > 0.1 and abs(d) > 0.1 and np.isclose(np.hypot(a, d), np.hypot(b, e))
    with xr.open_dataset(path, group=group) as ds:
        values = ds[group].values
    decoded = decode(path)
    np.testing.assert_array_equal(np.isnan(values).all(axis=-1), decoded.fill)
    np.testing.assert_array_equal(values[~decoded.fill], decoded.stored[~decoded.fill])


# --- companions and geometry -----------------------------------------------------------------------------


def read_companion(path: Path) -> tuple[dict, np.ndarray]:
    header = envi_header(path)
    lines, samples, bands = int(header["lines"]), int(header["samples"]), int(header["bands"])
    assert (header["data type"], header["interleave"], header["byte order"]) == ("5", "bil", "0")
    return header, np.fromfile(path, dtype="<f8").reshape(lines, bands, samples).transpose(1, 0, 2)


@pytest.mark.parametrize("sensor_name", ["aviris-ng", "aviris-classic", "aviris-3"])
def test_obs_companion(products: dict, sensor_name: str) -> None:
    data = products[(sensor_name, "L1", "envi")]
    obs_path = next(p for p in data.parent.iterdir() if "obs_ort" in p.name.lower() and p.suffix != ".hdr")
    header, obs = read_companion(obs_path)
    assert len(header["band names"]) == 11 and header["band names"][0].startswith("Path length")
    assert header["band names"][9] == "UTC Time"
    fill = decode(data).fill
    assert np.all(obs[:, fill] == -9999) and np.all(obs[:, ~fill] != -9999)
    valid = obs[:, ~fill]
    path_length, _, view_zenith, sun_azimuth, sun_zenith, phase, slope, aspect, cos_i, utc, distance = valid
    assert np.all(path_length > 1000) and np.all((view_zenith >= 0) & (view_zenith < 30))
    assert np.all((sun_zenith > 0) & (sun_zenith < 70)) and np.all((sun_azimuth >= 0) & (sun_azimuth < 360))
    assert np.all((phase >= 0) & (phase <= 180)) and np.all((slope >= 0) & (slope < 45))
    assert np.all((aspect >= 0) & (aspect < 360)) and np.all(np.abs(cos_i) <= 1)
    assert np.all((distance > 0.98) & (distance < 1.02))
    when = identify(data).datetime
    if sensor_name != "aviris-classic":  # Classic names carry no time of day; the obs file gives it
        start = when.hour + when.minute / 60 + when.second / 3600
        assert np.all((utc >= start) & (utc < start + 0.5))


def test_loc_companion_matches_the_map_grid(products: dict) -> None:
    data = products[("aviris-ng", "L1", "envi")]
    header, loc = read_companion(next(data.parent.glob("*_loc")))
    assert [n.split()[0] for n in header["band names"]] == ["Longitude", "Latitude", "Elevation"]
    georef = parse_map_info(EnviHeader.read(data.with_name(data.name + ".hdr")))
    assert georef is not None
    fill = decode(data).fill
    a, b, c, d, e, f = georef.transform
    rows, cols = np.nonzero(~fill)
    x, y = a * (cols + 0.5) + b * (rows + 0.5) + c, d * (cols + 0.5) + e * (rows + 0.5) + f
    lon, lat = Transformer.from_crs(georef.crs, 4326, always_xy=True).transform(x, y)
    np.testing.assert_allclose(loc[0][rows, cols], lon, atol=1e-7)
    np.testing.assert_allclose(loc[1][rows, cols], lat, atol=1e-7)
    assert np.all(loc[:, fill] == -9999)
    assert np.all((loc[2][~fill] > -100) & (loc[2][~fill] < 4000))


# --- physical content ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_values_are_physically_plausible(products: dict, case: tuple[str, str, str]) -> None:
    sensor_name, level, _ = case
    decoded = decode(products[case])
    grid, _ = sensor(sensor_name).grid()
    ceiling = sensor(sensor_name).ceiling(level)
    spectra = decoded.physical[~decoded.fill]
    assert spectra.min() >= 0
    peak = spectra.max(axis=1)
    saturated = peak > ceiling
    assert 3 <= saturated.sum() <= 10, "a few saturated pixels"
    if sensor_name != "aviris-classic":  # int16 storage clips some of them at 32767
        assert np.all(peak[saturated] > 1.15 * ceiling)
    limit = 60.0 if level == "L1" else 1.2
    assert np.all(peak[~saturated] <= limit)
    red, nir = spectra[:, band(grid, 670)], spectra[:, band(grid, 860)]
    assert np.max(nir / np.maximum(red, 1e-6)) > 3, "vegetation red edge"
    if level == "L1":
        window, deep = spectra[:, band(grid, 1240)], spectra[:, band(grid, 1380)]
        assert deep.mean() < 0.1 * window.mean(), "water-vapour absorption at 1380 nm"
        assert spectra[:, band(grid, 760)].mean() < spectra[:, band(grid, 780)].mean(), "O2 A band"
    else:
        assert np.median(peak) < 0.9


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fill_outside_a_rotated_swath(products: dict, case: tuple[str, str, str]) -> None:
    fill = decode(products[case]).fill
    assert fill[0, 0] and fill[0, -1] and fill[-1, 0] and fill[-1, -1]
    assert not fill[LINES // 2, SAMPLES // 2]
    assert 0.05 < fill.mean() < 0.5
    for row in fill:  # a rectangle's cross-section: one contiguous run of valid pixels per line
        valid = np.flatnonzero(~row)
        if valid.size:
            assert valid[-1] - valid[0] + 1 == valid.size


def dead_columns(decoded: Decoded) -> list[int]:
    """Columns that read one constant, near-zero spectrum along most of their valid length."""
    dead = []
    for col in range(decoded.physical.shape[1]):
        rows = np.flatnonzero(~decoded.fill[:, col])
        column = decoded.physical[rows, col, :]
        if rows.size > decoded.physical.shape[0] // 2 and np.all(column == column[0]) and column.max() < 0.01:
            dead.append(col)
    return dead


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dead_detector_column_only_where_the_flight_line_has_one(products: dict, case: tuple[str, str, str]) -> None:
    expected = Scenario.draw(case[0], SEED, LINES, SAMPLES, None).dead_column
    assert dead_columns(decode(products[case])) == ([] if expected is None else [expected])


def test_a_flight_line_with_a_dead_detector_has_exactly_one_dead_column(tmp_path: Path) -> None:
    seed = next(s for s in range(100) if Scenario.draw("aviris-ng", s, LINES, SAMPLES, None).dead_column is not None)
    path = generate("aviris-ng", "L1", LINES, SAMPLES, tmp_path, seed=seed, strip_lines=STRIP)
    expected = Scenario.draw("aviris-ng", seed, LINES, SAMPLES, None).dead_column
    assert dead_columns(decode(path)) == [expected]


def test_dead_detectors_occur_at_a_realistic_rate() -> None:
    share = np.mean([Scenario.draw("aviris-ng", s, 32, 32, None).dead_column is not None for s in range(400)])
    assert 0.08 < share < 0.25  # most flight lines have none (DEAD_DETECTOR_RATE = 0.15)


def test_cloud_patches_are_bright_and_flat(tmp_path: Path) -> None:
    # Seed 6 draws a partly cloudy scene.
    scenario = Scenario.draw("aviris-ng", 6, 128, 128, None)
    grid, _ = sensor("aviris-ng").grid()
    cover = Surface(scenario, grid).cloud_fraction(0, 128)
    assert cover.max() == 1.0 and 0.01 < (cover > 0.5).mean() < 0.5
    path = generate("aviris-ng", "L2", 128, 128, tmp_path, seed=6, strip_lines=64)
    decoded = decode(path)
    cloudy = decoded.physical[(cover == 1.0) & ~decoded.fill]
    clear = decoded.physical[(cover == 0.0) & ~decoded.fill]
    green, nir, blue = band(grid, 550), band(grid, 860), band(grid, 450)
    assert np.median(cloudy[:, green]) > 0.7 > np.percentile(clear[:, green], 99)
    assert np.all(np.abs(cloudy[:, nir] / cloudy[:, blue] - 1) < 0.1)


def test_strips_join_seamlessly(tmp_path: Path) -> None:
    striped = generate("aviris-ng", "L1", LINES, SAMPLES, tmp_path / "a", seed=SEED, strip_lines=STRIP)
    whole = generate("aviris-ng", "L1", LINES, SAMPLES, tmp_path / "b", seed=SEED, strip_lines=LINES)
    a, b = decode(striped), decode(whole)
    np.testing.assert_allclose(a.physical, b.physical, rtol=1e-5, atol=1e-5)
    # Line-to-line change across strip boundaries is no larger than within strips.
    grid, _ = sensor("aviris-ng").grid()
    image = a.physical[:, :, band(grid, 860)]
    usable = ~a.fill & (a.physical.max(axis=-1) <= sensor("aviris-ng").ceiling("L1"))  # no saturated pixels
    steps = np.where(usable[1:] & usable[:-1], np.abs(np.diff(image, axis=0)), np.nan)
    boundary = np.arange(LINES - 1) % STRIP == STRIP - 1
    across, within = np.nanmedian(steps[boundary]), np.nanmedian(steps[~boundary])
    assert across < 1.5 * within


# --- determinism, memory, robustness ---------------------------------------------------------------------


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_deterministic_by_seed(tmp_path: Path) -> None:
    for folder, seed in (("a", 7), ("b", 7), ("c", 8)):
        generate("aviris-classic", "L1", 32, 24, tmp_path / folder, seed=seed, strip_lines=8)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    other = digest(tmp_path / "c")
    assert set(other) != set(digest(tmp_path / "a"))
    a = next(p for p in (tmp_path / "a").iterdir() if p.name.endswith("_img"))
    c = next(p for p in (tmp_path / "c").iterdir() if p.name.endswith("_img"))
    assert a.read_bytes() != c.read_bytes()


def test_acquisition_time_override(tmp_path: Path) -> None:
    when = datetime(2019, 6, 1, 19, 30, 5, tzinfo=UTC)
    path = generate("aviris-ng", "L1", 16, 16, tmp_path, seed=1, acquired=when)
    assert path.name == "ang20190601t193005_rdn_v2p9_img"
    _, obs = read_companion(next(tmp_path.glob("*_obs_ort")))
    assert np.all(obs[4][obs[4] != -9999] < 60), "the sun is up whatever time is given"


def test_memory_does_not_grow_with_lines(tmp_path: Path) -> None:
    def peak(lines: int) -> int:
        tracemalloc.start()
        try:
            generate("aviris-ng", "L1", lines, 32, tmp_path / str(lines), seed=1, strip_lines=16)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    generate("aviris-ng", "L1", 16, 32, tmp_path / "warm", seed=1, strip_lines=16)  # caches, imports
    short, long = peak(48), peak(192)
    assert long <= 1.5 * short, (short, long)


def test_a_failed_run_leaves_nothing_under_final_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = EnviWriter.write
    calls = []

    def failing_write(self: EnviWriter, strip: np.ndarray) -> None:
        assert not self.path.exists(), "data must not appear under its final name before commit"
        calls.append(self.path)
        if len(calls) > 4:
            raise KeyboardInterrupt
        original(self, strip)

    monkeypatch.setattr(EnviWriter, "write", failing_write)
    with pytest.raises(KeyboardInterrupt):
        generate("aviris-ng", "L1", 64, 16, tmp_path, seed=1, strip_lines=16)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sensor": "prisma"}, "unknown sensor"),
        ({"level": "L3"}, "level"),
        ({"fmt": "netcdf"}, "netcdf"),
        ({"lines": 0}, "positive"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"sensor": "aviris-ng", "level": "L1", "lines": 8, "samples": 8, "output": tmp_path} | kwargs
    seed = args.pop("seed", 0)
    with pytest.raises(ValueError, match=message):
        generate(**args, seed=seed)


# --- spectral library ------------------------------------------------------------------------------------


def test_speclib_surfaces_appear(realdata: Path, tmp_path: Path) -> None:
    library = realdata / "speclib" / "s07_AV95_envi.hdr"
    grid, _ = sensor("aviris-ng").grid()
    surface = Surface(Scenario.draw("aviris-ng", 0, LINES, SAMPLES, None), grid, library)
    builtin = 8
    assert len(surface.names) == builtin + 6
    assert np.all((surface.spectra >= 0) & (surface.spectra <= 1.2))
    path = generate("aviris-ng", "L2", LINES, SAMPLES, tmp_path, seed=0, speclib=library, strip_lines=STRIP)
    decoded = decode(path)
    good = good_band_mask(grid)
    pixels = decoded.physical[~decoded.fill][:, good]
    rmse = np.sqrt(((pixels[:, None, :] - surface.spectra[None, :, good]) ** 2).mean(axis=-1))
    best = rmse.argmin(axis=1)
    from_library = (best >= builtin) & (rmse.min(axis=1) < 0.02)
    assert from_library.sum() >= 20, "library spectra should cover some pixels nearly pure"
    plain = generate("aviris-ng", "L2", LINES, SAMPLES, tmp_path / "plain", seed=0, strip_lines=STRIP)
    assert plain.read_bytes() != path.read_bytes()


# --- the project's reader --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_open_product_reads_generated_products(products: dict, case: tuple[str, str, str]) -> None:
    product = pytest.importorskip("hyper400k.product")
    path = products[case]
    decoded = decode(path)
    grid, fwhm = sensor(case[0]).grid()
    with product.open_product(path) as scene:
        meta = scene.meta
        cube = scene.read_all().transpose(1, 2, 0)
    assert (meta.sensor, meta.level, meta.lines, meta.samples) == (case[0], case[1], LINES, SAMPLES)
    np.testing.assert_allclose(meta.wavelength_nm, grid, rtol=1e-9)
    np.testing.assert_allclose(meta.fwhm_nm, fwhm, rtol=1e-9)
    assert meta.datetime.date() == identify(path).datetime.date()
    assert meta.crs is not None and meta.transform is not None
    nan = np.isnan(cube).all(axis=-1)
    assert np.all(nan[decoded.fill])
    keep = ~nan
    np.testing.assert_allclose(cube[keep], decoded.physical[keep], rtol=1e-6, atol=1e-6)
