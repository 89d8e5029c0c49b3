"""Synthetic hyperspectral products in each sensor's real on-disk format, for tests and benchmarks.

``generate(sensor, level, lines, samples, output)`` writes an AVIRIS-Classic, AVIRIS-NG or AVIRIS-3
L1 radiance or L2 reflectance product of any size (strip by strip, bounded memory) with its
companions, on the sensor's real band grid, with physically shaped content: coherent landscapes of
analytic (or spectral-library) materials, a simple atmosphere, sun/view geometry, sensor noise,
saturated pixels, a dead detector column in some flight lines, clouds, and fill outside a rotated ortho swath.
"""

from hyper400k.synth.generate import generate

__all__ = ["generate"]
