"""The conformance corpus: real headers of many imaging spectrometers, each read right or refused cleanly.

Each header in ``tests/conformance/headers`` is copied beside a sparse data file of the size it implies
(no real pixels needed: only metadata is checked), opened, and compared with the values in
``tests/conformance/manifest.yaml``, which were read off the headers by hand.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import REALDATA

from hyper400k.envi_header import EnviHeader
from hyper400k.errors import ProductError
from hyper400k.geo import parse_map_info
from hyper400k.product import open_product

CORPUS = Path(__file__).parent / "conformance"
ENTRIES: list[dict[str, Any]] = yaml.safe_load((CORPUS / "manifest.yaml").read_text())
PIKA = next(e["header"] for e in ENTRIES if "_pika_" in e.get("header", ""))


def entry_id(entry: dict[str, Any]) -> str:
    return entry.get("header") or entry["realdata"]


def stage(entry: dict[str, Any], folder: Path) -> Path:
    """Copy the header into ``folder`` beside a sparse data file of the size it implies; return the header.

    A ``realdata`` entry is read where it lies, with its real data and side files (it must not be copied here).
    """
    if "realdata" in entry:
        if not REALDATA.is_dir():
            pytest.skip(f"real products not found at {REALDATA} (set HYPER400K_REALDATA)")
        return REALDATA / entry["realdata"]
    header = folder / entry["header"]
    shutil.copyfile(CORPUS / "headers" / entry["header"], header)
    parsed = EnviHeader.read(header)
    data = folder / entry.get("data", header.stem)
    try:
        lines, samples, bands = parsed.shape
        size = parsed.header_offset + lines * samples * bands * parsed.dtype.itemsize
    except ProductError:  # a header that does not describe raw data (e.g. a TIFF's sidecar): an empty file
        size = 0
    with data.open("wb") as fh:
        fh.truncate(size)
    return header


def overrides(entry: dict[str, Any]) -> dict[str, Any]:
    options = dict(entry.get("options") or {})
    if "datetime" in options:
        options["when"] = datetime.fromisoformat(str(options.pop("datetime")).replace("Z", "+00:00"))
    return options


def test_manifest_is_complete():
    names = [entry_id(e) for e in ENTRIES]
    assert len(set(names)) == len(ENTRIES), "a header is listed twice"
    assert {e["header"] for e in ENTRIES if "header" in e} == {
        p.name for p in (CORPUS / "headers").glob("*.hdr")
    }
    for entry in ENTRIES:
        assert ("expect" in entry) != ("refuse" in entry), entry["header"]
        assert {"sensor_family", "writer", "covers"} <= set(entry), entry["header"]
        repo, _, rest = entry["source"].partition("@")
        commit, _, path = rest.partition(":")
        assert "/" in repo and len(commit) == 40 and path.endswith(".hdr"), entry["source"]


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry_id(e) for e in ENTRIES])
def test_header_is_read_right_or_refused(entry, tmp_path):
    header = stage(entry, tmp_path)
    if "refuse" in entry:
        with pytest.raises(ProductError, match=entry["refuse"]) as info:
            open_product(header, **overrides(entry))
        assert str(header) in str(info.value) or str(header.with_suffix("")) in str(info.value)
        return
    if "refuse_without_options" in entry:
        with pytest.raises(ProductError, match=entry["refuse_without_options"]):
            open_product(header)
    expect = entry["expect"]
    with open_product(header, **overrides(entry)) as scene:
        meta = scene.meta
    assert (meta.sensor, meta.level) == (expect["sensor"], expect["level"])
    assert list(meta.shape) == expect["shape"]
    np.testing.assert_allclose(meta.wavelength_nm[[0, -1]], expect["wavelength_nm"], rtol=0, atol=1e-6)
    if expect["fwhm_nm"] == "estimated":
        assert meta.fwhm_source == "estimated from band spacing"
    else:
        assert meta.fwhm_source != "estimated from band spacing"
        np.testing.assert_allclose(meta.fwhm_nm[[0, -1]], expect["fwhm_nm"], rtol=0, atol=1e-6)
    assert meta.crs == expect.get("crs")
    if expect.get("transform") is None:
        assert meta.transform is None
    else:
        np.testing.assert_allclose(meta.transform, expect["transform"], rtol=1e-12, atol=1e-9)
    if "gsd_m" in expect:
        assert meta.gsd_m == pytest.approx(expect["gsd_m"], rel=1e-3)
    assert meta.nodata == expect.get("nodata")
    if "datetime" in expect:
        assert meta.datetime.strftime("%Y-%m-%dT%H:%M:%SZ") == expect["datetime"]
    assert np.isfinite(meta.wavelength_nm).all() and (meta.fwhm_nm > 0).all()


GEOREFERENCED = [e for e in ENTRIES if "georef" in e or "georef_refuse" in e]  # stored headers only


@pytest.mark.parametrize("entry", GEOREFERENCED, ids=[e["header"] for e in GEOREFERENCED])
def test_map_info_of_refused_headers(entry):
    """Headers refused as products (no wavelengths, say) still test the georeferencing on its own."""
    header = EnviHeader.read(CORPUS / "headers" / entry["header"])
    if "georef_refuse" in entry:
        with pytest.raises(ProductError, match=entry["georef_refuse"]):
            parse_map_info(header)
        return
    georef = parse_map_info(header)
    assert georef.crs == entry["georef"]["crs"]
    np.testing.assert_allclose(georef.transform, entry["georef"]["transform"], rtol=1e-12, atol=1e-9)
    assert georef.gsd_m == pytest.approx(entry["georef"]["gsd_m"], rel=1e-3)


def coverage_table(entries: list[dict[str, Any]]) -> str:
    """The README's coverage table: one row per header, what it exercises and how it ends."""
    rows = [
        "| header | instrument / product | written by | exercises | outcome |",
        "|---|---|---|---|---|",
    ]
    for entry in entries:
        refusal = entry.get("refuse", "").replace(chr(92), "")  # drop the regular expression's escapes
        outcome = "read" if "expect" in entry else f"refused: {refusal}"
        if "expect" in entry and entry.get("options"):
            outcome += f" with {', '.join(f'`--{k}`' for k in entry['options'])}"
            outcome += "; refused without" if "refuse_without_options" in entry else ""
        name = entry_id(entry).replace("|", "\\|")
        rows.append(
            f"| `{name}` | {entry['sensor_family']} | {entry['writer']} | {'; '.join(entry['covers'])} | {outcome} |"
        )
    return "\n".join(rows)


