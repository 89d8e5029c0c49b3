"""Evaluation metrics of the downstream tasks and their figures.

Labels follow the package convention: 0 = unlabelled (ignored everywhere), 1..K = classes. The confusion matrix is
K×K with rows = truth and columns = prediction (class i at index i - 1). From it: overall accuracy (OA), average
per-class recall (AA), Cohen's κ, mean IoU, macro F1 (all over the full class set, classes absent from the test
truth named), per-class precision / recall / F1 / IoU / support; for change detection the F1 and IoU of the
*changed* class (label 2); for abundance regression the RMSE and the abundance angle (SAD).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from hyper400k.figures import plt, save_figure


def confusion_matrix(truth: np.ndarray, prediction: np.ndarray, num_classes: int) -> np.ndarray:
    """K×K counts over pixels whose truth is not 0; predictions must be in 1..K."""
    truth = np.asarray(truth).ravel()
    prediction = np.asarray(prediction).ravel()
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} differ in size")
    keep = truth > 0
    truth, prediction = truth[keep].astype(np.int64), prediction[keep].astype(np.int64)
    if truth.size and (truth.max() > num_classes or prediction.min() < 1 or prediction.max() > num_classes):
        raise ValueError(f"labels outside 1..{num_classes}")
    index = (truth - 1) * num_classes + (prediction - 1)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ratio with NaN where the denominator is 0 (an undefined score, not a zero one)."""
    numerator = numerator.astype(np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def classification_metrics(matrix: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """OA, AA, κ, mIoU, macro F1 and per-class scores of a confusion matrix (rows truth, columns prediction).

    AA, mIoU and macro F1 average over the full class set: a class with no test pixels has an undefined recall
    (and IoU / F1 when it is never predicted either), counted as 0 and named in ``absent_from_test``, so a split
    that loses a class shows in the scores instead of being averaged away. ``AA_present``, ``mIoU_present`` and
    ``macro_F1_present`` average over the classes present in the test truth only (the usual literature figure).
    Per-class scores are null where undefined; ``per_class.support`` is the test pixel count of every class.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    total = matrix.sum()
    if total == 0:
        raise ValueError("empty confusion matrix: no labelled pixel was evaluated")
    tp = np.diag(matrix)
    truth_count = matrix.sum(axis=1)
    pred_count = matrix.sum(axis=0)
    recall = _ratio(tp, truth_count)
    precision = _ratio(tp, pred_count)
    f1 = _ratio(2 * tp, truth_count + pred_count)
    iou = _ratio(tp, truth_count + pred_count - tp)
    oa = tp.sum() / total
    expected = (truth_count * pred_count).sum() / total**2
    kappa = (oa - expected) / (1 - expected) if expected < 1 else 1.0
    names = list(class_names) if class_names is not None else [f"class {i + 1}" for i in range(len(tp))]
    present = truth_count > 0

    def clean(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in values]

    return {
        "pixels": int(total),
        "OA": float(oa),
        "AA": float(np.nan_to_num(recall).mean()),
        "kappa": float(kappa),
        "mIoU": float(np.nan_to_num(iou).mean()),
        "macro_F1": float(np.nan_to_num(f1).mean()),
        "AA_present": float(np.nanmean(recall[present])),
        "mIoU_present": float(np.nanmean(iou[present])),
        "macro_F1_present": float(np.nanmean(f1[present])),
        "classes": len(tp),
        "absent_from_test": [name for name, here in zip(names, present, strict=True) if not here],
        "per_class": {
            "names": names,
            "support": [int(v) for v in truth_count],
            "precision": clean(precision),
            "recall": clean(recall),
            "F1": clean(f1),
            "IoU": clean(iou),
        },
        "confusion_matrix": matrix.astype(np.int64).tolist(),
    }


def abundance_metrics(
    truth: np.ndarray, prediction: np.ndarray, endmember_names: Sequence[str]
) -> dict[str, Any]:
    """Scores of per-pixel abundance estimates, truth and prediction (n pixels, E endmembers):

    - ``RMSE``: root mean square abundance error over all pixels and endmembers, and per endmember;
    - ``SAD``: mean angle in radians between each pixel's predicted and true abundance vectors (the abundance
      spectral angle distance; 0 = same proportions), and its median.
    """
    truth = np.asarray(truth, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    if truth.shape != prediction.shape or truth.ndim != 2:
        raise ValueError(
            f"abundance truth {truth.shape} and prediction {prediction.shape} must be equal (n, E)"
        )
    if truth.shape[0] == 0:
        raise ValueError("no labelled pixel was evaluated")
    error = prediction - truth
    norms = np.linalg.norm(truth, axis=1) * np.linalg.norm(prediction, axis=1)
    cosine = np.divide((truth * prediction).sum(axis=1), norms, out=np.ones(len(norms)), where=norms > 0)
    angle = np.arccos(np.clip(cosine, -1.0, 1.0))
    return {
        "pixels": int(truth.shape[0]),
        "RMSE": float(np.sqrt(np.mean(error**2))),
        "SAD": float(angle.mean()),
        "SAD_median": float(np.median(angle)),
        "per_endmember": {
            "names": list(endmember_names),
            "RMSE": [float(v) for v in np.sqrt(np.mean(error**2, axis=0))],
            "mean_true": [float(v) for v in truth.mean(axis=0)],
            "mean_predicted": [float(v) for v in prediction.mean(axis=0)],
        },
    }


def change_metrics(matrix: np.ndarray) -> dict[str, Any]:
    """Classification metrics of a 2×2 (unchanged, changed) matrix plus F1 / IoU / precision / recall of the
    changed class, the scores change detection is judged by."""
    if np.asarray(matrix).shape != (2, 2):
        raise ValueError("change detection needs a 2x2 confusion matrix (unchanged, changed)")
    scores = classification_metrics(matrix, ["unchanged", "changed"])
    per = scores["per_class"]
    scores |= {
        "change_F1": per["F1"][1] or 0.0,
        "change_IoU": per["IoU"][1] or 0.0,
        "change_precision": per["precision"][1] or 0.0,
        "change_recall": per["recall"][1] or 0.0,
    }
    return scores


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """A row-normalised confusion-matrix PNG with the counts written in each cell."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    size = 1.6 + 0.6 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    shown = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            colour = "white" if normalised[i, j] > 0.5 else "black"
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    ax.set_title(title or "confusion matrix (row-normalised colour, counts)")
    fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, path)


