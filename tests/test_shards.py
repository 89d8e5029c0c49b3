"""Shard writing, reading, mixing, indexing and verification on realistic 425-band samples.

Samples carry real AVIRIS-NG radiance spectra (and the real wavelength/FWHM grid) when ../shared/realdata is
present, otherwise smooth generated spectra on an AVIRIS-NG-like grid; either way 425 bands × 32 × 32 float16
with a complete meta.json, so sizes and the schema check are those of the real corpus.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import webdataset

from hyper400k import shards
from hyper400k.sample import META_FIELDS, SCHEMA_VERSION, Sample, SchemaError, npy_parts, sample_key
from hyper400k.shards import (
    INDEX_NAME,
    ShardError,
    ShardInfo,
    ShardWriter,
    count_samples,
    interleave,
    iter_encoded,
    read_index,
    write_index,
)
from hyper400k.verify import verify_shards

REALDATA = Path(
    os.environ.get("HYPER400K_REALDATA", Path(__file__).resolve().parents[1].parent / "shared/realdata")
)
NG_RDN = REALDATA / "aviris-ng" / "ang20170323t202244_rdn_7000-7010"
NG_WAVELENGTHS = REALDATA / "aviris-ng" / "wavelengths.txt"
BANDS, SIZE = 425, 32
PRODUCTS = ("ang20170323t202244_rdn", "ang20170324t181512_rdn", "ang20170401t170043_rdn")
PER_PRODUCT = 4


def spectra_and_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(spectra (n, 425), wavelength_nm, fwhm_nm)``: real AVIRIS-NG pixels if available, else smooth curves."""
    if NG_RDN.is_file() and NG_WAVELENGTHS.is_file():
        cube = np.fromfile(NG_RDN, dtype="<f4").reshape(10, BANDS, 10)  # BIL: line, band, sample
        table = np.loadtxt(NG_WAVELENGTHS)
        return cube.transpose(0, 2, 1).reshape(-1, BANDS), table[:, 1] * 1000, table[:, 2] * 1000
    wavelength = np.linspace(376.86, 2500.54, BANDS)
    rng = np.random.default_rng(7)
    centres = rng.uniform(400, 2400, size=(8, 3))
    spectra = sum(
        rng.uniform(2, 10) * np.exp(-0.5 * ((wavelength - centres[:, [i]]) / 300) ** 2) for i in range(3)
    )
    return np.asarray(spectra), wavelength, np.full(BANDS, 5.8)


SPECTRA, WAVELENGTH, FWHM = spectra_and_grid()


def make_meta(key: str, product: str, row: int, col: int, split: str = "train") -> dict[str, Any]:
    """A complete meta.json for a patch of ``product`` at pixel (row, col)."""
    x0, y0 = 500_000.0 + col * 5.6, 4_100_000.0 - row * 5.6
    meta = {
        "schema_version": SCHEMA_VERSION,
        "key": key,
        "sensor": "aviris-ng",
        "level": "L1",
        "product": product,
        "flight_line": product.split("_")[0],
        "segment": None,
        "wavelength_nm": [float(w) for w in WAVELENGTH],
        "fwhm_nm": [float(f) for f in FWHM],
        "good_bands": [True] * BANDS,
        "gsd_m": 5.6,
        "units": "uW cm-2 sr-1 nm-1",
        "crs": "EPSG:32611",
        "transform": [5.6, 0.0, x0, 0.0, -5.6, y0],
        "footprint": {
            "type": "Polygon",
            "coordinates": [
                [[-117.0, 37.0], [-116.99, 37.0], [-116.99, 36.99], [-117.0, 36.99], [-117.0, 37.0]]
            ],
        },
        "datetime": "2017-03-23T20:22:44Z",
        "row": row,
        "col": col,
        "height": SIZE,
        "width": SIZE,
        "angles": {"solar_zenith": 38.2, "solar_azimuth": 151.0, "view_zenith": 4.1, "view_azimuth": 92.0},
        "qa": {"valid_fraction": 1.0, "mean": 8.5},
        "split": split,
        "preset": "hyper400k",
    }
    assert set(meta) == set(META_FIELDS)
    return meta