def test_readme_coverage_table_is_current():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert coverage_table(ENTRIES) in readme, "regenerate the README table with tests/test_conformance.py"


# Reader rules the corpus revealed, checked on variants of its real headers.


@pytest.mark.parametrize(
    "hemisphere, crs",
    [
        ("T", "EPSG:32615"),
        ("North", "EPSG:32615"),
        ("H", "EPSG:32715"),
        ("South", "EPSG:32715"),
        ("S", "EPSG:32715"),
    ],
)
def test_utm_hemisphere_may_be_a_latitude_band_letter(hemisphere, crs):
    """Spectronon writes the MGRS latitude band (``15, T``) where ENVI writes ``North``; C-M are south."""
    header = EnviHeader.read(CORPUS / "headers" / PIKA)
    fields = dict(header.fields)
    fields["map info"] = fields["map info"].replace(", T,", f", {hemisphere},")
    assert parse_map_info(EnviHeader(header.path, fields)).crs == crs


def test_utm_hemisphere_that_is_no_band_letter_is_refused():
    header = EnviHeader.read(CORPUS / "headers" / PIKA)
    fields = dict(header.fields)
    fields["map info"] = fields["map info"].replace(", T,", ", I,")
    with pytest.raises(
        ProductError, match="UTM hemisphere 'I' is neither North/South nor a latitude band letter"
    ):
        parse_map_info(EnviHeader(header.path, fields))


@pytest.mark.parametrize(
    "line", ["z plot titles = {Wavenumbers (cm-1), Unknown}", "wavelength units = Wavenumber"]
)
def test_wavenumber_axis_is_refused_not_read_as_nanometres(line, tmp_path):
    """A Raman map's 650-4000 cm-1 would pass for a VNIR-SWIR band set if read as nm."""
    entry = {"header": "headwall_darkReference.hdr"}
    header = stage(entry, tmp_path)
    text = header.read_text(encoding="latin-1").replace("wavelength units = nm\n", "")
    header.write_text(text.replace("default bands", f"{line}\ndefault bands"), encoding="latin-1")
    with pytest.raises(ProductError, match=r"spectral axis is in wavenumbers \(cm-1\), not wavelengths"):
        open_product(header, level="L1", scale=1.0)
