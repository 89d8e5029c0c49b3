"""Tiling (strip buffer, strides, padding, rotated affines) and the quality rules on real spectra."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hyper400k.patches import ProductSummary, iter_outcomes
from hyper400k.presets import get_preset
from hyper400k.product import open_product
from hyper400k.quality import PUBLISHED_RULES, Rule, RuleSet, TileAssessor, TileQuality
from hyper400k.sample import Sample
from hyper400k.scene import Scene, SceneMeta
from hyper400k.synth import generate
from hyper400k.tiling import TileGrid, iter_tiles, tile_transform

NG_RDN = "aviris-ng/ang20170323t202244_rdn_7000-7010"
NG_RFL = "aviris-ng/ang20140912t192359_corr_v1c_img_2580-2590_540-550.img"


class ArrayScene(Scene):
    """An in-memory Scene that counts the lines it is asked for (to prove strips are read once)."""

    def __init__(self, meta: SceneMeta, cube: np.ndarray) -> None:
        self.meta, self.cube, self.lines_read = meta, cube, 0

    def read_lines(self, start, stop, out=None):
        self._check_range(start, stop)
        self.lines_read += stop - start
        block = self.cube[:, start:stop]
        if out is None:
            return block.copy()
        out[...] = block
        return out


def mosaic_scene(realdata, rel: str, lines: int, samples: int, seed: int = 0) -> ArrayScene:
    """A product-sized cube whose pixels are real spectra of ``rel``, in smooth patches."""
    real = open_product(realdata / rel)
    spectra = real.read_all().reshape(real.meta.bands, -1)
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, spectra.shape[1], size=(lines // 8 + 1, samples // 8 + 1))
    index = np.kron(blocks, np.ones((8, 8), dtype=int))[:lines, :samples]
    cube = spectra[:, index].astype(np.float32) * rng.uniform(0.98, 1.02, size=(1, lines, samples)).astype(
        np.float32
    )
    meta = replace(
        real.meta, lines=lines, samples=samples, transform=(3.0, 1.0, 5e5, 1.0, -3.0, 4.1e6), crs="EPSG:32611"
    )
    return ArrayScene(meta, cube)


@pytest.mark.parametrize("reuse_buffer", [False, True])
@pytest.mark.parametrize("size, stride", [(64, 64), (64, 32), (48, 80)])
def test_tiles_match_direct_slicing_and_lines_are_read_once(realdata, size, stride, reuse_buffer):
    scene = mosaic_scene(realdata, NG_RDN, lines=150, samples=130)
    grid = TileGrid(size=size, stride=stride)
    seen = []
    for tile in iter_tiles(scene, grid, reuse_buffer=reuse_buffer):
        expected = np.full((scene.meta.bands, size, size), np.nan, np.float32)
        block = scene.cube[:, tile.row : tile.row + size, tile.col : tile.col + size]
        expected[:, : block.shape[1], : block.shape[2]] = block
        np.testing.assert_array_equal(tile.data, expected)
        tile.data[:] = -1.0  # what a consumer does to a tile must not leak into the next one
        seen.append((tile.row, tile.col, id(tile.data)))
    rows, cols = grid.starts(150, 0), grid.starts(130, 0)
    assert [(row, col) for row, col, _ in seen] == [(r, c) for r in rows for c in cols]
    if reuse_buffer:
        assert len({ident for _, _, ident in seen}) == 1
    assert scene.lines_read <= 150  # overlapping strips reuse lines already read


def test_unpadded_grid_drops_edge_tiles(realdata):
    scene = mosaic_scene(realdata, NG_RDN, lines=100, samples=100)
    tiles = list(iter_tiles(scene, TileGrid(64, 64, pad_edges=False)))
    assert [(t.row, t.col) for t in tiles] == [(0, 0)]


def test_tile_affine_follows_rotated_pixel_grid():
    transform = (1.8656, 2.4758, 277811.628, 2.4758, -1.8656, 4483607.425)
    a, b, c, d, e, f = tile_transform(transform, row=256, col=512)
    assert (a, b, d, e) == (transform[0], transform[1], transform[3], transform[4])
    assert c == pytest.approx(277811.628 + 1.8656 * 512 + 2.4758 * 256)
    assert f == pytest.approx(4483607.425 + 2.4758 * 512 - 1.8656 * 256)


def test_published_rules_on_radiance(realdata):
    scene = mosaic_scene(realdata, NG_RDN, lines=64, samples=64)
    tile = scene.cube.copy()
    tile[:, :10, :] = np.nan  # 10 of 64 lines without data: 15.6 % invalid -> kept
    tile[5, 20, 20] = 150.0  # one saturated value above the 100 ceiling
    negative = int((tile < 0).sum())  # real radiance has slightly negative noise in the first bands
    quality = TileAssessor(scene.meta).assess(tile)
    assert quality.kept and quality.data.dtype == np.float16
    assert quality.qa["invalid_value_fraction"] == pytest.approx(
        (10 * 64 * 425 + 1 + negative) / tile.size, abs=1e-6
    )
    assert quality.data[5, 20, 20] == 0 and not quality.valid[20, 20] and quality.qa["saturated_fraction"] > 0
    assert (quality.data[:, :10] == 0).all() and np.isfinite(quality.data.astype(np.float32)).all()
    too_empty = scene.cube.copy()
    too_empty[:, :14, :] = np.nan  # 21.9 % invalid -> dropped
    assert TileAssessor(scene.meta).assess(too_empty).reasons == ["invalid_value_fraction>0.2"]


def test_l2_water_bands_zeroed_by_wavelength(realdata):
    scene = mosaic_scene(realdata, NG_RFL, lines=32, samples=32)
    quality = TileAssessor(scene.meta).assess(scene.cube.copy())
    wl = np.asarray(scene.meta.wavelength_nm)
    water = ((wl >= 1340) & (wl <= 1450)) | ((wl >= 1790) & (wl <= 1960))
    assert (quality.data[water] == 0).all()
    assert (quality.data[~water] != 0).any(axis=(1, 2)).mean() > 0.9


def test_qa_flags_dead_detector_and_stripe(realdata):
    scene = mosaic_scene(realdata, NG_RDN, lines=64, samples=64, seed=3)
    assessor = TileAssessor(scene.meta)
    clean = assessor.assess(scene.cube.copy()).qa
    assert not clean["dead_detector"] and not clean["stripe"]
    dead = scene.cube.copy()
    dead[:, :, 17] = 0.001
    assert assessor.assess(dead).qa["dead_detector"]
    blanked = scene.cube.copy()
    blanked[:, :, 40] = np.nan  # the reader turns a constant (dead) column into fill
    assert assessor.assess(blanked).qa["dead_detector"]
    striped = scene.cube.copy()
    striped[:, :, 30] *= 1.25
    assert assessor.assess(striped).qa["stripe"]
    assert len(clean["snr"]) == 425 and clean["snr_median"] > 5


def test_rule_sets_from_yaml(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        "name: mine\nrules:\n  - {field: valid_fraction, min: 0.9}\n  - {field: stripe, equals: false}\n"
    )
    rules = RuleSet.from_yaml(path)
    assert rules.evaluate({"valid_fraction": 0.95, "stripe": False}) == []
    assert rules.evaluate({"valid_fraction": 0.5, "stripe": True}) == ["valid_fraction<0.9", "stripe!=false"]
    path.write_text("rules:\n  - {field: valid_fraction, above: 3}\n")
    with pytest.raises(ValueError, match="only min/max/equals"):
        RuleSet.from_yaml(path)
    with pytest.raises(ValueError, match="no field 'cloudiness'"):
        RuleSet("x", (Rule("cloudiness", max=1),)).evaluate({"valid_fraction": 1.0})
    assert PUBLISHED_RULES.evaluate({"invalid_value_fraction": 0.2}) == []


def test_samples_satisfy_the_contract(realdata):
    scene = mosaic_scene(realdata, NG_RDN, lines=100, samples=70)
    summary = ProductSummary()
    outcomes = list(
        iter_outcomes(
            scene, get_preset("hyper400k", tile=32), split="train", flight_line="ang20170323t202244"
        )
    )
    for outcome in outcomes:
        summary.add(outcome)
        if outcome.sample is not None:
            outcome.sample.check()
            decoded = Sample.decode(outcome.sample.key, outcome.sample.encode())
            assert decoded.meta["key"] == f"ang20170323t202244_rdn_7000-7010_r{outcome.row}_c{outcome.col}"
            assert decoded.meta["footprint"]["type"] == "Polygon" and len(decoded.meta["transform"]) == 6
    # 100 x 70 with 32-pixel tiles: 4 x 3 tiles; the last row (4/32 lines) and column (6/32) are mostly padding
    assert summary.kept == 6 and summary.dropped["invalid_value_fraction>0.2"] == 6


def test_reused_buffers_give_the_same_samples_and_band_statistics(realdata):
    """The build writes each sample before the next tile, so its float16 data reuses one buffer: the samples
    (taken as they come) must be the ones fresh buffers give, and the band statistics, summed over every
    pixel of the zeroed samples, must equal sums over the valid pixels gathered explicitly."""
    from pipelines.product_task import BandStats

    def samples(reuse: bool) -> tuple[list[tuple[str, bytes, np.ndarray]], BandStats]:
        scene = mosaic_scene(realdata, NG_RDN, lines=100, samples=70, seed=3)
        preset = get_preset("hyper400k", tile=32)
        stats, seen = BandStats(), []
        for outcome in iter_outcomes(scene, preset, split="train", flight_line="fl", reuse_buffers=reuse):
            if outcome.sample is not None:
                sample = outcome.sample
                seen.append((sample.key, sample.data.tobytes(), sample.data))  # the array kept alive
                stats.add(sample.data, sample.valid)
        return seen, stats

    fresh, fresh_stats = samples(reuse=False)
    reused, reused_stats = samples(reuse=True)
    assert [(k, b) for k, b, _ in reused] == [(k, b) for k, b, _ in fresh] and len(fresh) == 6
    assert len({array.ctypes.data for _, _, array in reused}) == 1  # one buffer for every kept tile
    assert len({array.ctypes.data for _, _, array in fresh}) == len(fresh)
    assert reused_stats.to_dict() == fresh_stats.to_dict()

    scene = mosaic_scene(realdata, NG_RDN, lines=100, samples=70, seed=3)
    valid_sums = np.zeros(scene.meta.bands)
    valid_squares = np.zeros(scene.meta.bands)
    count = 0
    for outcome in iter_outcomes(scene, get_preset("hyper400k", tile=32), split="train", flight_line="fl"):
        if outcome.sample is not None:
            sampled = outcome.sample.valid[::4, ::4]
            pixels = outcome.sample.data[:, ::4, ::4][:, sampled].astype(np.float64)
            valid_sums += pixels.sum(axis=1)
            valid_squares += np.square(pixels).sum(axis=1)
            count += int(sampled.sum())
    totals = fresh_stats.to_dict()
    assert totals["count"] == count
    np.testing.assert_allclose(totals["sum"], valid_sums, rtol=1e-12)
    np.testing.assert_allclose(totals["sum_sq"], valid_squares, rtol=1e-12)


# --- The QA against a plain reference ----------------------------------------------------------------
# TileAssessor.assess is written for speed (blocked passes, reused buffers, an in-place partition for
# the SNR median). The reference below computes the same rules and statistics the plain way, one
# metric at a time on whole-cube masks, one band at a time for the SNR. The float16 payload and the
# tile left in place are compared bit for bit, the mask, counts and flags exactly, and the fractions
# exactly as stored (rounded to 6 decimals). The SNR's signal is a float32 mean, whose last bit
# depends on the summation order (one band alone vs. all bands in one array), so each band's SNR may
# differ by float32 rounding (1e-6 relative) plus one step of its stored rounding:
# |d snr| <= 0.01 + 1e-6 snr and |d snr_median| <= 0.001 + 1e-6 snr_median. The column
# stripe / dead-detector flags come from ``TileAssessor._column_flags`` on the reference tile: the
# speed work did not touch that check.


def reference_assess(
    assessor: TileAssessor, tile: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray, dict, list]:
    """(float16 data or None, valid mask, qa, reasons) the plain way; ``tile`` is modified in place."""
    no_data = not np.isfinite(tile[assessor.column_bands[0]]).any()
    if assessor.water is not None:
        tile[assessor.water] = 0.0
    ceiling = assessor.ceiling
    in_range = (tile >= 0) & (tile <= ceiling)  # NaN compares False
    qa = {
        "invalid_value_fraction": round(1.0 - float(in_range.mean()), 6),
        "valid_fraction": None,
        "saturated_fraction": round(float((tile > ceiling).any(axis=0).mean()), 6),
    }
    valid = (tile[assessor.good] <= ceiling).all(axis=0)
    qa["valid_fraction"] = round(float(valid.mean()), 6)
    tile[~in_range] = 0.0
    if no_data:
        return None, valid, qa, ["no_data"]
    if early := assessor.rules.evaluate_available(qa):
        return None, valid, qa, early
    tile *= valid  # a tile dropped by the cheap rules keeps its invalid pixels' in-range values
    qa |= reference_surface_fractions(assessor, tile, valid) | reference_detector_checks(
        assessor, tile, valid
    )
    reasons = assessor.rules.evaluate(qa)
    return (None if reasons else tile.astype(np.float16)), valid, qa, reasons


def reference_surface_fractions(assessor: TileAssessor, tile: np.ndarray, valid: np.ndarray) -> dict:
    if not valid.any():
        return {"cloud_score": 0.0, "water_fraction": 0.0, "dark_fraction": 0.0}
    rho = {
        name: tile[band][valid] * assessor.reflectance_factor[name]
        for name, band in assessor.index_band.items()
    }
    blue, green, red, nir, swir = (rho[name] for name in ("blue", "green", "red", "nir", "swir"))
    visible = np.stack([blue, green, red])
    whiteness = visible.max(axis=0) < 1.5 * visible.min(axis=0)
    cloud = (blue > 0.25) & (visible.mean(axis=0) > 0.3) & whiteness & (swir > 0.15)
    ndwi = (green - nir) / np.maximum(green + nir, 1e-6)
    return {
        "cloud_score": round(float(cloud.mean()), 6),
        "water_fraction": round(float(((ndwi > 0.2) & (nir < 0.15)).mean()), 6),
        "dark_fraction": round(float(((nir < 0.03) & (red < 0.03)).mean()), 6),
    }


def reference_detector_checks(assessor: TileAssessor, tile: np.ndarray, valid: np.ndarray) -> dict:
    """SNR per band = mean / (1.4826 * median |horizontal difference| / sqrt 2) on every 16th line."""
    lines = tile[:, ::16, :]
    pair_ok = valid[::16, 1:] & valid[::16, :-1]
    snr = np.zeros(tile.shape[0])
    if pair_ok.sum() >= 16:
        for band in range(tile.shape[0]):
            noise = 1.4826 * np.median(np.abs(np.diff(lines[band], axis=1))[pair_ok]) / np.sqrt(2.0)
            signal = lines[band][:, 1:][pair_ok].mean()
            snr[band] = signal / noise if noise > 0 else 0.0
    good_snr = snr[assessor.good]
    dead, stripe = assessor._column_flags(tile[assessor.column_bands], valid)
    return {
        "snr_median": round(float(np.median(good_snr)) if good_snr.size else 0.0, 3),
        "snr": [round(float(v), 2) for v in snr],
        "dead_detector": dead,
        "stripe": stripe,
    }


def assert_same_quality(assessor: TileAssessor, tile: np.ndarray) -> TileQuality:
    expected_tile = tile.copy()
    data, valid, qa, reasons = reference_assess(assessor, expected_tile)
    quality = assessor.assess(tile)
    assert quality.reasons == reasons
    snr, expected_snr = quality.qa.pop("snr", []), qa.pop("snr", [])
    np.testing.assert_allclose(snr, expected_snr, rtol=1e-6, atol=0.01 + 1e-9)
    assert quality.qa.pop("snr_median", 0.0) == pytest.approx(
        qa.pop("snr_median", 0.0), rel=1e-6, abs=0.001 + 1e-9
    )
    assert quality.qa == qa
    np.testing.assert_array_equal(quality.valid, valid)
    np.testing.assert_array_equal(tile.view(np.uint32), expected_tile.view(np.uint32))  # -0.0 stays -0.0
    if data is None:
        assert quality.data is None
    else:
        assert quality.data.dtype == np.float16
        np.testing.assert_array_equal(quality.data.view(np.uint16), data.view(np.uint16))
    return quality


def damaged_tiles(cube: np.ndarray, good: np.ndarray, ceiling: float, seed: int) -> dict[str, np.ndarray]:
    """Variants of one real-spectra tile that take every branch of the rules and the QA."""
    rng = np.random.default_rng(seed)
    bands, lines, samples = cube.shape
    bad_band = int(np.flatnonzero(~good)[0])
    tiles = {"clean": cube.copy()}
    edge = cube.copy()
    edge[:, :, :9] = np.nan  # swath edge: fill in every band, 14 % of the values
    edge[:, 40:, -3:] = np.nan
    tiles["swath_edge"] = edge
    speckled = cube.copy()
    where = rng.integers(0, [bands, lines, samples], size=(300, 3))
    kinds = np.array([np.nan, -0.5, -0.0, 2.0 * ceiling, np.inf, -np.inf], dtype=np.float32)
    speckled[where[:, 0], where[:, 1], where[:, 2]] = kinds[np.arange(300) % len(kinds)]
    speckled[bad_band, 5, 5] = 3.0 * ceiling  # above the ceiling in a bad band only: value zeroed, pixel kept
    speckled[:, 7, 7] = -0.0
    tiles["speckled"] = speckled
    odd = edge.copy()
    odd[:, 16, 20] = np.nan  # one fewer valid neighbour pair on a sampled line: an odd count for the median
    tiles["odd_pairs"] = odd
    dead = cube.copy()
    dead[:, :, 17] = 0.001
    tiles["dead_column"] = dead
    blanked = cube.copy()
    blanked[:, :, 40] = np.nan
    tiles["blanked_column"] = blanked
    striped = cube.copy()
    striped[:, :, 30] *= 1.25
    tiles["stripe"] = striped
    too_empty = cube.copy()
    too_empty[:, : lines // 4, :] = np.nan
    tiles["too_empty"] = too_empty
    tiles["no_data"] = np.full_like(cube, np.nan)
    return tiles


STRICT_RULES = RuleSet(
    "strict",
    (
        Rule("invalid_value_fraction", max=0.2),
        Rule("snr_median", min=1e6),  # drops every tile after the costly QA
        Rule("stripe", equals=False),
    ),
)


@pytest.mark.parametrize(
    "rel",
    [
        NG_RDN,
        NG_RFL,
        "aviris-3/AV320250308t200738_rdn.img",
        "aviris-classic/f080702t01p00r08rdn_c_sc01_ort_img_123_456.img",
    ],
)
def test_qa_equals_reference_on_real_spectra(realdata, rel):
    scene = mosaic_scene(realdata, rel, lines=64, samples=64, seed=5)
    good = np.asarray(scene.meta.good_bands)
    published, strict = TileAssessor(scene.meta), TileAssessor(scene.meta, STRICT_RULES)
    ceiling = float(published.ceiling)
    outcomes = {}
    for name, tile in damaged_tiles(scene.cube, good, ceiling, seed=len(rel)).items():
        outcomes[name] = assert_same_quality(published, tile.copy())
        assert_same_quality(strict, tile)
    assert_same_quality(published, np.asfortranarray(damaged_tiles(scene.cube, good, ceiling, 1)["speckled"]))
    # the variants did take the branches they are meant to
    assert outcomes["clean"].kept and outcomes["swath_edge"].kept and outcomes["speckled"].kept
    assert outcomes["no_data"].reasons == ["no_data"]
    assert outcomes["too_empty"].reasons == ["invalid_value_fraction>0.2"]
    assert outcomes["speckled"].qa["saturated_fraction"] > 0 and outcomes["speckled"].valid[5, 5]
    if scene.meta.bands > 300:  # the 1-pixel AVIRIS-3 / Classic crops give flat tiles: no SNR to speak of
        assert outcomes["dead_column"].qa["dead_detector"] and outcomes["stripe"].qa["stripe"]


@pytest.mark.parametrize("level", ["L1", "L2"])
def test_qa_equals_reference_on_generated_products(tmp_path, level):
    """Every 64-pixel tile (edge tiles padded) of a generated AVIRIS-NG product, scene edges and all."""
    path = generate("aviris-ng", level, 96, 80, tmp_path, seed=5, strip_lines=32)
    scene = open_product(path)
    assessor = TileAssessor(scene.meta)
    kept = 0
    for tile in iter_tiles(scene, TileGrid(size=64, stride=48)):
        kept += assert_same_quality(assessor, tile.data).kept
    assert kept >= 1