def make_sample(product: str, row: int, col: int, seed: int) -> Sample:
    """Smooth random abundances of four spectra, plus noise, as float16 radiance with a few invalid pixels."""
    rng = np.random.default_rng(seed)
    picks = SPECTRA[rng.integers(0, len(SPECTRA), size=4)]
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    waves = [
        1.2 + np.cos(2 * np.pi * (rng.uniform(0, 1.5) * y + rng.uniform(0, 1.5) * x) + rng.uniform(0, 6))
        for _ in picks
    ]
    abundance = np.stack(waves)
    abundance /= abundance.sum(axis=0)
    data = np.einsum("khw,kc->chw", abundance, picks)
    data += rng.normal(0, 0.02, size=data.shape) * np.sqrt(np.abs(data))
    valid = np.ones((SIZE, SIZE), dtype=bool)
    valid[: rng.integers(0, 3), :] = False
    data[:, ~valid] = 0
    key = sample_key(product, row, col)
    return Sample(key, np.clip(data, 0, None).astype(np.float16), valid, make_meta(key, product, row, col))


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return [
        make_sample(product, row * SIZE, 0, seed=10 * p + row)
        for p, product in enumerate(PRODUCTS)
        for row in range(PER_PRODUCT)
    ]


def tar_size(sample: Sample) -> int:
    """Bytes one sample takes in a tar (a 512-byte header per member, data padded to 512)."""
    return sum(512 + len(data) + (-len(data) % 512) for data in sample.encode().values())


def write_shards(
    out_dir: Path, samples: list[Sample], per_shard: int = 3, prefix: str = "shard"
) -> list[ShardInfo]:
    """Write ``samples`` with a target that fits ``per_shard`` of them, plus the index."""
    target = per_shard * tar_size(samples[0]) + 1024 + 512 * 8
    with ShardWriter(out_dir, prefix, target_bytes=target) as writer:
        for sample in samples:
            writer.write(sample)
    write_index(out_dir, writer.shards, extra={"preset": "hyper400k"})
    return writer.shards


@pytest.fixture
def built(tmp_path, samples) -> Path:
    out = tmp_path / "shards"
    write_shards(out, samples)
    return out


def test_rollover_bounds_shards_and_keeps_every_key_once(tmp_path, samples):
    target = 3 * tar_size(samples[0]) + 1024 + 512 * 8
    infos = write_shards(tmp_path, samples)
    assert [info.name for info in infos] == [f"shard-{i:06d}.tar" for i in range(4)]
    assert [info.samples for info in infos] == [3, 3, 3, 3]
    for info in infos:
        path = tmp_path / info.name
        assert info.bytes == path.stat().st_size <= target
        assert info.keys == [key for key, _ in iter_encoded(path)]
    keys = [key for info in infos for key in info.keys]
    assert keys == [sample.key for sample in samples]


def test_sample_larger_than_target_gets_its_own_shard(tmp_path, samples):
    with ShardWriter(tmp_path, "big", target_bytes=1000) as writer:
        for sample in samples[:3]:
            writer.write(sample)
    assert [info.samples for info in writer.shards] == [1, 1, 1]


