"""MAE pretraining of SpecAware on DeepSpeed over the streaming shard loader.

One process by default (CPU with gloo when there is no GPU), the ``deepspeed`` or ``torchrun`` launcher for many.
With ``dssync.enabled`` the gradient all-reduce is replaced by DS-Sync group parameter averaging
(:mod:`specaware.dssync`), and the model saved at the end is the global consensus.
Resume is exact: model, optimiser and scheduler come from the DeepSpeed checkpoint, the loader is repositioned
to the next batch with ``set_state`` (no replay), and every step reseeds torch from (seed, step), so masks and
dropout after a resume are those of the uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from hyper400k.progress import progress_bar
from specaware.data import LoaderConfig, ShardDataset, TransformConfig, open_shards
from specaware.dssync import DSSyncHook, attach_dssync, check_deepspeed_config
from specaware.model.checkpoint import save_checkpoint
from specaware.model.mae import SpecAwareMAE, build_model
from specaware.train.config import PretrainConfig
from specaware.train.engine import decay_groups, init_process_group, make_engine, resolve_config
from specaware.train.metrics import MetricsLog
from specaware.train.quicklook import save_reconstruction, value_label

log = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"


@dataclass
class PretrainResult:
    steps: int
    final_loss: float
    model_path: Path
    metrics_path: Path


def pretrain(config: PretrainConfig, *, progress: bool = True) -> PretrainResult:
    """Run (or resume) pretraining as configured; returns where the consensus model and metrics went."""
    init_process_group()
    rank = torch.distributed.get_rank()
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        (output / "pretrain_config.json").write_text(json.dumps(config.to_dict(), indent=2))

    torch.manual_seed(config.seed)  # the initial weights, identical on every rank and every rerun
    model = build_model(config.model, text=config.text, **config.model_overrides)
    engine, dssync = _engine(model, config)
    start_step = _resume(engine, output / CHECKPOINTS)
    dataset = _dataset(config)
    epoch, in_epoch = divmod(start_step, len(dataset))
    dataset.set_state(epoch, in_epoch)
    loader = DataLoader(dataset, batch_size=None, num_workers=config.workers)
    metrics = MetricsLog(output / "metrics.csv", start_step) if rank == 0 else None
    tokens_per_sample = (config.crop // model.config.patch_size) ** 2
    bar = progress_bar(total=config.steps, initial=start_step, desc="pretrain", disable=not progress or rank != 0)

    step, loss_value, window_start, window_samples = start_step, math.nan, time.perf_counter(), 0
    batches = iter(loader)
    while step < config.steps:
        try:
            batch = next(batches)
        except StopIteration:  # epoch end: the next epoch has its own seeded order
            epoch += 1
            dataset.set_epoch(epoch)
            batches = iter(loader)
            continue
        torch.manual_seed(config.seed * 1_000_003 + step)  # masks and dropout depend on (seed, step) only
        out = engine(_to_device(batch, engine.device), mask_ratio=config.mask_ratio)
        engine.backward(out.loss)
        grad_norm = _grad_norm(engine.module)
        engine.step()
        step += 1
        window_samples += len(batch["key"])
        loss_value = float(out.loss.detach())
        bar.update()
        if metrics is not None and (step % config.log_every == 0 or step == config.steps):
            elapsed = time.perf_counter() - window_start
            rate = window_samples * torch.distributed.get_world_size() / max(elapsed, 1e-9)
            row = {
                "step": step,
                "loss": f"{loss_value:.6f}",
                "sam": f"{float(out.sam.detach()):.6f}",
                "charbonnier": f"{float(out.charbonnier.detach()):.6f}",
                "lr": f"{engine.get_lr()[0]:.3e}",
                "grad_norm": f"{grad_norm:.4f}",
                "samples_per_s": f"{rate:.2f}",
                "tokens_per_s": f"{rate * tokens_per_sample:.1f}",
                "disagreement": f"{dssync.disagreements[-1][1]:.3e}"
                if dssync and dssync.disagreements
                else "",
            }
            metrics.write(row)
            bar.set_postfix(loss=row["loss"], lr=row["lr"])
            tqdm.write(" ".join(f"{k}={v}" for k, v in row.items() if v != ""))  # stdout, above the bar
            window_start, window_samples = time.perf_counter(), 0
        if rank == 0 and (step % config.quicklook_every == 0 or step == config.steps):
            save_reconstruction(
                output / "quicklooks" / f"step{step:06d}.png",
                batch["image"][0],
                out.prediction[0],
                out.pixels[0],
                batch["wavelength"][0],
                f"step {step}: {batch['key'][0]} (loss {loss_value:.3f})",
                value_label(batch["level"][0], config.normalize),
            )
        if step % config.checkpoint_every == 0 or step == config.steps:
            engine.save_checkpoint(
                str(output / CHECKPOINTS), tag=f"step{step:06d}", client_state={"step": step}
            )
    bar.close()
    if dssync is not None:
        dssync.global_average()  # collective: the saved model is the consensus, not rank 0's replica
    model_path = output / "model.pt"
    if rank == 0:
        save_checkpoint(engine.module, model_path)
    torch.distributed.barrier()
    return PretrainResult(step, loss_value, model_path, output / "metrics.csv")


def _engine(model: SpecAwareMAE, config: PretrainConfig) -> tuple[Any, DSSyncHook | None]:
    """The DeepSpeed engine, with DS-Sync attached when the config enables it."""
    if config.dssync and config.dssync.get("enabled", False):
        check_deepspeed_config(json.loads(resolve_config(config.deepspeed_config).read_text()))
    engine = make_engine(
        model,
        decay_groups(list(model.named_parameters()), config.lr, config.weight_decay),
        deepspeed_config=config.deepspeed_config,
        batch_size=config.batch_size,
        warmup_steps=config.warmup_steps,
        steps=config.steps,
        min_lr_ratio=config.min_lr / config.lr,
        betas=config.betas,
    )
    return engine, attach_dssync(engine, config.dssync)


def _dataset(config: PretrainConfig) -> ShardDataset:
    shards = open_shards(config.data, split=config.split)
    loader = LoaderConfig(
        batch_size=config.batch_size, weights=config.mixing_weights or "samples", seed=config.seed
    )
    transforms = TransformConfig(
        crop=config.crop,
        spectral_view_min_bands=config.min_view_bands if config.spectral_views else None,
        normalize=config.normalize,
    )
    return ShardDataset(shards, loader, transforms)


def _resume(engine: Any, checkpoints: Path) -> int:
    """Load the latest DeepSpeed checkpoint when one exists; the step to continue from (0 for a fresh run)."""
    if not (checkpoints / "latest").is_file():
        return 0
    _, client_state = engine.load_checkpoint(str(checkpoints))
    step = int(client_state["step"])
    log.info("resumed from %s at step %d", checkpoints, step)
    return step


def _to_device(batch: dict[str, Any], target: torch.device) -> dict[str, Any]:
    return {
        k: v.to(target, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }


def _grad_norm(module: torch.nn.Module) -> float:
    """L2 norm of all gradients before clipping (logged as a health metric)."""
    norms = [p.grad.detach().norm(2) for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0
