"""How should ``data.npy`` be stored in a shard? Size and decode speed of the candidate encodings.

Training reads every patch once per epoch, so a codec must decode far faster than the loader consumes data,
while the corpus (≈17 TB of products) makes every per cent of size count. This measures, on realistic
float16 radiance patches (425 bands × 64 × 64), the encoded size relative to plain ``.npy`` and the encode and
decode throughput (MB/s of float16 array) of:

* ``npy``: plain ``.npy`` (what :meth:`Sample.encode` writes today), with a memory copy as the physical limit;
* ``gzip1`` / ``gzip6``: ``.npy`` through gzip (``data.npy.gz``, which WebDataset's decoder unpacks by itself);
* ``shuffle_zlib1`` / ``shuffle_zlib6``: float16 split into high/low byte planes, then zlib;
* ``delta_shuffle_zlib1``: the same after differencing the float16 bit patterns along the spectral axis;
* ``zstd3`` (and ``shuffle_zstd3``) when the ``zstandard`` package is installed.

Patches mix a few spectra with smooth random abundances under smooth illumination, scaled to 0–30 radiance
units, plus signal-dependent sensor noise (SNR ≈ 200 at 10 units), then quantised to float16. The spectra are
real AVIRIS-NG radiance pixels when ``../shared/realdata`` is present (smooth synthetic curves otherwise); the
real 10 × 10 × 425 cube itself is also compressed as a check on the noise model (sizes only: it is tiny).
Timings are best-of-N on one machine in one run; compare the ratios, not absolute numbers across machines.

Run: ``python benchmarks/compression.py [--quick] [--realdata PATH]``. The last output line is JSON.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

BANDS = 425
DEFAULT_REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
NG_RDN = Path("aviris-ng") / "ang20170323t202244_rdn_7000-7010"

Codec = tuple[Callable[[np.ndarray], bytes], Callable[[bytes, tuple[int, ...]], np.ndarray]]


def load_spectra(realdata: Path) -> tuple[np.ndarray, str]:
    """``(spectra (n, 425), source)``: the real AVIRIS-NG pixels (BIL float32), else smooth synthetic curves."""
    path = realdata / NG_RDN
    if path.is_file():
        cube = np.fromfile(path, dtype="<f4").reshape(10, BANDS, 10)
        return cube.transpose(0, 2, 1).reshape(-1, BANDS).astype(
            np.float64
        ), f"real AVIRIS-NG pixels ({path})"
    wavelength = np.linspace(377, 2500, BANDS)
    rng = np.random.default_rng(1)
    curves = [
        sum(
            rng.uniform(1, 8) * np.exp(-0.5 * ((wavelength - rng.uniform(400, 2400)) / 250) ** 2)
            for _ in range(4)
        )
        for _ in range(16)
    ]
    return np.asarray(curves), "synthetic smooth spectra (real data not found)"


def smooth_field(rng: np.random.Generator, count: int, size: int, scale_px: float) -> np.ndarray:
    """``count`` random fields of ``size``², low-passed with a Gaussian of ``scale_px``, scaled to unit std."""
    noise = rng.normal(size=(count, size, size))
    frequency = np.fft.fftfreq(size)
    radius2 = frequency[:, None] ** 2 + frequency[None, :] ** 2
    fields = np.fft.ifft2(np.fft.fft2(noise) * np.exp(-2 * (np.pi * scale_px) ** 2 * radius2)).real
    return fields / fields.std(axis=(1, 2), keepdims=True)


def make_patch(rng: np.random.Generator, spectra: np.ndarray, size: int) -> np.ndarray:
    """One C×H×W float16 radiance patch: a mixture of 5 spectra with smooth abundances, plus sensor noise."""
    endmembers = spectra[rng.integers(0, len(spectra), size=5)] * rng.uniform(0.3, 2.5, size=(5, 1))
    logits = 2.0 * smooth_field(rng, 5, size, scale_px=rng.uniform(3, 12))
    abundance = np.exp(logits) / np.exp(logits).sum(axis=0)
    illumination = 1 + 0.15 * smooth_field(rng, 1, size, scale_px=6)[0]
    signal = np.einsum("khw,kc->chw", abundance, endmembers) * illumination
    signal *= rng.uniform(10, 30) / np.percentile(signal, 99.9)
    noise_std = np.sqrt(0.00025 * np.clip(signal, 0, None) + 1e-4)
    return np.clip(signal + rng.normal(size=signal.shape) * noise_std, 0, None).astype(np.float16)


def _npy_encode(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npy_decode(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _shuffle(array: np.ndarray) -> bytes:
    """float16 -> low-byte plane then high-byte plane (the high plane, sign+exponent, compresses well)."""
    return array.view(np.uint8).reshape(-1, 2).T.tobytes()


def _unshuffle(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    planes = np.frombuffer(data, dtype=np.uint8).reshape(2, -1)
    out = np.empty((planes.shape[1], 2), dtype=np.uint8)
    out.T[...] = planes
    return out.view(np.float16).reshape(shape)


def _delta(array: np.ndarray) -> np.ndarray:
    """Band-to-band differences of the float16 bit patterns (wrapping int16), first band kept as is."""
    bits = array.view(np.int16)
    return np.concatenate([bits[:1], np.diff(bits, axis=0)]).view(np.float16)


def _undelta(array: np.ndarray) -> np.ndarray:
    return np.cumsum(array.view(np.int16), axis=0, dtype=np.int16).view(np.float16)


def codecs() -> tuple[dict[str, Codec], list[str]]:
    """The codecs to measure, and notes on those skipped because their package is missing."""
    table: dict[str, Codec] = {
        "npy": (_npy_encode, _npy_decode),
        "gzip1": (
            lambda a: gzip.compress(_npy_encode(a), compresslevel=1, mtime=0),
            lambda d, s: _npy_decode(gzip.decompress(d), s),
        ),
        "gzip6": (
            lambda a: gzip.compress(_npy_encode(a), compresslevel=6, mtime=0),
            lambda d, s: _npy_decode(gzip.decompress(d), s),
        ),
        "shuffle_zlib1": (
            lambda a: zlib.compress(_shuffle(a), 1),
            lambda d, s: _unshuffle(zlib.decompress(d), s),
        ),
        "shuffle_zlib6": (
            lambda a: zlib.compress(_shuffle(a), 6),
            lambda d, s: _unshuffle(zlib.decompress(d), s),
        ),
        "delta_shuffle_zlib1": (
            lambda a: zlib.compress(_shuffle(_delta(a)), 1),
            lambda d, s: _undelta(_unshuffle(zlib.decompress(d), s)),
        ),
    }
    try:
        import zstandard
    except ImportError:
        return table, ["zstd: skipped (the zstandard package is not installed)"]
    compressor, decompressor = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    table["zstd3"] = (
        lambda a: compressor.compress(_npy_encode(a)),
        lambda d, s: _npy_decode(decompressor.decompress(d), s),
    )
    table["shuffle_zstd3"] = (
        lambda a: compressor.compress(_shuffle(a)),
        lambda d, s: _unshuffle(decompressor.decompress(d), s),
    )
    return table, []


def best_time(action: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` runs (least disturbed by other load on a shared machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(patches: list[np.ndarray], real: np.ndarray | None, repeats: int) -> dict[str, float]:
    """Ratios (encoded / plain .npy bytes) and encode/decode MB/s (of float16 array) for every codec."""
    raw_bytes = sum(patch.nbytes for patch in patches)
    megabytes = raw_bytes / 1e6
    table, skipped = codecs()
    for note in skipped:
        print(note)
    plain = [_npy_encode(patch) for patch in patches]
    results: dict[str, float] = {
        "patches": len(patches),
        "memcpy_mb_s": megabytes
        / best_time(lambda: [np.frombuffer(data, np.uint8).copy() for data in plain], repeats),
    }
    plain_bytes = sum(map(len, plain))
    real_plain = len(_npy_encode(real)) if real is not None else 0
    for name, (encode, decode) in table.items():
        encoded = [encode(patch) for patch in patches]
        for patch, data in zip(patches, encoded, strict=True):
            if not np.array_equal(decode(data, patch.shape).view(np.uint16), patch.view(np.uint16)):
                raise AssertionError(f"{name} does not round-trip")
        results[f"{name}_ratio"] = sum(map(len, encoded)) / plain_bytes
        results[f"{name}_encode_mb_s"] = megabytes / best_time(
            lambda e=encode: [e(p) for p in patches], repeats
        )
        decode_time = best_time(
            lambda d=decode, e=encoded: [d(x, p.shape) for x, p in zip(e, patches, strict=True)], repeats
        )
        results[f"{name}_mb_s"] = megabytes / decode_time
        if real is not None:
            results[f"real_{name}_ratio"] = len(encode(real)) / real_plain
    results["raw_mb_s"] = results["npy_mb_s"]
    return results


def print_table(results: dict[str, float], names: list[str], has_real: bool) -> None:
    print(
        f"{'codec':<22}{'size/npy':>10}{'real cube':>11}{'encode MB/s':>13}{'decode MB/s':>13}{'vs memcpy':>11}"
    )
    for name in names:
        real = f"{results[f'real_{name}_ratio']:.3f}" if has_real else "-"
        print(
            f"{name:<22}{results[f'{name}_ratio']:>10.3f}{real:>11}{results[f'{name}_encode_mb_s']:>13.0f}"
            f"{results[f'{name}_mb_s']:>13.0f}{results[f'{name}_mb_s'] / results['memcpy_mb_s']:>11.3f}"
        )
    print(f"{'memcpy (limit)':<22}{'':>10}{'':>11}{'':>13}{results['memcpy_mb_s']:>13.0f}{1:>11.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 patches, best of 2 (≤ 30 s)")
    parser.add_argument("--patches", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="patch height and width")
    parser.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    count, repeats = (8, 2) if args.quick else (args.patches, 3)

    spectra, source = load_spectra(args.realdata)
    rng = np.random.default_rng(args.seed)
    patches = [make_patch(rng, spectra, args.size) for _ in range(count)]
    real_path = args.realdata / NG_RDN
    real = None
    if real_path.is_file():
        real = (
            np.fromfile(real_path, dtype="<f4").reshape(10, BANDS, 10).transpose(1, 0, 2).astype(np.float16)
        )
    print(f"{count} patches of {BANDS}×{args.size}×{args.size} float16 from {source}; best of {repeats}")
    results = measure(patches, real, repeats)
    print_table(
        results,
        [key[: -len("_ratio")] for key in results if key.endswith("_ratio") and "real_" not in key],
        real is not None,
    )
    print(json.dumps({key: round(value, 4) for key, value in results.items()}))


if __name__ == "__main__":
    main()