def class_colours(num_classes: int) -> ListedColormap:
    """Colour 0 = unlabelled (black), 1..K from tab10 (K <= 10) or tab20."""
    palette = matplotlib.colormaps["tab10" if num_classes <= 10 else "tab20"]
    return ListedColormap(np.vstack([[0, 0, 0, 1], palette(np.arange(max(num_classes, 1)) % palette.N)]))


def _legend(fig: Any, class_names: Sequence[str]) -> None:
    colours = class_colours(len(class_names))
    handles = [Patch(facecolor=colours(i + 1), label=name) for i, name in enumerate(class_names)] + [
        Patch(facecolor="black", label="unlabelled"),
        Patch(facecolor="white", edgecolor="grey", label="no data"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=7, frameon=False)


def _show_labels(ax: Any, labels: np.ndarray, valid: np.ndarray, num_classes: int, title: str) -> None:
    """A label map with pixels outside ``valid`` (padding, no data) masked: drawn white, not as a class."""
    ax.imshow(
        np.ma.masked_array(labels, mask=~valid),
        cmap=class_colours(num_classes),
        vmin=0,
        vmax=num_classes,
        interpolation="nearest",
    )
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def plot_maps(
    predictions: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    valids: Sequence[np.ndarray],
    names: Sequence[str],
    class_names: Sequence[str],
    path: str | Path,
) -> Path:
    """Predicted label maps beside the ground truth, one row per item, with a class legend (unlabelled truth
    pixels black; pixels outside ``valids``, i.e. padding and no data, masked)."""
    count = len(predictions)
    fig, axes = plt.subplots(count, 2, figsize=(5, 2.5 * count + 0.8), squeeze=False)
    for row, (prediction, truth, valid, name) in enumerate(
        zip(predictions, truths, valids, names, strict=True)
    ):
        _show_labels(axes[row, 0], prediction, valid, len(class_names), f"{name}: prediction")
        _show_labels(axes[row, 1], truth, valid, len(class_names), f"{name}: ground truth")
    _legend(fig, class_names)
    fig.tight_layout(rect=(0, 0.12 if count < 3 else 0.05, 1, 1))
    return save_figure(fig, path)


def plot_scene_map(
    prediction: np.ndarray,
    truth: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    valid: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    title: str = "",
) -> Path:
    """The whole-scene prediction beside the ground truth and the split (train pixels grey, test pixels black),
    with a class legend; no-data pixels masked."""
    k = len(class_names)
    height, width = prediction.shape
    fig, axes = plt.subplots(1, 3, figsize=(10, min(10.0, 10 / 3 * height / max(width, 1)) + 1.4))
    _show_labels(axes[0], prediction, valid, k, "prediction (whole scene)")
    _show_labels(axes[1], truth, valid, k, "ground truth")
    split = np.where(test, 2, np.where(train, 1, 0))
    axes[2].imshow(
        np.ma.masked_array(split, mask=~valid),
        cmap=ListedColormap(["white", "0.7", "black"]),
        vmin=0,
        vmax=2,
        interpolation="nearest",
    )
    axes[2].set_title("split: train grey, test black", fontsize=8)
    axes[2].axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    _legend(fig, class_names)
    fig.tight_layout(rect=(0, 0.15, 1, 0.95 if title else 1))
    return save_figure(fig, path)


def plot_abundance_maps(
    prediction: np.ndarray, truth: np.ndarray, valid: np.ndarray, names: Sequence[str], path: str | Path
) -> Path:
    """Predicted and true abundance maps (E, H, W), one row per endmember, 0..1, no-data masked."""
    count = prediction.shape[0]
    fig, axes = plt.subplots(count, 2, figsize=(5.4, 2.5 * count), squeeze=False)
    for row in range(count):
        for col, (maps, label) in enumerate(((prediction, "predicted"), (truth, "true"))):
            shown = axes[row, col].imshow(
                np.ma.masked_array(maps[row], mask=~valid), cmap="viridis", vmin=0, vmax=1
            )
            axes[row, col].set_title(f"{names[row]}: {label}", fontsize=8)
            axes[row, col].axis("off")
        fig.colorbar(shown, ax=axes[row, 1], fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, path)
