"""The built-in demo input of ``make build-dataset``: every sensor, L1 and L2, several flight lines.

Products come from the realistic generator, so the demo runs offline with nothing but the project's
dependencies. Generation is skipped when the same demo (same parameters) already exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hyper400k.synth import generate

SENSORS = ("aviris-classic", "aviris-ng", "aviris-3")
MARKER = "demo.json"


def generate_demo_input(
    folder: Path, *, lines: int = 512, samples: int = 512, flight_lines: int = 2
) -> list[Path]:
    """Write ``flight_lines`` flight lines per sensor, each as an L1 and an L2 product; return their data files.

    The second AVIRIS-3 flight line is written as NetCDF, so the demo exercises every reader.
    """
    params = {"lines": lines, "samples": samples, "flight_lines": flight_lines}
    marker = folder / MARKER
    if marker.is_file():
        recorded = json.loads(marker.read_text())
        if recorded["params"] == params and all(Path(p).exists() for p in recorded["products"]):
            return [Path(p) for p in recorded["products"]]
    products = []
    for sensor_index, sensor in enumerate(SENSORS):
        for line in range(flight_lines):
            seed = 1000 * (sensor_index + 1) + line
            fmt = "netcdf" if sensor == "aviris-3" and line % 2 == 1 else "envi"
            for level in ("L1", "L2"):
                products.append(generate(sensor, level, lines, samples, folder / sensor, seed=seed, fmt=fmt))
    tmp = marker.with_name(MARKER + ".tmp")
    tmp.write_text(json.dumps({"params": params, "products": [str(p) for p in products]}))
    os.replace(tmp, marker)
    return products
