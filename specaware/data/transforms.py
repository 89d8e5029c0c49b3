"""Training transforms and batch assembly: samples in, the tensors SpecAware consumes out.

Per sample: random (or centre) crop, a random element of the square's symmetry group (flips, 90° rotations),
bad bands zeroed or dropped per the sample's ``good_bands``, optional per-band normalisation with the build's
statistics; per batch: an optional random contiguous spectral window ("spectral view"). Each sample is written
once, float16 -> float32, straight into the batch tensor, which is allocated in shared memory inside a
DataLoader worker (so handing it to the training process copies nothing, as ``default_collate`` does) and as
a NumPy buffer otherwise (huge-page backed: about 3x faster to fill than ``torch.empty`` here).

Crop policy: a tile smaller than the crop is an error by default (``small_tiles="error"``), because padding
a 64-pixel tile to 224 would feed the model mostly padding without anyone noticing; ``small_tiles="pad"``
places it in the top-left corner instead, zeros around it and ``valid`` False there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import get_worker_info

from hyper400k.sample import Sample

Batch = dict[str, Any]
_H, _W = -2, -1
# Elements of the square's symmetry group as (transpose first?, then flip these axes).
_FLIPS = [(False, ()), (False, (_H,)), (False, (_W,)), (False, (_H, _W))]
_ROTATIONS = [(False, ()), (True, (_H,)), (False, (_H, _W)), (True, (_W,))]  # 0°, 90°, 180°, 270°
_SYMMETRIES = _FLIPS + [(True, ()), (True, (_H,)), (True, (_W,)), (True, (_H, _W))]
_MIN_STD = 1e-12


@dataclass(frozen=True)
class TransformConfig:
    """What happens to each sample on its way into a batch.

    ``crop``: output size (square); ``None`` keeps whole tiles (then all tiles of a batch must be the same
    size). ``random_crop``: random position, else centred. ``flips`` / ``rot90``: a random flip and/or
    rotation per sample (both: uniform over all 8 symmetries of the square). ``spectral_view_min_bands``: when
    set, every batch keeps a random contiguous window of at least this many bands (fewer when a sample has
    fewer), the same window for the whole batch in bucket mode (same width, own position per sample in pad
    mode). ``bad_bands``: ``"zero"`` the bands ``good_bands`` marks bad, or ``"drop"`` them (in bucket mode the
    bands bad in any sample of the batch). ``normalize``: ``(x - mean) / std`` per band with the build's
    statistics of the sample's group, after checking the statistics' wavelengths match the sample's within
    ``normalize_tolerance_nm``; invalid pixels and zeroed bands stay 0. ``small_tiles``: see the module doc.
    """

    crop: int | None = 224
    random_crop: bool = True
    flips: bool = True
    rot90: bool = True
    spectral_view_min_bands: int | None = None
    bad_bands: Literal["zero", "drop"] = "zero"
    normalize: bool = False
    normalize_tolerance_nm: float = 1.0
    small_tiles: Literal["error", "pad"] = "error"

    def __post_init__(self) -> None:
        if self.crop is not None and self.crop < 1:
            raise ValueError(f"crop must be positive or None, got {self.crop}")
        if self.spectral_view_min_bands is not None and self.spectral_view_min_bands < 1:
            raise ValueError(f"spectral_view_min_bands must be positive, got {self.spectral_view_min_bands}")
        if self.bad_bands not in ("zero", "drop"):
            raise ValueError(f"bad_bands must be 'zero' or 'drop', got {self.bad_bands!r}")
        if self.small_tiles not in ("error", "pad"):
            raise ValueError(f"small_tiles must be 'error' or 'pad', got {self.small_tiles!r}")

    @property
    def symmetries(self) -> list[tuple[bool, tuple[int, ...]]]:
        if self.flips and self.rot90:
            return _SYMMETRIES
        if self.rot90:
            return _ROTATIONS
        return _FLIPS if self.flips else [(False, ())]


@dataclass(frozen=True)
class _Stats:
    wavelength_nm: np.ndarray
    scale: np.ndarray  # 1 / std
    shift: np.ndarray  # -mean / std


@dataclass(frozen=True)
class _Placement:
    """Where one sample's pixels come from and go to."""

    bands: np.ndarray
    y: int
    x: int
    height: int
    width: int
    transpose: bool
    flip: tuple[int, ...]


