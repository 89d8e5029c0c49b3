"""Fine-tuning, linear probing, spectral baselines and evaluation of the downstream tasks, from one YAML config.

:func:`finetune` trains encoder + head, :func:`probe` a linear head on the frozen encoder, :func:`baseline` fits a
per-pixel (or per-patch mean-spectrum) scikit-learn classifier on raw spectra; all three then evaluate on the test
split with the same code and write to ``output``: ``metrics.json`` (OA, AA, κ, mIoU, per-class F1 and support;
change F1/IoU; abundance RMSE/SAD), ``confusion.png``, ``maps.png`` (the whole-scene prediction beside the ground
truth and the split for single-scene data, else the first test items; with a class legend, padding and no data
masked), ``abundance.png`` for the abundance task, and for the neural modes ``downstream.pt`` and
``history.csv``. :func:`evaluate` re-scores a saved ``downstream.pt``; :func:`run_seeds` repeats a run over N
seeded splits and writes the mean ± std to ``summary.json``. Neural runs show a progress bar (plain periodic
lines on stderr when it is not a terminal).

Optimisation runs on the pretraining's DeepSpeed machinery (:mod:`specaware.train.engine`: AdamW, linear warm-up +
cosine decay; gloo on CPU, the GPU when there is one). Inputs are the sensor's physical units (no
normalisation), as the encoder was pretrained on them; baselines standardise each band.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from specaware.config import ModelConfig
from specaware.downstream.datasets import (
    ChangeItem,
    LabelledImage,
    SceneItem,
    SplitScene,
    TaskData,
    load_data,
    windows,
)
from specaware.downstream.heads import PixelBranch, build_head_model
from specaware.downstream.metrics import (
    abundance_metrics,
    change_metrics,
    classification_metrics,
    confusion_matrix,
    plot_abundance_maps,
    plot_confusion,
    plot_maps,
    plot_scene_map,
)
from specaware.model.checkpoint import load_model
from specaware.model.mae import SpecAwareMAE, build_model
from specaware.model.patchsize import change_patch_size
from specaware.model.text import text_vectors
from specaware.train.engine import decay_groups, make_engine
from specaware.yaml_config import dataclass_from_yaml

log = logging.getLogger(__name__)

TASKS = ("segmentation", "abundance", "change", "scene")
FORMAT = "specaware-downstream/2"
# Adapters whose train/test split depends on a seed (run_seeds draws a new split per seed for these).
SEEDED_KINDS = ("cube", "matrix", "change", "scenes")
MODES = ("finetune", "probe", "logreg", "rf")
CLASS_WEIGHTINGS = ("none", "balanced")


@dataclass
class DownstreamConfig:
    """One downstream run. ``data`` is the adapter mapping of :func:`specaware.downstream.datasets.load_data`.

    Backbone: ``checkpoint`` (a pretraining ``model.pt`` or a published SpecAware ``.pth``) with
    ``init: pretrained``; ``init: random`` builds a freshly initialised model of the checkpoint's configuration
    (or of ``model`` with ``model_overrides`` when no checkpoint file exists: it is not needed), with the same
    fixed sensor/level text vectors, so the comparison isolates pretraining. ``encoder_lr`` (fine-tuning
    only; default ``lr``) lets the pretrained encoder learn slower than the new head. ``pixel_branch`` (fine-tuning
    of per-pixel tasks) adds the skip path from the input spectra into the head
    (:class:`specaware.downstream.heads.PixelBranch`, ``pixel_width`` channels). ``patch_size`` (k = 4 or 2 for
    finer tokens) moves the backbone to that patch size as the published fine-tuning does
    (:func:`specaware.model.patchsize.change_patch_size`: V-generator output resized, GSD scaled by k/8).
    ``class_weighting: balanced`` weights each class's loss by its inverse training frequency, n / (K · n_c)
    (:func:`class_weights`; for the baselines scikit-learn's ``class_weight="balanced"``, the same formula), so
    rare classes are not traded away for overall accuracy; ``none`` (default) weights every pixel alike."""

    task: str
    data: dict[str, Any]
    output: str
    mode: str = "finetune"
    model: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    init: str = "pretrained"
    patch_size: int | None = None
    text: str = "minilm"
    neck_width: int = 64
    head_channels: int = 64
    pool_scales: list[int] = field(default_factory=lambda: [1, 2, 3, 6])
    dropout: float = 0.1
    scene_hidden: int = 128
    pixel_branch: bool = False
    pixel_width: int = 32
    steps: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    encoder_lr: float | None = None
    min_lr: float = 1e-6
    warmup_steps: int = 10
    weight_decay: float = 0.05
    class_weighting: str = "none"
    augment: bool = True
    seed: int = 0
    log_every: int = 10
    max_train_pixels: int = 20000
    rf_trees: int = 200
    max_map_items: int = 4
    device: str = "auto"
    deepspeed_config: str = "pipelines/configs/deepspeed_cpu.json"

    def __post_init__(self) -> None:
        problems = []
        if self.task not in TASKS:
            problems.append(f"task {self.task!r} not in {TASKS}")
        if self.mode not in MODES:
            problems.append(f"mode {self.mode!r} not in {MODES}")
        if self.init not in ("pretrained", "random"):
            problems.append(f"init must be pretrained or random, got {self.init!r}")
        if self.mode in ("finetune", "probe") and self.init == "pretrained" and not self.checkpoint:
            problems.append("init: pretrained needs a checkpoint (or use init: random)")
        if self.steps < 1 or self.batch_size < 1:
            problems.append("steps and batch_size must be positive")
        if self.pixel_branch and (self.mode == "probe" or self.task == "scene"):
            problems.append("pixel_branch is for fine-tuning per-pixel tasks (not probe, not scene)")
        if not 0 <= self.warmup_steps < self.steps:
            problems.append(f"warmup_steps must be in [0, steps), got {self.warmup_steps}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            problems.append(f"class_weighting {self.class_weighting!r} not in {CLASS_WEIGHTINGS}")
        elif self.class_weighting != "none" and self.task == "abundance":
            problems.append(
                "class_weighting is for classification tasks (abundance regression has no classes)"
            )
        if self.patch_size is not None and self.patch_size < 1:
            problems.append(f"patch_size must be a positive number of pixels, got {self.patch_size}")
        if problems:
            raise ValueError("downstream config: " + "; ".join(problems))

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> DownstreamConfig:
        """Read a YAML config; non-None ``overrides`` win. Unknown keys are errors. A ``steps`` override shorter
        than the file's warm-up shortens the warm-up to a tenth of the steps, so ``--steps N`` works on any config."""
        try:
            return dataclass_from_yaml(cls, path, "downstream", **overrides)
        except ValueError:
            steps = overrides.get("steps")
            if steps is None or overrides.get("warmup_steps") is not None:
                raise
            return dataclass_from_yaml(cls, path, "downstream", **overrides | {"warmup_steps": steps // 10})


# ---------------------------------------------------------------- backbone and batches


def load_backbone(config: DownstreamConfig) -> SpecAwareMAE:
    """The pretrained model, or a random one of the same size (text vectors kept: they are fixed, not learned),
    moved to ``config.patch_size`` when one is asked for."""
    model = _initial_backbone(config)
    if config.patch_size is not None and config.patch_size != model.config.patch_size:
        model = change_patch_size(model, config.patch_size)
    return model


def _initial_backbone(config: DownstreamConfig) -> SpecAwareMAE:
    if config.checkpoint and (config.init == "pretrained" or Path(config.checkpoint).is_file()):
        pretrained = load_model(config.checkpoint)
        if config.init == "pretrained":
            return pretrained
        torch.manual_seed(config.seed)
        text = pretrained.encoder.meta.text
        return SpecAwareMAE(pretrained.config, (text.sensor_vectors, text.level_vectors, text.kind))
    if config.checkpoint:
        log.info("no checkpoint at %s: random init of the %r config", config.checkpoint, config.model)
    torch.manual_seed(config.seed)
    return build_model(config.model, text=config.text, **config.model_overrides)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _tensor(image: np.ndarray) -> Tensor:
    """NaN (no data) -> 0, as the encoder's own loaders do."""
    return torch.from_numpy(np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32))


def _augment(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random flip / 90° rotation applied to every array (all with the two spatial axes last)."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    out = [np.rot90(a, k, axes=(-2, -1)) for a in arrays]
    return [np.ascontiguousarray(np.flip(a, -1) if flip else a) for a in out]


def make_batch(
    items: list[Any], data: TaskData, device: torch.device, rng: np.random.Generator | None = None
) -> tuple[dict[str, Any], Tensor]:
    """A model batch of ``items`` and its targets: pixel labels - 1 (B, H, W) with -1 = ignore, scene labels - 1
    (B,), or for the abundance task (B, E + 1, H, W): the abundances, then the mask of pixels that count. ``rng``
    turns on flip / rotation augmentation."""
    images, afters, targets = [], [], []
    for item in items:
        if isinstance(item, ChangeItem):
            arrays = [item.before, item.after, item.labels]
        elif isinstance(item, LabelledImage) and data.task == "abundance":
            if item.abundance is None:
                raise ValueError(f"{item.name}: no abundance maps for the abundance task")
            arrays = [
                item.image,
                np.concatenate([item.abundance, (item.labels > 0)[None].astype(np.float32)]),
            ]
        elif isinstance(item, LabelledImage):
            arrays = [item.image, item.labels]
        else:
            arrays = [item.image]
        if rng is not None:
            arrays = _augment(arrays, rng)
        images.append(_tensor(arrays[0]))
        if isinstance(item, ChangeItem):
            afters.append(_tensor(arrays[1]))
        if isinstance(item, SceneItem):
            targets.append(torch.tensor(item.label - 1))
        elif data.task == "abundance":
            targets.append(torch.from_numpy(arrays[-1].astype(np.float32)))
        else:
            targets.append(torch.from_numpy(arrays[-1] - 1).long())
    batch: dict[str, Any] = {"image": torch.stack(images).to(device), **data.sensor.batch_fields(len(items))}
    if afters:
        batch["image_after"] = torch.stack(afters).to(device)
    return batch, torch.stack(targets).to(device)


def task_loss(output: Tensor, target: Tensor, task: str, weight: Tensor | None = None) -> Tensor:
    """Cross-entropy over labelled pixels (or scenes), with per-class ``weight`` when given (the weighted mean,
    as :func:`torch.nn.functional.cross_entropy` takes it); for ``abundance``, the mean squared error between the
    softmax of the outputs (non-negative, summing to one, as abundances do) and the true abundances over the
    pixels that count."""
    if task != "abundance":
        return F.cross_entropy(output, target.long(), weight=weight, ignore_index=-1)
    truth, weight = target[:, :-1], target[:, -1:]
    squared = (output.softmax(dim=1) - truth) ** 2 * weight
    return squared.sum() / (weight.sum() * truth.shape[1]).clamp_min(1.0)


class Progress:
    """Progress of ``total`` steps: a tqdm bar on a terminal; otherwise (CI, pipes, log files) one plain line on
    stderr every ``every`` steps and at the end, so a long run is never silent and logs stay readable."""

    def __init__(self, total: int, description: str, every: int) -> None:
        self.total, self.description, self.every = total, description, max(1, every)
        self.done, self.note, self.start = 0, "", time.perf_counter()
        self.bar = tqdm(total=total, desc=description) if sys.stderr.isatty() else None

    def update(self, note: str = "") -> None:
        self.done += 1
        self.note = note or self.note
        if self.bar is not None:
            self.bar.update()
            if note:
                self.bar.set_postfix_str(note)
        elif self.done % self.every == 0 or self.done == self.total:
            elapsed = time.perf_counter() - self.start
            sys.stderr.write(f"{self.description} {self.done}/{self.total} {self.note} {elapsed:.1f}s\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check_sizes(data: TaskData, patch: int) -> None:
    for item in data.train + data.test:
        shape = (item.before if isinstance(item, ChangeItem) else item.image).shape
        if shape[1] % patch or shape[2] % patch:
            raise ValueError(f"{item.name}: size {shape[1:]} is not a multiple of the patch size {patch}")


# ---------------------------------------------------------------- training


def train_model(
    model: nn.Module, data: TaskData, config: DownstreamConfig, device: torch.device
) -> list[float]:
    """AdamW + warm-up/cosine on the pretraining's DeepSpeed machinery (:mod:`specaware.train.engine`), on random
    training batches (sampled with replacement, seeded); returns the loss of every step. Fine-tuning puts encoder
    parameters in their own groups at ``encoder_lr``."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    named = list(model.named_parameters())
    encoder = [(n, p) for n, p in named if n.startswith("features.")]
    head = [(n, p) for n, p in named if not n.startswith("features.")]
    groups = decay_groups(head, config.lr, config.weight_decay)
    groups += decay_groups(encoder, config.encoder_lr or config.lr, config.weight_decay)
    if not data.train:
        raise ValueError("no training items")
    weight = class_weights(data) if config.class_weighting == "balanced" else None
    if weight is not None:
        weight = weight.to(device)
    engine = make_engine(
        model,
        groups,
        deepspeed_config=config.deepspeed_config,
        batch_size=config.batch_size,
        warmup_steps=config.warmup_steps,
        steps=config.steps,
        min_lr_ratio=config.min_lr / config.lr,
    )
    engine.train()
    losses = []
    progress = Progress(config.steps, f"{config.mode} steps", config.log_every)
    for step in range(config.steps):
        picks = rng.integers(len(data.train), size=config.batch_size)
        batch, target = make_batch(
            [data.train[i] for i in picks], data, device, rng if config.augment else None
        )
        loss = task_loss(engine(batch), target, data.task, weight)
        engine.backward(loss)
        engine.step()  # also steps the schedule and zeroes the gradients
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            progress.close()
            raise FloatingPointError(f"loss is {losses[-1]} at step {step}")
        progress.update(f"loss {np.mean(losses[-config.log_every :]):.4f}")
    progress.close()
    return losses


@torch.no_grad()
def predict(
    model: nn.Module, data: TaskData, items: list[Any], device: torch.device, batch_size: int
) -> list[Any]:
    """Predictions of ``items``: labels (1..K) as an (H, W) map per segmentation / change item or an int per
    scene; abundances (E, H, W) per abundance item."""
    model.eval()
    out: list[Any] = []
    progress = Progress(-(-len(items) // batch_size), "predict batches", 10)
    for start in range(0, len(items), batch_size):
        batch, _ = make_batch(items[start : start + batch_size], data, device)
        logits = model(batch)
        if data.task == "abundance":
            out += list(logits.softmax(dim=1).cpu().numpy())
        else:
            labels = logits.argmax(dim=1).cpu().numpy() + 1
            out += [int(v) for v in labels] if data.task == "scene" else list(labels)
        progress.update()
    progress.close()
    return out


# ---------------------------------------------------------------- scoring


@dataclass
class TestOutputs:
    """What a run predicted on the test split: per test unit (a whole scene, or a test item) the truth labels,
    the prediction, the valid-pixel mask (not padding, not no-data) and, for the abundance task, the true maps."""

    truths: list[Any]
    predictions: list[Any]
    valids: list[np.ndarray]
    names: list[str]
    abundances: list[np.ndarray] = field(default_factory=list)


def _valid(image: np.ndarray) -> np.ndarray:
    return np.isfinite(image).all(axis=0)


def stitch_scene(
    split: SplitScene, window: tuple[int, int], predict_items: Callable[[list[Any]], list[Any]]
) -> np.ndarray:
    """The prediction of a whole scene: every window tiling it is predicted and pasted back at its origin, the
    padding cut off. (H, W) labels, or (E, H, W) abundances."""
    scene = split.scene
    height, width = scene.labels.shape
    everywhere = LabelledImage(
        scene.image, np.ones((height, width), dtype=np.int64), scene.name, scene.abundance
    )
    tiles = windows(everywhere, window)
    outputs = predict_items(tiles)
    depth = outputs[0].shape[:-2]
    padded = np.zeros((*depth, -(-height // window[0]) * window[0], -(-width // window[1]) * window[1]))
    for tile, output in zip(tiles, outputs, strict=True):
        row, col = tile.origin
        padded[..., row : row + window[0], col : col + window[1]] = output
    cut = padded[..., :height, :width]
    return cut if depth else cut.astype(np.int64)


def test_outputs(data: TaskData, predict_items: Callable[[list[Any]], list[Any]]) -> TestOutputs:
    """Predict the test split: single-scene data as whole scenes (scored on the test pixels), else item by item."""
    if data.scenes and data.window is not None and data.task in ("segmentation", "abundance"):
        outputs = TestOutputs([], [], [], [])
        for split in data.scenes:
            outputs.truths.append(np.where(split.test, split.scene.labels, 0))
            outputs.predictions.append(stitch_scene(split, data.window, predict_items))
            outputs.valids.append(_valid(split.scene.image))
            outputs.names.append(split.scene.name)
            if split.scene.abundance is not None:
                outputs.abundances.append(split.scene.abundance)
        return outputs
    predictions = predict_items(data.test)
    if data.task == "scene":
        truths = [item.label for item in data.test]
        valids = [np.ones((), dtype=bool) for _ in data.test]
    else:
        truths = [item.labels for item in data.test]
        valids = [_valid(item.before if isinstance(item, ChangeItem) else item.image) for item in data.test]
    abundances = [item.abundance for item in data.test] if data.task == "abundance" else []
    return TestOutputs(truths, predictions, valids, [item.name for item in data.test], abundances)


def train_support(data: TaskData) -> list[int]:
    """Training pixels (patches for scenes) of every class 1..K."""
    if data.task == "scene":
        counts = np.bincount([item.label for item in data.train], minlength=data.num_classes + 1)
    else:
        counts = np.zeros(data.num_classes + 1, dtype=np.int64)
        for item in data.train:
            counts += np.bincount(item.labels.ravel(), minlength=data.num_classes + 1)[: data.num_classes + 1]
    return [int(v) for v in counts[1 : data.num_classes + 1]]


def class_weights(data: TaskData) -> Tensor:
    """Inverse-frequency class weights n / (K · n_c) from the training support (scikit-learn's "balanced"
    formula), K counting the classes that have training pixels; a class without any gets 0 (it cannot be
    learnt, and its logit then gets no push from the loss)."""
    support = np.array(train_support(data), dtype=np.float64)
    present = support > 0
    weights = np.zeros_like(support)
    weights[present] = support.sum() / (present.sum() * support[present])
    return torch.from_numpy(weights.astype(np.float32))


def score(data: TaskData, outputs: TestOutputs, output: Path, title: str, max_maps: int) -> dict[str, Any]:
    """Metrics of ``outputs``, written with the figures to ``output``; returns the metrics."""
    output.mkdir(parents=True, exist_ok=True)
    if data.task == "abundance":
        keep = [(t > 0) & v for t, v in zip(outputs.truths, outputs.valids, strict=True)]
        truth = np.concatenate([a[:, m].T for a, m in zip(outputs.abundances, keep, strict=True)])
        predicted = np.concatenate([p[:, m].T for p, m in zip(outputs.predictions, keep, strict=True)])
        metrics = abundance_metrics(truth, predicted, data.class_names)
        plot_abundance_maps(
            outputs.predictions[0], outputs.abundances[0], outputs.valids[0], data.class_names,
            output / "abundance.png",
        )  # fmt: skip
    else:
        k = data.num_classes
        if data.task == "scene":
            matrix = confusion_matrix(np.array(outputs.truths), np.array(outputs.predictions), k)
        else:
            truth = np.concatenate([t.ravel() for t in outputs.truths])
            matrix = confusion_matrix(truth, np.concatenate([p.ravel() for p in outputs.predictions]), k)
        metrics = (
            change_metrics(matrix)
            if data.task == "change"
            else classification_metrics(matrix, data.class_names)
        )
        metrics["per_class"]["train_support"] = train_support(data)
        plot_confusion(matrix, data.class_names, output / "confusion.png", title)
        _plot_label_maps(data, outputs, output / "maps.png", title, max_maps)
    metrics = {
        "task": data.task,
        "protocol": data.protocol,
        "run": title,
        "test_items": len(data.test),
        **metrics,
    }
    _write_json(output / "metrics.json", metrics)
    return metrics


def _plot_label_maps(data: TaskData, outputs: TestOutputs, path: Path, title: str, max_maps: int) -> None:
    if data.task == "scene":
        return
    if data.scenes and data.task == "segmentation":
        split = data.scenes[0]
        plot_scene_map(
            outputs.predictions[0], split.scene.labels, split.train, split.test, outputs.valids[0],
            data.class_names, path, f"{title} ({data.protocol})",
        )  # fmt: skip
        return
    shown = min(max_maps, len(outputs.predictions))
    plot_maps(
        outputs.predictions[:shown],
        outputs.truths[:shown],
        outputs.valids[:shown],
        outputs.names[:shown],
        data.class_names,
        path,
    )


def _write_json(path: Path, content: dict[str, Any]) -> None:
    """Write to a temporary name, then rename, so an interrupted run never leaves half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=2, allow_nan=False))
    partial.replace(path)


# ---------------------------------------------------------------- entry points


def band_statistics(data: TaskData, limit: int = 200_000) -> tuple[Tensor, Tensor]:
    """Per-band mean and standard deviation of (at most ``limit``, evenly strided) valid training pixels, the
    standardisation of the pixel branch (for change, of |after - before|)."""
    features, _ = _spectra(data, data.train)
    features = features[:: max(1, len(features) // limit)]
    return torch.from_numpy(features.mean(axis=0)), torch.from_numpy(features.std(axis=0))


def _pixel_branch(config: DownstreamConfig, data: TaskData) -> PixelBranch | None:
    if not config.pixel_branch:
        return None
    mean, std = band_statistics(data)
    return PixelBranch(mean, std, config.pixel_width)


def _build(
    config: DownstreamConfig, backbone: SpecAwareMAE, data: TaskData, branch: PixelBranch | None
) -> nn.Module:
    return build_head_model(
        backbone,
        config.task,
        data.num_classes,
        config.mode,
        config.neck_width,
        config.head_channels,
        config.pool_scales,
        config.dropout,
        config.scene_hidden,
        branch,
    )


def _check_task(config: DownstreamConfig, data: TaskData) -> None:
    if config.task != data.task:
        raise ValueError(
            f"config task {config.task!r} but the data are for {data.task!r} (check data.target)"
        )


def _neural(config: DownstreamConfig, data: TaskData | None = None) -> dict[str, Any]:
    data = data if data is not None else load_data(config.data)
    _check_task(config, data)
    device = _device(config.device)
    backbone = load_backbone(config)
    _check_sizes(data, backbone.config.patch_size)
    model = _build(config, backbone, data, _pixel_branch(config, data)).to(device)
    losses = train_model(model, data, config, device)
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": FORMAT,
            "config": asdict(config),
            "backbone_config": backbone.config.to_dict(),
            "num_classes": data.num_classes,
            "bands": data.sensor.bands,
            "state_dict": model.state_dict(),
        },
        output / "downstream.pt",
    )
    with (output / "history.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "loss"])
        writer.writerows((i + 1, f"{v:.6f}") for i, v in enumerate(losses))
    outputs = test_outputs(data, lambda items: predict(model, data, items, device, config.batch_size))
    metrics = score(data, outputs, output, _title(config), config.max_map_items)
    if data.task != "abundance":
        flag_degenerate(metrics, _title(config))
    metrics["train_loss_first"], metrics["train_loss_last"] = losses[0], float(np.mean(losses[-10:]))
    _write_json(output / "metrics.json", metrics)
    return metrics


def flag_degenerate(metrics: dict[str, Any], title: str, kappa_floor: float = 0.02) -> str | None:
    """Warn (log and ``metrics["warning"]``) when the test predictions are degenerate: one class for every pixel
    (or item), or Cohen's κ within ``kappa_floor`` of 0 (no better than chance). Returns the warning, if any."""
    predicted = np.asarray(metrics["confusion_matrix"]).sum(axis=0)  # rows truth, columns prediction
    used = int((predicted > 0).sum())
    problems = []
    if used <= 1:
        problems.append(f"predicts one class for all {int(predicted.sum())} test samples")
    if abs(metrics["kappa"]) < kappa_floor:
        problems.append(f"kappa {metrics['kappa']:.3f} is chance level")
    if not problems:
        return None
    warning = f"{title}: degenerate predictions ({'; '.join(problems)})"
    log.warning(warning)
    metrics["warning"] = warning
    return warning


def _title(config: DownstreamConfig) -> str:
    weighting = ", balanced classes" if config.class_weighting == "balanced" else ""
    if config.mode in ("logreg", "rf"):
        return f"{config.task} {config.mode} on raw spectra{weighting}"
    branch = " + pixel branch" if config.pixel_branch else ""
    source = config.model if not config.checkpoint else "checkpoint"
    return f"{config.task} {config.mode}{branch} ({config.init} {source}{weighting})"


def finetune(config: DownstreamConfig, data: TaskData | None = None) -> dict[str, Any]:
    """Train encoder + task head, evaluate on the test split; returns (and writes) the metrics."""
    config.mode = "finetune"
    return _neural(config, data)


def probe(config: DownstreamConfig, data: TaskData | None = None) -> dict[str, Any]:
    """Linear probe: frozen encoder + linear head; returns (and writes) the test metrics."""
    config.mode = "probe"
    return _neural(config, data)


def evaluate(config: DownstreamConfig, data: TaskData | None = None) -> dict[str, Any]:
    """Re-score the ``downstream.pt`` in ``config.output`` on the test split (metrics JSON + figures)."""
    output = Path(config.output)
    payload = torch.load(output / "downstream.pt", map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{output / 'downstream.pt'}: not a {FORMAT} checkpoint (re-run the fine-tune)")
    saved = DownstreamConfig(**payload["config"])
    data = data if data is not None else load_data(saved.data)
    _check_task(saved, data)
    backbone = SpecAwareMAE(ModelConfig.from_dict(payload["backbone_config"]), text_vectors("placeholder"))
    bands = int(payload["bands"])
    branch = (
        PixelBranch(torch.zeros(bands), torch.ones(bands), saved.pixel_width) if saved.pixel_branch else None
    )
    model = _build(saved, backbone, data, branch)
    # strict: also restores the pixel branch's band statistics (buffers)
    model.load_state_dict(payload["state_dict"], strict=True)
    device = _device(config.device)
    model.to(device)
    outputs = test_outputs(data, lambda items: predict(model, data, items, device, config.batch_size))
    return score(data, outputs, output, _title(saved), config.max_map_items)


def _spectra(data: TaskData, items: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, C) and targets of the labelled pixels (or patches) of ``items``: raw spectra for segmentation
    and abundance, |after - before| spectra for change, mean spectra for scenes; labels (n,), or abundances
    (n, E) for the abundance task. No-data values become 0."""
    if data.task == "scene":
        features = np.stack([np.nanmean(item.image, axis=(1, 2)) for item in items])
        return np.nan_to_num(features), np.array([item.label for item in items])
    rows, targets = [], []
    for item in items:
        cube = np.abs(item.after - item.before) if isinstance(item, ChangeItem) else item.image
        keep = item.labels > 0
        rows.append(cube[:, keep].T)
        targets.append(item.abundance[:, keep].T if data.task == "abundance" else item.labels[keep])
    return np.nan_to_num(np.concatenate(rows)), np.concatenate(targets)


def _pixel_predict(model: Any, data: TaskData, items: list[Any]) -> list[Any]:
    """A scikit-learn model's predictions of ``items``, shaped as :func:`predict` returns them."""
    if data.task == "scene":
        return [int(v) for v in model.predict(_spectra(data, items)[0])]
    out = []
    for item in items:
        cube = np.abs(item.after - item.before) if isinstance(item, ChangeItem) else item.image
        flat = np.nan_to_num(cube.reshape(cube.shape[0], -1).T)
        if data.task == "abundance":
            out.append(model.predict(flat).T.reshape(-1, *item.labels.shape))
        else:
            out.append(model.predict(flat).reshape(item.labels.shape).astype(np.int64))
    return out


def baseline(config: DownstreamConfig, data: TaskData | None = None) -> dict[str, Any]:
    """Per-pixel spectral model on raw spectra (``mode`` ``logreg``: standardised multinomial logistic regression;
    ``rf``: random forest, a multi-output regressor for the abundance task), trained on at most
    ``max_train_pixels`` random labelled training pixels."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if config.mode not in ("logreg", "rf"):
        raise ValueError(f"baseline mode must be logreg or rf, got {config.mode!r}")
    data = data if data is not None else load_data(config.data)
    _check_task(config, data)
    if data.task == "abundance" and config.mode != "rf":
        raise ValueError("the abundance task's spectral baseline is rf (a random-forest regressor)")
    features, targets = _spectra(data, data.train)
    if len(targets) > config.max_train_pixels:
        pick = np.random.default_rng(config.seed).choice(len(targets), config.max_train_pixels, replace=False)
        features, targets = features[pick], targets[pick]
    forest = RandomForestRegressor if data.task == "abundance" else RandomForestClassifier
    balanced = {"class_weight": "balanced"} if config.class_weighting == "balanced" else {}
    model = (
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, **balanced))
        if config.mode == "logreg"
        # sqrt(bands) candidate features per split for the regressor too (scikit-learn's regressor default, all
        # bands, is ~15x slower on hyperspectral pixels for no gain in our runs)
        else forest(
            n_estimators=config.rf_trees, max_features="sqrt", random_state=config.seed, n_jobs=1, **balanced
        )
    )
    model.fit(features, targets)
    outputs = test_outputs(data, lambda items: _pixel_predict(model, data, items))
    metrics = score(data, outputs, Path(config.output), _title(config), config.max_map_items)
    if data.task != "abundance":
        flag_degenerate(metrics, _title(config))
    metrics["train_pixels"] = int(len(targets))
    _write_json(Path(config.output) / "metrics.json", metrics)
    return metrics


def run(config: DownstreamConfig, data: TaskData | None = None) -> dict[str, Any]:
    """Dispatch on ``config.mode``."""
    if config.mode in ("logreg", "rf"):
        return baseline(config, data)
    return _neural(config, data)


# ---------------------------------------------------------------- repeated splits

SUMMARY_KEYS = (
    "OA", "AA", "kappa", "mIoU", "macro_F1", "AA_present", "mIoU_present", "macro_F1_present",
    "change_F1", "change_IoU", "RMSE", "SAD",
)  # fmt: skip


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof 1; 0 for one run) of every headline metric over ``runs``, the
    per-class F1 mean (classes absent from a run's test set counted as 0, as in macro F1) and how often each
    class was absent from test."""
    summary: dict[str, Any] = {"runs": len(runs), "protocol": runs[0]["protocol"], "task": runs[0]["task"]}
    for key in SUMMARY_KEYS:
        values = np.array([r[key] for r in runs if key in r], dtype=np.float64)
        if values.size == len(runs):
            std = float(values.std(ddof=1)) if values.size > 1 else 0.0
            summary[key] = {"mean": float(values.mean()), "std": std, "values": values.tolist()}
    if "per_class" in runs[0]:
        names = runs[0]["per_class"]["names"]
        f1 = np.array([[v or 0.0 for v in r["per_class"]["F1"]] for r in runs])
        summary["per_class"] = {
            "names": names,
            "F1_mean": f1.mean(axis=0).tolist(),
            "absent_from_test_runs": [sum(name in r["absent_from_test"] for r in runs) for name in names],
        }
    return summary


def run_seeds(
    action: Callable[[DownstreamConfig], dict[str, Any]], config: DownstreamConfig, seeds: int
) -> dict[str, Any]:
    """Run ``action`` for seeds ``config.seed`` … ``config.seed + seeds - 1``, each in ``output/seedN``. For
    adapters with a drawn split (blocks, per-class, stratified patches) each seed draws a new split; a fixed
    split stays, and the seeds vary only initialisation, batch order and augmentation (``protocol`` says so).
    Writes ``summary.json`` (see :func:`summarise`) to ``output`` and returns it."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    runs = []
    redraws = config.data.get("kind") in SEEDED_KINDS and config.data.get("protocol") != "fixed"
    for seed in range(config.seed, config.seed + seeds):
        data_spec = config.data | {"seed": seed} if redraws else config.data
        folder = str(Path(config.output) / f"seed{seed}")
        runs.append(action(replace(config, seed=seed, data=data_spec, output=folder)))
    summary = summarise(runs)
    if not redraws:
        summary["protocol"] += "; one fixed split, seeds vary initialisation and batch order only"
    _write_json(Path(config.output) / "summary.json", summary)
    return summary
