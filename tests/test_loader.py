"""The streaming loader (specaware.data) on a real dataset build of generated products.

One build (AVIRIS-NG L1 + L2 on two flight lines, AVIRIS-Classic L1, AVIRIS-3 L1 + L2; 32 x 32 tiles; about
five samples per shard) is shared by every test. Tiles are small so that whole epochs take a fraction of a
second; band counts, metadata and shard layout are those of the real corpus.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hyper400k.presets import get_preset
from hyper400k.sample import Sample, SchemaError
from hyper400k.shards import ShardError, ShardWriter, iter_encoded, read_index
from hyper400k.stac import catalog_generation, read_patch_index
from hyper400k.synth import generate
from pipelines.build import BuildConfig, build
from specaware.data import LoaderConfig, ShardDataset, TransformConfig, open_shards
from specaware.data import reader as reader_module
from specaware.data.plan import probabilities

TILE = 32
PLAIN = TransformConfig(
    crop=None, flips=False, rot90=False
)  # whole tiles, untouched: comparable to the source


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build folder (catalog.json, generations/<N>/, shards/)."""
    products = tmp_path_factory.mktemp("products")
    for seed in (11, 12):
        for level in ("L1", "L2"):
            generate("aviris-ng", level, 200, 144, products / "ng", seed=seed)
    generate("aviris-classic", "L1", 200, 144, products / "classic", seed=21)
    generate("aviris-3", "L1", 200, 144, products / "av3", seed=31)
    generate("aviris-3", "L2", 200, 144, products / "av3", seed=31, fmt="netcdf")
    output = tmp_path_factory.mktemp("build")
    config = BuildConfig(
        input=products,
        output=output,
        preset=get_preset("hyper400k", tile=TILE),
        scheduler="synchronous",
        shard_bytes=4_000_000,
        progress=False,
    )
    assert build(config).ok
    return output


def committed(build: Path) -> tuple[Path, Path]:
    """The patch table and shard index the build's catalog.json commits."""
    _, patches, index = catalog_generation(build / "catalog.json")
    assert patches is not None and index is not None
    return patches, index


def copy_build(corpus: Path, destination: Path) -> Path:
    """The build moved elsewhere (its hrefs are relative), without its work folder."""
    shutil.copytree(corpus, destination, ignore=shutil.ignore_patterns("work"))
    return destination


@pytest.fixture(scope="module")
def samples(corpus: Path) -> dict[str, tuple[str, Sample]]:
    """Every sample of the build, decoded the reference way: key -> (shard name, sample)."""
    shards = corpus / "shards"
    found = {}
    for entry in read_index(committed(corpus)[1])["shards"]:
        for key, members in iter_encoded(shards / entry["name"]):
            found[key] = (entry["name"], Sample.decode(key, members))
    return found


def run(dataset: ShardDataset, workers: int = 0, **loader: Any) -> list[dict[str, Any]]:
    if workers == 0 and not loader:
        return list(dataset)
    return list(DataLoader(dataset, batch_size=None, num_workers=workers, **loader))


def keys(batches: list[dict[str, Any]]) -> list[list[str]]:
    return [batch["key"] for batch in batches]


def expected_image(sample: Sample) -> np.ndarray:
    """The float32 image of a whole untransformed tile: bad bands zeroed."""
    image = sample.data.astype(np.float32)
    image[~np.asarray(sample.meta["good_bands"], dtype=bool)] = 0
    return image


# ---------------------------------------------------------------------------------------------- opening


def test_every_way_of_opening_finds_the_same_shards(corpus: Path) -> None:
    from_build = open_shards(corpus)
    assert len(from_build.shards) == len(read_index(committed(corpus)[1])["shards"])
    assert set(from_build.band_stats) == set(from_build.by_group()) and from_build.samples > 100
    assert open_shards(corpus / "catalog.json").shards == from_build.shards
    assert open_shards(corpus / "shards").shards == from_build.shards
    assert open_shards(committed(corpus)[1]).shards == from_build.shards
    group = from_build.by_group()["aviris-ng-L1"]
    pattern = str(corpus / "shards" / "aviris-ng-L1" / "*" / "*.tar")
    matched = open_shards(pattern)
    assert sorted(matched.shards, key=lambda s: s.path) == group  # counts, sha256 and group from the index
    assert matched.band_stats["aviris-ng-L1"] == from_build.band_stats["aviris-ng-L1"]
    assert open_shards([s.path for s in group]).shards == matched.shards
    first = group[0].path.name.rsplit("-", 1)[0]
    braced = open_shards(str(group[0].path.parent / f"{first}-{{000000..000001}}.tar"))
    assert [s.path for s in braced.shards] == [s.path for s in group[:2]]


