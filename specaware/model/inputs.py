"""The model's input contract: a loader batch dict checked and turned into tensors, one sample at a time.

Keys (the streaming loader's batch): ``image`` (B, C, H, W) float in physical units, ``wavelength`` (B, C) nm,
``fwhm`` (B, C) nm, ``gsd`` (B,) m, ``sensor`` list of B names, ``level`` list of B names, optional ``band_mask``
(B, C) bool (False = padding band) and optional ``valid`` (B, H, W) bool (False = pixel excluded from the loss).

Everything is per sample: wavelengths, FWHM, GSD, sensor and level may all differ inside a batch. Padding bands are
neutralised here (image 0, wavelength and FWHM set to in-range values) so nothing downstream can see their contents;
the modules additionally mask them out of every cross-band reduction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from specaware.config import ModelConfig
from specaware.model.fourier import check_wavelength_range
from specaware.model.text import LEVELS, SENSORS, lookup


@dataclass(frozen=True)
class SpectralBatch:
    """A validated batch; see the module docstring for the meaning of each field."""

    image: Tensor
    wavelength: Tensor
    fwhm: Tensor
    gsd: Tensor
    sensor: Tensor
    level: Tensor
    band_mask: Tensor
    valid: Tensor


def _names(value: str | Sequence[str], batch: int, what: str) -> list[str]:
    names = [value] * batch if isinstance(value, str) else [str(name) for name in value]
    if len(names) != batch:
        raise ValueError(f"batch has {batch} images but {len(names)} {what} names")
    return names


def _float(value: Any, device: torch.device) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float32, device=device)


def parse_batch(batch: Mapping[str, Any], config: ModelConfig) -> SpectralBatch:
    """Check shapes, units and names of a loader batch; raise ``ValueError`` naming the first problem found."""
    image = batch["image"]
    if not isinstance(image, Tensor) or image.ndim != 4:
        raise ValueError("image must be a (B, C, H, W) tensor")
    size, bands, height, width = image.shape
    device = image.device
    k = config.patch_size
    if height % k or width % k:
        raise ValueError(f"image {height}x{width} is not a multiple of the patch size {k}")
    wavelength = _float(batch["wavelength"], device)
    fwhm = _float(batch["fwhm"], device)
    for label, value in (("wavelength", wavelength), ("fwhm", fwhm)):
        if value.shape != (size, bands):
            raise ValueError(f"{label} has shape {tuple(value.shape)}, expected (B, C) = {(size, bands)}")
    gsd = _float(batch["gsd"], device).reshape(-1)
    if gsd.shape != (size,):
        raise ValueError(f"gsd has {gsd.numel()} values for {size} images")
    if not bool(torch.isfinite(gsd).all() and (gsd > 0).all()):
        raise ValueError(f"gsd must be positive metres, got {gsd.tolist()}")
    band_mask = batch.get("band_mask")
    if band_mask is None:
        band_mask = torch.ones(size, bands, dtype=torch.bool, device=device)
    band_mask = torch.as_tensor(band_mask, device=device).to(torch.bool)
    if band_mask.shape != (size, bands):
        raise ValueError(f"band_mask has shape {tuple(band_mask.shape)}, expected {(size, bands)}")
    if not bool(band_mask.any(dim=1).all()):
        raise ValueError("every sample needs at least one unmasked band")
    valid = batch.get("valid")
    if valid is None:
        valid = torch.ones(size, height, width, dtype=torch.bool, device=device)
    valid = torch.as_tensor(valid, device=device).to(torch.bool)
    if valid.shape != (size, height, width):
        raise ValueError(f"valid has shape {tuple(valid.shape)}, expected {(size, height, width)}")

    check_wavelength_range(wavelength, band_mask, config.wavelength_range_nm)
    bad_fwhm = band_mask & ~(torch.isfinite(fwhm) & (fwhm > 0))
    if bool(bad_fwhm.any()):
        sample, band = (int(i) for i in bad_fwhm.nonzero()[0])
        raise ValueError(
            f"fwhm {float(fwhm[sample, band]):g} nm (sample {sample}, band {band}) is not positive"
        )

    # Non-finite values of real bands make their pixel invalid (left out of the loss) and are zeroed, as are
    # padding bands. The common case (no padding, finite sum, so every value finite) passes the image untouched.
    if not bool(band_mask.all() and torch.isfinite(image.sum())):
        finite = torch.isfinite(image) | ~band_mask[:, :, None, None]
        valid = valid & finite.all(dim=1)
        image = torch.where(finite & band_mask[:, :, None, None], image, torch.zeros((), dtype=image.dtype))

    sensor = torch.tensor(lookup(_names(batch["sensor"], size, "sensor"), SENSORS, "sensor"), device=device)
    level = torch.tensor(lookup(_names(batch["level"], size, "level"), LEVELS, "level"), device=device)
    return SpectralBatch(
        image=image,
        wavelength=torch.where(
            band_mask, wavelength, torch.full_like(wavelength, config.wavelength_range_nm[0])
        ),
        fwhm=torch.where(band_mask, fwhm, torch.full_like(fwhm, config.fwhm_scale_nm[0])),
        gsd=gsd,
        sensor=sensor,
        level=level,
        band_mask=band_mask,
        valid=valid,
    )
