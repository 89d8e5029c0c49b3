"""The pretraining configuration: a YAML file in ``pipelines/configs/`` next to a DeepSpeed JSON config.

Everything a run needs is here (model size, masking, optimiser, schedule, batch, steps, spectral views,
sensor mixing, logging and checkpoint cadence), so a run is reproducible from its two config files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from specaware.yaml_config import dataclass_from_yaml


@dataclass
class PretrainConfig:
    """One pretraining run. ``data`` is a build folder (or shards folder); ``output`` receives checkpoints,
    ``metrics.csv`` and quicklooks. ``lr`` is the peak rate after warm-up (AdamW, cosine decay to ``min_lr``)."""

    data: str
    output: str
    model: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    deepspeed_config: str = "pipelines/configs/deepspeed_cpu.json"
    crop: int = 64
    batch_size: int = 8
    steps: int = 200
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_steps: int = 20
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    mask_ratio: float | None = None  # None: the model config's (0.75)
    normalize: bool = (
        False  # per-band (x - mean) / std with the build's statistics; the paper uses raw targets
    )
    spectral_views: bool = False
    min_view_bands: int = 32
    mixing_weights: dict[str, float] | None = None  # sensor-level group -> weight; None: proportional to data
    split: str = "train"
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    quicklook_every: int = 100
    workers: int = 0
    text: str = "auto"  # sensor/level vectors: "minilm" (= "auto", shipped) or "placeholder" (specaware.model.text)
    dssync: dict[str, Any] | None = None  # DS-Sync options; None or {"enabled": false}: all-reduce

    def __post_init__(self) -> None:
        problems = []
        if self.steps < 1 or self.batch_size < 1:
            problems.append("steps and batch_size must be positive")
        if not 0 <= self.warmup_steps < self.steps:
            problems.append(f"warmup_steps must be in [0, steps), got {self.warmup_steps}")
        if not 0 < self.min_lr <= self.lr:
            problems.append(f"need 0 < min_lr <= lr, got {self.min_lr} and {self.lr}")
        if self.mask_ratio is not None and not 0 < self.mask_ratio < 1:
            problems.append(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if problems:
            raise ValueError("pretraining config: " + "; ".join(problems))
        self.betas = tuple(self.betas)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> PretrainConfig:
        """Read a YAML config; non-None ``overrides`` win. Unknown keys are errors."""
        return dataclass_from_yaml(cls, path, "pretraining", **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
