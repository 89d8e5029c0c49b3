"""Dataset adapters for labelled hyperspectral data as users have it, and the sampling protocols of the field.

Every adapter takes the sensor's wavelengths / FWHM / GSD explicitly (a foreign sensor is only usable by SpecAware
through them); for GeoTIFF and ENVI files the values in the file are used where the caller passes none. Adapters
return in-memory items with one label convention everywhere: ``labels`` int64 (H, W), 0 = unlabelled / ignored,
1..K = classes. Images are float32 (C, H, W) in physical units with no-data as NaN, bad bands already dropped.

Shapes supported:

- (a) one cube + one label raster (ENVI / GeoTIFF via :func:`hyper400k.product.open_product`, or MATLAB ``.mat``
  as Indian Pines / Salinas / Pavia ship, with a separate wavelength table): :func:`load_cube_scene`, then split
  with :func:`block_split` (disjoint spatial blocks stratified so every class is in train and test, the honest
  default), :func:`per_class_split` (random per-class pixel counts, the classic protocol: train and test pixels
  are spatial neighbours) or fixed train/test label rasters, and cut into windows (up to the whole scene) by
  :func:`split_scene`: :func:`cube_segmentation_data`;
- (b) tiles + label tiles + split lists (``image,mask`` CSVs): :func:`load_tile_split` / :func:`tile_segmentation_data`;
- (c) bi-temporal pairs + change mask: :func:`load_change_pair` / :func:`change_data`;
- (d) patch folders named by class (scene classification): :func:`scene_folder_data`;
- (e) bands × pixels matrices with row / column counts (``Y``, ``nRow``, ``nCol`` in ``.mat``, as unmixing sets
  ship), in column- or row-major pixel order, with abundance maps as labels (argmax) or as the targets of the
  ``abundance`` regression task: :func:`matrix_data` (cube files take abundance maps too).

The GSD is optional everywhere: unknown, the encoder's positions are unscaled (see :class:`SensorInfo`).
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
from hyper400k.text_files import read_text_file

PROTOCOLS = ("blocks", "per_class", "fixed")


@dataclass(frozen=True)
class SensorInfo:
    """Band metadata of the (good) bands of a dataset: centre wavelength and FWHM in nm, GSD in metres (``None``
    when unknown), the sensor and processing level names the model knows (``other`` for any foreign instrument).

    With no GSD the encoder's positional embedding is left unscaled: token (row, col) sits at (col, row), as if
    the GSD were 1 m. Relative positions within a window stay right; only the absolute ground scale is lost."""

    wavelength_nm: np.ndarray
    fwhm_nm: np.ndarray
    gsd_m: float | None
    sensor: str = "other"
    level: str = "L2"

    def __post_init__(self) -> None:
        if self.wavelength_nm.shape != self.fwhm_nm.shape or self.wavelength_nm.ndim != 1:
            raise ValueError(
                f"wavelength {self.wavelength_nm.shape} and fwhm {self.fwhm_nm.shape} must be equal 1-D"
            )
        if self.gsd_m is not None and not self.gsd_m > 0:
            raise ValueError(f"gsd must be positive metres, got {self.gsd_m}")

    @property
    def bands(self) -> int:
        return int(self.wavelength_nm.size)

    @property
    def position_scale(self) -> float:
        """Metres per pixel given to the positional embedding: the GSD, or 1 (unscaled) when it is unknown."""
        return 1.0 if self.gsd_m is None else float(self.gsd_m)

    def select(self, keep: np.ndarray) -> SensorInfo:
        """The same sensor restricted to the bands where ``keep`` is True."""
        return SensorInfo(self.wavelength_nm[keep], self.fwhm_nm[keep], self.gsd_m, self.sensor, self.level)

    def batch_fields(self, size: int) -> dict[str, Any]:
        """The per-sample metadata keys of a model batch for ``size`` samples of this sensor."""
        return {
            "wavelength": torch.as_tensor(self.wavelength_nm, dtype=torch.float32).expand(size, -1).clone(),
            "fwhm": torch.as_tensor(self.fwhm_nm, dtype=torch.float32).expand(size, -1).clone(),
            "gsd": torch.full((size,), self.position_scale),
            "sensor": [self.sensor] * size,
            "level": [self.level] * size,
        }


@dataclass
class LabelledImage:
    """One segmentation item: ``image`` (C, H, W) float32 (NaN = no data), ``labels`` (H, W) int64 (0 = ignore).

    ``abundance`` (E, H, W) float32: per-pixel fractions of E endmembers, the targets of the ``abundance`` task
    (``labels`` then only marks which pixels count: > 0). ``origin``: (row, col) of the window in its scene."""

    image: np.ndarray
    labels: np.ndarray
    name: str
    abundance: np.ndarray | None = None
    origin: tuple[int, int] = (0, 0)


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
class SplitScene:
    """A whole labelled scene with its train / test pixel masks, kept so predictions can be drawn scene-wide."""

    scene: LabelledImage
    train: np.ndarray
    test: np.ndarray


@dataclass
class TaskData:
    """A task's items by split with the sensor and class names; ``protocol`` says how train/test were drawn.

    ``class_names`` are the classes (``segmentation``, ``change``, ``scene``) or the endmembers (``abundance``).
    ``scenes`` (single-scene adapters only) keep the whole scenes and ``window`` the (rows, cols) they were cut
    into, for whole-scene prediction maps."""

    task: str
    sensor: SensorInfo
    class_names: list[str]
    train: list[Any]
    test: list[Any]
    validation: list[Any] = field(default_factory=list)
    protocol: str = "fixed"
    scenes: list[SplitScene] = field(default_factory=list)
    window: tuple[int, int] | None = None

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
    for line in read_text_file(path).splitlines():
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
    """Explicit values win over the file's; missing wavelengths or FWHM are an error naming them. A GSD missing on
    both sides stays ``None`` (positions unscaled, see :class:`SensorInfo`)."""
    wavelength = np.asarray(wavelength_nm if wavelength_nm is not None else meta_wavelength, dtype=np.float64)
    fwhm = np.asarray(fwhm_nm if fwhm_nm is not None else meta_fwhm, dtype=np.float64)
    gsd = gsd_m if gsd_m is not None else meta_gsd
    missing = [
        name
        for name, value in (("wavelength_nm", wavelength), ("fwhm_nm", fwhm))
        if value.ndim != 1 or not np.isfinite(value).all()
    ]
    if missing:
        raise ValueError(f"{source}: no {', '.join(missing)} in the file; pass them explicitly")
    return SensorInfo(wavelength, fwhm, None if gsd is None else float(gsd), sensor, level)


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
    when another axis would be ambiguous) and need ``wavelength_nm`` and ``fwhm_nm`` (``gsd_m`` optional); ``scale``
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


def _block_counts(labels: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(block id of every pixel (H, W), the class values present, per-block class pixel counts (blocks, K))."""
    height, width = labels.shape
    rows, cols = -(-height // block), -(-width // block)
    block_id = (np.arange(height)[:, None] // block) * cols + np.arange(width)[None, :] // block
    labelled = labels > 0
    classes = np.unique(labels[labelled])
    index = np.searchsorted(classes, labels[labelled])
    flat = np.bincount(block_id[labelled] * classes.size + index, minlength=rows * cols * classes.size)
    return block_id, classes, flat.reshape(rows * cols, classes.size)


def block_split(
    labels: np.ndarray, block: int, test_fraction: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint spatial train/test (the honest protocol), stratified: whole ``block``×``block`` squares go to
    test so that every class has pixels in both train and test, and each class's test share is near
    ``test_fraction``. Returns boolean (train, test) masks over the labelled pixels.

    Blocks are visited in a seeded random order. First each class (fewest blocks first) that has no test pixels
    yet gets one of its blocks; then any block joins test while it brings its classes closer to their share
    (classes weighted by 1 / their pixel count, so rare classes count as much as common ones). A block never
    joins test if that would take a class's last training pixels. Raises ``ValueError`` saying why when no such
    split exists (a class confined to one block, or blocks shared in a way that forbids it).
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if block < 1:
        raise ValueError(f"block must be a positive number of pixels, got {block}")
    block_id, classes, counts = _block_counts(labels, block)
    if classes.size == 0:
        raise ValueError("no labelled pixels to split")
    holders = (counts > 0).sum(axis=0)
    confined = classes[holders < 2]
    if confined.size:
        raise ValueError(
            f"class(es) {confined.tolist()} lie in a single {block}-pixel block: no spatial block split can put "
            "them in both train and test; use a smaller block or protocol per_class"
        )
    totals = counts.sum(axis=0)
    order = np.random.default_rng(seed).permutation(np.flatnonzero(counts.sum(axis=1)))
    test = np.zeros(counts.shape[0], dtype=bool)
    train_left = totals.copy()
    deficit = test_fraction * totals

    def allowed(b: int) -> bool:
        return not test[b] and bool(np.all(train_left - counts[b] > 0))

    def take(b: int) -> None:
        nonlocal train_left, deficit
        test[b] = True
        train_left = train_left - counts[b]
        deficit = deficit - counts[b]

    for c in np.argsort(holders, kind="stable"):
        if counts[test, c].any():
            continue
        options = [b for b in order if counts[b, c] > 0 and allowed(b)]
        if not options:
            raise ValueError(
                f"class {int(classes[c])}: every {block}-pixel block holding it would take another class's last "
                "training pixels; use a smaller block or protocol per_class"
            )
        take(options[0])
    weights = 1.0 / totals
    for b in order:
        if not allowed(b):
            continue
        need = np.maximum(deficit, 0.0)
        gain = float((np.minimum(counts[b], need) * weights).sum())
        excess = float((np.maximum(counts[b] - need, 0.0) * weights).sum())
        if gain > excess:
            take(b)
    test_mask = test[block_id] & (labels > 0)
    return (labels > 0) & ~test_mask, test_mask


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
        if where.size < 2:
            raise ValueError(
                f"class {int(value)} has a single labelled pixel: it cannot be in train and test"
            )
        count = int(round(per_class * where.size)) if per_class < 1 else int(per_class)
        if count >= where.size:
            count = where.size // 2
        count = max(1, count)
        train.ravel()[rng.choice(where, size=count, replace=False)] = True
    return train, (labels > 0) & ~train


def window_shape(window: int | str, height: int, width: int, multiple: int = 8) -> tuple[int, int]:
    """(rows, cols) of the windows: ``window`` pixels square, or ``scene``: the whole scene, padded up to a
    multiple of ``multiple`` (the patch sizes 2, 4 and 8 all divide 8)."""
    if window == "scene":
        return -(-height // multiple) * multiple, -(-width // multiple) * multiple
    if isinstance(window, int) and not isinstance(window, bool) and window > 0:
        return window, window
    raise ValueError(f"window must be a positive number of pixels or 'scene', got {window!r}")


def windows(
    item: LabelledImage, size: int | tuple[int, int], keep: np.ndarray | None = None
) -> list[LabelledImage]:
    """Windows of ``size`` (square, or (rows, cols)) tiling an item (edges padded with NaN / label 0 / abundance
    0), labels outside ``keep`` set to 0; windows with no label left are dropped."""
    rows_size, cols_size = (size, size) if isinstance(size, int) else size
    labels = item.labels if keep is None else np.where(keep, item.labels, 0)
    _, height, width = item.image.shape
    pad_h, pad_w = -height % rows_size, -width % cols_size
    image = np.pad(item.image, ((0, 0), (0, pad_h), (0, pad_w)), constant_values=np.nan)
    labels = np.pad(labels, ((0, pad_h), (0, pad_w)))
    abundance = None
    if item.abundance is not None:
        abundance = np.pad(item.abundance, ((0, 0), (0, pad_h), (0, pad_w)))
    out = []
    for row in range(0, height + pad_h, rows_size):
        for col in range(0, width + pad_w, cols_size):
            cut = (slice(row, row + rows_size), slice(col, col + cols_size))
            window = labels[cut]
            if window.any():
                out.append(
                    LabelledImage(
                        np.ascontiguousarray(image[(slice(None), *cut)]),
                        np.ascontiguousarray(window),
                        f"{item.name}_r{row}_c{col}",
                        None if abundance is None else np.ascontiguousarray(abundance[(slice(None), *cut)]),
                        (item.origin[0] + row, item.origin[1] + col),
                    )
                )
    return out


def _split_masks(
    labels: np.ndarray,
    protocol: str,
    block: int,
    test_fraction: float,
    per_class: int | float,
    seed: int,
    test_labels: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    if protocol == "blocks":
        return block_split(labels, block, test_fraction, seed)
    if protocol == "per_class":
        return per_class_split(labels, per_class, seed)
    if protocol == "fixed":
        if test_labels is None:
            raise ValueError("protocol 'fixed' needs a test label raster (test_labels)")
        return labels > 0, test_labels > 0
    raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


def _protocol_label(protocol: str, block: int, per_class: int | float) -> str:
    if protocol == "blocks":
        return f"blocks ({block} px, stratified, disjoint)"
    if protocol == "per_class":
        return f"per_class ({per_class} px/class, classic random pixels: train and test are neighbours)"
    return protocol


def split_scene(
    scene: LabelledImage,
    info: SensorInfo,
    *,
    task: str = "segmentation",
    class_names: Sequence[str] | None = None,
    protocol: str = "blocks",
    window: int | str = 32,
    block: int = 16,
    test_fraction: float = 0.3,
    per_class: int | float = 50,
    seed: int = 0,
    test_labels: np.ndarray | None = None,
    classes: int | None = None,
) -> TaskData:
    """One labelled scene -> train / test windows: split the labelled pixels by ``protocol`` (``blocks`` of
    ``block`` pixels, stratified: the default; ``per_class``: classic random pixels; ``fixed``: ``scene.labels``
    are the training labels and ``test_labels`` the test ones), then cut into ``window``-sized items (``scene``:
    one item per split holding the whole scene). The block size is independent of the window size. ``classes``:
    the size of the class set when it is known (the labels may not use its last classes)."""
    if test_labels is not None and test_labels.shape != scene.labels.shape:
        raise ValueError(f"test labels {test_labels.shape} do not match {scene.labels.shape}")
    train_mask, test_mask = _split_masks(
        scene.labels, protocol, block, test_fraction, per_class, seed, test_labels
    )
    truth = scene.labels if test_labels is None else np.where(test_mask, test_labels, scene.labels)
    full = LabelledImage(scene.image, truth, scene.name, scene.abundance)
    shape = window_shape(window, *truth.shape)
    if task == "abundance":
        if scene.abundance is None:
            raise ValueError(f"{scene.name}: the abundance task needs abundance maps")
        names = list(class_names) if class_names is not None else []
        names = names or [f"endmember {i}" for i in range(1, scene.abundance.shape[0] + 1)]
        if len(names) != scene.abundance.shape[0]:
            raise ValueError(f"{len(names)} endmember names for {scene.abundance.shape[0]} abundance maps")
    else:
        names = _class_names(class_names, max(int(truth.max()), classes or 0))
    return TaskData(
        task=task,
        sensor=info,
        class_names=names,
        train=windows(full, shape, train_mask),
        test=windows(full, shape, test_mask),
        protocol=_protocol_label(protocol, block, per_class),
        scenes=[SplitScene(full, train_mask, test_mask)],
        window=shape,
    )


def cube_segmentation_data(
    image: str | Path,
    labels: str | Path | None = None,
    *,
    abundances: str | Path | None = None,
    abundance_key: str | None = None,
    target: str = "labels",
    min_abundance: float = 0.0,
    class_names: Sequence[str] | None = None,
    protocol: str = "blocks",
    window: int | str = 32,
    block: int = 16,
    test_fraction: float = 0.3,
    per_class: int | float = 50,
    seed: int = 0,
    test_labels: str | Path | None = None,
    label_key: str | None = None,
    **cube_options: Any,
) -> TaskData:
    """Case (a) end to end: load, split and cut into windows as :func:`split_scene` says (``fixed``: ``labels``
    is the training raster and ``test_labels`` the test raster, as Houston ships). Abundance maps
    (``abundances``, (H, W, E) or (E, H, W)) can stand in for the label raster, as for :func:`matrix_data`."""
    endmembers = None
    if abundances is None:
        if labels is None:
            raise ValueError(f"{image}: give labels or abundances")
        scene, info = load_cube_scene(image, labels, label_key=label_key, **cube_options)
    else:
        cube, info, _ = load_cube(image, **cube_options)
        scene = LabelledImage(cube, np.zeros(cube.shape[1:], dtype=np.int64), Path(image).stem)
        scene, endmembers = with_targets(
            scene, abundances, abundance_key, labels, label_key, target, min_abundance, "column"
        )
    test_array = None if test_labels is None else read_labels(test_labels, label_key)
    return split_scene(
        scene,
        info,
        task="abundance" if target == "abundance" else "segmentation",
        classes=endmembers,
        class_names=class_names,
        protocol=protocol,
        window=window,
        block=block,
        test_fraction=test_fraction,
        per_class=per_class,
        seed=seed,
        test_labels=test_array,
    )


# ---------------------------------------------------------------- (e) bands × pixels matrices (unmixing sets)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    """The named arrays of a MATLAB ``.mat`` or NumPy ``.npz`` file (MATLAB's metadata entries dropped)."""
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return {k: np.asarray(v) for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    if suffix == ".npz":
        with np.load(path) as content:
            return {k: content[k] for k in content.files}
    raise ValueError(f"{path}: expected a .mat or .npz file")


def pixels_to_grid(matrix: np.ndarray, rows: int, cols: int, order: str) -> np.ndarray:
    """(D, rows·cols) pixel columns -> (D, rows, cols). ``order`` ``column``: pixel p at (p mod rows, p div rows),
    MATLAB's column-major order (``reshape(Y', nRow, nCol, [])``), how Samson, Jasper Ridge and Urban ship;
    ``row``: pixel p at (p div cols, p mod cols), C / NumPy row-major order."""
    depth = matrix.shape[0]
    if order == "column":
        return np.ascontiguousarray(matrix.reshape(depth, cols, rows).transpose(0, 2, 1))
    if order == "row":
        return np.ascontiguousarray(matrix.reshape(depth, rows, cols))
    raise ValueError(f"pixel order must be column or row, got {order!r}")


def _pixel_layers(
    array: np.ndarray, rows: int, cols: int, order: str, source: str, depth: int | None = None
) -> np.ndarray:
    """An array laid out per pixel as (D, rows·cols) or (rows·cols, D) (pixel ``order``), or on the grid as
    (rows, cols), (D, rows, cols) or (rows, cols, D) -> (D, rows, cols). ``depth`` settles (D, N) vs (N, D)
    when D is known."""
    pixels = rows * cols
    if array.ndim == 1 and array.size == pixels:
        array = array[None, :]
    if array.ndim == 2 and array.shape == (rows, cols) and depth in (None, 1):
        return array[None]
    if array.ndim == 2:
        if array.shape[1] == pixels and depth in (None, array.shape[0]):
            return pixels_to_grid(array, rows, cols, order)
        if array.shape[0] == pixels and depth in (None, array.shape[1]):
            return pixels_to_grid(array.T, rows, cols, order)
    if array.ndim == 3:
        if array.shape[1:] == (rows, cols):
            return array
        if array.shape[:2] == (rows, cols):
            return np.moveaxis(array, -1, 0)
    expected = f"{depth} x " if depth else ""
    raise ValueError(
        f"{source}: shape {array.shape} fits neither {expected}{pixels} pixels (nRow {rows} x nCol {cols}) "
        f"nor a {rows} x {cols} grid"
    )


def _pick(arrays: dict[str, np.ndarray], key: str | None, fits: Any, path: Path, what: str) -> np.ndarray:
    """The array under ``key``, or the only one ``fits`` accepts."""
    if key is not None:
        if key not in arrays:
            raise ValueError(f"{path}: no variable {key!r} (has {sorted(arrays)})")
        return arrays[key]
    matches = [name for name, value in arrays.items() if fits(value)]
    if len(matches) != 1:
        found = f"several ({', '.join(sorted(matches))})" if matches else "none"
        raise ValueError(f"{path}: {found} of {sorted(arrays)} could be the {what}; say which with a key")
    return arrays[matches[0]]


def _count(arrays: dict[str, np.ndarray], given: int | None, key: str, path: Path) -> int:
    if given is not None:
        return int(given)
    if key not in arrays:
        raise ValueError(f"{path}: no {key!r} (has {sorted(arrays)}); give rows and cols explicitly")
    value = np.asarray(arrays[key], dtype=np.float64).ravel()
    if value.size != 1 or value[0] < 1 or value[0] != round(value[0]):
        raise ValueError(f"{path}: {key} must be one positive integer, got {value.tolist()}")
    return int(value[0])


def load_matrix_scene(
    image: str | Path,
    *,
    key: str | None = None,
    rows: int | None = None,
    cols: int | None = None,
    rows_key: str = "nRow",
    cols_key: str = "nCol",
    order: str = "column",
    wavelength_nm: Sequence[float] | None = None,
    fwhm_nm: Sequence[float] | None = None,
    gsd_m: float | None = None,
    sensor: str = "other",
    level: str = "L2",
    scale: float | None = None,
) -> tuple[LabelledImage, SensorInfo]:
    """A bands × pixels matrix (``.mat`` / ``.npz``, as unmixing sets ship: ``Y`` with ``nRow``, ``nCol``) as an
    unlabelled scene (C, rows, cols). The matrix may also be pixels × bands; the band axis is the one matching
    the wavelength list. ``rows`` / ``cols`` override the file's ``rows_key`` / ``cols_key``; ``order`` is the
    pixel order (:func:`pixels_to_grid`); ``scale`` multiplies the stored values into physical units."""
    path = Path(image)
    arrays = _arrays(path)
    height = _count(arrays, rows, rows_key, path)
    width = _count(arrays, cols, cols_key, path)
    info = _sensor_info(None, None, None, wavelength_nm, fwhm_nm, gsd_m, sensor, level, str(path))
    pixels = height * width

    def fits(value: np.ndarray) -> bool:
        return value.ndim == 2 and sorted(value.shape) == sorted((info.bands, pixels))

    matrix = _pick(arrays, key, fits, path, f"{info.bands} x {pixels} matrix")
    cube = _pixel_layers(np.asarray(matrix, dtype=np.float32), height, width, order, str(path), info.bands)
    cube = cube * np.float32(1.0 if scale is None else scale)
    return LabelledImage(cube, np.zeros((height, width), dtype=np.int64), path.stem), info


def read_abundances(
    path: str | Path, key: str | None, rows: int, cols: int, order: str = "column"
) -> np.ndarray:
    """Abundance maps (E, rows, cols) float32 from a ``.mat`` / ``.npz`` (E × pixels in pixel ``order``, or a
    grid) or a raster (one band per endmember)."""
    path = Path(path)
    if path.suffix.lower() in (".mat", ".npz"):
        arrays = _arrays(path)

        def fits(value: np.ndarray) -> bool:
            return (value.ndim == 2 and rows * cols in value.shape) or (
                value.ndim == 3 and (value.shape[1:] == (rows, cols) or value.shape[:2] == (rows, cols))
            )

        raw = _pick(arrays, key, fits, path, "abundance maps")
    else:
        with rasterio.open(path) as src:
            raw = src.read()
    maps = _pixel_layers(np.asarray(raw, dtype=np.float32), rows, cols, order, str(path))
    if not np.isfinite(maps).all() or maps.min() < -1e-3:
        raise ValueError(f"{path}: abundances must be finite and non-negative")
    return maps


def with_targets(
    scene: LabelledImage,
    abundances: str | Path | None,
    abundance_key: str | None,
    labels: str | Path | None,
    label_key: str | None,
    target: str,
    min_abundance: float,
    order: str,
) -> tuple[LabelledImage, int | None]:
    """``scene`` with its labels and abundance maps, and the number of endmembers (None without maps). Labels come from ``labels`` (a raster or pixel vector) or,
    without it, as the argmax of the abundances (label i = endmember i dominates; pixels whose largest abundance
    is below ``min_abundance`` stay unlabelled). ``target`` ``abundance`` keeps the maps as regression targets
    (every pixel counts; labels then only stratify the split by dominant endmember)."""
    if target not in ("labels", "abundance"):
        raise ValueError(f"target must be labels or abundance, got {target!r}")
    height, width = scene.labels.shape
    maps = None if abundances is None else read_abundances(abundances, abundance_key, height, width, order)
    if labels is not None:
        path = Path(labels)
        if path.suffix.lower() in (".mat", ".npz"):
            raw = _pick(_arrays(path), label_key, lambda v: v.size == height * width, path, "labels")
            label_array = _pixel_layers(np.asarray(raw), height, width, order, str(path), 1)[0]
        else:
            label_array = read_labels(path, label_key)
        if label_array.shape != (height, width) or (label_array < 0).any():
            raise ValueError(f"{path}: labels must be non-negative and {height} x {width}")
        label_array = label_array.astype(np.int64)
    elif maps is not None:
        label_array = np.argmax(maps, axis=0).astype(np.int64) + 1
        if target == "labels":
            label_array[maps.max(axis=0) < min_abundance] = 0
    else:
        raise ValueError(f"{scene.name}: give labels or abundances")
    if target == "abundance" and maps is None:
        raise ValueError(f"{scene.name}: target abundance needs abundance maps (abundances)")
    label_array[~np.isfinite(scene.image).all(axis=0)] = 0
    kept = maps if target == "abundance" else None
    return LabelledImage(scene.image, label_array, scene.name, kept), None if maps is None else maps.shape[0]


def matrix_data(
    image: str | Path,
    *,
    abundances: str | Path | None = None,
    abundance_key: str | None = None,
    labels: str | Path | None = None,
    label_key: str | None = None,
    target: str = "labels",
    min_abundance: float = 0.0,
    class_names: Sequence[str] | None = None,
    protocol: str = "blocks",
    window: int | str = 32,
    block: int = 16,
    test_fraction: float = 0.3,
    per_class: int | float = 50,
    seed: int = 0,
    order: str = "column",
    **matrix_options: Any,
) -> TaskData:
    """Case (e) end to end: a bands × pixels matrix (:func:`load_matrix_scene`) with labels or abundance maps
    (:func:`with_targets`; ``target: abundance`` makes it the abundance-regression task), split and cut into
    windows as :func:`split_scene` says."""
    scene, info = load_matrix_scene(image, order=order, **matrix_options)
    scene, endmembers = with_targets(
        scene, abundances, abundance_key, labels, label_key, target, min_abundance, order
    )
    return split_scene(
        scene,
        info,
        task="abundance" if target == "abundance" else "segmentation",
        class_names=class_names,
        protocol=protocol,
        window=window,
        block=block,
        test_fraction=test_fraction,
        per_class=per_class,
        seed=seed,
        classes=endmembers,
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
    block: int = 16,
    test_fraction: float = 0.3,
    per_class: int | float = 50,
    seed: int = 0,
    **cube_options: Any,
) -> TaskData:
    """Case (c) end to end: each pair (``before``, ``after``, ``mask`` and optional ``changed`` / ``unchanged``)
    is split by ``protocol`` (``blocks`` of ``block`` pixels or ``per_class``; ``fixed``: give ``split:
    train|test`` per pair) and cut into ``window``-sized items."""
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
            item.labels, protocol, block, test_fraction, per_class, seed, None
        )
        train += change_windows(item, window, train_mask)
        test += change_windows(item, window, test_mask)
    if info is None:
        raise ValueError("no change pairs given")
    label = _protocol_label(protocol, block, per_class)
    return TaskData("change", info, ["unchanged", "changed"], train, test, protocol=label)


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
    "matrix": matrix_data,
    "change": change_data,
    "scenes": scene_folder_data,
}


def even_bands(first_nm: float, last_nm: float, bands: int) -> tuple[np.ndarray, np.ndarray]:
    """``bands`` centres evenly spaced from ``first_nm`` to ``last_nm``, FWHM = the spacing: the band set of a
    dataset documented only by its range and band count (e.g. Samson: 156 bands, 401-889 nm)."""
    if bands < 2 or not last_nm > first_nm:
        raise ValueError(
            f"wavelength_range needs first < last and at least 2 bands, got {first_nm}, {last_nm}"
        )
    centres = np.linspace(first_nm, last_nm, bands)
    return centres, np.full(bands, centres[1] - centres[0])


def load_data(spec: dict[str, Any]) -> TaskData:
    """Build a task's data from a config mapping: ``kind`` (``tiles``, ``cube``, ``matrix``, ``change``,
    ``scenes``) plus that adapter's keyword arguments; ``wavelength_table`` (a file) fills ``wavelength_nm`` /
    ``fwhm_nm``, or ``wavelength_range`` ([first, last] nm) with ``bands`` fills them with :func:`even_bands`."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"data kind {kind!r} unknown; known: {', '.join(_KINDS)}")
    table = spec.pop("wavelength_table", None)
    span, count = spec.pop("wavelength_range", None), spec.pop("bands", None)
    if table is not None:
        wavelength, fwhm = read_wavelength_table(table)
        spec.setdefault("wavelength_nm", wavelength.tolist())
        spec.setdefault("fwhm_nm", fwhm.tolist())
    elif span is not None:
        if count is None or len(span) != 2:
            raise ValueError("wavelength_range is [first, last] nm and needs bands: the band count")
        wavelength, fwhm = even_bands(float(span[0]), float(span[1]), int(count))
        spec.setdefault("wavelength_nm", wavelength.tolist())
        spec.setdefault("fwhm_nm", fwhm.tolist())
    try:
        return _KINDS[kind](**spec)
    except TypeError as exc:
        raise ValueError(f"data kind {kind!r}: {exc}") from exc