def test_a_split_is_a_path_pattern(corpus: Path, samples: dict) -> None:
    for split in ("train", "validate", "test"):
        shards = open_shards(str(corpus / "shards" / "*" / split / "*.tar"))
        streamed = {
            key
            for batch in run(ShardDataset(shards, LoaderConfig(resampled=False), PLAIN))
            for key in batch["key"]
        }
        assert streamed == {key for key, (_, s) in samples.items() if s.meta["split"] == split}


def test_a_list_of_tars_without_an_index_is_read_by_its_headers(corpus: Path, tmp_path: Path) -> None:
    source = open_shards(corpus).by_group()["aviris-classic-L1"][0]
    copy = tmp_path / "loose.tar"
    shutil.copy(source.path, copy)
    (shard,) = open_shards([copy]).shards
    assert (shard.sensor, shard.level, shard.samples, shard.sha256) == (
        "aviris-classic",
        "L1",
        source.samples,
        None,
    )


def test_a_missing_shard_is_named(corpus: Path, tmp_path: Path) -> None:
    build_dir = copy_build(corpus, tmp_path / "build")
    victim = build_dir / "shards" / read_index(committed(build_dir)[1])["shards"][3]["name"]
    victim.unlink()
    with pytest.raises(ShardError, match=victim.name):
        open_shards(build_dir)
    with pytest.raises(ShardError, match="missing"):
        open_shards([victim])


def test_selection_queries_the_patch_index_for_shards_and_keys(corpus: Path, samples: dict) -> None:
    query = dict(sensor="aviris-ng", split="train", min_valid_fraction=0.95)
    wanted = set(read_patch_index(committed(corpus)[0], **query).column("id").to_pylist())
    assert 0 < len(wanted) < sum(1 for _, s in samples.values() if s.meta["sensor"] == "aviris-ng")
    selected = open_shards(corpus, **query)
    assert any(shard.keys is not None for shard in selected.shards)  # some shards are read only in part
    assert selected.samples == len(wanted)
    batches = run(ShardDataset(selected, LoaderConfig(batch_size=3, resampled=False), PLAIN))
    streamed = [key for batch in batches for key in batch["key"]]
    assert sorted(streamed) == sorted(wanted)
    for key in streamed:
        meta = samples[key][1].meta
        assert (
            meta["sensor"] == "aviris-ng"
            and meta["split"] == "train"
            and meta["qa"]["valid_fraction"] >= 0.95
        )
    with pytest.raises(ValueError, match="patch index"):
        open_shards(committed(corpus)[1], split="train")
    with pytest.raises(ValueError, match="matches no sample"):
        open_shards(corpus, sensor="aviris-ng", min_valid_fraction=1.5)


# -------------------------------------------------------------------------------------------- batches


def test_bucket_batches_are_homogeneous_and_carry_each_samples_bands(corpus: Path, samples: dict) -> None:
    dataset = ShardDataset(open_shards(corpus), LoaderConfig(batch_size=4), PLAIN)
    batches = run(dataset)
    assert len(batches) == len(dataset) == open_shards(corpus).samples // 4
    for batch in batches:
        size, channels = len(batch["key"]), batch["image"].shape[1]
        assert len({(s, lv) for s, lv in zip(batch["sensor"], batch["level"], strict=True)}) == 1
        assert batch["image"].dtype == torch.float32 and batch["image"].shape == (size, channels, TILE, TILE)
        for name in ("wavelength", "fwhm", "good_bands", "band_mask"):
            assert batch[name].shape == (size, channels), name
        assert batch["band_mask"].all() and batch["valid"].shape == (size, TILE, TILE)
        for i, key in enumerate(batch["key"]):
            sample = samples[key][1]
            assert batch["wavelength"][i].tolist() == pytest.approx(sample.meta["wavelength_nm"])
            assert batch["fwhm"][i].tolist() == pytest.approx(sample.meta["fwhm_nm"])
            assert batch["good_bands"][i].tolist() == sample.meta["good_bands"]
            assert batch["gsd"][i].item() == pytest.approx(sample.meta["gsd_m"])
            assert batch["sensor"][i] == sample.meta["sensor"] and batch["level"][i] == sample.meta["level"]
            np.testing.assert_array_equal(batch["image"][i].numpy(), expected_image(sample))
            np.testing.assert_array_equal(batch["valid"][i].numpy(), sample.valid)


