"""How each sensor stores each product level on disk: file names, dtype, interleave, scaling, headers.

These follow the real JPL deliveries (see the naming notes in ``hyper400k.sensors``):

- AVIRIS-NG: ``ang<stamp>_rdn_v2p9_img`` / ``ang<stamp>_rfl_v2p9_img``, float32 BIL, nm wavelength and
  fwhm lists, ``data ignore value = -9999``; ``_rdn_v2p9_loc`` and ``_rdn_v2p9_obs_ort`` companions.
- AVIRIS-Classic: ``f<yymmdd>t01p00r<NN>rdn_c_sc01_ort_img``, big-endian int16 BIP, DN = radiance × gain
  with the gains in a ``…rdn_c.gain`` file; reflectance ``…rfl_c_sc01_ort_img`` × 10000. Fill is 0 DN in
  every band and no ``data ignore value`` is declared (as in the historic products).
- AVIRIS-3: ``AV3<stamp>_001_L1B_RDN_<hash>_RDN_ORT`` / ``…_L2A_OE_<hash>_RFL_ORT``, float32 BIL,
  wavelengths in µm and no fwhm key (FWHM in a ``<data name>_wavelengths.txt`` side file), or NetCDF.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hyper400k.envi_header import NUMPY_TO_ENVI
from hyper400k.geo import format_map_info
from hyper400k.sensors import good_band_mask
from hyper400k.sensors.aviris_classic import default_gains
from hyper400k.synth.geometry import LOC_BAND_NAMES, OBS_BAND_NAMES
from hyper400k.synth.scenario import Scenario

ENVI_FILL = -9999.0
RADIANCE_UNITS = "uW cm-2 sr-1 nm-1"
CLASSIC_REFLECTANCE_SCALE = 10000.0


@dataclass(frozen=True)
class ProductFormat:
    """The main data file of a product and what sits beside it.

    ``scale`` converts physical values to stored ones per band (None: stored as is); ``fill`` is the
    stored value outside the swath. ``side_files`` maps file names to their text content.
    """

    data_name: str
    dtype: np.dtype
    interleave: str
    scale: np.ndarray | None
    fill: float
    header: dict[str, object]
    obs_name: str | None = None
    loc_name: str | None = None
    side_files: dict[str, str] = field(default_factory=dict)


def envi_core(
    description: str, sc: Scenario, bands: int, dtype: np.dtype, interleave: str
) -> dict[str, object]:
    """The header keys every ENVI file of a product starts with, in JPL's order."""
    return {
        "description": "{" + description + "}",
        "samples": sc.samples,
        "lines": sc.lines,
        "bands": bands,
        "header offset": 0,
        "file type": "ENVI Standard",
        "data type": NUMPY_TO_ENVI[dtype.str[1:]],
        "interleave": interleave,
        "byte order": 1 if dtype.str[0] == ">" else 0,
        "map info": format_map_info(sc.epsg, sc.transform, sc.rotation_deg, sc.pixel_m),
    }


def companion_header(sc: Scenario, kind: str) -> dict[str, object]:
    """Header of an ``obs`` (11 bands) or ``loc`` (3 bands) companion: float64 BIL, -9999 off-swath."""
    names = OBS_BAND_NAMES if kind == "obs" else LOC_BAND_NAMES
    fields = envi_core(
        f"synthetic {kind} companion, hyper400k.synth seed {sc.seed}", sc, len(names), np.dtype("<f8"), "bil"
    )
    fields["band names"] = list(names)
    fields["data ignore value"] = int(ENVI_FILL)
    return fields


def classic_gains(seed: int) -> np.ndarray:
    """Per-channel gains: the historic 300/600/1200 defaults with a ~1 % per-channel calibration spread."""
    spread = np.random.default_rng([seed, 0x6A1]).normal(0.0, 0.01, 224)
    return np.round(default_gains(224) * (1.0 + spread), 3)


