"""DS-Sync vs. world all-reduce on loopback: bytes per worker, collective latency, loss after equal steps.

Two measurements, both with gloo over 127.0.0.1 in processes started by :func:`specaware.dssync.launch.spawn`:

* **Collectives** at W = 4 and 8: one replica of ``payload`` MiB of fp32 is averaged over the whole world (the
  all-reduce of plain data parallelism moves the same number of bytes per step as a gradient all-reduce) or
  within the rank's DS-Sync hypercube group of K = 2 or 4, through the same bucketed code path. Bytes sent per
  worker per step are computed from the bucket sizes and the algorithm: a ring all-reduce over n ranks sends
  2(n - 1)/n x bytes, so the world all-reduce sends 2(W - 1)/W x and DS-Sync 2(K - 1)/K x. Latency is the mean
  wall time per collective, the maximum over ranks.
* **Training**: the DS-Sync demo (a spectral autoencoder on the real AVIRIS-NG radiance cube, each rank on its
  own shard) on 4 ranks with DeepSpeed, all-reduce baseline vs. DS-Sync (hypercube, K = 2), same data, seed
  and steps: the loss of the final model on all spectra (DS-Sync: after the global average, i.e. the consensus
  model) and the largest replica disagreement seen during training.

On a 2-core machine W processes share two cores: the wall times measure CPU contention and memory copies, not
a network, and are not a speedup. The network question is answered by the alpha-beta model in
``benchmarks/dssync_model.py``.

Run: ``python -m benchmarks.dssync [--quick] [--realdata PATH]``. The last output line is JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from specaware.dssync import DSSyncConfig, DSSyncHook, ReplicaState
from specaware.dssync.buckets import FlatBuckets
from specaware.dssync.launch import spawn

ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("HYPER400K_REALDATA", ROOT.parent / "shared" / "realdata"))
MIB = 2**20
CONTENTION = (
    "W processes share this machine's CPU cores: wall times measure CPU contention and memory copies on "
    "loopback, not a network; they are not a speedup"
)


def ring_bytes(payload_bytes: int, participants: int) -> float:
    """Bytes one rank sends in a ring all-reduce of ``payload_bytes`` over ``participants`` ranks."""
    return 2 * (participants - 1) / participants * payload_bytes


def _mean_ms(operation: Callable[[], Any], iterations: int) -> float:
    """Mean wall time of ``operation`` over ``iterations`` back-to-back calls (slowest rank, 2 warm-ups)."""
    for _ in range(2):
        operation()
    dist.barrier()
    start = time.perf_counter()
    for _ in range(iterations):
        operation()
    dist.barrier()
    elapsed = torch.tensor([(time.perf_counter() - start) / iterations * 1e3])
    dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
    return float(elapsed)


def _collectives_worker(payload_mib: float, group_sizes: list[int], iterations: int) -> dict[str, float]:
    dist.init_process_group("gloo")
    world = dist.get_world_size()
    replica = torch.randn(int(payload_mib * MIB) // 4)
    buckets = FlatBuckets([replica], 25 * MIB)
    timings = {"allreduce": _mean_ms(lambda: buckets.average(dist.group.WORLD, world), iterations)}
    for size in group_sizes:
        hook = DSSyncHook(
            ReplicaState([replica]), DSSyncConfig(enabled=True, group_size=size, disagreement_every=0)
        )
        timings[f"dssync_k{size}"] = _mean_ms(hook.average, iterations)
    timings["bucket_bytes"] = float(buckets.nbytes)
    dist.destroy_process_group()
    return timings


def _training_worker(header: str, steps: int) -> dict[str, float]:
    import deepspeed

    from specaware.dssync import attach_dssync
    from specaware.dssync.demo import evaluate, load_spectra, make_engine, train

    deepspeed.init_distributed(dist_backend="gloo")
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    spectra = load_spectra(Path(header))
    settings = {"steps": steps, "micro_batch": 8, "measure_every": 5}
    baseline = train(make_engine(spectra.shape[1], lr=3e-3, micro_batch=8), spectra, **settings)
    engine = make_engine(spectra.shape[1], lr=3e-3, micro_batch=8)
    hook = attach_dssync(
        engine, {"enabled": True, "group_size": 2, "schedule": "hypercube", "disagreement_every": 0}
    )
    assert hook is not None
    dssync = train(engine, spectra, **settings)
    hook.global_average()
    return {
        "loss_allreduce": baseline.final_loss,
        "loss_dssync": evaluate(engine, spectra),
        "loss_dssync_replica": dssync.final_loss,
        "max_disagreement": max(value for _, value in dssync.disagreements),
        "final_disagreement": dssync.disagreements[-1][1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small payload, few iterations and steps (<= 60 s)"
    )
    parser.add_argument("--realdata", type=Path, default=REALDATA, help="the shared real-data folder")
    args = parser.parse_args()
    payload_mib, iterations, steps = (4.0, 10, 30) if args.quick else (25.0, 40, 200)
    header = args.realdata / "aviris-ng" / "ang20170323t202244_rdn_7000-7010.hdr"
    if not header.is_file():
        raise SystemExit(
            f"{header} not found: point --realdata (or HYPER400K_REALDATA) at ../shared/realdata"
        )

    print(f"Collectives on loopback (gloo), {payload_mib:g} MiB fp32 replica, mean of {iterations} per rank")
    print(f"NOTE: {CONTENTION}.")
    print(f"{'W':>3} {'K':>3}  {'algorithm':<22} {'sent/worker/step':>17} {'latency ms':>11}")
    latency: dict[str, dict[str, float]] = {}
    for world in (4, 8):
        timings = spawn(_collectives_worker, world, payload_mib, [2, 4], iterations, timeout_s=300)[0]
        payload = int(timings["bucket_bytes"])
        rows = [("-", "world ring all-reduce", world, "allreduce")]
        rows += [(str(k), "DS-Sync hypercube", k, f"dssync_k{k}") for k in (2, 4)]
        for k, name, participants, key in rows:
            sent = ring_bytes(payload, participants) / MIB
            print(f"{world:>3} {k:>3}  {name:<22} {sent:>13.2f} MiB {timings[key]:>11.2f}")
        latency[f"W{world}"] = {
            key: round(value, 3) for key, value in timings.items() if key != "bucket_bytes"
        }

    print(
        f"\nTraining: 4 ranks, DeepSpeed fp32 ZeRO-0, AVIRIS-NG spectra autoencoder, {steps} steps, same seed"
    )
    result = spawn(_training_worker, 4, str(header), steps, timeout_s=300)[0]
    print(f"  all-reduce baseline loss         {result['loss_allreduce']:.4f}")
    print(
        f"  DS-Sync (K=2) consensus loss     {result['loss_dssync']:.4f}  (rank 0 replica before the global "
        f"average: {result['loss_dssync_replica']:.4f})"
    )
    print(
        f"  DS-Sync replica disagreement     max {result['max_disagreement']:.2e}, "
        f"final {result['final_disagreement']:.2e}  (max_r ||theta_r - mean|| / ||mean||)"
    )

    summary = {
        "allreduce_ms": latency["W8"]["allreduce"],
        "dssync_ms": latency["W8"]["dssync_k2"],
        "loss_allreduce": round(result["loss_allreduce"], 5),
        "loss_dssync": round(result["loss_dssync"], 5),
        "max_disagreement": round(result["max_disagreement"], 6),
        "world": 8,
        "group_size": 2,
        "payload_mib": payload_mib,
        "latency_ms": latency,
        "note": CONTENTION,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
