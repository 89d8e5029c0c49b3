"""Top-of-atmosphere solar irradiance and apparent reflectance, for sensor-independent QA indices.

A 5778 K blackbody scaled to ≈190 µW cm⁻² nm⁻¹ at 500 nm stands in for a measured solar spectrum:
QA thresholds (cloud, water, dark) only need apparent reflectance to within ~10 %, and a built-in
model keeps the project free of downloaded reference data.
"""

from __future__ import annotations

import numpy as np

_PLANCK_H = 6.62607015e-34
_LIGHT_C = 2.99792458e8
_BOLTZMANN_K = 1.380649e-23
_SUN_TEMPERATURE_K = 5778.0
_IRRADIANCE_AT_500NM = 190.0  # µW cm⁻² nm⁻¹ at 1 AU


def _planck(wavelength_nm: np.ndarray) -> np.ndarray:
    lam = np.asarray(wavelength_nm, dtype=np.float64) * 1e-9
    return 1.0 / (lam**5 * np.expm1(_PLANCK_H * _LIGHT_C / (lam * _BOLTZMANN_K * _SUN_TEMPERATURE_K)))


def solar_irradiance(wavelength_nm: np.ndarray) -> np.ndarray:
    """Exo-atmospheric solar spectral irradiance at 1 AU in µW cm⁻² nm⁻¹."""
    return _IRRADIANCE_AT_500NM * _planck(wavelength_nm) / _planck(np.array([500.0]))[0]


def apparent_reflectance_factor(
    wavelength_nm: np.ndarray, solar_zenith_deg: float | None, earth_sun_au: float | None = None
) -> np.ndarray:
    """Per-band factor turning radiance into apparent (TOA) reflectance: ρ* = L · π d² / (E₀ cos θ)."""
    zenith = 30.0 if solar_zenith_deg is None else min(float(solar_zenith_deg), 85.0)
    distance = 1.0 if earth_sun_au is None else float(earth_sun_au)
    return np.pi * distance**2 / (solar_irradiance(wavelength_nm) * np.cos(np.radians(zenith)))
