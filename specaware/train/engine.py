"""The DeepSpeed engine every SpecAware training job runs on (pretraining, fine-tuning, probing).

AdamW over the given parameter groups (norms, biases and other 1-d parameters without weight decay), linear
warm-up then cosine decay, wrapped by ``deepspeed.initialize`` with the JSON config of ``pipelines/configs/``.
The process group is the launcher's (``deepspeed``/``torchrun``) or a single local process (gloo on CPU).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import deepspeed
import torch
from torch import nn

from specaware.train.distributed import backend, device, ensure_distributed_env
from specaware.train.schedule import warmup_cosine


def resolve_config(path: str | Path) -> Path:
    """A config path as given, else the file of that name shipped in ``pipelines/configs`` (so the defaults
    work from any working directory)."""
    given = Path(path)
    if given.is_file():
        return given
    shipped = Path(str(resources.files("pipelines").joinpath("configs", given.name)))
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(f"{path}: no such DeepSpeed config (nor in pipelines/configs)")


def init_process_group() -> None:
    """Join (or create) the process group; safe to call more than once in a process."""
    ensure_distributed_env()
    deepspeed.init_distributed(dist_backend=backend())


def decay_groups(
    named: Sequence[tuple[str, nn.Parameter]], lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    """Two AdamW groups at ``lr``: matrices with weight decay, 1-d parameters and biases without."""
    decay = [p for n, p in named if p.requires_grad and p.ndim > 1 and not n.endswith(".bias")]
    no_decay = [p for n, p in named if p.requires_grad and (p.ndim <= 1 or n.endswith(".bias"))]
    return [g for g in ({"params": decay, "weight_decay": weight_decay, "lr": lr},
                        {"params": no_decay, "weight_decay": 0.0, "lr": lr}) if g["params"]]  # fmt: skip


def make_engine(
    model: nn.Module,
    groups: list[dict[str, Any]],
    *,
    deepspeed_config: str | Path,
    batch_size: int,
    warmup_steps: int,
    steps: int,
    min_lr_ratio: float,
    betas: tuple[float, float] = (0.9, 0.999),
) -> Any:
    """``deepspeed.initialize`` on ``model`` with AdamW over ``groups`` and the warm-up + cosine schedule."""
    init_process_group()
    ds_config = json.loads(resolve_config(deepspeed_config).read_text())
    ds_config["train_micro_batch_size_per_gpu"] = batch_size
    optimizer = torch.optim.AdamW(groups, betas=betas)
    scheduler = warmup_cosine(optimizer, warmup_steps, steps, min_lr_ratio)
    model.to(device())
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
    )
    return engine
