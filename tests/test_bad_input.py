"""Broken products give a clear error naming the file and the problem, never a silent wrong array."""

from __future__ import annotations

import numpy as np
import pytest

from hyper400k.errors import HeaderError
from hyper400k.product import open_product


def test_truncated_data_file(ng_copy):
    data = ng_copy.read_bytes()
    ng_copy.write_bytes(data[: len(data) - 1000])
    with pytest.raises(HeaderError, match="truncated") as info:
        open_product(ng_copy)
    assert ng_copy.name in str(info.value)


def test_header_size_disagrees(ng_copy):
    with ng_copy.open("ab") as fh:
        fh.write(b"\0" * 4)
    with pytest.raises(HeaderError, match="disagrees"):
        open_product(ng_copy)


@pytest.mark.parametrize(
    "old, new, problem",
    [
        ("interleave = bil", "interleave = bxl", "unknown interleave"),
        ("data type = 4", "data type = 6", "unsupported ENVI data type"),
        ("bands   = 425", "bands   = 424", "lists 425 values for 424 bands"),
        ("lines   = 10", "lines   = ten", "not an integer"),
    ],
)
def test_corrupt_header_fields(ng_copy, old, new, problem):
    header = ng_copy.with_name(ng_copy.name + ".hdr")
    text = header.read_text()
    assert old in text
    header.write_text(text.replace(old, new))
    with pytest.raises(HeaderError, match=problem):
        open_product(ng_copy).read_all()


def test_header_offset_is_honoured(ng_copy):
    header = ng_copy.with_name(ng_copy.name + ".hdr")
    reference = open_product(ng_copy).read_all()
    ng_copy.write_bytes(b"X" * 128 + ng_copy.read_bytes())
    header.write_text(header.read_text().replace("header offset = 0", "header offset = 128"))
    np.testing.assert_array_equal(open_product(ng_copy).read_all(), reference)


def test_unknown_name_without_time_needs_explicit_datetime(ng_copy):
    renamed = ng_copy.with_name("mystery_cube")
    ng_copy.rename(renamed)
    ng_copy.with_name(ng_copy.name + ".hdr").rename(renamed.with_name("mystery_cube.hdr"))
    with pytest.raises(HeaderError, match="no acquisition time.*pass --datetime"):
        open_product(renamed)  # its header's description names a radiance ('rdn') product: level L1
    meta = open_product(renamed, when=__import__("datetime").datetime(2020, 1, 2)).meta
    assert meta.sensor == "other" and meta.level == "L1" and meta.datetime.year == 2020