def product_format(
    sc: Scenario, level: str, fmt: str, wavelength_nm: np.ndarray, fwhm_nm: np.ndarray
) -> ProductFormat:
    """The on-disk format of ``sc``'s product at ``level`` (``fmt``: ``envi``, or ``netcdf`` for AVIRIS-3)."""
    what = "radiance" if level == "L1" else "reflectance"
    description = f"synthetic {sc.sensor} {level} {what}, hyper400k.synth seed {sc.seed}"
    bbl = [int(g) for g in good_band_mask(wavelength_nm)]
    stamp = sc.acquired.strftime("%Y%m%dt%H%M%S")
    if sc.sensor == "aviris-ng":
        stem = f"ang{stamp}_rdn_v2p9"
        name = f"{stem}_img" if level == "L1" else f"ang{stamp}_rfl_v2p9_img"
        dtype = np.dtype("<f4")
        header = envi_core(description, sc, wavelength_nm.size, dtype, "bil")
        header |= {"wavelength units": "Nanometers", "wavelength": list(wavelength_nm), "fwhm": list(fwhm_nm)}
        header["data ignore value"] = int(ENVI_FILL)
        if level == "L2":
            header["bbl"] = bbl
        return ProductFormat(name, dtype, "bil", None, ENVI_FILL, header, f"{stem}_obs_ort", f"{stem}_loc")
    if sc.sensor == "aviris-classic":
        flight_line = f"f{sc.acquired:%y%m%d}t01p00r{sc.run:02d}"
        dtype = np.dtype(">i2")
        header = envi_core(description, sc, wavelength_nm.size, dtype, "bip")
        header |= {"wavelength units": "Nanometers", "wavelength": list(wavelength_nm), "fwhm": list(fwhm_nm)}
        obs = f"{flight_line}rdn_c_obs_ort"
        if level == "L1":
            gains = classic_gains(sc.seed)
            text = "".join(f"{gain:.3f} {channel}\n" for channel, gain in enumerate(gains, start=1))
            side = {f"{flight_line}rdn_c.gain": text}
            return ProductFormat(
                f"{flight_line}rdn_c_sc01_ort_img", dtype, "bip", gains, 0.0, header, obs, None, side
            )
        header |= {"reflectance scale factor": int(CLASSIC_REFLECTANCE_SCALE), "bbl": bbl}
        scale = np.full(wavelength_nm.size, CLASSIC_REFLECTANCE_SCALE)
        return ProductFormat(f"{flight_line}rfl_c_sc01_ort_img", dtype, "bip", scale, 0.0, header, obs)
    base = f"AV3{stamp}_001"
    product = "L1B_RDN" if level == "L1" else "L2A_OE"
    dtype = np.dtype("<f4")
    if fmt == "netcdf":
        return ProductFormat(f"{base}_{product}_{sc.product_hash}.nc", dtype, "bip", None, ENVI_FILL, {})
    name = f"{base}_{product}_{sc.product_hash}_{'RDN' if level == 'L1' else 'RFL'}_ORT"
    header = envi_core(description, sc, wavelength_nm.size, dtype, "bil")
    # µm rounded to 1e-12 (1e-9 nm): exact for the nm grid, without binary-division noise in the header.
    header |= {
        "wavelength units": "Micrometers",
        "wavelength": [round(w / 1000.0, 12) for w in wavelength_nm],
    }
    header["data ignore value"] = int(ENVI_FILL)
    if level == "L2":
        header["bbl"] = bbl
    table = np.column_stack([np.arange(wavelength_nm.size), wavelength_nm / 1000.0, fwhm_nm / 1000.0])
    text = "".join(" ".join(f"{v:.18e}" for v in row) + "\n" for row in table)
    obs = f"{base}_L1B_RDN_{sc.product_hash}_OBS_ORT"
    return ProductFormat(
        name, dtype, "bil", None, ENVI_FILL, header, obs, None, {f"{name}_wavelengths.txt": text}
    )