def test_index_matches_files(built, samples):
    index = read_index(built)
    assert index["version"] == 1 and index["preset"] == "hyper400k"
    assert index["total_samples"] == len(samples) == sum(entry["samples"] for entry in index["shards"])
    for entry in index["shards"]:
        data = (built / entry["name"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert set(entry) == {"name", "samples", "bytes", "sha256"}
    assert index["total_bytes"] == sum(entry["bytes"] for entry in index["shards"])
    assert read_index(built / INDEX_NAME) == index
    with pytest.raises(ValueError, match="total_samples"):
        write_index(built, [], extra={"total_samples": 3})


def test_no_temp_files_after_close_or_error(tmp_path, samples):
    write_shards(tmp_path / "ok", samples)
    assert not list((tmp_path / "ok").glob("*.tmp"))
    target = 3 * tar_size(samples[0]) + 1024 + 512 * 8
    with (
        pytest.raises(RuntimeError, match="boom"),
        ShardWriter(tmp_path / "err", "s", target_bytes=target) as writer,
    ):
        for sample in samples[:5]:
            writer.write(sample)
        raise RuntimeError("boom")
    assert sorted(path.name for path in (tmp_path / "err").iterdir()) == ["s-000000.tar"]
    assert [key for key, _ in iter_encoded(tmp_path / "err" / "s-000000.tar")] == [s.key for s in samples[:3]]


class FullDisk:
    """A file that raises ENOSPC once the bytes written through all instances reach ``budget[0]``."""

    def __init__(self, stream: Any, budget: list[int]) -> None:
        self.stream, self.budget = stream, budget

    def write(self, data: bytes) -> int:
        if len(data) > self.budget[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget[0] -= len(data)
        return self.stream.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def test_full_disk_names_the_shard_and_leaves_no_temp_file(tmp_path, samples, monkeypatch):
    budget = [int(4.5 * tar_size(samples[0]))]
    monkeypatch.setattr(shards, "open", lambda *a, **k: FullDisk(open(*a, **k), budget), raising=False)
    target = 3 * tar_size(samples[0]) + 1024 + 512 * 8
    with pytest.raises(ShardError, match=r"s-000001\.tar.*disk full") as caught:
        with ShardWriter(tmp_path, "s", target_bytes=target) as writer:
            for sample in samples:
                writer.write(sample)
    assert caught.value.path == tmp_path / "s-000001.tar"
    monkeypatch.undo()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["s-000000.tar"]
    assert count_samples(tmp_path / "s-000000.tar") == 3


def test_invalid_sample_is_refused(tmp_path, samples):
    sample = samples[0]
    bad = Sample(sample.key, sample.data.astype(np.float32), sample.valid, sample.meta)
    with pytest.raises(SchemaError, match="float16"), ShardWriter(tmp_path, "s") as writer:
        writer.write(bad)
    assert not list(tmp_path.iterdir())
    with ShardWriter(tmp_path, "s") as writer, pytest.raises(ValueError, match="without '.'"):
        writer.write_encoded("a.b_r0_c0", {"data.npy": b""})


def test_same_samples_give_byte_identical_shards(tmp_path, samples):
    first = write_shards(tmp_path / "a", samples)
    second = write_shards(tmp_path / "b", samples)
    assert [info.sha256 for info in first] == [info.sha256 for info in second]
    for info in first:
        assert (tmp_path / "a" / info.name).read_bytes() == (tmp_path / "b" / info.name).read_bytes()


def test_webdataset_reads_the_shards(built, samples):
    urls = [str(built / entry["name"]) for entry in read_index(built)["shards"]]
    read = list(webdataset.WebDataset(urls, shardshuffle=False))
    assert [item["__key__"] for item in read] == [sample.key for sample in samples]
    for item, sample in zip(read, samples, strict=True):
        encoded = sample.encode()
        assert {name: item[name] for name in encoded} == encoded


def test_iter_encoded_round_trip(built, samples):
    read = [item for entry in read_index(built)["shards"] for item in iter_encoded(built / entry["name"])]
    assert [key for key, _ in read] == [sample.key for sample in samples]
    for (key, members), sample in zip(read, samples, strict=True):
        assert members == sample.encode()
        decoded = Sample.decode(key, members)
        assert np.array_equal(decoded.data, sample.data) and decoded.meta == sample.meta


def test_iter_encoded_rejects_truncated_and_malformed_tars(built, tmp_path, samples):
    shard = built / "shard-000000.tar"
    data = shard.read_bytes()
    boundary = tar_size(samples[0])
    for cut in (len(data) // 2, boundary, len(data) - 512):
        damaged = tmp_path / f"cut{cut}.tar"
        damaged.write_bytes(data[:cut])
        with pytest.raises(ShardError, match=f"cut{cut}.tar.*truncated"):
            list(iter_encoded(damaged))
    corrupt = tmp_path / "corrupt.tar"
    corrupt.write_bytes(data[:boundary] + b"x" * 512 + data[boundary + 512 :])
    with pytest.raises(ShardError, match="corrupt.tar.*header"):
        list(iter_encoded(corrupt))
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        info = tarfile.TarInfo("README")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(ShardError, match="plain.tar.*'README'"):
        list(iter_encoded(plain))


@pytest.fixture
def spools(tmp_path, samples) -> list[Path]:
    """One spool tar per product, as the per-product tiling step writes them."""
    paths = []
    for p, product in enumerate(PRODUCTS):
        with ShardWriter(tmp_path / "spool", product) as writer:
            for sample in samples[p * PER_PRODUCT : (p + 1) * PER_PRODUCT]:
                writer.write(sample)
        paths.append(tmp_path / "spool" / writer.shards[0].name)
    return paths


def test_interleave_mixes_sources_deterministically(spools, samples):
    product_of = {sample.key: sample.meta["product"] for sample in samples}
    mixed = list(interleave(spools, seed=3))
    assert [key for key, _ in mixed] == [key for key, _ in interleave(spools, seed=3)]
    assert [key for key, _ in mixed] != [key for key, _ in interleave(spools, seed=4)]
    assert len({product_of[key] for key, _ in mixed[:PER_PRODUCT]}) > 1
    assert sorted(key for key, _ in mixed) == sorted(product_of)
    encoded = {sample.key: sample.encode() for sample in samples}
    assert all(members == encoded[key] for key, members in mixed)
    windowed = [key for key, _ in interleave(spools, seed=3, max_open=1)]
    assert sorted(windowed) == sorted(product_of)


def test_interleave_into_shards_round_trips(spools, tmp_path, samples):
    with ShardWriter(tmp_path / "mixed", "mixed", target_bytes=4 * tar_size(samples[0]) + 4096) as writer:
        for key, members in interleave(spools, seed=0):
            writer.write_encoded(key, members)
    write_index(tmp_path / "mixed", writer.shards)
    report = verify_shards(tmp_path / "mixed")
    assert report.ok, report.to_text()
    assert report.samples_checked == len(samples) and report.shards_checked == 3


def test_verify_passes_on_good_shards(built, samples):
    report = verify_shards(built, progress=False)
    assert report.ok, report.to_text()
    assert (report.shards_checked, report.samples_checked) == (4, len(samples))
    assert report.to_text().startswith("OK: 4 shards, 12 samples")
    assert json.loads(report.to_json())["ok"] is True


def flip_byte(directory: Path) -> str:
    path = directory / "shard-000001.tar"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    return "shard-000001.tar: sha256"


def truncate(directory: Path) -> str:
    path = directory / "shard-000002.tar"
    path.write_bytes(path.read_bytes()[:100_000])
    return "shard-000002.tar: truncated tar"


def remove(directory: Path) -> str:
    (directory / "shard-000003.tar").unlink()
    return "shard-000003.tar: listed in index.json but missing"


def add_unlisted(directory: Path) -> str:
    shutil.copy(directory / "shard-000000.tar", directory / "stray-000000.tar")
    return "stray-000000.tar: shard not listed"


def leave_temp(directory: Path) -> str:
    (directory / "shard-000004.tar.tmp").write_bytes(b"partial")
    return "shard-000004.tar.tmp: unfinished temp shard"


@pytest.mark.parametrize("damage", [flip_byte, truncate, remove, add_unlisted, leave_temp])
def test_verify_reports_damaged_files(built, damage):
    expected = damage(built)
    report = verify_shards(built)
    assert not report.ok
    assert any(problem.startswith(expected) for problem in report.problems), report.to_text()
    assert json.loads(report.to_json())["problems"] == report.problems


def test_verify_reports_schema_violations_with_shard_and_key(tmp_path, samples):
    good, wide, short = samples[0], samples[1], samples[2]
    float32 = dict(wide.encode())
    buffer = io.BytesIO()
    np.save(buffer, wide.data.astype(np.float32))
    float32["data.npy"] = buffer.getvalue()
    short_meta = dict(short.meta, wavelength_nm=short.meta["wavelength_nm"][:-1])
    short_members = dict(short.encode(), **{"meta.json": json.dumps(short_meta).encode()})
    with ShardWriter(tmp_path, "bad") as writer:
        writer.write(good)
        writer.write_encoded(wide.key, float32)
        writer.write_encoded(short.key, short_members)
        writer.write_encoded(samples[3].key, {"data.npy": b"", "valid.npy": b"", "meta.json": b"{}"})
    write_index(tmp_path, writer.shards)
    report = verify_shards(tmp_path)
    assert report.samples_checked == 4 and len(report.problems) == 3, report.to_text()
    assert report.problems[0].startswith(f"bad-000000.tar: sample {wide.key}: data must be C×H×W float16")
    assert report.problems[1].startswith(
        f"bad-000000.tar: sample {short.key}: meta.json 'wavelength_nm' has 424"
    )
    assert report.problems[2].startswith(f"bad-000000.tar: sample {samples[3].key}: undecodable")
    assert verify_shards(tmp_path, check_samples=False).ok


def test_verify_reports_duplicate_keys_across_shards(tmp_path, samples):
    first = write_shards(tmp_path, samples[:4], prefix="a")
    second = write_shards(tmp_path, samples[3:6], prefix="b")
    write_index(tmp_path, first + second)
    report = verify_shards(tmp_path)
    assert report.problems == [f"b-000000.tar: duplicate key {samples[3].key} (also in a-000001.tar)"]


def test_verify_follows_shards_in_group_subfolders(tmp_path, samples):
    infos = write_shards(tmp_path / "aviris-ng-L1", samples[:6], prefix="aviris-ng-L1")
    write_index(tmp_path, [replace(info, name=f"aviris-ng-L1/{info.name}") for info in infos])
    assert verify_shards(tmp_path).ok
    shutil.copy(tmp_path / "aviris-ng-L1" / infos[0].name, tmp_path / "aviris-ng-L1" / "old-000000.tar")
    assert verify_shards(tmp_path).problems == ["aviris-ng-L1/old-000000.tar: shard not listed in index.json"]


@pytest.mark.parametrize(
    "array",
    [
        np.arange(3 * 5 * 7, dtype=np.float16).reshape(3, 5, 7),
        np.arange(4 * 6 * 6, dtype=np.float32).reshape(4, 6, 6)[:, :, 1:5].astype(np.float16),
        np.arange(4 * 6 * 8, dtype=np.float16).reshape(4, 6, 8)[:, :, ::2],  # a strided view
        np.eye(5, dtype=bool),
        np.zeros((0, 3), dtype=np.float16),
    ],
)
def test_npy_parts_are_the_bytes_np_save_writes(array):
    """Samples stream their arrays without a copy; the bytes must stay those of ``np.save``, which every
    WebDataset decoder reads."""
    saved = io.BytesIO()
    np.save(saved, array, allow_pickle=False)
    assert b"".join(npy_parts(array)) == saved.getvalue()


def test_a_writer_without_checksum_writes_the_same_bytes(tmp_path, samples):
    """Spools skip the hash, not a byte: the same samples give the same tar, and the hash is simply absent."""
    with ShardWriter(tmp_path / "plain", "s", 1 << 40) as hashed:
        for sample in samples:
            hashed.write(sample)
    with ShardWriter(tmp_path / "spool", "s", 1 << 40, checksum=False) as unhashed:
        for sample in samples:
            unhashed.write(sample)
    [with_hash], [without] = hashed.shards, unhashed.shards
    assert without.sha256 is None and with_hash.sha256 is not None
    assert (tmp_path / "spool" / without.name).read_bytes() == (
        tmp_path / "plain" / with_hash.name
    ).read_bytes()
    assert with_hash.bytes == without.bytes == (tmp_path / "spool" / without.name).stat().st_size