def test_crops_and_symmetries_take_their_pixels_from_the_tile(corpus: Path, samples: dict) -> None:
    crop = 20
    transforms = TransformConfig(crop=crop)
    batches = run(
        ShardDataset(open_shards(corpus), LoaderConfig(batch_size=4, batches_per_epoch=4), transforms)
    )
    found = Counter()
    for batch in batches:
        assert batch["image"].shape[2:] == (crop, crop)
        for i, key in enumerate(batch["key"]):
            tile = expected_image(samples[key][1])
            out = batch["image"][i].numpy()
            band = int(np.argmax(tile.std(axis=(1, 2))))  # screen candidates on one textured band
            candidates = [
                (k, flip, y, x)
                for k in range(4)
                for flip in (False, True)
                for y in range(TILE - crop + 1)
                for x in range(TILE - crop + 1)
                if np.array_equal(
                    _symmetry(tile[band : band + 1, y : y + crop, x : x + crop], k, flip),
                    out[band : band + 1],
                )
            ]
            assert any(
                np.array_equal(_symmetry(tile[:, y : y + crop, x : x + crop], k, flip), out)
                for k, flip, y, x in candidates
            ), f"{key}: the output is no symmetry of any {crop}x{crop} window of the tile"
            found[candidates[0][:2]] += 1
    assert len(found) > 2  # several symmetries are drawn


def _symmetry(window: np.ndarray, k: int, flip: bool) -> np.ndarray:
    rotated = np.rot90(window, k, axes=(1, 2))
    return rotated[:, :, ::-1] if flip else rotated


def test_pad_mode_pads_to_the_largest_band_count_with_a_mask(corpus: Path, samples: dict) -> None:
    config = LoaderConfig(batch_size=6, mode="pad", weights="groups", batches_per_epoch=8)
    batches = run(ShardDataset(open_shards(corpus), config, PLAIN))
    assert any(len(set(batch["sensor"])) > 1 for batch in batches)
    for batch in batches:
        channels = batch["image"].shape[1]
        counts = [len(samples[key][1].meta["wavelength_nm"]) for key in batch["key"]]
        assert channels == max(counts)
        for i, count in enumerate(counts):
            assert batch["band_mask"][i].sum().item() == count and batch["band_mask"][i, :count].all()
            assert batch["wavelength"][i, :count].tolist() == pytest.approx(
                samples[batch["key"][i]][1].meta["wavelength_nm"]
            )
            assert not batch["image"][i, count:].any() and not batch["wavelength"][i, count:].any()
            assert not batch["good_bands"][i, count:].any()


def test_spectral_views_are_one_contiguous_window_per_batch(corpus: Path, samples: dict) -> None:
    transforms = replace(PLAIN, spectral_view_min_bands=40)
    batches = run(
        ShardDataset(open_shards(corpus), LoaderConfig(batch_size=3, batches_per_epoch=12), transforms)
    )
    widths, positions = set(), set()
    for batch in batches:
        channels = batch["image"].shape[1]
        widths.add(channels)
        starts = set()
        for i, key in enumerate(batch["key"]):
            sample = samples[key][1]
            full = np.asarray(sample.meta["wavelength_nm"], dtype=np.float32)
            assert 40 <= channels <= len(full)
            start = int(np.flatnonzero(full == batch["wavelength"][i, 0].item())[0])
            starts.add(start)
            np.testing.assert_array_equal(batch["wavelength"][i].numpy(), full[start : start + channels])
            np.testing.assert_array_equal(
                batch["image"][i].numpy(), expected_image(sample)[start : start + channels]
            )
        assert len(starts) == 1
        positions |= starts
    assert len(widths) > 3 and len(positions) > 3


