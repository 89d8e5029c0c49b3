"""Tiling (strip buffer, strides, padding, rotated affines) and the quality rules on real spectra."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hyper400k.patches import ProductSummary, iter_outcomes
from hyper400k.presets import get_preset
from hyper400k.product import open_product
from hyper400k.quality import PUBLISHED_RULES, Rule, RuleSet, TileAssessor
from hyper400k.sample import Sample
from hyper400k.scene import Scene, SceneMeta
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


@pytest.mark.parametrize("size, stride", [(64, 64), (64, 32), (48, 80)])
def test_tiles_match_direct_slicing_and_lines_are_read_once(realdata, size, stride):
    scene = mosaic_scene(realdata, NG_RDN, lines=150, samples=130)
    grid = TileGrid(size=size, stride=stride)
    tiles = list(iter_tiles(scene, grid))
    rows, cols = grid.starts(150, 0), grid.starts(130, 0)
    assert [(t.row, t.col) for t in tiles] == [(r, c) for r in rows for c in cols]
    for tile in tiles:
        expected = np.full((scene.meta.bands, size, size), np.nan, np.float32)
        block = scene.cube[:, tile.row : tile.row + size, tile.col : tile.col + size]
        expected[:, : block.shape[1], : block.shape[2]] = block
        np.testing.assert_array_equal(tile.data, expected)
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
