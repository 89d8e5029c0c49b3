"""ENVI header parsing on the variants real products use."""

from __future__ import annotations

import numpy as np
import pytest

from hyper400k.bands import band_info_from_header
from hyper400k.envi_header import EnviHeader, format_header, parse_header_text
from hyper400k.errors import HeaderError

MESSY = """ENVI
; a comment line
description = {
  multi-line description
  with = signs inside}
Samples   = 3
LINES=2
bands = 4
Data Type = 2
interleave = BIL
byte order = 1
Wavelength Units = Micrometers
wavelength = {0.40012345,
   0.50000001, 0.6,
 0.7}
fwhm = {0.01, 0.01, 0.01, 0.01}
bbl = {1, 0, 1, 1}
"""


def test_keys_any_case_spacing_multiline_lists(tmp_path):
    path = tmp_path / "x.hdr"
    path.write_text(MESSY)
    header = EnviHeader.read(path)
    assert header.shape == (2, 3, 4)
    assert header.interleave == "bil"
    assert header.dtype == np.dtype(">i2")
    assert "with = signs inside" in header.get("description")
    info = band_info_from_header(header, tmp_path / "x")
    # micrometres normalised to nm at full header precision (GDAL would round to 400 nm)
    assert info.wavelength_nm[0] == pytest.approx(400.12345, abs=1e-9)
    assert info.fwhm_nm.tolist() == pytest.approx([10.0] * 4)
    assert info.bbl.tolist() == [1, 0, 1, 1]


def test_wavelengths_only_in_band_names(tmp_path):
    path = tmp_path / "y.hdr"
    path.write_text(
        "ENVI\nsamples = 1\nlines = 1\nbands = 3\ndata type = 4\n"
        "band names = {band 1 (418.24 Nanometers), band 2 (423.874 Nanometers), band 3 (429.5 Nanometers)}\n"
    )
    info = band_info_from_header(EnviHeader.read(path), tmp_path / "y")
    assert info.wavelength_nm.tolist() == [418.24, 423.874, 429.5]
    assert info.fwhm_source == "estimated from band spacing"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("samples = 1\n", "not an ENVI header"),
        ("ENVI\nwavelength = {1, 2,\n", "never closes"),
        ("ENVI\nthis line is junk\n", "neither 'key = value'"),
    ],
)
def test_malformed_headers_name_file_and_problem(tmp_path, text, problem):
    path = tmp_path / "bad.hdr"
    path.write_text(text)
    with pytest.raises(HeaderError, match=problem) as info:
        EnviHeader.read(path)
    assert str(path) in str(info.value)


def test_missing_wavelengths_is_an_error(tmp_path):
    path = tmp_path / "z.hdr"
    path.write_text("ENVI\nsamples = 1\nlines = 1\nbands = 2\ndata type = 4\n")
    with pytest.raises(HeaderError, match="no wavelengths"):
        band_info_from_header(EnviHeader.read(path), tmp_path / "z")


def test_format_then_parse_round_trips_full_precision():
    text = format_header({"samples": 2, "wavelength": np.array([376.8612345678901, 2500.0])})
    fields = parse_header_text(text)
    assert fields["samples"] == "2"
    assert "376.8612345678901" in fields["wavelength"]
