"""Per-tile quality: the published Hyper-400K validity rules, QA statistics, and declarative re-filtering.

Validity (the ``hyper400k`` preset, reproducing the published rules): in L2 the deep water-vapour
bands (by wavelength window) are zeroed first; then a *value* is invalid when it is negative,
non-finite (including no-data and padding) or above the product's ceiling; a tile is dropped when
more than 20 % of its values are invalid; invalid values are set to 0; data is stored as float16.
Beyond the published rules, a pixel without data or above the ceiling in any good band is marked
invalid in ``valid.npy`` and zeroed in every band, as the sample contract asks; slightly negative
values (sensor noise and over-correction, common in real reflectance) are zeroed value by value
without invalidating their pixel.

QA statistics are computed on every tile so users can re-filter a build later without re-reading
products (``hyper400k filter``): valid/saturated/cloud/water/dark fractions in apparent reflectance,
a per-band SNR proxy, and stripe / dead-detector flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from hyper400k.scene import SceneMeta
from hyper400k.sensors import sensor, water_band_mask
from hyper400k.solar import apparent_reflectance_factor
from hyper400k.text_files import load_yaml, read_text_file

_SNR_ROW_STEP = 16  # the SNR proxy uses every 16th line: noise estimates need pixels, not all of them
_COLUMN_CHECK_BANDS = 16  # stripe/dead-detector checks on this many evenly spaced good bands
_STRIPE_RATIO = 0.02  # a column 2 % brighter or darker than its neighbours on > 90 % of lines is a stripe
_BLOCK_BYTES = 1 << 19  # bands assessed together: ~0.5 MB of the tile, so a block stays in L2 cache
_CONVERT_ELEMENTS = 32768  # float16 conversion chunk: torch's parallel grain (at::internal::GRAIN_SIZE)
_INDEX_BANDS_NM = {"blue": 480.0, "green": 560.0, "red": 660.0, "nir": 860.0, "swir": 1650.0}


@dataclass(frozen=True)
class Rule:
    """One threshold on one QA field: ``min``/``max`` for numbers, ``equals`` for flags."""

    field: str
    min: float | None = None
    max: float | None = None
    equals: bool | None = None

    def __post_init__(self) -> None:
        if self.min is None and self.max is None and self.equals is None:
            raise ValueError(f"rule on '{self.field}' sets none of min, max, equals")

    def violation(self, qa: dict[str, Any]) -> str | None:
        """A short reason (used to count drops) when ``qa`` breaks this rule, else None."""
        if self.field not in qa:
            raise ValueError(f"QA has no field '{self.field}' (known: {', '.join(sorted(qa))})")
        value = qa[self.field]
        if self.equals is not None and bool(value) != self.equals:
            return f"{self.field}!={str(self.equals).lower()}"
        if self.min is not None and value < self.min:
            return f"{self.field}<{self.min:g}"
        if self.max is not None and value > self.max:
            return f"{self.field}>{self.max:g}"
        return None


@dataclass(frozen=True)
class RuleSet:
    """A named list of rules; a tile is kept when it breaks none of them."""

    name: str
    rules: tuple[Rule, ...] = ()

    def evaluate(self, qa: dict[str, Any]) -> list[str]:
        return [reason for rule in self.rules if (reason := rule.violation(qa)) is not None]

    def evaluate_available(self, qa: dict[str, Any]) -> list[str]:
        """Reasons from the rules whose field ``qa`` already has (the others are not judged yet)."""
        return [
            reason for rule in self.rules if rule.field in qa and (reason := rule.violation(qa)) is not None
        ]

    @classmethod
    def from_dict(cls, spec: dict[str, Any], source: str = "<rules>") -> RuleSet:
        if not isinstance(spec, dict):
            raise ValueError(f"{source}: a rule set is {{name, rules: [...]}}; got a {type(spec).__name__}")
        unknown = set(spec) - {"name", "rules"}
        if unknown or not isinstance(spec.get("rules"), list):
            raise ValueError(f"{source}: a rule set is {{name, rules: [...]}}; got keys {sorted(spec)}")
        rules = []
        for index, item in enumerate(spec["rules"]):
            if (
                not isinstance(item, dict)
                or "field" not in item
                or set(item) - {"field", "min", "max", "equals"}
            ):
                raise ValueError(
                    f"{source}: rule {index} must have 'field' and only min/max/equals, got {item!r}"
                )
            bounds = [item.get(k) for k in ("min", "max") if item.get(k) is not None]
            flag = item.get("equals")
            if any(isinstance(b, bool) or not isinstance(b, int | float) for b in bounds) or (
                flag is not None and not isinstance(flag, bool)
            ):
                raise ValueError(
                    f"{source}: rule {index}: min/max take numbers and equals true/false, got {item!r}"
                )
            try:
                rules.append(Rule(**item))
            except ValueError as exc:
                raise ValueError(f"{source}: rule {index}: {exc}") from exc
        return cls(name=str(spec.get("name", Path(source).stem)), rules=tuple(rules))

    @classmethod
    def from_yaml(cls, path: Path) -> RuleSet:
        try:
            spec = load_yaml(read_text_file(path))
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: cannot read rule set: {exc}") from exc
        return cls.from_dict(spec or {}, str(path))


PUBLISHED_RULES = RuleSet("hyper400k", (Rule("invalid_value_fraction", max=0.2),))


@dataclass
class TileQuality:
    """What the rules decided for one tile: the float16 payload (kept tiles only), the pixel mask and QA.

    A dropped tile's QA holds the fields computed before the decision: a tile condemned by the cheap
    fractions (e.g. the published invalid-value rule) carries only those."""

    data: np.ndarray | None
    valid: np.ndarray
    qa: dict[str, Any]
    reasons: list[str] = field(default_factory=list)

    @property
    def kept(self) -> bool:
        return not self.reasons


class TileAssessor:
    """Applies validity rules and computes QA for tiles of one product (band lookups done once).

    It keeps work buffers between tiles, so one assessor serves one thread. With ``reuse_output`` the
    float16 data of every kept tile is written into one buffer, so a tile's :attr:`TileQuality.data` lives
    only until the next :meth:`assess`: for a consumer that writes each sample before assessing the next
    (the build), it saves a fresh ~55 MB allocation per tile, whose page faults cost about as much as the
    conversion itself."""

    def __init__(
        self,
        meta: SceneMeta,
        rules: RuleSet = PUBLISHED_RULES,
        zero_water_bands: bool = True,
        *,
        reuse_output: bool = False,
    ) -> None:
        self.rules = rules
        self.reuse_output = reuse_output
        self.ceiling = np.float32(sensor(meta.sensor).ceiling(meta.level))
        self.water = (
            water_band_mask(meta.wavelength_nm) if (meta.level == "L2" and zero_water_bands) else None
        )
        self.good = np.asarray(meta.good_bands, dtype=bool)
        wavelength = np.asarray(meta.wavelength_nm)
        self.index_band = {
            name: _nearest_good(wavelength, self.good, nm) for name, nm in _INDEX_BANDS_NM.items()
        }
        selected = np.array(list(self.index_band.values()))
        factor = (
            apparent_reflectance_factor(
                wavelength[selected], meta.geometry.solar_zenith, meta.geometry.earth_sun_distance_au
            )
            if meta.level == "L1"
            else np.ones(len(selected))
        )
        self.reflectance_factor = dict(zip(self.index_band, factor.astype(np.float32), strict=True))
        good_idx = np.flatnonzero(self.good)
        self.column_bands = good_idx[
            np.linspace(0, len(good_idx) - 1, min(_COLUMN_CHECK_BANDS, len(good_idx))).astype(int)
        ]
        # per-tile work buffers, reused (an assessor serves the tiles of one product, one at a time)
        self._blocks: list[tuple[int, int, bool]] = []
        self._blocks_for: tuple[int, int] | None = None
        self._masks: tuple[np.ndarray, np.ndarray] | None = None
        self._output: torch.Tensor | None = None

    def assess(self, tile: np.ndarray) -> TileQuality:
        """Rules + QA for one float32 ``(C, H, W)`` tile (NaN = no data).

        The tile is modified in place: its out-of-range values become 0 and, when it passes the cheap
        rules, its invalid pixels too.

        The tile is ~100 MB at 425 bands, so it is walked in blocks of bands small enough to stay in
        the CPU cache: one block gets every comparison, count and zeroing before the next is read
        (one pass over memory instead of one per operation), into mask buffers reused across tiles
        (fresh whole-tile masks cost as much in page faults as the arithmetic). A second pass zeroes
        the invalid pixels and converts to float16 in the same cache-sized chunks; the QA statistics
        then read a few bands and lines only.
        """
        # Fill pixels are NaN in every band, so one good band tells whether the tile holds any data at all.
        no_data = not np.isfinite(tile[self.column_bands[0]]).any()
        if self.water is not None:
            tile[self.water] = 0.0
        valid, in_range_count, saturated = self._zero_invalid_values(tile)
        qa: dict[str, Any] = {
            "invalid_value_fraction": round(1.0 - float(in_range_count) / tile.size, 6),
            "valid_fraction": round(float(valid.mean()), 6),
            "saturated_fraction": round(float(saturated.mean()), 6),
        }
        # A tile the cheap fields already condemn skips the costly QA, the zeroing of its invalid pixels
        # (a dropped tile is only ever shown through its mask) and the float16 conversion.
        early = ["no_data"] if no_data else self.rules.evaluate_available(qa)
        if early:
            return TileQuality(data=None, valid=valid, qa=qa, reasons=early)
        # The sample contract: an invalid pixel is 0 in every band (NaNs are already 0).
        data = _zero_pixels_to_float16(tile, None if valid.all() else ~valid, self._output_for(tile.shape))
        qa |= self._surface_fractions(tile, valid) | self._detector_checks(tile, valid)
        reasons = self.rules.evaluate(qa)
        return TileQuality(data=None if reasons else data, valid=valid, qa=qa, reasons=reasons)

    def _output_for(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Where a kept tile's float16 data goes: a fresh tensor, or with ``reuse_output`` the one buffer."""
        if not self.reuse_output:
            return torch.empty(shape, dtype=torch.float16)
        if self._output is None or tuple(self._output.shape) != shape:
            self._output = torch.empty(shape, dtype=torch.float16)
        return self._output

    def _band_blocks(self, tile: np.ndarray) -> list[tuple[int, int, bool]]:
        """``(start, stop, good)`` runs of bands, all good or all bad, each at most _BLOCK_BYTES."""
        per_band = tile[0].nbytes
        key = (tile.shape[0], per_band)
        if self._blocks_for != key:
            size = max(1, _BLOCK_BYTES // max(per_band, 1))
            self._blocks = []
            start = 0
            for stop in range(1, tile.shape[0] + 1):
                if stop == tile.shape[0] or stop - start == size or self.good[stop] != self.good[start]:
                    self._blocks.append((start, stop, bool(self.good[start])))
                    start = stop
            self._blocks_for = key
        return self._blocks

    def _mask_buffers(self, bands: int, plane: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        shape = (bands, *plane)
        if self._masks is None or self._masks[0].shape != shape:
            self._masks = (np.empty(shape, dtype=bool), np.empty(shape, dtype=bool))
        return self._masks

    def _zero_invalid_values(self, tile: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
        """Zero every value that is negative, NaN or above the ceiling, block by block.

        Returns the pixel mask (finite and not above the ceiling in every good band), the number of
        in-range values and the pixels above the ceiling in some band (before zeroing)."""
        blocks = self._band_blocks(tile)
        plane = tile.shape[1:]
        not_above_buffer, in_range_buffer = self._mask_buffers(max(b - a for a, b, _ in blocks), plane)
        valid = np.ones(plane, dtype=bool)
        saturated = np.zeros(plane, dtype=bool)
        in_range_count = 0
        for start, stop, good in blocks:
            block = tile[start:stop]
            not_above = not_above_buffer[: stop - start]
            in_range = in_range_buffer[: stop - start]
            np.less_equal(block, self.ceiling, out=not_above)  # False for NaN and above the ceiling
            np.greater_equal(block, 0, out=in_range)
            in_range &= not_above
            count = np.count_nonzero(in_range)
            in_range_count += count
            if count == in_range.size:
                continue  # the common clean block: nothing to flag or zero
            if np.count_nonzero(not_above) < not_above.size:
                saturated |= (block > self.ceiling).any(axis=0)
                if good:
                    valid &= not_above.all(axis=0)
            np.logical_not(in_range, out=in_range)
            np.copyto(block, 0.0, where=in_range)  # ~5x faster than np.putmask
        return valid, in_range_count, saturated

    def _surface_fractions(self, tile: np.ndarray, valid: np.ndarray) -> dict[str, float]:
        """Cloud/haze, water and dark fractions of the valid pixels, from apparent reflectance."""
        n_valid = int(valid.sum())
        if n_valid == 0:
            return {"cloud_score": 0.0, "water_fraction": 0.0, "dark_fraction": 0.0}
        rho = {
            name: tile[band][valid] * self.reflectance_factor[name] for name, band in self.index_band.items()
        }
        visible = np.stack([rho["blue"], rho["green"], rho["red"]])
        bright_white = (
            (rho["blue"] > 0.25)
            & (visible.mean(axis=0) > 0.3)
            & (visible.max(axis=0) < 1.5 * visible.min(axis=0))
        )
        cloud = bright_white & (rho["swir"] > 0.15)
        ndwi = (rho["green"] - rho["nir"]) / np.maximum(rho["green"] + rho["nir"], 1e-6)
        water = (ndwi > 0.2) & (rho["nir"] < 0.15)
        dark = (rho["nir"] < 0.03) & (rho["red"] < 0.03)
        return {
            "cloud_score": round(float(cloud.mean()), 6),
            "water_fraction": round(float(water.mean()), 6),
            "dark_fraction": round(float(dark.mean()), 6),
        }

    def _detector_checks(self, tile: np.ndarray, valid: np.ndarray) -> dict[str, Any]:
        """Per-band SNR proxy (mean / differential noise) and column stripe / dead-detector flags."""
        rows = tile[:, ::_SNR_ROW_STEP, :]
        pair_ok = valid[::_SNR_ROW_STEP, 1:] & valid[::_SNR_ROW_STEP, :-1]
        snr = np.zeros(tile.shape[0], dtype=np.float64)
        if pair_ok.sum() >= 16:
            diffs = np.abs(np.diff(rows, axis=2))[:, pair_ok]
            noise = 1.4826 * _row_medians(diffs) / np.sqrt(2.0)
            signal = rows[:, :, 1:][:, pair_ok].mean(axis=1)
            snr = np.where(noise > 0, signal / np.maximum(noise, 1e-12), 0.0)
        good_snr = snr[self.good]
        dead, stripe = self._column_flags(tile[self.column_bands], valid)
        return {
            "snr_median": round(float(np.median(good_snr)) if good_snr.size else 0.0, 3),
            "snr": [round(float(v), 2) for v in snr],
            "dead_detector": dead,
            "stripe": stripe,
        }

    @staticmethod
    def _column_flags(bands: np.ndarray, valid: np.ndarray) -> tuple[bool, bool]:
        """Dead column: a one-column gap of fill inside valid data, or no variation down the column in most
        check bands while the tile varies.
        Stripe: a column brighter (or darker) than its two neighbours on nearly every line (scene edges
        along a column change from line to line; detector gain errors do not)."""
        column_valid = valid.sum(axis=0)
        if (column_valid >= max(4, valid.shape[0] // 4)).sum() < 8:
            return False, False
        # A column the reader already blanked as fill (a constant spectrum) between two valid neighbours:
        # swath edges never leave a one-pixel gap, a dead detector element does.
        rows = valid.shape[0]
        gap = (column_valid[1:-1] == 0) & (column_valid[:-2] > 0.9 * rows) & (column_valid[2:] > 0.9 * rows)
        if gap.any():
            return True, False
        counts = np.maximum(column_valid, 1)
        means = (bands * valid).sum(axis=1) / counts
        spread = np.sqrt(np.maximum((bands**2 * valid).sum(axis=1) / counts - means**2, 0.0))
        usable = column_valid >= max(4, valid.shape[0] // 4)
        typical = np.median(spread[:, usable], axis=1, keepdims=True)
        flat = (spread < 1e-3 * typical + 1e-9) & (typical > 0)
        dead = bool((flat[:, usable].mean(axis=0) > 0.8).any())
        if dead:
            return True, False
        neighbours = 0.5 * (bands[:, :, :-2] + bands[:, :, 2:])
        with np.errstate(all="ignore"):
            ratio = bands[:, :, 1:-1] / neighbours
        both = valid[:, 1:-1] & valid[:, :-2] & valid[:, 2:]
        rows_ok = np.maximum(both.sum(axis=0), 1)
        brighter = ((ratio > 1.0 + _STRIPE_RATIO) & both).sum(axis=1) / rows_ok
        darker = ((ratio < 1.0 - _STRIPE_RATIO) & both).sum(axis=1) / rows_ok
        consistent = (np.maximum(brighter, darker) > 0.9) & (both.sum(axis=0) >= 8)
        return False, bool((consistent.mean(axis=0) > 0.5).any())


def _zero_pixels_to_float16(tile: np.ndarray, pixels: np.ndarray | None, target: torch.Tensor) -> np.ndarray:
    """Zero ``pixels`` (an ``(H, W)`` mask, or None) in every band of ``tile`` in place; return it as float16,
    written into ``target`` (a float16 tensor of the tile's shape).

    Chunk by chunk (lines of one band), so each chunk is zeroed and converted while it is in cache.
    Multiplying by 0 rather than assigning it keeps the sign of a -0.0, as ``tile *= valid`` did, so
    the bytes are those of the plain formulation. The rounding is torch's: to nearest even, bit-identical to
    numpy's ``astype`` and several times faster. A chunk holds at most torch's parallel grain of elements, so
    torch converts it on the calling thread: a build runs one product per core already, and torch's
    thread pool on a busy machine waits for a descheduled thread at every call. The output is a
    torch allocation, of plain 4 KB pages: numpy asks for transparent huge pages for large arrays,
    and faulting those in (with the kernel compacting memory for them) took 3x the system time in
    the build."""
    data = target.numpy()
    lines = tile.shape[1]
    step = max(1, _CONVERT_ELEMENTS // max(tile.shape[2], 1))
    chunks = [(start, min(start + step, lines)) for start in range(0, lines, step)]
    masks = [None if pixels is None or not pixels[a:b].any() else pixels[a:b] for a, b in chunks]
    for band in range(tile.shape[0]):
        for (a, b), mask in zip(chunks, masks, strict=True):
            if mask is not None:
                part = tile[band, a:b]
                np.multiply(part, np.float32(0), out=part, where=mask)
            target[band, a:b].copy_(torch.from_numpy(tile[band, a:b]))
    return data


def _nearest_good(wavelength: np.ndarray, good: np.ndarray, target_nm: float) -> int:
    distance = np.abs(wavelength - target_nm) + np.where(good, 0.0, 1e6)
    return int(np.argmin(distance))


def _row_medians(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=1)`` for a NaN-free 2-D array, equal to it bit for bit and ~3x faster.

    ``np.median`` partitions each row around three ranks (the two middle ones and the last, for its NaN
    check) of a copy; one in-place partition at the upper middle rank holds the lower middle value as
    the largest of the values before it."""
    half = values.shape[1] // 2
    values.partition(half, axis=1)
    upper = values[:, half]
    if values.shape[1] % 2:
        return upper
    return (values[:, :half].max(axis=1) + upper) / values.dtype.type(2)
