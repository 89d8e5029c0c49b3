"""Fine-tuning, linear probing, spectral baselines and evaluation of the downstream tasks, from one YAML config.

:func:`finetune` trains encoder + head, :func:`probe` a linear head on the frozen encoder, :func:`baseline` fits a
per-pixel (or per-patch mean-spectrum) scikit-learn classifier on raw spectra; all three then evaluate on the test
split with the same code and write to ``output``: ``metrics.json`` (OA, AA, κ, mIoU, per-class F1; change F1/IoU),
``confusion.png``, ``maps.png`` (prediction beside ground truth; segmentation and change), and for the neural
modes ``downstream.pt`` and ``history.csv``. :func:`evaluate` re-scores a saved ``downstream.pt``.

Optimisation runs on the pretraining's DeepSpeed machinery (:mod:`specaware.train.engine`: AdamW, linear warm-up +
cosine decay; gloo on CPU, the GPU when there is one). Inputs are the sensor's physical units (no
normalisation), as the encoder was pretrained on them; baselines standardise each band.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from specaware.config import ModelConfig
from specaware.downstream.datasets import ChangeItem, LabelledImage, SceneItem, TaskData, load_data
from specaware.downstream.heads import build_head_model
from specaware.downstream.metrics import (
    change_metrics,
    classification_metrics,
    confusion_matrix,
    plot_confusion,
    plot_maps,
)
from specaware.model.checkpoint import load_checkpoint
from specaware.model.mae import SpecAwareMAE, build_model
from specaware.model.text import text_vectors
from specaware.train.engine import decay_groups, make_engine
from specaware.yaml_config import dataclass_from_yaml

log = logging.getLogger(__name__)

TASKS = ("segmentation", "change", "scene")
MODES = ("finetune", "probe", "logreg", "rf")


@dataclass
class DownstreamConfig:
    """One downstream run. ``data`` is the adapter mapping of :func:`specaware.downstream.datasets.load_data`.

    Backbone: ``checkpoint`` (a pretraining ``model.pt``) with ``init: pretrained``; ``init: random`` builds a
    freshly initialised model of the checkpoint's configuration (or of ``model`` with ``model_overrides`` when no
    checkpoint is given), with
    the same fixed sensor/level text vectors, so the comparison isolates pretraining. ``encoder_lr`` (fine-tuning
    only; default ``lr``) lets the pretrained encoder learn slower than the new head."""

    task: str
    data: dict[str, Any]
    output: str
    mode: str = "finetune"
    model: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    init: str = "pretrained"
    text: str = "placeholder"
    neck_width: int = 64
    head_channels: int = 64
    pool_scales: list[int] = field(default_factory=lambda: [1, 2, 3, 6])
    dropout: float = 0.1
    scene_hidden: int = 128
    steps: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    encoder_lr: float | None = None
    min_lr: float = 1e-6
    warmup_steps: int = 10
    weight_decay: float = 0.05
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
        if not 0 <= self.warmup_steps < self.steps:
            problems.append(f"warmup_steps must be in [0, steps), got {self.warmup_steps}")
        if problems:
            raise ValueError("downstream config: " + "; ".join(problems))

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> DownstreamConfig:
        """Read a YAML config; non-None ``overrides`` win. Unknown keys are errors."""
        return dataclass_from_yaml(cls, path, "downstream", **overrides)


# ---------------------------------------------------------------- backbone and batches


def load_backbone(config: DownstreamConfig) -> SpecAwareMAE:
    """The pretrained model, or a random one of the same size (text vectors kept: they are fixed, not learned)."""
    if config.checkpoint:
        pretrained = load_checkpoint(config.checkpoint)
        if config.init == "pretrained":
            return pretrained
        torch.manual_seed(config.seed)
        fresh = SpecAwareMAE(pretrained.config, text_vectors("placeholder"))
        fresh.load_state_dict({**fresh.state_dict(), **dict(pretrained.named_buffers())})
        return fresh
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
    """A model batch of ``items`` and its targets: pixel labels - 1 (B, H, W) with -1 = ignore, or scene labels - 1
    (B,). ``rng`` turns on flip / rotation augmentation."""
    images, afters, targets = [], [], []
    for item in items:
        if isinstance(item, ChangeItem):
            arrays = [item.before, item.after, item.labels]
        elif isinstance(item, LabelledImage):
            arrays = [item.image, item.labels]
        else:
            arrays = [item.image]
        if rng is not None:
            arrays = _augment(arrays, rng)
        images.append(_tensor(arrays[0]))
        if isinstance(item, ChangeItem):
            afters.append(_tensor(arrays[1]))
        targets.append(
            torch.tensor(item.label - 1) if isinstance(item, SceneItem) else torch.from_numpy(arrays[-1] - 1)
        )
    batch: dict[str, Any] = {"image": torch.stack(images).to(device), **data.sensor.batch_fields(len(items))}
    if afters:
        batch["image_after"] = torch.stack(afters).to(device)
    return batch, torch.stack(targets).long().to(device)


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
    for step in range(config.steps):
        picks = rng.integers(len(data.train), size=config.batch_size)
        batch, target = make_batch(
            [data.train[i] for i in picks], data, device, rng if config.augment else None
        )
        loss = F.cross_entropy(engine(batch), target, ignore_index=-1)
        engine.backward(loss)
        engine.step()  # also steps the schedule and zeroes the gradients
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"loss is {losses[-1]} at step {step}")
        if (step + 1) % config.log_every == 0:
            log.info("step %d/%d loss %.4f", step + 1, config.steps, np.mean(losses[-config.log_every :]))
    return losses


@torch.no_grad()
def predict(
    model: nn.Module, data: TaskData, items: list[Any], device: torch.device, batch_size: int
) -> list[Any]:
    """Predicted labels (1..K) of ``items``: an (H, W) map per segmentation / change item, an int per scene."""
    model.eval()
    out: list[Any] = []
    for start in range(0, len(items), batch_size):
        batch, _ = make_batch(items[start : start + batch_size], data, device)
        labels = model(batch).argmax(dim=1).cpu().numpy() + 1
        out += [int(v) for v in labels] if data.task == "scene" else list(labels)
    return out


# ---------------------------------------------------------------- scoring


def score(
    data: TaskData, items: list[Any], predictions: list[Any], output: Path, title: str, max_maps: int
) -> dict[str, Any]:
    """Metrics of ``predictions`` on ``items``, written with the figures to ``output``; returns the metrics."""
    k = data.num_classes
    if data.task == "scene":
        truth = np.array([item.label for item in items])
        matrix = confusion_matrix(truth, np.array(predictions), k)
    else:
        truth = np.concatenate([item.labels.ravel() for item in items])
        matrix = confusion_matrix(truth, np.concatenate([p.ravel() for p in predictions]), k)
    metrics = (
        change_metrics(matrix) if data.task == "change" else classification_metrics(matrix, data.class_names)
    )
    metrics = {
        "task": data.task,
        "protocol": data.protocol,
        "run": title,
        "test_items": len(items),
        **metrics,
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_confusion(matrix, data.class_names, output / "confusion.png", title)
    if data.task != "scene":
        shown = min(max_maps, len(items))
        plot_maps(
            [predictions[i] for i in range(shown)],
            [items[i].labels for i in range(shown)],
            [items[i].name for i in range(shown)],
            k,
            output / "maps.png",
            data.class_names,
        )
    return metrics


# ---------------------------------------------------------------- entry points


def _neural(config: DownstreamConfig, data: TaskData | None = None) -> dict[str, Any]:
    data = data if data is not None else load_data(config.data)
    device = _device(config.device)
    backbone = load_backbone(config)
    _check_sizes(data, backbone.config.patch_size)
    model = build_head_model(
        backbone,
        config.task,
        data.num_classes,
        config.mode,
        config.neck_width,
        config.head_channels,
        config.pool_scales,
        config.dropout,
        config.scene_hidden,
    ).to(device)
    losses = train_model(model, data, config, device)
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": "specaware-downstream/1",
            "config": asdict(config),
            "backbone_config": backbone.config.to_dict(),
            "num_classes": data.num_classes,
            "state_dict": model.state_dict(),
        },
        output / "downstream.pt",
    )
    with (output / "history.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "loss"])
        writer.writerows((i + 1, f"{v:.6f}") for i, v in enumerate(losses))
    predictions = predict(model, data, data.test, device, config.batch_size)
    metrics = score(data, data.test, predictions, output, _title(config), config.max_map_items)
    metrics["train_loss_first"], metrics["train_loss_last"] = losses[0], float(np.mean(losses[-10:]))
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _title(config: DownstreamConfig) -> str:
    if config.mode in ("logreg", "rf"):
        return f"{config.task} {config.mode} on raw spectra"
    return f"{config.task} {config.mode} ({config.init} {config.model if not config.checkpoint else 'checkpoint'})"


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
    if payload.get("format") != "specaware-downstream/1":
        raise ValueError(f"{output / 'downstream.pt'}: not a downstream checkpoint")
    saved = DownstreamConfig(**payload["config"])
    data = data if data is not None else load_data(saved.data)
    backbone = SpecAwareMAE(ModelConfig.from_dict(payload["backbone_config"]), text_vectors("placeholder"))
    model = build_head_model(
        backbone,
        saved.task,
        payload["num_classes"],
        saved.mode,
        saved.neck_width,
        saved.head_channels,
        saved.pool_scales,
        saved.dropout,
        saved.scene_hidden,
    )
    model.load_state_dict(payload["state_dict"], strict=True)
    device = _device(config.device)
    model.to(device)
    predictions = predict(model, data, data.test, device, config.batch_size)
    return score(data, data.test, predictions, output, _title(saved), config.max_map_items)


def _spectra(data: TaskData, items: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, C) and labels (n,) of the labelled pixels (or patches) of ``items``: raw spectra for
    segmentation, |after - before| spectra for change, mean spectra for scenes. No-data values become 0."""
    if data.task == "scene":
        features = np.stack([np.nanmean(item.image, axis=(1, 2)) for item in items])
        return np.nan_to_num(features), np.array([item.label for item in items])
    rows, labels = [], []
    for item in items:
        cube = np.abs(item.after - item.before) if isinstance(item, ChangeItem) else item.image
        keep = item.labels > 0
        rows.append(cube[:, keep].T)
        labels.append(item.labels[keep])
    return np.nan_to_num(np.concatenate(rows)), np.concatenate(labels)


