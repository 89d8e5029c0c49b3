"""Error types raised by hyper400k, each naming the file and the problem.

Callers (the CLI, the dataset build) catch :class:`ProductError` to record a failed product
and carry on with the rest; anything else is a bug.
"""

from __future__ import annotations

from pathlib import Path


class ProductError(Exception):
    """A product cannot be read correctly. The message always names the offending file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class HeaderError(ProductError):
    """An ENVI header is malformed, incomplete or disagrees with its data file."""


class UnsupportedProductError(ProductError):
    """The file is not a product layout or sensor that hyper400k knows how to read."""


class EmptyProductError(ProductError):
    """The product holds no valid pixel at all (every value is fill / nodata)."""
