"""Dataset adapters for labelled hyperspectral data as users have it, and the sampling protocols of the field.

Every adapter takes the sensor's wavelengths / FWHM / GSD explicitly (a foreign sensor is only usable by SpecAware
through them); for GeoTIFF and ENVI files the values in the file are used where the caller passes none. Adapters
return in-memory items with one label convention everywhere: ``labels`` int64 (H, W), 0 = unlabelled / ignored,
1..K = classes. Images are float32 (C, H, W) in physical units with no-data as NaN, bad bands already dropped.

Shapes supported:

- (a) one cube + one label raster (ENVI / GeoTIFF via :func:`hyper400k.product.open_product`, or MATLAB ``.mat``
  as Indian Pines / Salinas / Pavia ship, with a separate wavelength table): :func:`load_cube_scene`, then split
  with :func:`block_split` (disjoint spatial blocks, the honest default), :func:`per_class_split` (random per-class
  pixel counts, the classic protocol: train and test pixels are spatial neighbours) or fixed train/test label
  rasters, and cut into windows by :func:`cube_segmentation_data`;
- (b) tiles + label tiles + split lists (``image,mask`` CSVs): :func:`load_tile_split` / :func:`tile_segmentation_data`;
- (c) bi-temporal pairs + change mask: :func:`load_change_pair` / :func:`change_data`;
- (d) patch folders named by class (scene classification): :func:`scene_folder_data`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import scipy.io
import torch

from hyper400k.product import open_product

PROTOCOLS = ("blocks", "per_class", "fixed")


@dataclass(frozen=True)
class SensorInfo:
    """Band metadata of the (good) bands of a dataset: centre wavelength and FWHM in nm, GSD in metres, the
    sensor and processing level names the model knows (``other`` for any foreign instrument)."""

    wavelength_nm: np.ndarray
    fwhm_nm: np.ndarray
    gsd_m: float
    sensor: str = "other"
    level: str = "L2"

    def __post_init__(self) -> None:
        if self.wavelength_nm.shape != self.fwhm_nm.shape or self.wavelength_nm.ndim != 1:
            raise ValueError(
                f"wavelength {self.wavelength_nm.shape} and fwhm {self.fwhm_nm.shape} must be equal 1-D"
            )
        if not self.gsd_m > 0:
            raise ValueError(f"gsd must be positive metres, got {self.gsd_m}")

    @property
    def bands(self) -> int:
        return int(self.wavelength_nm.size)

    def select(self, keep: np.ndarray) -> SensorInfo:
        """The same sensor restricted to the bands where ``keep`` is True."""
        return SensorInfo(self.wavelength_nm[keep], self.fwhm_nm[keep], self.gsd_m, self.sensor, self.level)

    def batch_fields(self, size: int) -> dict[str, Any]:
        """The per-sample metadata keys of a model batch for ``size`` samples of this sensor."""
        return {
            "wavelength": torch.as_tensor(self.wavelength_nm, dtype=torch.float32).expand(size, -1).clone(),
            "fwhm": torch.as_tensor(self.fwhm_nm, dtype=torch.float32).expand(size, -1).clone(),
            "gsd": torch.full((size,), float(self.gsd_m)),
            "sensor": [self.sensor] * size,
            "level": [self.level] * size,
        }


@dataclass
class LabelledImage:
    """One segmentation item: ``image`` (C, H, W) float32 (NaN = no data), ``labels`` (H, W) int64 (0 = ignore)."""

    image: np.ndarray
    labels: np.ndarray
    name: str


@dataclass
class ChangeItem:
    """One change-detection item: two co-registered dates and labels 0 ignore, 1 unchanged, 2 changed."""

    before: np.ndarray
    after: np.ndarray
    labels: np.ndarray
    name: str


@dataclass
class SceneItem:
    """One scene-classification patch: ``image`` (C, H, W) and its class ``label`` in 1..K."""

    image: np.ndarray
    label: int
    name: str


@dataclass
class TaskData:
    """A task's items by split with the sensor and class names; ``protocol`` says how train/test were drawn."""

    task: str
    sensor: SensorInfo
    class_names: list[str]
    train: list[Any]
    test: list[Any]
    validation: list[Any] = field(default_factory=list)
    protocol: str = "fixed"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# ---------------------------------------------------------------- band metadata


