"""All-reduce, flat and hierarchical DS-Sync and torch's model averaging, one loopback run, same workload.

Four gloo ranks on 127.0.0.1 (treated as 2 "nodes" x 2 ranks) train the DS-Sync demo workload (a spectral
autoencoder on the real AVIRIS-NG radiance cube, each rank on its own shard of the pixels, same seeds and
batches for every method):

* ``allreduce``: DeepSpeed ZeRO-0, gradient all-reduce over the job (the baseline);
* ``dssync_flat``: DeepSpeed + DS-Sync ``hypercube``, K = 2 (parameter averaging with one partner a step);
* ``dssync_hierarchical``: DeepSpeed + DS-Sync ``hierarchical``, 2 nodes x 2, K = 2 nodes;
* ``post_local_sgd``: torch ``PostLocalSGDOptimizer`` with a ``PeriodicModelAverager`` (period 4);
* ``hierarchical_averager``: torch ``PostLocalSGDOptimizer`` with a ``HierarchicalModelAverager``
  (within the node every 2 steps, the whole job every 4).

Reported per method: the loss of the consensus model (the mean of the replicas; for all-reduce the replica)
on all spectra every ``eval_every`` steps; the steps to reach the target loss (the all-reduce run's final loss
x ``target_factor``); and the bytes each rank sends per step, counted from the collectives actually issued
(:mod:`specaware.dssync.traffic`), in total and on groups that span both "nodes" (what crosses a NIC).
Wall times are not reported: four processes on this machine's cores measure CPU contention, not a network.

Run: ``python -m benchmarks.dssync_compare [--quick]``; writes ``benchmarks/out/dssync_compare.json`` (read
by ``benchmarks.dssync_model`` for time to target). The last output line is JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from benchmarks.dssync import REALDATA
from specaware.dssync.launch import spawn

OUT = Path(__file__).resolve().parent / "out"
METHODS = ("allreduce", "dssync_flat", "dssync_hierarchical", "post_local_sgd", "hierarchical_averager")
RANKS_PER_NODE = 2
LR, MICRO_BATCH = 3e-3, 8


def _consensus_loss(model: torch.nn.Module, spectra: torch.Tensor) -> float:
    """Loss of the mean of all replicas on ``spectra`` (collective; the replicas are left unchanged)."""
    params = dict(model.named_parameters())
    mean = {name: p.detach().clone() for name, p in params.items()}
    for tensor in mean.values():
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    with torch.no_grad():
        output = torch.func.functional_call(model, mean, (spectra,))
        return float((output - spectra).pow(2).mean())


def _step_function(method: str, bands: int) -> tuple[torch.nn.Module, Callable[[torch.Tensor], float]]:
    """The replica and a function running one training step of ``method`` on a batch."""
    from specaware.dssync import attach_dssync
    from specaware.dssync.demo import SpectralAutoencoder, make_engine

    if method.startswith("dssync") or method == "allreduce":
        engine = make_engine(bands, lr=LR, micro_batch=MICRO_BATCH)
        dssync = {
            "dssync_flat": {"group_size": 2},
            "dssync_hierarchical": {
                "schedule": "hierarchical",
                "group_size": 2,
                "topology": {"ranks_per_node": RANKS_PER_NODE},
            },
        }.get(method)
        if dssync is not None:
            attach_dssync(engine, {"enabled": True, "disagreement_every": 0, **dssync})

        def engine_step(batch: torch.Tensor) -> float:
            loss = (engine(batch) - batch).pow(2).mean()
            engine.backward(loss)
            engine.step()
            return float(loss.detach())

        return engine.module, engine_step

    from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager
    from torch.distributed.algorithms.model_averaging.hierarchical_model_averager import (
        HierarchicalModelAverager,
    )
    from torch.distributed.optim import PostLocalSGDOptimizer

    torch.manual_seed(0)  # the same initial weights as the DeepSpeed runs, on every rank
    model = SpectralAutoencoder(bands)
    averager = (
        PeriodicModelAverager(period=4, warmup_steps=0)
        if method == "post_local_sgd"
        else HierarchicalModelAverager(
            OrderedDict([(2, RANKS_PER_NODE), (4, dist.get_world_size())]), warmup_steps=0
        )
    )
    optimizer = PostLocalSGDOptimizer(
        torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0), averager
    )

    def local_step(batch: torch.Tensor) -> float:
        optimizer.zero_grad()
        loss = (model(batch) - batch).pow(2).mean()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return model, local_step


def _worker(header: str, steps: int, eval_every: int) -> dict[str, Any]:
    import deepspeed

    from specaware.dssync.demo import load_spectra
    from specaware.dssync.traffic import CollectiveLog

    deepspeed.init_distributed(dist_backend="gloo")
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    log = CollectiveLog()
    spectra = load_spectra(Path(header))
    rank, world = dist.get_rank(), dist.get_world_size()
    shard = spectra[rank::world]
    results: dict[str, Any] = {}
    for method in METHODS:
        model, step = _step_function(method, spectra.shape[1])
        losses: dict[int, float] = {0: _consensus_loss(model, spectra)}
        sent = crossing = 0.0
        calls = 0
        for index in range(1, steps + 1):
            generator = torch.Generator().manual_seed(1_000_003 * (1000 + rank) + index)
            batch = shard[torch.randint(len(shard), (MICRO_BATCH,), generator=generator)]
            log.on = True
            step(batch)
            log.on = False
            for call in log.take():
                calls += 1
                sent += call.sent
                if len({member // RANKS_PER_NODE for member in call.ranks}) > 1:
                    crossing += call.sent
            if index % eval_every == 0 or index == steps:
                losses[index] = _consensus_loss(model, spectra)
        results[method] = {
            "losses": losses,
            "sent_per_step": sent / steps,
            "crossing_per_step": crossing / steps,
            "collectives_per_step": calls / steps,
        }
    results["model_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (about a minute here)")
    parser.add_argument("--realdata", type=Path, default=REALDATA, help="the shared real-data folder")
    parser.add_argument(
        "--target-factor", type=float, default=1.1, help="target loss = all-reduce's final loss x this"
    )
    args = parser.parse_args()
    steps, eval_every = (60, 5) if args.quick else (200, 5)
    header = args.realdata / "aviris-ng" / "ang20170323t202244_rdn_7000-7010.hdr"
    if not header.is_file():
        raise SystemExit(
            f"{header} not found: point --realdata (or HYPER400K_REALDATA) at ../shared/realdata"
        )
    results = spawn(_worker, 4, str(header), steps, eval_every, timeout_s=900)
    first = results[0]
    model_kib = first["model_bytes"] / 1024
    target = first["allreduce"]["losses"][steps] * args.target_factor
    marks = sorted({steps // 4, steps // 2, steps})
    print(
        f"4 gloo ranks on loopback as 2 nodes x 2; spectral autoencoder ({model_kib:.0f} KiB of fp32 parameters) "
        f"on AVIRIS-NG radiance, {steps} steps, batch {MICRO_BATCH} per rank, AdamW lr {LR:g}"
    )
    print(f"target loss: all-reduce's final loss x {args.target_factor:g} = {target:.4f}")
    columns = " ".join(f"{'loss@' + str(mark):>10}" for mark in marks)
    print(
        f"{'method':<22} {columns} {'steps to target':>16} {'KiB sent/step/rank':>19} "
        f"{'of which cross-node':>20} {'collectives/step':>17}"
    )
    steps_to_target: dict[str, int | None] = {}
    summary: dict[str, Any] = {}
    for method in METHODS:
        row = first[method]
        reached = [step for step, loss in sorted(row["losses"].items()) if step and loss <= target]
        steps_to_target[method] = reached[0] if reached else None
        # Bytes are the mean over ranks (ranks on a node boundary send more in some collectives).
        sent = sum(r[method]["sent_per_step"] for r in results) / len(results) / 1024
        crossing = sum(r[method]["crossing_per_step"] for r in results) / len(results) / 1024
        cells = " ".join(f"{row['losses'][mark]:>10.4f}" for mark in marks)
        reached_text = str(steps_to_target[method]) if reached else f">{steps}"
        print(
            f"{method:<22} {cells} {reached_text:>16} {sent:>19.1f} {crossing:>20.1f} "
            f"{row['collectives_per_step']:>17.2f}"
        )
        summary[method] = {
            "loss": {str(mark): round(row["losses"][mark], 5) for mark in marks},
            "steps_to_target": steps_to_target[method],
            "kib_sent_per_step_per_rank": round(sent, 2),
            "kib_cross_node_per_step_per_rank": round(crossing, 2),
        }
    print(
        "Bytes count ring algorithms (all-reduce 2(p-1)/p, reduce-scatter and all-gather (p-1)/p of the buffer); "
        "cross-node: collectives whose group spans both nodes. Wall time is not reported (CPU contention)."
    )
    line = {
        "steps": steps,
        "target_loss": round(target, 5),
        "steps_to_target": steps_to_target,
        "methods": summary,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    temporary = OUT / "dssync_compare.json.tmp"
    temporary.write_text(json.dumps(line, indent=2))
    temporary.replace(OUT / "dssync_compare.json")
    print(json.dumps(line))


if __name__ == "__main__":
    main()