def test_bad_bands_are_zeroed_or_dropped(corpus: Path, samples: dict) -> None:
    shards = open_shards(corpus, sensor="aviris-ng", level="L2")
    (zeroed,) = run(ShardDataset(shards, LoaderConfig(batch_size=2, batches_per_epoch=1), PLAIN))
    (dropped,) = run(
        ShardDataset(
            shards, LoaderConfig(batch_size=2, batches_per_epoch=1), replace(PLAIN, bad_bands="drop")
        )
    )
    assert zeroed["key"] == dropped["key"]
    goods = [np.asarray(samples[key][1].meta["good_bands"], dtype=bool) for key in zeroed["key"]]
    common = np.logical_and.reduce(goods)
    assert 0 < common.sum() < len(common)
    assert not zeroed["image"][:, ~common].any() and not zeroed["good_bands"][:, ~common].any()
    assert dropped["image"].shape[1] == common.sum() and dropped["good_bands"].all()
    np.testing.assert_array_equal(dropped["image"].numpy(), zeroed["image"][:, common].numpy())
    np.testing.assert_array_equal(dropped["wavelength"].numpy(), zeroed["wavelength"][:, common].numpy())


def test_normalisation_uses_the_build_statistics(corpus: Path, samples: dict) -> None:
    shards = open_shards(corpus, sensor="aviris-3", level="L1")
    transforms = replace(PLAIN, normalize=True)
    (batch,) = run(ShardDataset(shards, LoaderConfig(batch_size=2, batches_per_epoch=1), transforms))
    stats = shards.band_stats["aviris-3-L1"]
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    for i, key in enumerate(batch["key"]):
        sample = samples[key][1]
        good = np.asarray(sample.meta["good_bands"], dtype=bool)
        expected = (sample.data.astype(np.float64) - mean[:, None, None]) / np.where(std > 0, std, 1)[
            :, None, None
        ]
        expected = np.where(sample.valid, expected, 0)
        expected[~good] = 0
        np.testing.assert_allclose(batch["image"][i].numpy(), expected, rtol=1e-4, atol=1e-4)
    shifted = dict(stats, wavelength_nm=[w + 5 for w in stats["wavelength_nm"]])
    moved = replace(shards, band_stats={"aviris-3-L1": shifted})
    with pytest.raises(ValueError, match="wavelengths differ"):
        run(ShardDataset(moved, LoaderConfig(batch_size=2, batches_per_epoch=1), transforms))
    with pytest.raises(ValueError, match="no band_stats"):
        ShardDataset(replace(shards, band_stats={}), LoaderConfig(), transforms)


def test_tiles_smaller_than_the_crop_fail_clearly_or_are_padded(corpus: Path, samples: dict) -> None:
    shards = open_shards(corpus, sensor="aviris-classic")
    config = LoaderConfig(batch_size=2, batches_per_epoch=1)
    with pytest.raises(ValueError, match="smaller than the crop"):
        run(ShardDataset(shards, config, TransformConfig(crop=40)))
    (batch,) = run(
        ShardDataset(shards, config, TransformConfig(crop=40, small_tiles="pad", flips=False, rot90=False))
    )
    assert batch["image"].shape[2:] == (40, 40)
    for i, key in enumerate(batch["key"]):
        np.testing.assert_array_equal(
            batch["image"][i, :, :TILE, :TILE].numpy(), expected_image(samples[key][1])
        )
        np.testing.assert_array_equal(batch["valid"][i, :TILE, :TILE].numpy(), samples[key][1].valid)
    assert not batch["image"][:, :, TILE:].any() and not batch["image"][:, :, :, TILE:].any()
    assert not batch["valid"][:, TILE:].any() and not batch["valid"][:, :, TILE:].any()


# ------------------------------------------------------------------------------------ schedule, mixing


