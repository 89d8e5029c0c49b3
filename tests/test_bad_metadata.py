"""Impossible spectral metadata is refused, naming the file and band; everything written is strict JSON."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from hyper400k.bands import check_band_centres
from hyper400k.errors import HeaderError
from hyper400k.presets import get_preset
from hyper400k.product import open_product
from hyper400k.sensors import sensor
from hyper400k.synth import generate
from pipelines.build import BuildConfig, build


def strict_loads(text: str | bytes):
    """``json.loads`` that refuses NaN, Infinity and -Infinity, which the JSON standard does not allow."""

    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    "old, new, problem",
    [
        ("{376.86,381.87,", "{nan,381.87,", "band 1 has an impossible wavelength of nan"),
        ("{376.86,381.87,", "{inf,381.87,", "band 1 has an impossible wavelength of inf"),
        ("{376.86,381.87,", "{0,381.87,", "band 1 has an impossible wavelength of 0 nm"),
        ("{376.86,381.87,", "{-376.86,381.87,", "band 1 has an impossible wavelength of -376.86"),
        (
            "401.9,406.91,",
            "406.91,401.9,",
            "decrease within one spectrometer: band 7 is 401.9 nm after 406.91 nm",
        ),
        ("391.89,396.89,", "391.89,391.89,", "band 5 repeats the wavelength of band 4"),
        ("fwhm = {5.57 ,", "fwhm = {0 ,", "band 1 has an impossible fwhm of 0 nm"),
        ("fwhm = {5.57 ,", "fwhm = {-5.57 ,", "band 1 has an impossible fwhm of -5.57"),
        ("fwhm = {5.57 ,", "fwhm = {NaN ,", "band 1 has an impossible fwhm of nan"),
    ],
)
def test_impossible_band_metadata_is_refused(ng_copy, old, new, problem):
    header = ng_copy.with_name(ng_copy.name + ".hdr")
    text = header.read_text()
    assert old in text
    header.write_text(text.replace(old, new, 1))
    with pytest.raises(HeaderError, match=problem) as info:
        open_product(ng_copy)
    assert str(header) in str(info.value)


def test_aviris_classic_steps_back_only_at_its_spectrometer_joins(realdata):
    meta = open_product(next((realdata / "aviris-classic").glob("*.hdr"))).meta
    assert int((np.diff(meta.wavelength_nm) < 0).sum()) == 3
    wavelength, fwhm = sensor("aviris-classic").grid()
    scrambled = wavelength.copy()
    scrambled[[10, 11]] = scrambled[[11, 10]]
    with pytest.raises(HeaderError, match="band 12 is"):
        check_band_centres(scrambled, fwhm, sensor("aviris-classic").spectrometer_joins_nm, "classic.hdr")


def test_unknown_instrument_may_step_back_between_spectrometers_only():
    vnir, swir = np.linspace(400, 1000, 60), np.linspace(950, 2500, 120)
    joined = np.concatenate([vnir, swir])
    check_band_centres(joined, np.full(180, 8.0), None, "hyspex.hdr")
    with pytest.raises(
        HeaderError, match="band 61 is 990 nm after 1000 nm"
    ):  # a run of one band is not a spectrometer
        check_band_centres(np.concatenate([vnir, [990.0], swir]), np.full(181, 8.0), None, "x.hdr")
    with pytest.raises(HeaderError, match="decrease within one spectrometer"):
        check_band_centres(joined, np.full(180, 8.0), (), "single.hdr")


def test_everything_the_build_writes_is_strict_json(tmp_path):
    generate("aviris-classic", "L1", 96, 80, tmp_path / "in", seed=4)  # steps back at the joins
    generate("aviris-ng", "L2", 96, 80, tmp_path / "in", seed=5)
    out = tmp_path / "out"
    result = build(
        BuildConfig(
            input=tmp_path / "in",
            output=out,
            preset=get_preset("hyper400k", tile=32),
            scheduler="synchronous",
            progress=False,
        )
    )
    assert result.ok and result.records
    documents = [p for p in out.rglob("*.json")]
    assert {"index.json", "report.json", "catalog.json", "failures.json", "record.json"} <= {
        p.name for p in documents
    }
    for path in documents:
        strict_loads(path.read_text())
    metas = 0
    for shard in (out / "shards").rglob("*.tar"):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith("meta.json"):
                    strict_loads(tar.extractfile(member).read())
                    metas += 1
    assert metas == sum(r["kept"] for r in result.records) > 0
    for product in Path(tmp_path / "in").glob("*.hdr"):
        if "_obs" in product.name or "_loc" in product.name:
            continue
        strict_loads(open_product(product).meta.to_json())