def read_wavelength_table(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength nm, FWHM nm) from a text table: rows of numbers, comment/header lines skipped.

    A leading index column (consecutive integers) is skipped; the next two columns are centre and FWHM. Values
    below 30 are taken as micrometres and converted to nm (no sensor has a band centre below 30 nm).
    """
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.replace(",", " ").split()
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            continue
    if not rows:
        raise ValueError(f"{path}: no numeric rows in the wavelength table")
    width = min(len(r) for r in rows)
    table = np.array([r[:width] for r in rows], dtype=np.float64)
    first = table[:, 0]
    if width >= 3 and np.all(first == np.round(first)) and np.all(np.diff(first) == 1):
        table = table[:, 1:]
    if table.shape[1] < 2:
        raise ValueError(f"{path}: need centre and FWHM columns, found {table.shape[1]} column(s)")
    wavelength, fwhm = table[:, 0], table[:, 1]
    if np.nanmax(wavelength) < 30:
        wavelength, fwhm = wavelength * 1000.0, fwhm * 1000.0
    return wavelength, fwhm


def _sensor_info(
    meta_wavelength: np.ndarray | None,
    meta_fwhm: np.ndarray | None,
    meta_gsd: float | None,
    wavelength_nm: Sequence[float] | None,
    fwhm_nm: Sequence[float] | None,
    gsd_m: float | None,
    sensor: str,
    level: str,
    source: str,
) -> SensorInfo:
    """Explicit values win over the file's; anything missing on both sides is an error naming it."""
    wavelength = np.asarray(wavelength_nm if wavelength_nm is not None else meta_wavelength, dtype=np.float64)
    fwhm = np.asarray(fwhm_nm if fwhm_nm is not None else meta_fwhm, dtype=np.float64)
    gsd = gsd_m if gsd_m is not None else meta_gsd
    missing = [
        name
        for name, value in (("wavelength_nm", wavelength), ("fwhm_nm", fwhm))
        if value.ndim != 1 or not np.isfinite(value).all()
    ]
    if gsd is None:
        missing.append("gsd_m")
    if missing:
        raise ValueError(f"{source}: no {', '.join(missing)} in the file; pass them explicitly")
    return SensorInfo(wavelength, fwhm, float(gsd), sensor, level)  # type: ignore[arg-type]


# ---------------------------------------------------------------- (a) cube + label raster


def _mat_array(path: Path, key: str | None) -> np.ndarray:
    """The array under ``key`` in a MATLAB file, or its only non-metadata array."""
    content = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    if key is None:
        if len(content) != 1:
            raise ValueError(f"{path}: holds {sorted(content)}; say which one with a key")
        key = next(iter(content))
    if key not in content:
        raise ValueError(f"{path}: no variable {key!r} (has {sorted(content)})")
    return np.asarray(content[key])


def read_labels(path: str | Path, key: str | None = None) -> np.ndarray:
    """A label raster (GeoTIFF / ENVI / anything GDAL reads, or ``.mat``) as int64 (H, W)."""
    path = Path(path)
    if path.suffix.lower() == ".mat":
        labels = _mat_array(path, key)
    else:
        with rasterio.open(path.with_suffix("") if path.suffix.lower() == ".hdr" else path) as src:
            labels = src.read(1)
    if labels.ndim != 2:
        raise ValueError(f"{path}: labels must be 2-D, got shape {labels.shape}")
    labels = np.asarray(labels)
    if not np.all(np.isfinite(labels)) or np.any(labels < 0) or np.any(labels != np.round(labels)):
        raise ValueError(f"{path}: labels must be non-negative integers")
    return labels.astype(np.int64)


def _label_transform(path: Path) -> tuple[float, ...] | None:
    if path.suffix.lower() == ".mat":
        return None
    with rasterio.open(path) as src:
        return None if src.transform.is_identity else tuple(src.transform)[:6]