class BatchAssembler:
    """Turns a list of samples into one batch dict (see :class:`specaware.data.ShardDataset`)."""

    def __init__(self, config: TransformConfig, band_stats: Mapping[str, Mapping[str, Any]]) -> None:
        self.config = config
        self._stats = {group: _parse_stats(group, stats) for group, stats in band_stats.items()}
        self._checked: set[tuple[str, str]] = set()

    def require_stats(self, groups: Sequence[str]) -> None:
        """Raise ``ValueError`` when normalising but a group has no statistics."""
        missing = [group for group in groups if group not in self._stats]
        if self.config.normalize and missing:
            raise ValueError(
                f"normalize=True but the shard index has no band_stats for {missing} "
                f"(it has {sorted(self._stats)})"
            )

    def __call__(self, samples: Sequence[Sample], rng: np.random.Generator, *, homogeneous: bool) -> Batch:
        """One batch. ``homogeneous``: every sample has the same bands (bucket mode), else pad to the largest."""
        if homogeneous and len({s.data.shape[0] for s in samples}) > 1:
            counts = sorted({f"{s.meta['sensor']}-{s.meta['level']}: {s.data.shape[0]}" for s in samples})
            raise ValueError(f"bucket mode got samples with different band counts ({', '.join(counts)})")
        bands = self._bands(samples, homogeneous, rng)
        size = self._output_size(samples)
        placements = [self._place(sample, b, size, rng) for sample, b in zip(samples, bands, strict=True)]
        channels = max(len(b) for b in bands)
        padded = any(len(b) < channels for b in bands) or any((p.height, p.width) != size for p in placements)
        image = _batch_tensor((len(samples), channels, *size), zero=padded)
        valid = torch.zeros((len(samples), *size), dtype=torch.bool)
        per_band = {name: torch.zeros((len(samples), channels)) for name in ("wavelength", "fwhm")}
        good = torch.zeros((len(samples), channels), dtype=torch.bool)
        mask = torch.zeros((len(samples), channels), dtype=torch.bool)
        for i, (sample, place) in enumerate(zip(samples, placements, strict=True)):
            count = len(place.bands)
            self._fill(sample, place, image[i, :count], valid[i])
            meta = sample.meta
            per_band["wavelength"][i, :count] = torch.from_numpy(
                _meta_array(meta, "wavelength_nm", place.bands)
            )
            per_band["fwhm"][i, :count] = torch.from_numpy(_meta_array(meta, "fwhm_nm", place.bands))
            good[i, :count] = torch.from_numpy(np.asarray(meta["good_bands"], dtype=bool)[place.bands])
            mask[i, :count] = True
        gsd = [float("nan") if s.meta["gsd_m"] is None else float(s.meta["gsd_m"]) for s in samples]
        return {
            "image": image,
            "valid": valid,
            "wavelength": per_band["wavelength"],
            "fwhm": per_band["fwhm"],
            "good_bands": good,
            "band_mask": mask,
            "gsd": torch.tensor(gsd, dtype=torch.float32),
            "sensor": [s.meta["sensor"] for s in samples],
            "level": [s.meta["level"] for s in samples],
            "key": [s.key for s in samples],
        }

    def _bands(
        self, samples: Sequence[Sample], homogeneous: bool, rng: np.random.Generator
    ) -> list[np.ndarray]:
        """The band indices each sample keeps: bad-band policy, then the spectral window."""
        goods = [np.asarray(s.meta["good_bands"], dtype=bool) for s in samples]
        if self.config.bad_bands == "zero":
            bands = [np.arange(len(g)) for g in goods]
        elif homogeneous:
            bands = [np.flatnonzero(np.logical_and.reduce(goods))] * len(samples)
        else:
            bands = [np.flatnonzero(g) for g in goods]
        if any(len(b) == 0 for b in bands):
            raise ValueError(f"bad_bands='drop' leaves no band in a batch with {[s.key for s in samples]}")
        minimum = self.config.spectral_view_min_bands
        if minimum is None:
            return bands
        fewest = min(len(b) for b in bands)
        width = int(rng.integers(min(minimum, fewest), fewest + 1))
        if homogeneous:
            start = int(rng.integers(0, fewest - width + 1))
            return [b[start : start + width] for b in bands]
        starts = [int(rng.integers(0, len(b) - width + 1)) for b in bands]
        return [b[s : s + width] for b, s in zip(bands, starts, strict=True)]

    def _output_size(self, samples: Sequence[Sample]) -> tuple[int, int]:
        crop = self.config.crop
        if crop is not None:
            return crop, crop
        sizes = {s.data.shape[1:] for s in samples}
        if len(sizes) > 1:
            raise ValueError(
                f"tiles of different sizes {sorted(sizes)} in one batch; set TransformConfig.crop"
            )
        height, width = sizes.pop()
        return height, width

    def _place(
        self, sample: Sample, bands: np.ndarray, size: tuple[int, int], rng: np.random.Generator
    ) -> _Placement:
        """Crop window and symmetry of one sample."""
        _, tile_h, tile_w = sample.data.shape
        if (tile_h < size[0] or tile_w < size[1]) and self.config.small_tiles == "error":
            raise ValueError(
                f"sample {sample.key}: tile {tile_h}x{tile_w} is smaller than the crop {size[0]}; "
                "use a smaller TransformConfig.crop, or small_tiles='pad'"
            )
        height, width = min(tile_h, size[0]), min(tile_w, size[1])
        if self.config.random_crop:
            y, x = int(rng.integers(0, tile_h - height + 1)), int(rng.integers(0, tile_w - width + 1))
        else:
            y, x = (tile_h - height) // 2, (tile_w - width) // 2
        symmetries = self.config.symmetries
        transpose, flip = symmetries[int(rng.integers(len(symmetries)))]
        if transpose and (width > size[0] or height > size[1]):
            raise ValueError(f"sample {sample.key}: a {height}x{width} crop cannot be rotated into {size}")
        if transpose:
            height, width = width, height
        return _Placement(bands, y, x, height, width, transpose, flip)

    def _fill(self, sample: Sample, place: _Placement, out: torch.Tensor, valid_out: torch.Tensor) -> None:
        """Write one sample into its slots of the batch (``out``: C×h×w, ``valid_out``: h×w)."""
        height, width = (place.width, place.height) if place.transpose else (place.height, place.width)
        window = (slice(place.y, place.y + height), slice(place.x, place.x + width))
        data = torch.from_numpy(sample.data)
        bands = place.bands
        if len(bands) and bands[-1] - bands[0] + 1 == len(bands):
            pixels = data[int(bands[0]) : int(bands[-1]) + 1, window[0], window[1]]
        else:
            pixels = data[:, window[0], window[1]].index_select(0, torch.from_numpy(bands))
        valid = torch.from_numpy(sample.valid)[window]
        if place.transpose:
            pixels, valid = pixels.transpose(_H, _W), valid.transpose(_H, _W)
        if place.flip:
            pixels, valid = pixels.flip(place.flip), valid.flip(place.flip)
        region = out[:, : place.height, : place.width]
        valid_out[: place.height, : place.width] = valid
        runs = _runs(np.asarray(sample.meta["good_bands"], dtype=bool)[bands])
        for start, stop, good in runs:  # bad bands are zeroed rather than converted and then zeroed
            if good:
                region[start:stop].copy_(pixels[start:stop])
            else:
                region[start:stop].zero_()
        if self.config.normalize:
            stats = self._stats_for(sample)
            region.mul_(torch.from_numpy(stats.scale[bands])[:, None, None])
            region.add_(torch.from_numpy(stats.shift[bands])[:, None, None])
            region.masked_fill_(~valid_out[: place.height, : place.width], 0.0)
            for start, stop, good in runs:
                if not good:
                    region[start:stop].zero_()

    def _stats_for(self, sample: Sample) -> _Stats:
        group = f"{sample.meta['sensor']}-{sample.meta['level']}"
        stats = self._stats.get(group)
        if stats is None:
            raise ValueError(f"sample {sample.key}: no band statistics for group {group}")
        if (group, sample.meta["product"]) not in self._checked:
            wavelengths = np.asarray(sample.meta["wavelength_nm"], dtype=np.float64)
            if wavelengths.shape != stats.wavelength_nm.shape:
                raise ValueError(
                    f"sample {sample.key}: {len(wavelengths)} bands, the {group} statistics have "
                    f"{len(stats.wavelength_nm)}"
                )
            offset = float(np.max(np.abs(wavelengths - stats.wavelength_nm)))
            if offset > self.config.normalize_tolerance_nm:
                raise ValueError(
                    f"sample {sample.key}: wavelengths differ from the {group} statistics' by up to {offset:.2f} nm "
                    f"(> normalize_tolerance_nm={self.config.normalize_tolerance_nm})"
                )
            self._checked.add((group, sample.meta["product"]))
        return stats


