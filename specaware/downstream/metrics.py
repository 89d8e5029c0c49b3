"""Evaluation metrics of the downstream tasks and their figures.

Labels follow the package convention: 0 = unlabelled (ignored everywhere), 1..K = classes. The confusion matrix is
K×K with rows = truth and columns = prediction (class i at index i - 1). From it: overall accuracy (OA), average
per-class recall (AA), Cohen's κ, mean IoU over classes present in truth or prediction, per-class precision /
recall / F1 / IoU; for change detection the F1 and IoU of the *changed* class (label 2).
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

    AA averages recall over classes present in the truth; mIoU and macro F1 over classes present in truth or
    prediction (absent classes have undefined scores, reported as null).
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

    def clean(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in values]

    return {
        "pixels": int(total),
        "OA": float(oa),
        "AA": float(np.nanmean(recall)),
        "kappa": float(kappa),
        "mIoU": float(np.nanmean(iou)),
        "macro_F1": float(np.nanmean(f1)),
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


def plot_maps(
    predictions: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    names: Sequence[str],
    num_classes: int,
    path: str | Path,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Predicted label maps beside the ground truth, one row per item, with a legend naming every class colour
    (label 0, unlabelled, is black). ``class_names`` lists labels 1..num_classes (default ``class 1`` ...)."""
    colours = ListedColormap(
        np.vstack([[0, 0, 0, 1], matplotlib.colormaps["tab10"](np.arange(max(num_classes, 1)) % 10)])
    )
    count = len(predictions)
    labels = list(class_names or [f"class {k}" for k in range(1, num_classes + 1)])
    legend = [Patch(color=colours(0), label="0: unlabelled")]
    legend += [Patch(color=colours(k), label=f"{k}: {labels[k - 1]}") for k in range(1, num_classes + 1)]
    columns = 3
    legend_inches = 0.25 * -(-len(legend) // columns) + 0.2
    height = 2.5 * count + legend_inches
    fig, axes = plt.subplots(count, 2, figsize=(5.5, height), squeeze=False)
    for row, (prediction, truth, name) in enumerate(zip(predictions, truths, names, strict=True)):
        for col, (image, label) in enumerate(((prediction, "prediction"), (truth, "ground truth"))):
            ax = axes[row, col]
            ax.imshow(image, cmap=colours, vmin=0, vmax=num_classes, interpolation="nearest")
            ax.set_title(f"{name}: {label}", fontsize=7)
            ax.axis("off")
    fig.legend(handles=legend, loc="lower center", ncol=columns, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, legend_inches / height, 1, 1))
    return save_figure(fig, path)
