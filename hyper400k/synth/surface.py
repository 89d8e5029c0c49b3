"""Surface reflectance of a synthetic scene, computable on any strip of lines.

Each material has its own smooth random field; a low-temperature softmax across them gives abundances
that are nearly pure inside patches and mix only along their borders (fields, forests, roads, lakes).
A fine texture field varies brightness within a patch, and a large-scale field thresholded at the
scene's cloud cover blends in cloud patches with soft edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hyper400k.synth.scenario import CLOUD_LAYER, MATERIAL_LAYER, TEXTURE_LAYER, Scenario
from hyper400k.synth.spectra import builtin_materials, cloud, load_speclib

_TEMPERATURE = 0.12  # softmax temperature in units of the fields' standard deviation
_LIBRARY_SURFACES = 6  # spectra drawn from a spectral library, when one is given
_MATERIAL_SCALES_M = (400.0, 120.0, 40.0)
_MATERIAL_WEIGHTS = (1.0, 0.6, 0.3)


class Surface:
    """The materials of one scenario and their reflectance on strips of lines.

    ``names`` / ``spectra`` list every material in the mix (built-in first, then library surfaces).
    """

    def __init__(self, scenario: Scenario, wavelength_nm: np.ndarray, speclib: Path | None = None) -> None:
        names, spectra, bias = builtin_materials(wavelength_nm)
        if speclib is not None:
            lib_names, lib_spectra = load_speclib(speclib, wavelength_nm)
            if not lib_names:
                raise ValueError(f"spectral library {speclib} holds no usable reflectance spectra")
            rng = np.random.default_rng([scenario.seed, 0x5BEC])
            chosen = rng.choice(len(lib_names), size=min(_LIBRARY_SURFACES, len(lib_names)), replace=False)
            names = names + [lib_names[i] for i in chosen]
            spectra = np.vstack([spectra, lib_spectra[chosen]])
            bias = np.concatenate([bias, np.zeros(chosen.size)])
        self.names: list[str] = names
        self.spectra = spectra.astype(np.float32)
        self._bias = bias
        self._samples = scenario.samples
        self._fields = [
            scenario.field(MATERIAL_LAYER + i, _MATERIAL_SCALES_M, _MATERIAL_WEIGHTS)
            for i in range(len(names))
        ]
        self._texture = scenario.field(TEXTURE_LAYER, (25.0, 8.0), (1.0, 1.0))
        self._clouds = scenario.field(CLOUD_LAYER, (600.0, 200.0), (1.0, 0.4))
        self._cloud_threshold = scenario.cloud_threshold
        self._cloud_spectrum = cloud(np.asarray(wavelength_nm, dtype=np.float64)).astype(np.float32)

    def abundances(self, row0: int, row1: int) -> np.ndarray:
        """Material fractions ``(lines, samples, materials)`` summing to one per pixel."""
        logits = np.stack([f.strip(row0, row1, self._samples) for f in self._fields], axis=-1) + self._bias
        logits /= _TEMPERATURE
        logits -= logits.max(axis=-1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=-1, keepdims=True)
        return logits

    def cloud_fraction(self, row0: int, row1: int) -> np.ndarray:
        """Cloud cover per pixel in [0, 1] (soft-edged patches)."""
        return np.clip(
            (self._clouds.strip(row0, row1, self._samples) - self._cloud_threshold) / 0.5, 0.0, 1.0
        )

    def reflectance(self, row0: int, row1: int) -> np.ndarray:
        """Reflectance of lines ``[row0, row1)`` as float32 ``(lines * samples, bands)``, row-major pixels."""
        fractions = self.abundances(row0, row1).astype(np.float32).reshape(-1, len(self.names))
        values = fractions @ self.spectra
        brightness = 1.0 + 0.06 * self._texture.strip(row0, row1, self._samples).reshape(-1)
        clouds = self.cloud_fraction(row0, row1).reshape(-1)
        values *= ((1.0 - clouds) * brightness).astype(np.float32)[:, None]
        values += np.multiply.outer(clouds.astype(np.float32), self._cloud_spectrum)
        return values