def load_cube(
    path: str | Path,
    *,
    wavelength_nm: Sequence[float] | None = None,
    fwhm_nm: Sequence[float] | None = None,
    gsd_m: float | None = None,
    sensor: str = "other",
    level: str = "L2",
    scale: float | None = None,
    key: str | None = None,
) -> tuple[np.ndarray, SensorInfo, tuple[float, ...] | None]:
    """A whole cube (C, H, W) float32, good bands only, no-data NaN; its :class:`SensorInfo`; its geotransform.

    ``.mat`` cubes are (H, W, C) as the classic benchmarks ship them (C is the axis matching the wavelength table
    when another axis would be ambiguous) and need ``wavelength_nm``, ``fwhm_nm`` and ``gsd_m``; ``scale``
    multiplies the stored values into physical units (1 for ``.mat`` unless given).
    """
    path = Path(path)
    if path.suffix.lower() == ".mat":
        raw = _mat_array(path, key).astype(np.float32)
        if raw.ndim != 3:
            raise ValueError(f"{path}: cube must be 3-D, got {raw.shape}")
        info = _sensor_info(None, None, None, wavelength_nm, fwhm_nm, gsd_m, sensor, level, str(path))
        axis = 2 if raw.shape[2] == info.bands else int(np.argmax(np.array(raw.shape) == info.bands))
        if raw.shape[axis] != info.bands:
            raise ValueError(f"{path}: cube {raw.shape} has no axis of {info.bands} bands (wavelength table)")
        cube = np.moveaxis(raw, axis, 0) * np.float32(1.0 if scale is None else scale)
        return np.ascontiguousarray(cube), info, None
    with open_product(path, sensor=sensor, level=level, scale=scale) as scene:
        meta = scene.meta
        cube = scene.read_all().astype(np.float32)
    info = _sensor_info(
        meta.wavelength_nm, meta.fwhm_nm, meta.gsd_m, wavelength_nm, fwhm_nm, gsd_m, sensor, level, str(path)
    )
    if info.bands != cube.shape[0]:
        raise ValueError(f"{path}: {cube.shape[0]} bands but {info.bands} wavelengths given")
    good = np.asarray(meta.good_bands, dtype=bool)
    return np.ascontiguousarray(cube[good]), info.select(good), meta.transform


def load_cube_scene(
    image: str | Path,
    labels: str | Path,
    *,
    label_key: str | None = None,
    **cube_options: Any,
) -> tuple[LabelledImage, SensorInfo]:
    """Case (a): a cube and its label raster, checked to be aligned (same size and, when both are georeferenced,
    the same geotransform)."""
    cube, info, transform = load_cube(image, **cube_options)
    label_array = read_labels(labels, label_key)
    if label_array.shape != cube.shape[1:]:
        raise ValueError(f"labels {label_array.shape} do not match the cube's {cube.shape[1:]} ({labels})")
    label_transform = _label_transform(Path(labels))
    if transform is not None and label_transform is not None and not np.allclose(transform, label_transform):
        raise ValueError(f"{labels}: geotransform {label_transform} differs from the image's {transform}")
    return LabelledImage(cube, label_array, Path(image).stem), info


