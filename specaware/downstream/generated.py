"""A generated labelled scene built from real spectra, shaped as unmixing data sets ship, for tests and benchmarks.

Real labelled scenes are few and small; this makes one of any size with known truth. Endmembers are real
laboratory / field spectra (an ENVI spectral library such as the USGS splib07 in ``../shared/realdata/speclib``)
resampled to a real sensor's band centres. Abundance maps are smooth random fields pushed through a softmax, so
the scene has pure regions of every endmember with mixed borders between them, like a real landscape. Each pixel
is the abundance-weighted mix of the endmembers, times a smooth illumination field (shading, topography), with
per-pixel endmember variability and sensor noise; the truth is the abundance maps, and the labels their argmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from scipy.ndimage import gaussian_filter

from hyper400k.synth.spectra import load_speclib

# A landscape-like material set of the USGS library: two similar grasses, a conifer, sand and coastal water.
DEMO_MATERIALS = ("Lawn_Grass", "Grass_dry.4+.6green", "Pinon_Pine", "Quartz GDS74 Sand", "Seawater_Coast")


@dataclass
class UnmixingScene:
    """``cube`` (C, H, W) reflectance, ``abundances`` (E, H, W) summing to 1, endmember ``names`` and
    ``spectra`` (E, C), on ``wavelength_nm``."""

    cube: np.ndarray
    abundances: np.ndarray
    names: list[str]
    spectra: np.ndarray
    wavelength_nm: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        """The dominant endmember of every pixel, 1..E."""
        return np.argmax(self.abundances, axis=0).astype(np.int64) + 1


def pick_endmembers(
    library: Path, wavelength_nm: np.ndarray, count: int, seed: int, materials: Sequence[str] = ()
) -> tuple[list[str], np.ndarray]:
    """``count`` library spectra: first the first spectrum whose name contains each of ``materials`` (e.g.
    ``Lawn_Grass``), then random usable ones differing from all chosen by a spectral angle of at least 0.1 rad
    (distinct materials, as endmembers are)."""
    names, spectra = load_speclib(library, wavelength_nm)
    chosen: list[int] = []
    for material in materials:
        matches = [i for i, name in enumerate(names) if material.lower() in name.lower()]
        if not matches:
            raise ValueError(f"{library}: no usable spectrum named like {material!r}")
        chosen.append(matches[0])
    unit = spectra / np.linalg.norm(spectra, axis=1, keepdims=True)
    for index in np.random.default_rng(seed).permutation(len(names)):
        if len(chosen) >= count:
            break
        if all(np.arccos(np.clip(unit[index] @ unit[j], -1, 1)) >= 0.1 for j in chosen):
            chosen.append(int(index))
    if len(chosen) < count:
        raise ValueError(f"{library}: fewer than {count} spectra differ from each other by 0.1 rad")
    return [" ".join(names[i].split()) for i in chosen[:count]], spectra[chosen[:count]]


def generate_unmixing_scene(
    library: Path,
    wavelength_nm: np.ndarray,
    *,
    rows: int,
    cols: int,
    endmembers: int = 4,
    materials: Sequence[str] = (),
    seed: int = 0,
    region_px: float = 6.0,
    purity: float = 8.0,
    variability: float = 0.05,
    noise: float = 0.005,
) -> UnmixingScene:
    """A scene of ``rows`` × ``cols`` pixels with ``endmembers`` materials from ``library`` (named ``materials``
    first, see :func:`pick_endmembers`).

        ``region_px``: smoothing scale of the abundance fields (regions of a few times this size); ``purity``: the
        softmax gain (higher = purer pixels, sharper borders); ``variability``: relative per-pixel, per-band spread
        of each endmember; ``noise``: sensor noise standard deviation in reflectance.
    """
    rng = np.random.default_rng(seed)
    wavelength_nm = np.asarray(wavelength_nm, dtype=np.float64)
    names, spectra = pick_endmembers(library, wavelength_nm, endmembers, seed, materials)
    fields = np.stack(
        [
            gaussian_filter(rng.standard_normal((rows, cols)), region_px, mode="wrap")
            for _ in range(endmembers)
        ]
    )
    fields /= fields.std(axis=(1, 2), keepdims=True)
    weights = np.exp(purity * (fields - fields.max(axis=0, keepdims=True)))
    abundances = (weights / weights.sum(axis=0, keepdims=True)).astype(np.float32)
    shading = gaussian_filter(rng.standard_normal((rows, cols)), 3 * region_px, mode="wrap")
    illumination = np.clip(1.0 + 0.1 * shading / shading.std(), 0.7, 1.3)
    mixed = np.einsum("ehw,ec->chw", abundances, spectra)
    spread = 1.0 + variability * rng.standard_normal(mixed.shape)
    cube = mixed * spread * illumination[None] + noise * rng.standard_normal(mixed.shape)
    return UnmixingScene(cube.astype(np.float32), abundances, names, spectra, wavelength_nm)


def write_unmixing_mat(scene: UnmixingScene, folder: Path, order: str = "column") -> tuple[Path, Path]:
    """Write the scene as unmixing sets ship it: ``scene.mat`` (``Y`` bands × pixels, ``nRow``, ``nCol``,
    ``maxValue``) and ``endmembers.mat`` (``A`` endmembers × pixels, ``M`` bands × endmembers), pixels in
    ``order`` (``column``: MATLAB column-major, as Samson / Jasper Ridge / Urban; ``row``: row-major)."""
    folder.mkdir(parents=True, exist_ok=True)
    bands, rows, cols = scene.cube.shape

    def flat(grid: np.ndarray) -> np.ndarray:
        depth = grid.shape[0]
        return grid.transpose(0, 2, 1).reshape(depth, -1) if order == "column" else grid.reshape(depth, -1)

    image, truth = folder / "scene.mat", folder / "endmembers.mat"
    scipy.io.savemat(
        image, {"Y": flat(scene.cube), "nRow": rows, "nCol": cols, "maxValue": float(scene.cube.max())}
    )
    scipy.io.savemat(truth, {"A": flat(scene.abundances), "M": scene.spectra.T.astype(np.float32)})
    return image, truth


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m specaware.downstream.generated FOLDER``: write a generated unmixing-style scene (``scene.mat``,
    ``endmembers.mat``, ``wavelengths.txt``) built from the USGS library in ``../shared/realdata``."""
    import argparse

    root = Path(__file__).resolve().parents[3] / "shared" / "realdata"
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--library", type=Path, default=root / "speclib" / "s07_AV95_envi.hdr")
    parser.add_argument(
        "--wavelengths",
        type=Path,
        default=root / "wavelengths" / "indian_pines_corrected_200_wavelength_fwhm_nm.txt",
        help="band table (centre, FWHM) of the sensor to simulate",
    )
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--materials", nargs="*", default=list(DEMO_MATERIALS))
    parser.add_argument("--order", choices=("column", "row"), default="column")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from specaware.downstream.datasets import read_wavelength_table

    wavelength, fwhm = read_wavelength_table(args.wavelengths)
    scene = generate_unmixing_scene(
        args.library,
        wavelength,
        rows=args.rows,
        cols=args.cols,
        endmembers=len(args.materials),
        materials=args.materials,
        seed=args.seed,
    )
    image, truth = write_unmixing_mat(scene, args.folder, args.order)
    table = args.folder / "wavelengths.txt"
    table.write_text(
        "# centre_nm fwhm_nm\n" + "".join(f"{w:.3f} {f:.3f}\n" for w, f in zip(wavelength, fwhm, strict=True))
    )
    print(
        f"{image} ({scene.cube.shape[0]} bands, {args.rows} x {args.cols}), {truth}: {', '.join(scene.names)}"
    )


if __name__ == "__main__":
    main()