def test_mixing_weights_set_the_group_frequencies(corpus: Path) -> None:
    shards = open_shards(corpus)
    counts = shards.group_samples()
    assert probabilities("samples", counts) == pytest.approx(
        {g: c / sum(counts.values()) for g, c in counts.items()}
    )
    assert probabilities("groups", counts) == pytest.approx(dict.fromkeys(counts, 0.2))
    per_sensor = Counter()
    for group, p in probabilities("sensors", counts).items():
        per_sensor[group.rpartition("-")[0]] += p
    assert per_sensor == pytest.approx({"aviris-ng": 1 / 3, "aviris-3": 1 / 3, "aviris-classic": 1 / 3})
    weights = {"aviris-ng": 1.0, "aviris-3-L2": 1.0, "aviris-classic-L1": 2.0}  # aviris-3-L1 is left out
    config = LoaderConfig(batch_size=1, batches_per_epoch=400, weights=weights)
    batches = run(ShardDataset(shards, config, TransformConfig(crop=4)))
    seen = Counter(f"{b['sensor'][0]}-{b['level'][0]}" for b in batches)
    assert "aviris-3-L1" not in seen
    observed = {"aviris-ng": seen["aviris-ng-L1"] + seen["aviris-ng-L2"], "aviris-3-L2": seen["aviris-3-L2"]}
    observed["aviris-classic-L1"] = seen["aviris-classic-L1"]
    for name, share in {"aviris-ng": 0.25, "aviris-3-L2": 0.25, "aviris-classic-L1": 0.5}.items():
        assert observed[name] / 400 == pytest.approx(share, abs=0.07), (name, observed)
    with pytest.raises(ValueError, match="neither groups"):
        probabilities({"aviris-9": 1.0}, counts)


def test_order_is_deterministic_under_a_seed(corpus: Path) -> None:
    shards = open_shards(corpus)

    def epoch(seed: int, number: int) -> list[dict[str, Any]]:
        dataset = ShardDataset(shards, LoaderConfig(batch_size=4, seed=seed), TransformConfig(crop=16))
        dataset.set_epoch(number)
        return run(dataset)

    first, again = epoch(7, 0), epoch(7, 0)
    assert keys(first) == keys(again)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(first, again, strict=True))
    assert keys(epoch(8, 0)) != keys(first) and keys(epoch(7, 1)) != keys(first)


