"""A small, real DS-Sync workload: a spectral autoencoder on AVIRIS-NG radiance, trained with DeepSpeed.

Used by the tests and ``benchmarks/dssync.py`` to compare DS-Sync with the all-reduce baseline on the same
data, model and steps, and as a runnable example of the training loop. Each rank trains on its own shard of
the pixels (rank r takes pixels r, r + W, ...), as in data-parallel training, so replicas only agree through
synchronization.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from hyper400k.envi_header import EnviHeader, find_data_file
from specaware.dssync.buckets import FlatBuckets
from specaware.dssync.replica import ReplicaState

AVIRIS_NG_RADIANCE = Path("aviris-ng") / "ang20170323t202244_rdn_7000-7010.hdr"


def load_spectra(header_path: Path) -> torch.Tensor:
    """Every pixel spectrum of an ENVI product as (pixels, bands) float32, log-scaled, z-scored per band."""
    header = EnviHeader.read(header_path)
    lines, samples, bands = header.shape
    raw = np.fromfile(find_data_file(header_path), dtype=header.dtype, offset=header.header_offset)
    axes = {"bil": (lines, bands, samples), "bip": (lines, samples, bands), "bsq": (bands, lines, samples)}
    cube = raw.reshape(axes[header.interleave])
    order = {"bil": (0, 2, 1), "bip": (0, 1, 2), "bsq": (1, 2, 0)}[header.interleave]
    spectra = np.log1p(np.clip(cube.transpose(order).reshape(-1, bands).astype(np.float64), 0.0, None))
    spectra = (spectra - spectra.mean(axis=0)) / (spectra.std(axis=0) + 1e-6)
    return torch.from_numpy(spectra.astype(np.float32))


class SpectralAutoencoder(nn.Module):
    """bands -> 64 -> 16 -> 64 -> bands MLP; reconstructing the spectrum through a 16-wide bottleneck."""

    def __init__(self, bands: int, hidden: int = 64, code: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(bands, hidden),
            nn.GELU(),
            nn.Linear(hidden, code),
            nn.GELU(),
            nn.Linear(code, hidden),
            nn.GELU(),
            nn.Linear(hidden, bands),
        )

    def forward(self, spectra: torch.Tensor) -> torch.Tensor:
        return self.net(spectra)


def deepspeed_config(
    micro_batch: int, bf16: bool = False, zero_stage: int = 0, clipping: float = 0.0
) -> dict[str, Any]:
    """The DeepSpeed config of the demo (quiet logging, no wall-clock breakdown)."""
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": clipping,
        "zero_optimization": {"stage": zero_stage},
        "steps_per_print": 10**9,
    }
    if bf16:
        config["bf16"] = {"enabled": True}
    if zero_stage:
        config["zero_allow_untested_optimizer"] = True
    return config


def make_engine(
    bands: int,
    *,
    lr: float,
    micro_batch: int,
    bf16: bool = False,
    zero_stage: int = 0,
    clipping: float = 0.0,
) -> Any:
    """A DeepSpeed engine around a fresh autoencoder with AdamW (rank 0's initial weights are broadcast)."""
    import deepspeed

    torch.manual_seed(0)
    model = SpectralAutoencoder(bands)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        config=deepspeed_config(micro_batch, bf16, zero_stage, clipping),
    )
    return engine


def evaluate(engine: Any, spectra: torch.Tensor) -> float:
    """Mean squared reconstruction error of this rank's replica on ``spectra``."""
    dtype = next(engine.module.parameters()).dtype
    with torch.no_grad():
        return float((engine(spectra.to(dtype)).float() - spectra).pow(2).mean())


def replica_disagreement(engine: Any) -> float:
    """max over ranks of ||theta_r - mean|| / ||mean|| of the weights the optimizer updates (collective)."""
    return FlatBuckets(ReplicaState.from_engine(engine).averaged, 2**30).disagreement()


@dataclass
class TrainResult:
    """One rank's record: loss per step, (step, disagreement) samples, final loss of its own replica."""

    losses: list[float] = field(default_factory=list)
    disagreements: list[tuple[int, float]] = field(default_factory=list)
    final_loss: float = float("nan")


def train(
    engine: Any,
    spectra: torch.Tensor,
    *,
    steps: int,
    micro_batch: int,
    measure_every: int,
    before_step: Any = None,
    start_step: int = 0,
) -> TrainResult:
    """Train optimizer steps ``start_step + 1 .. steps`` on this rank's shard, measuring disagreement every
    ``measure_every`` (0: never).

    Step ``s``'s batch depends on (rank, s) only, so a run resumed at ``start_step`` sees the batches of the
    uninterrupted run. ``before_step(engine)``, when given, runs between ``engine.backward`` and
    ``engine.step`` (for variants that touch gradients). DS-Sync, when attached to ``engine``, runs inside
    ``engine.step``.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    shard = spectra[rank::world]
    dtype = next(engine.module.parameters()).dtype
    result = TrainResult()
    for step in range(start_step + 1, steps + 1):
        generator = torch.Generator().manual_seed(1_000_003 * (1000 + rank) + step)
        batch = shard[torch.randint(len(shard), (micro_batch,), generator=generator)]
        loss = (engine(batch.to(dtype)).float() - batch).pow(2).mean()
        engine.backward(loss)
        if before_step is not None:
            before_step(engine)
        engine.step()
        result.losses.append(float(loss.detach()))
        if measure_every and (step % measure_every == 0 or step == steps):
            result.disagreements.append((step, replica_disagreement(engine)))
    result.final_loss = evaluate(engine, spectra)
    return result