def _pixel_predict(classifier: Any, data: TaskData, items: list[Any]) -> list[Any]:
    if data.task == "scene":
        return [int(v) for v in classifier.predict(_spectra(data, items)[0])]
    out = []
    for item in items:
        cube = np.abs(item.after - item.before) if isinstance(item, ChangeItem) else item.image
        flat = np.nan_to_num(cube.reshape(cube.shape[0], -1).T)
        out.append(classifier.predict(flat).reshape(item.labels.shape).astype(np.int64))
    return out


def baseline(config: DownstreamConfig, data: TaskData | None = None) -> dict[str, Any]:
    """Per-pixel spectral classifier on raw spectra (``mode`` ``logreg``: standardised multinomial logistic
    regression; ``rf``: random forest), trained on at most ``max_train_pixels`` random labelled training pixels."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if config.mode not in ("logreg", "rf"):
        raise ValueError(f"baseline mode must be logreg or rf, got {config.mode!r}")
    data = data if data is not None else load_data(config.data)
    features, labels = _spectra(data, data.train)
    if labels.size > config.max_train_pixels:
        pick = np.random.default_rng(config.seed).choice(labels.size, config.max_train_pixels, replace=False)
        features, labels = features[pick], labels[pick]
    classifier = (
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        if config.mode == "logreg"
        else RandomForestClassifier(n_estimators=config.rf_trees, random_state=config.seed, n_jobs=1)
    )
    classifier.fit(features, labels)
    predictions = _pixel_predict(classifier, data, data.test)
    metrics = score(data, data.test, predictions, Path(config.output), _title(config), config.max_map_items)
    metrics["train_pixels"] = int(labels.size)
    (Path(config.output) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def run(config: DownstreamConfig, data: TaskData | None = None) -> dict[str, Any]:
    """Dispatch on ``config.mode``."""
    if config.mode in ("logreg", "rf"):
        return baseline(config, data)
    return _neural(config, data)
