"""Spatially coherent random fields that any strip of lines can evaluate on its own.

A field is a sum of octaves of *value noise*: pseudo-random values on a coarse lattice (one lattice
cell = ``scale`` pixels), drawn by hashing the lattice coordinates with the seed, and blended by a
uniform cubic B-spline. Each pixel depends only on its 4 × 4 neighbouring lattice values, so a strip
computes exactly the values the whole image would hold there: strips join seamlessly, memory is
bounded by the strip, and nothing depends on how the product is cut into strips. The B-spline is C²,
so the analytic derivative (used for terrain slope) is continuous too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_ROW_MUL = _U64(0xD1B54A32D192ED03)
_COL_MUL = _U64(0xABC98388FB8FAC03)


def _mix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijective scramble of 64-bit integers (wrapping arithmetic)."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _as_u64(values: np.ndarray) -> np.ndarray:
    """Signed integers as their two's-complement 64-bit pattern (negative lattice indices included)."""
    return np.asarray(values, dtype=np.int64).view(np.uint64)


def lattice_values(seed: int, layer: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Uniform values in [-1, 1) at lattice points ``rows × cols``, a pure function of its arguments."""
    key = _mix64(_as_u64(np.array([seed, layer])) * _GOLDEN)
    key = _mix64(key[:1] ^ _mix64(key[1:] + _GOLDEN))
    hashed = _mix64((_as_u64(rows)[:, None] * _ROW_MUL) ^ (_as_u64(cols)[None, :] * _COL_MUL) ^ key)
    return (hashed >> _U64(11)).astype(np.float64) * (2.0 / 2.0**53) - 1.0


def _bspline_weights(t: np.ndarray, derivative: bool) -> np.ndarray:
    """The four cubic B-spline weights (or their derivatives in t) for fractional positions ``t``: (4, n)."""
    if derivative:
        return np.stack([-0.5 * (1 - t) ** 2, 1.5 * t**2 - 2 * t, -1.5 * t**2 + t + 0.5, 0.5 * t**2])
    return np.stack([(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3]) / 6.0


def _axis(coords: np.ndarray, scale: float, derivative: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Lattice base index (relative to the first needed lattice point), weights, and that first point."""
    position = coords / scale
    base = np.floor(position).astype(np.int64)
    weights = _bspline_weights(position - base, derivative)
    if derivative:
        weights = weights / scale
    first = int(base.min()) - 1
    return base - 1 - first, weights, first


# Variance of one octave: lattice values have variance 1/3, smoothed by the weights in both axes.
_T = (np.arange(4096) + 0.5) / 4096
_OCTAVE_STD = float(np.sqrt((1.0 / 3.0) * np.mean((_bspline_weights(_T, False) ** 2).sum(axis=0)) ** 2))


def _octave(
    seed: int, layer: int, scale: float, rows: np.ndarray, cols: np.ndarray, d_row: bool, d_col: bool
) -> np.ndarray:
    """One octave (or its derivative along rows / columns) on ``rows × cols`` pixels, unit variance."""
    r_idx, r_w, r_first = _axis(rows, scale, d_row)
    c_idx, c_w, c_first = _axis(cols, scale, d_col)
    lattice = lattice_values(
        seed,
        layer,
        np.arange(r_first, r_first + int(r_idx.max()) + 4),
        np.arange(c_first, c_first + int(c_idx.max()) + 4),
    )
    along_cols = sum(c_w[k][None, :] * lattice[:, c_idx + k] for k in range(4))
    return sum(r_w[k][:, None] * along_cols[r_idx + k, :] for k in range(4)) / _OCTAVE_STD


@dataclass(frozen=True)
class SmoothField:
    """A stationary random field with roughly unit standard deviation: a weighted sum of octaves.

    ``layer`` separates independent fields drawn from the same seed (one per material, terrain, …).
    """

    seed: int
    layer: int
    scales_px: tuple[float, ...]
    weights: tuple[float, ...]

    def _evaluate(self, row0: int, row1: int, samples: int, d_row: bool, d_col: bool) -> np.ndarray:
        rows = np.arange(row0, row1, dtype=np.float64)
        cols = np.arange(samples, dtype=np.float64)
        norm = float(np.sqrt(np.sum(np.square(self.weights))))
        total = np.zeros((row1 - row0, samples))
        for octave, (scale, weight) in enumerate(zip(self.scales_px, self.weights, strict=True)):
            layer = self.layer * 64 + octave
            total += weight * _octave(self.seed, layer, scale, rows, cols, d_row, d_col)
        return total / norm

    def strip(self, row0: int, row1: int, samples: int) -> np.ndarray:
        """Field values on lines ``[row0, row1)`` × all samples: float64 ``(row1 - row0, samples)``."""
        return self._evaluate(row0, row1, samples, False, False)

    def gradient(self, row0: int, row1: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact derivatives per pixel along lines (rows) and along samples (columns) on the same strip."""
        return self._evaluate(row0, row1, samples, True, False), self._evaluate(
            row0, row1, samples, False, True
        )
