"""ENVI keys that change how values or geometry are read: gains and offsets, pixel size, subset origin."""

from __future__ import annotations

import numpy as np
import pytest

from hyper400k.errors import HeaderError
from hyper400k.product import open_product


def add_lines(data, *lines: str) -> None:
    header = data.with_name(data.name + ".hdr")
    header.write_text(header.read_text() + "".join(line + "\n" for line in lines))


def listed(value: float, count: int = 425) -> str:
    return "{" + ", ".join([repr(value)] * count) + "}"


def test_data_gain_and_offset_values_are_applied(ng_copy):
    reference = open_product(ng_copy).read_all()
    add_lines(ng_copy, f"data gain values = {listed(2.0)}", f"data offset values = {listed(-1.5)}")
    with open_product(ng_copy) as scene:
        values, notes = scene.read_all(), scene.meta.notes
    np.testing.assert_array_equal(np.isnan(values), np.isnan(reference))
    np.testing.assert_allclose(values, reference * 2.0 - 1.5, rtol=1e-6, equal_nan=True)
    assert "values x 'data gain values' + 'data offset values'" in notes
    scaled = open_product(ng_copy, scale=3.0).read_all()  # an explicit scale wins over the header's gains
    np.testing.assert_allclose(scaled, reference * 3.0, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize(
    "line, problem",
    [
        (f"data gain values = {listed(2.0, 424)}", "'data gain values' lists 424 values for 425 bands"),
        (f"data gain values = {listed(0.0)}", "'data gain values' holds a zero gain"),
        (f"data offset values = {listed(float('inf'))}", "'data offset values' holds a non-finite value"),
    ],
)
def test_bad_gains_are_refused(ng_copy, line, problem):
    add_lines(ng_copy, line)
    with pytest.raises(HeaderError, match=problem):
        open_product(ng_copy)


def test_pixel_size_gives_the_gsd_of_an_unprojected_product(ng_copy):
    assert open_product(ng_copy).meta.gsd_m is None  # no map info and no loc companion beside this copy
    add_lines(ng_copy, "pixel size = {16.4, 16.4, units=Feet}")
    meta = open_product(ng_copy).meta
    assert meta.gsd_m == pytest.approx(16.4 * 0.3048)
    assert meta.crs is None and meta.footprint is None


def test_subset_origin_and_sensor_type_are_kept_in_the_notes(ng_copy):
    add_lines(ng_copy, "x start = 541", "y start = 7001", "sensor type = AVIRIS-NG")
    notes = open_product(ng_copy).meta.notes
    assert "a subset starting at sample 541, line 7001 of its original (x start / y start, 1-based)" in notes
    assert "header 'sensor type' = AVIRIS-NG" in notes
