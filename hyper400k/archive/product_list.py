"""The published Hyper-400K product list (``catalog/hyper400k/<sensor>_<level>.txt``) and queries on it.

Each file holds one product identifier per line: the product's file name without extension, as the
corpus authors list it. The file name says the sensor and level; :func:`select` narrows the list by
sensor, level and acquisition year, and :func:`read_ids` reads a user's own list of identifiers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hyper400k.sensors import ProductName, identify
from hyper400k.text_files import read_text_file

PRESET_DIR = Path(__file__).resolve().parents[2] / "catalog" / "hyper400k"
"""Where the shipped list lives (one ``<sensor>_<level>.txt`` per sensor × level)."""

LIST_SENSORS: dict[str, str] = {
    "AVIRIS-3": "aviris-3",
    "AVIRIS-C": "aviris-classic",
    "AVIRIS-NG": "aviris-ng",
}
"""File-name prefix of each list -> the sensor name hyper400k uses."""


class ProductListError(ValueError):
    """A product list or identifier cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class ListedProduct:
    """One identifier of a list and what its name says."""

    product_id: str
    name: ProductName

    @property
    def year(self) -> int:
        return self.name.datetime.year


def load_preset(directory: Path = PRESET_DIR) -> list[ListedProduct]:
    """Every product of the shipped list, checked against the sensor and level its file declares."""
    files = sorted(directory.glob("*_L[12].txt"))
    if not files:
        raise ProductListError(f"{directory}: no <sensor>_<level>.txt product lists here")
    products: list[ListedProduct] = []
    for path in files:
        prefix, level = path.stem.rsplit("_", 1)
        sensor = LIST_SENSORS.get(prefix)
        if sensor is None:
            raise ProductListError(f"{path}: unknown sensor {prefix!r}; known: {', '.join(LIST_SENSORS)}")
        for listed in read_ids(path):
            if (listed.name.sensor, listed.name.level) != (sensor, level):
                raise ProductListError(
                    f"{path}: {listed.product_id} is {listed.name.sensor} {listed.name.level}, "
                    f"not {sensor} {level}"
                )
            products.append(listed)
    return products


def read_ids(path: Path) -> list[ListedProduct]:
    """Identifiers from a text file (one a line; blank lines and ``#`` comments skipped), each identified."""
    try:
        lines = read_text_file(path).splitlines()
    except OSError as exc:
        raise ProductListError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    products = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            products.append(identify_id(text, f"{path}:{number}"))
    return products


def identify_id(product_id: str, where: str = "") -> ListedProduct:
    """An identifier as a :class:`ListedProduct`; names no sensor claims, or companion files, are errors."""
    name = identify(product_id)
    prefix = f"{where}: " if where else ""
    if name is None:
        raise ProductListError(
            f"{prefix}{product_id!r} is not an AVIRIS-Classic, AVIRIS-NG or AVIRIS-3 product name"
        )
    if name.role != "data":
        raise ProductListError(f"{prefix}{product_id!r} is a '{name.role}' companion file, not a product")
    return ListedProduct(product_id, name)


def select(
    products: Iterable[ListedProduct],
    *,
    sensors: Sequence[str] = (),
    levels: Sequence[str] = (),
    years: Sequence[int] = (),
) -> list[ListedProduct]:
    """The products matching every given filter (an empty filter keeps everything), in list order."""
    return [
        p
        for p in products
        if (not sensors or p.name.sensor in sensors)
        and (not levels or p.name.level in levels)
        and (not years or p.year in years)
    ]


def parse_years(text: str) -> list[int]:
    """``2019``, ``2019,2021`` or ``2016-2018`` (ranges inclusive) as a list of years."""
    years: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        try:
            if "-" in part:
                first, last = (int(v) for v in part.split("-", 1))
                if last < first:
                    raise ValueError
                years.extend(range(first, last + 1))
            else:
                years.append(int(part))
        except ValueError:
            raise ProductListError(f"years: {part!r} is not a year or a range like 2016-2018") from None
    return years