def test_workers_split_the_shards_and_the_state_reaches_persistent_workers(
    corpus: Path, samples: dict
) -> None:
    shards = open_shards(corpus)
    single = ShardDataset(shards, LoaderConfig(batch_size=5, resampled=False), PLAIN)
    for workers in (0, 2):
        streamed = [key for batch in run(single, workers) for key in batch["key"]]
        assert sorted(streamed) == sorted(samples), workers  # every sample once, whatever the worker count
    dataset = ShardDataset(shards, LoaderConfig(batch_size=4), TransformConfig(crop=8))
    loader = DataLoader(dataset, batch_size=None, num_workers=2, persistent_workers=True)
    epoch0 = keys(list(loader))
    dataset.set_epoch(1)
    epoch1 = keys(list(loader))
    fresh = ShardDataset(shards, LoaderConfig(batch_size=4), TransformConfig(crop=8))
    fresh.set_epoch(1)
    assert len(epoch0) == len(epoch1) == len(dataset)
    assert epoch1 != epoch0 and epoch1 == keys(run(fresh, 2))


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_read_disjoint_shards_and_take_the_same_number_of_steps(
    corpus: Path, samples: dict, world: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = open_shards(corpus)
    seen: list[set[str]] = []
    steps = []
    for rank in range(world):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        dataset = ShardDataset(shards, LoaderConfig(batch_size=2), TransformConfig(crop=8))
        assert (dataset.rank, dataset.world_size) == (rank, world)
        batches = run(dataset, workers=2 if rank == 0 else 0)
        steps.append(len(batches))
        seen.append({samples[key][0] for batch in batches for key in batch["key"]})
    assert len(set(steps)) == 1 and steps[0] == shards.samples // (world * 2)
    for rank in range(world):
        for other in range(rank + 1, world):
            assert not seen[rank] & seen[other], (rank, other)
    explicit = ShardDataset(
        shards, LoaderConfig(batch_size=2), TransformConfig(crop=8), rank=1, world_size=world
    )
    assert {samples[k][0] for b in run(explicit) for k in b["key"]} == seen[1]


@pytest.mark.parametrize(("workers", "mode"), [(0, "bucket"), (2, "bucket"), (0, "pad")])
def test_resuming_yields_the_rest_of_the_epoch_without_reading_the_start(
    corpus: Path, workers: int, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = open_shards(corpus, min_valid_fraction=0.9)  # a key selection: skipping must count selected keys
    config, transforms = LoaderConfig(batch_size=3, seed=3, mode=mode), TransformConfig(crop=12)
    reference = ShardDataset(shards, config, transforms)
    reference.set_epoch(1)
    full = run(reference, workers)
    assert len(full) == len(reference) > 8
    decoded = Counter()
    original = reader_module.decode

    def counting(key: str, members: dict) -> Sample:
        decoded["samples"] += 1
        return original(key, members)

    monkeypatch.setattr(reader_module, "decode", counting)
    for step in (1, 4, 7):
        resumed = ShardDataset(shards, config, transforms)
        resumed.set_state(1, step)
        rest = run(resumed, workers)
        assert keys(rest) == keys(full[step:]), step
        assert all(torch.equal(a["image"], b["image"]) for a, b in zip(rest, full[step:], strict=True))
    if workers == 0:  # decoding happens in this process: only the batches after the resume point are decoded
        assert decoded["samples"] == 3 * sum(len(full) - step for step in (1, 4, 7))
    with pytest.raises(ValueError, match="past the end"):
        reference.set_state(1, len(full) + 1)


# ------------------------------------------------------------------------------------------- failures


def test_a_shard_failing_its_checksum_is_an_error_or_skipped(
    corpus: Path, tmp_path: Path, samples: dict
) -> None:
    build_dir = copy_build(corpus, tmp_path / "build")
    victim = build_dir / "shards" / read_index(committed(build_dir)[1])["shards"][0]["name"]
    content = bytearray(victim.read_bytes())
    content[len(content) // 2] ^= 0xFF  # one byte of sample data: the tar still parses
    victim.write_bytes(bytes(content))
    shards = open_shards(build_dir)
    config = LoaderConfig(batch_size=4, resampled=False, verify=True)
    with pytest.raises(ShardError, match=f"{victim.name}.*sha256"):
        run(ShardDataset(shards, config, PLAIN))
    dataset = ShardDataset(shards, replace(config, on_bad_shard="skip"), PLAIN)
    streamed = {key for batch in run(dataset, workers=2) for key in batch["key"]}
    assert dataset.report().skipped_shards == 1
    assert streamed == {key for key, (shard, _) in samples.items() if build_dir / "shards" / shard != victim}


def test_a_truncated_shard_raises_a_shard_error_naming_it(corpus: Path, tmp_path: Path) -> None:
    build_dir = copy_build(corpus, tmp_path / "build")
    victim = build_dir / "shards" / read_index(committed(build_dir)[1])["shards"][0]["name"]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(ShardError, match=victim.name):
        run(ShardDataset(open_shards(build_dir), LoaderConfig(resampled=False), PLAIN))


def test_a_sample_violating_the_schema_is_skipped_and_counted(corpus: Path, tmp_path: Path) -> None:
    source = open_shards(corpus).by_group()["aviris-classic-L1"][0]
    encoded = list(iter_encoded(source.path))
    broken_key, broken = encoded[1]
    meta = json.loads(broken["meta.json"])
    del meta["wavelength_nm"]
    with ShardWriter(tmp_path, "aviris-classic-L1", target_bytes=1 << 30) as writer:
        for key, members in encoded:
            writer.write_encoded(
                key, {**members, "meta.json": json.dumps(meta).encode()} if key == broken_key else members
            )
    shards = open_shards(tmp_path / "aviris-classic-L1-000000.tar")
    dataset = ShardDataset(shards, LoaderConfig(batch_size=1, resampled=False, shuffle=False), PLAIN)
    streamed = [batch["key"][0] for batch in run(dataset, workers=1)]  # counted in a worker, read here
    assert streamed == [key for key, _ in encoded if key != broken_key]
    assert dataset.report().skipped_samples == 1 and dataset.report().skipped_shards == 0
    strict = ShardDataset(shards, LoaderConfig(batch_size=1, resampled=False, on_bad_sample="raise"), PLAIN)
    with pytest.raises(SchemaError, match=f"{broken_key}.*wavelength_nm"):
        run(strict)