def _parse_stats(group: str, stats: Mapping[str, Any]) -> _Stats:
    mean = np.asarray(stats["mean"], dtype=np.float64)
    std = np.asarray(stats["std"], dtype=np.float64)
    if mean.shape != std.shape or mean.shape != (len(stats["wavelength_nm"]),):
        raise ValueError(f"band_stats of {group}: mean, std and wavelength_nm differ in length")
    std = np.where(std > _MIN_STD, std, 1.0)  # constant bands (e.g. zeroed water bands) are left as they are
    return _Stats(
        wavelength_nm=np.asarray(stats["wavelength_nm"], dtype=np.float64),
        scale=(1.0 / std).astype(np.float32),
        shift=(-mean / std).astype(np.float32),
    )


def _runs(flags: np.ndarray) -> list[tuple[int, int, bool]]:
    """``[(start, stop, value), ...]``: the runs of equal values in a 1-D boolean array."""
    edges = np.flatnonzero(np.diff(flags.astype(np.int8))) + 1
    starts = [0, *edges.tolist()]
    stops = [*edges.tolist(), len(flags)]
    return [(start, stop, bool(flags[start])) for start, stop in zip(starts, stops, strict=True)]


def _meta_array(meta: Mapping[str, Any], name: str, bands: np.ndarray) -> np.ndarray:
    return np.asarray(meta[name], dtype=np.float32)[bands]


def _batch_tensor(shape: tuple[int, ...], *, zero: bool) -> torch.Tensor:
    """A float32 batch tensor: in shared memory inside a DataLoader worker, a NumPy buffer otherwise."""
    if get_worker_info() is not None:
        numel = int(np.prod(shape))
        storage = torch.UntypedStorage._new_shared(numel * 4)  # fresh shared memory is zero-filled
        return torch.empty(0, dtype=torch.float32).set_(storage, 0, shape)
    return torch.from_numpy(np.zeros(shape, np.float32) if zero else np.empty(shape, np.float32))