def block_split(
    labels: np.ndarray, block: int, test_fraction: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint spatial train/test (the honest protocol): whole ``block``×``block`` squares go to test, in random
    order, until they hold ``test_fraction`` of the labelled pixels; the rest is train. Returns boolean masks."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    height, width = labels.shape
    rows, cols = -(-height // block), -(-width // block)
    block_id = (np.arange(height)[:, None] // block) * cols + np.arange(width)[None, :] // block
    counts = np.bincount(block_id[labels > 0], minlength=rows * cols)
    candidates = np.flatnonzero(counts)
    if candidates.size < 2:
        raise ValueError(f"need labelled pixels in at least two {block}-pixel blocks to split")
    order = np.random.default_rng(seed).permutation(candidates)
    target = test_fraction * counts.sum()
    cumulative = np.cumsum(counts[order])
    n_test = int(np.clip(np.searchsorted(cumulative, target) + 1, 1, candidates.size - 1))
    test_blocks = np.zeros(rows * cols, dtype=bool)
    test_blocks[order[:n_test]] = True
    test = test_blocks[block_id] & (labels > 0)
    return (labels > 0) & ~test, test


def per_class_split(
    labels: np.ndarray, per_class: int | float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The classic protocol: ``per_class`` random training pixels of every class (an int count, or a fraction
    when below 1; a class smaller than the count keeps half its pixels for test); all other labelled pixels test.
    Train and test pixels are spatial neighbours, so scores are optimistic: report it as this protocol."""
    rng = np.random.default_rng(seed)
    train = np.zeros(labels.shape, dtype=bool)
    flat = labels.ravel()
    for value in np.unique(flat[flat > 0]):
        where = np.flatnonzero(flat == value)
        count = int(round(per_class * where.size)) if per_class < 1 else int(per_class)
        if count >= where.size:
            count = where.size // 2
        count = max(1, count)
        train.ravel()[rng.choice(where, size=count, replace=False)] = True
    return train, (labels > 0) & ~train


def windows(item: LabelledImage, size: int, keep: np.ndarray | None = None) -> list[LabelledImage]:
    """``size``×``size`` windows tiling an item (edges padded with NaN / label 0), labels outside ``keep`` set to
    0; windows with no label left are dropped."""
    labels = item.labels if keep is None else np.where(keep, item.labels, 0)
    channels, height, width = item.image.shape
    pad_h, pad_w = -height % size, -width % size
    image = np.pad(item.image, ((0, 0), (0, pad_h), (0, pad_w)), constant_values=np.nan)
    labels = np.pad(labels, ((0, pad_h), (0, pad_w)))
    out = []
    for row in range(0, height + pad_h, size):
        for col in range(0, width + pad_w, size):
            window = labels[row : row + size, col : col + size]
            if window.any():
                out.append(
                    LabelledImage(
                        np.ascontiguousarray(image[:, row : row + size, col : col + size]),
                        np.ascontiguousarray(window),
                        f"{item.name}_r{row}_c{col}",
                    )
                )
    return out


def _split_masks(
    labels: np.ndarray,
    protocol: str,
    window: int,
    test_fraction: float,
    per_class: int | float,
    seed: int,
    test_labels: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    if protocol == "blocks":
        return block_split(labels, window, test_fraction, seed)
    if protocol == "per_class":
        return per_class_split(labels, per_class, seed)
    if protocol == "fixed":
        if test_labels is None:
            raise ValueError("protocol 'fixed' needs a test label raster (test_labels)")
        return labels > 0, test_labels > 0
    raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


def cube_segmentation_data(
    image: str | Path,
    labels: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    protocol: str = "blocks",
    window: int = 32,
    test_fraction: float = 0.3,
    per_class: int | float = 50,
    seed: int = 0,
    test_labels: str | Path | None = None,
    label_key: str | None = None,
    **cube_options: Any,
) -> TaskData:
    """Case (a) end to end: load, split by ``protocol`` (``blocks``: disjoint ``window``-sized blocks, the default;
    ``per_class``: classic random pixels; ``fixed``: ``labels`` is the training raster and ``test_labels`` the test
    raster, as Houston ships), and cut into ``window``-sized items (a multiple of the patch size, 8)."""
    scene, info = load_cube_scene(image, labels, label_key=label_key, **cube_options)
    test_array = None
    if test_labels is not None:
        test_array = read_labels(test_labels, label_key)
        if test_array.shape != scene.labels.shape:
            raise ValueError(f"test labels {test_array.shape} do not match {scene.labels.shape}")
    train_mask, test_mask = _split_masks(
        scene.labels, protocol, window, test_fraction, per_class, seed, test_array
    )
    truth = scene.labels if test_array is None else np.where(test_mask, test_array, scene.labels)
    full = LabelledImage(scene.image, truth, scene.name)
    classes = int(truth.max())
    return TaskData(
        task="segmentation",
        sensor=info,
        class_names=_class_names(class_names, classes),
        train=windows(full, window, train_mask),
        test=windows(full, window, test_mask),
        protocol=protocol if protocol != "per_class" else f"per_class ({per_class} px/class, classic)",
    )


def _class_names(names: Sequence[str] | None, classes: int) -> list[str]:
    if names is None:
        return [f"class {i}" for i in range(1, classes + 1)]
    if len(names) < classes:
        raise ValueError(f"{len(names)} class names for labels up to {classes}")
    return list(names)


# ---------------------------------------------------------------- (b) tiles + label tiles + split lists


def read_split_list(path: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) paths of a split CSV with ``image,mask`` columns, resolved against the CSV's folder."""
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"image", "mask"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: need 'image' and 'mask' columns, got {reader.fieldnames}")
        return [(path.parent / row["image"], path.parent / row["mask"]) for row in reader]


def load_tile_split(
    split_csv: str | Path, **cube_options: Any
) -> tuple[list[LabelledImage], SensorInfo | None]:
    """Case (b): every (tile, label tile) of one split list, aligned and with identical band metadata."""
    items: list[LabelledImage] = []
    info: SensorInfo | None = None
    for image, mask in read_split_list(split_csv):
        item, tile_info = load_cube_scene(image, mask, **cube_options)
        if info is None:
            info = tile_info
        elif not np.array_equal(info.wavelength_nm, tile_info.wavelength_nm):
            raise ValueError(f"{image}: band set differs from the split's first tile")
        items.append(item)
    return items, info


def tile_segmentation_data(
    root: str | Path,
    *,
    train: str = "train_files.csv",
    test: str = "test_files.csv",
    validation: str | None = "validation_files.csv",
    class_names: Sequence[str] | None = None,
    **cube_options: Any,
) -> TaskData:
    """Case (b) end to end with the fixed split lists of ``root`` (the enmap-potsdam layout)."""
    root = Path(root)
    train_items, info = load_tile_split(root / train, **cube_options)
    test_items, test_info = load_tile_split(root / test, **cube_options)
    val_items: list[LabelledImage] = []
    if validation is not None and (root / validation).exists():
        val_items, _ = load_tile_split(root / validation, **cube_options)
    if info is None or test_info is None:
        raise ValueError(f"{root}: empty train or test split list")
    for item in test_items + val_items:
        if item.image.shape[0] != info.bands:
            raise ValueError(f"{item.name}: {item.image.shape[0]} good bands, train tiles have {info.bands}")
    classes = int(max(int(i.labels.max()) for i in train_items + test_items + val_items))
    return TaskData(
        "segmentation",
        info,
        _class_names(class_names, classes),
        train_items,
        test_items,
        val_items,
        protocol="fixed",
    )


# ---------------------------------------------------------------- (c) bi-temporal pairs + change mask


def change_labels(
    mask: np.ndarray, changed: Sequence[int] = (1,), unchanged: Sequence[int] = (0,)
) -> np.ndarray:
    """Map a change mask to 0 ignore, 1 unchanged, 2 changed (values in neither list are ignored)."""
    out = np.zeros(mask.shape, dtype=np.int64)
    out[np.isin(mask, list(unchanged))] = 1
    out[np.isin(mask, list(changed))] = 2
    return out


def load_change_pair(
    before: str | Path,
    after: str | Path,
    mask: str | Path,
    *,
    changed: Sequence[int] = (1,),
    unchanged: Sequence[int] = (0,),
    label_key: str | None = None,
    **cube_options: Any,
) -> tuple[ChangeItem, SensorInfo]:
    """Case (c): two dates of one sensor and a change mask (``changed`` / ``unchanged`` values as stored; e.g.
    ``changed=(255,)`` for 0/255 masks). Bands good on only one date are dropped from both."""
    first, info_a, _ = load_cube(before, **cube_options)
    second, info_b, _ = load_cube(after, **cube_options)
    if first.shape[1:] != second.shape[1:]:
        raise ValueError(f"dates differ in size: {first.shape[1:]} vs {second.shape[1:]}")
    common = np.intersect1d(info_a.wavelength_nm, info_b.wavelength_nm)
    keep_a, keep_b = np.isin(info_a.wavelength_nm, common), np.isin(info_b.wavelength_nm, common)
    labels = change_labels(read_labels(mask, label_key), changed, unchanged)
    if labels.shape != first.shape[1:]:
        raise ValueError(f"change mask {labels.shape} does not match the images' {first.shape[1:]}")
    item = ChangeItem(first[keep_a], second[keep_b], labels, Path(before).stem)
    return item, info_a.select(keep_a)


def change_data(
    pairs: Sequence[dict[str, Any]],
    *,
    protocol: str = "blocks",
    window: int = 32,
    test_fraction: float = 0.3,
    per_class: int | float = 50,
    seed: int = 0,
    **cube_options: Any,
) -> TaskData:
    """Case (c) end to end: each pair (``before``, ``after``, ``mask`` and optional ``changed`` / ``unchanged``)
    is split by ``protocol`` (``blocks`` or ``per_class``; ``fixed``: give ``split: train|test`` per pair) and cut
    into ``window``-sized items."""
    train: list[ChangeItem] = []
    test: list[ChangeItem] = []
    info: SensorInfo | None = None
    for spec in pairs:
        spec = dict(spec)
        fixed_split = spec.pop("split", None)
        item, pair_info = load_change_pair(**spec, **cube_options)
        if info is None:
            info = pair_info
        elif not np.array_equal(info.wavelength_nm, pair_info.wavelength_nm):
            raise ValueError(f"{item.name}: band set differs from the first pair's")
        if protocol == "fixed":
            if fixed_split not in ("train", "test"):
                raise ValueError(f"{item.name}: protocol 'fixed' needs split: train or test per pair")
            (train if fixed_split == "train" else test).extend(change_windows(item, window, None))
            continue
        train_mask, test_mask = _split_masks(
            item.labels, protocol, window, test_fraction, per_class, seed, None
        )
        train += change_windows(item, window, train_mask)
        test += change_windows(item, window, test_mask)
    if info is None:
        raise ValueError("no change pairs given")
    return TaskData("change", info, ["unchanged", "changed"], train, test, protocol=protocol)


def change_windows(item: ChangeItem, size: int, keep: np.ndarray | None) -> list[ChangeItem]:
    """Windows of a pair, as :func:`windows` does for one image."""
    stacked = LabelledImage(np.concatenate([item.before, item.after]), item.labels, item.name)
    bands = item.before.shape[0]
    return [
        ChangeItem(w.image[:bands], w.image[bands:], w.labels, w.name) for w in windows(stacked, size, keep)
    ]


# ---------------------------------------------------------------- (d) scene classification patch folders


def _center_fit(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop or NaN-pad a patch to ``size``×``size``."""
    _, height, width = image.shape
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    image = image[:, top : top + size, left : left + size]
    pad_h, pad_w = size - image.shape[1], size - image.shape[2]
    return np.pad(
        image,
        ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)),
        constant_values=np.nan,
    )


def scene_folder_data(
    root: str | Path,
    *,
    size: int = 32,
    test_fraction: float = 0.3,
    seed: int = 0,
    layout: str = "chw",
    wavelength_nm: Sequence[float] | None = None,
    fwhm_nm: Sequence[float] | None = None,
    gsd_m: float | None = None,
    sensor: str = "other",
    level: str = "L2",
    scale: float | None = None,
) -> TaskData:
    """Case (d): ``root/<class name>/<patch>`` (GeoTIFF / ENVI via ``open_product``, or ``.npy`` with explicit
    band metadata; ``layout`` ``chw`` or ``hwc`` for ``.npy``). Classes are the sorted folder names (labels 1..K);
    a stratified random ``test_fraction`` of each class's patches is test (patches are separate scenes)."""
    root = Path(root)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if len(class_dirs) < 2:
        raise ValueError(f"{root}: need at least two class folders")
    rng = np.random.default_rng(seed)
    train: list[SceneItem] = []
    test: list[SceneItem] = []
    info: SensorInfo | None = None
    for label, folder in enumerate(class_dirs, start=1):
        files = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in (".npy", ".tif", ".tiff", ".hdr", ".mat")
        )
        items = []
        for path in files:
            if path.suffix.lower() == ".npy":
                raw = np.load(path).astype(np.float32)
                image = (raw if layout == "chw" else np.moveaxis(raw, -1, 0)) * np.float32(scale or 1.0)
                item_info = _sensor_info(
                    None, None, None, wavelength_nm, fwhm_nm, gsd_m, sensor, level, str(path)
                )
            else:
                image, item_info, _ = load_cube(
                    path,
                    wavelength_nm=wavelength_nm,
                    fwhm_nm=fwhm_nm,
                    gsd_m=gsd_m,
                    sensor=sensor,
                    level=level,
                    scale=scale,
                )
            if info is None:
                info = item_info
            elif not np.array_equal(info.wavelength_nm, item_info.wavelength_nm):
                raise ValueError(f"{path}: band set differs from the first patch's")
            items.append(SceneItem(_center_fit(image, size), label, f"{folder.name}/{path.stem}"))
        if len(items) < 2:
            raise ValueError(f"{folder}: need at least two patches per class")
        order = rng.permutation(len(items))
        n_test = min(len(items) - 1, max(1, int(round(test_fraction * len(items)))))
        test += [items[i] for i in order[:n_test]]
        train += [items[i] for i in order[n_test:]]
    assert info is not None
    return TaskData("scene", info, [p.name for p in class_dirs], train, test, protocol="stratified random")


# ---------------------------------------------------------------- config dispatch

_KINDS = {
    "tiles": tile_segmentation_data,
    "cube": cube_segmentation_data,
    "change": change_data,
    "scenes": scene_folder_data,
}


def load_data(spec: dict[str, Any]) -> TaskData:
    """Build a task's data from a config mapping: ``kind`` (``tiles``, ``cube``, ``change``, ``scenes``) plus
    that adapter's keyword arguments; ``wavelength_table`` (a file) fills ``wavelength_nm`` / ``fwhm_nm``."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"data kind {kind!r} unknown; known: {', '.join(_KINDS)}")
    table = spec.pop("wavelength_table", None)
    if table is not None:
        wavelength, fwhm = read_wavelength_table(table)
        spec.setdefault("wavelength_nm", wavelength.tolist())
        spec.setdefault("fwhm_nm", fwhm.tolist())
    try:
        return _KINDS[kind](**spec)
    except TypeError as exc:
        raise ValueError(f"data kind {kind!r}: {exc}") from exc
