"""Surface reflectance spectra: analytic models of common materials, plus an optional ENVI library.

The built-in models are smooth functions of wavelength written from the textbook shapes of each
material class (not fitted to or copied from any library), so they can be evaluated on any band grid:
vegetation has the chlorophyll well near 680 nm, the red edge near 715 nm, a NIR plateau and the
liquid-water dips at 970/1200/1450/1940 nm; soils rise with wavelength and carry OH/clay features;
water is dark and falls into the NIR; asphalt and concrete are grey; clouds are bright and flat.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import spectral

# Library entries that are not surfaces: the wavelength and bandpass records and per-spectrum error bars.
_NOT_SURFACES = ("error bars", "wavelengths in", "resolution in")
_LIBRARY_IGNORE = -1.0e30


def _gauss(wl: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((wl - centre) / width) ** 2)


def _sigmoid(wl: np.ndarray, centre: float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(wl - centre) / width))


def liquid_water_absorption(wl: np.ndarray) -> np.ndarray:
    """Approximate absorption coefficient of liquid water (cm⁻¹): narrow bands on a rising continuum."""
    bands = 0.45 * _gauss(wl, 970, 25) + 1.0 * _gauss(wl, 1200, 40) + 20 * _gauss(wl, 1450, 60)
    bands += 40 * _gauss(wl, 1940, 70)
    return bands + 6 * _sigmoid(wl, 1400, 40) + 18 * _sigmoid(wl, 2050, 60)


def green_vegetation(wl: np.ndarray, plateau: float = 0.45, water_cm: float = 0.03) -> np.ndarray:
    """A green canopy: dark visible with a green peak, steep red edge, NIR plateau, leaf-water dips."""
    visible = 0.025 + 0.065 * _gauss(wl, 555, 35) - 0.01 * _gauss(wl, 675, 20)
    dry_leaf = visible + (plateau - 0.025) * _sigmoid(wl, 715, 11) * (1 - 0.15 * _sigmoid(wl, 1800, 300))
    return dry_leaf * np.exp(-2 * water_cm * liquid_water_absorption(wl))


def dry_grass(wl: np.ndarray) -> np.ndarray:
    """Senescent grass: no chlorophyll well, a gentle rise, cellulose/lignin features near 2100/1730 nm."""
    base = 0.06 + 0.30 * (1 - np.exp(-(wl - 380) / 400)) + 0.05 * _sigmoid(wl, 700, 30)
    features = 0.06 * _gauss(wl, 2100, 45) + 0.02 * _gauss(wl, 1730, 25) + 0.03 * _gauss(wl, 1200, 60)
    return (base - features) * np.exp(-2 * 0.006 * liquid_water_absorption(wl))


def soil(wl: np.ndarray, brightness: float = 1.0, clay: float = 0.05) -> np.ndarray:
    """Bare soil: convex rise with wavelength, iron-oxide shoulder, OH/water and Al-OH (clay) features."""
    base = 0.06 + 0.28 * (1 - np.exp(-(wl - 380) / 450)) - 0.02 * _gauss(wl, 900, 80)
    features = 0.03 * _gauss(wl, 1410, 20) + 0.04 * _gauss(wl, 1915, 30) + clay * _gauss(wl, 2205, 18)
    return brightness * (base - features - 0.04 * _sigmoid(wl, 2300, 80))


def water(wl: np.ndarray) -> np.ndarray:
    """Clear water: a few per cent in the blue-green, nearly black beyond 900 nm."""
    return 0.004 + 0.05 * _gauss(wl, 470, 110)


def asphalt(wl: np.ndarray) -> np.ndarray:
    """Asphalt: dark, slowly brightening, weak hydrocarbon features at 1730 and 2310 nm."""
    return 0.05 + 0.07 * (wl - 380) / 2100 - 0.01 * _gauss(wl, 1730, 20) - 0.01 * _gauss(wl, 2310, 25)


def concrete(wl: np.ndarray) -> np.ndarray:
    """Concrete: bright grey with a carbonate feature near 2340 nm and weak bound-water bands."""
    base = 0.22 + 0.12 * (1 - np.exp(-(wl - 380) / 400))
    return base - 0.03 * _gauss(wl, 2340, 30) - 0.02 * _gauss(wl, 1910, 40) - 0.01 * _gauss(wl, 1420, 30)


def cloud(wl: np.ndarray) -> np.ndarray:
    """A thick water cloud: ~0.8 and flat in the VNIR, lower in the SWIR where droplets absorb."""
    swir = 0.15 * _sigmoid(wl, 1250, 120) + 0.12 * _gauss(wl, 1500, 70) + 0.18 * _gauss(wl, 2020, 90)
    return 0.82 - swir - 0.12 * _sigmoid(wl, 2100, 100)


# (name, model, prevalence bias in field standard deviations): vegetation and soil dominate a scene.
_MATERIALS = (
    ("broadleaf vegetation", green_vegetation, 0.5),
    ("conifer forest", lambda wl: 0.7 * green_vegetation(wl, plateau=0.3, water_cm=0.035), 0.0),
    ("dry grass", dry_grass, 0.2),
    ("sandy soil", lambda wl: soil(wl, brightness=1.3, clay=0.02), 0.0),
    ("clay soil", lambda wl: soil(wl, brightness=0.85, clay=0.08), 0.0),
    ("water", water, -0.3),
    ("asphalt", asphalt, -0.3),
    ("concrete", concrete, -0.4),
)


def builtin_materials(wavelength_nm: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, reflectance ``(materials, bands)`` and prevalence biases of the built-in surfaces."""
    wl = np.asarray(wavelength_nm, dtype=np.float64)
    names = [name for name, _, _ in _MATERIALS]
    spectra = np.stack([np.clip(model(wl), 0.0, 1.0) for _, model, _ in _MATERIALS])
    return names, spectra, np.array([bias for _, _, bias in _MATERIALS])


def load_speclib(path: Path, wavelength_nm: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Usable surface spectra of an ENVI spectral library, resampled to ``wavelength_nm``.

    Dropped: non-surface records (wavelength/bandpass tables, error bars), spectra holding the data-ignore
    value (deleted points) or non-finite values, and spectra outside [0, 1.2] or nearly black (< 0.02 max).
    The library's band centres (µm or nm per its header) need not be monotonic; they are sorted first.
    """
    library = spectral.envi.open(str(path))
    centres = np.asarray(library.bands.centers, dtype=np.float64)
    unit = (library.bands.band_unit or "").lower()
    if unit.startswith("micro") or centres.max() < 100:
        centres = centres * 1000.0
    order = np.argsort(centres, kind="stable")
    values = np.asarray(library.spectra, dtype=np.float64)[:, order]
    names = [str(name).strip() for name in library.names]
    keep = np.isfinite(values).all(axis=1) & (values > _LIBRARY_IGNORE).all(axis=1)
    keep &= (values.min(axis=1, initial=0.0) >= 0.0) & (values.max(axis=1, initial=0.0) <= 1.2)
    keep &= values.max(axis=1, initial=0.0) >= 0.02
    keep &= np.array([not any(tag in name.lower() for tag in _NOT_SURFACES) for name in names])
    wl = np.asarray(wavelength_nm, dtype=np.float64)
    resampled = [np.interp(wl, centres[order], values[i]) for i in np.flatnonzero(keep)]
    return [names[i] for i in np.flatnonzero(keep)], np.array(resampled).reshape(-1, wl.size)
