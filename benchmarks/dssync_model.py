"""An alpha-beta network cost model: ring, hierarchical all-reduce and DS-Sync for SpecAware ``base``.

Iteration time = compute + communication (no overlap: DeepSpeed at ZeRO stage 0 all-reduces gradients after
the backward pass, in ``_backward_epilogue``; DS-Sync averages after the optimizer step). One collective of
``n`` bytes over ``p`` ranks on a ring costs ``2 (p - 1) alpha + 2 (p - 1) / p * n / B``; it is issued once
per bucket.

Cluster (every number is a command-line option): ``G`` GPUs per node on NVLink, one NIC per GPU,
``nodes_per_rack`` nodes under a non-blocking top-of-rack switch, racks joined by a spine whose uplinks are
oversubscribed by ``oversubscription``: a rack's uplink carries ``nodes_per_rack * G * B_nic /
oversubscription``. A flow crossing racks gets ``min(B_nic, uplink / concurrent crossing flows)``. Rings are
laid out node-major, so a ring (or the G rail rings of the hierarchical all-reduce) crosses each rack boundary
with only G flows (one per NIC/channel), while a DS-Sync round whose groups span racks makes *every* GPU send
across racks at once.

Algorithms:

* ring: one flat ring over all W GPUs, alpha of its slowest link class, bandwidth of a NIC;
* hierarchical: intra-node reduce-scatter, G parallel inter-node rings (one per rail, n / G bytes each),
  intra-node all-gather (the broadcast back), i.e. what NCCL does on multi-node clusters;
* DS-Sync hypercube (K = 2, 4): a round's groups differ in the round's bits; the highest bit decides the link
  class (within a node, within a rack, across racks); iteration time is the mean over the schedule period;
* DS-Sync topology (K = 2): the ``topology`` schedule: intra-node average every other step, cross-node rail
  groups alternating within-rack and across-rack on the other steps (mean over that period of 4);
* DS-Sync hierarchical (K = 2 nodes): the ``hierarchical`` schedule: intra-node reduce-scatter + all-gather
  over NVLink, and each GPU averages only its n / G shard with the same local rank of its partner node
  (hypercube over nodes; a round whose node pairs span racks has every GPU sending across racks at once).

Beyond the mean communication time, two effects DS-Sync v2 claims to tolerate are parameters:

* **background contention** (``--contention``): the fraction of the racks' uplink bandwidth other jobs use;
* **stragglers**: per rank and step, compute takes ``compute x lognormal(0, jitter)``, and with probability
  ``straggler_prob`` a further ``straggler_slowdown`` factor. Step times are then simulated as a max-plus
  system over ``--simulate-steps`` steps: an all-reduce step ends when the slowest of all W ranks is done,
  a DS-Sync step on a rank ends when the slowest rank of its group for that step is done (delays still
  spread, but only along the schedule's groups).

Time to a target loss is ``steps to target x modelled step time``, with the steps measured in the loopback
run of ``benchmarks/dssync_compare.py`` (read from ``benchmarks/out/dssync_compare.json`` when present:
all-reduce steps for ring/hierarchical, flat DS-Sync for hypercube/topology, hierarchical DS-Sync for the
hierarchical schedule). Those steps come from a 4-rank run of a small model, so this product is an
extrapolation: it tells how much of a step-count penalty the per-step gain can absorb, not a measurement at
1024 GPUs.

Bytes: the all-reduce moves gradients in the training precision (bf16: 2 bytes per parameter in DeepSpeed's
ZeRO-0 path); DS-Sync moves the fp32 master weights (4 bytes per parameter) under bf16, because averaging
rounded bf16 weights would erase updates below bf16 resolution. The fp32 table has 4 bytes for both.

Run: ``python -m benchmarks.dssync_model [--params 117963659 ...]``; prints the tables and writes
``benchmarks/out/dssync_model.png``. The last output line is JSON.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"
WORKERS = (16, 32, 64, 128, 256, 512, 1024)
# Trainable parameters of SpecAware ``base`` (specaware.model.build_model("base"), the published architecture,
# 89.4 M of them in the encoder); pretraining synchronizes all of them. tests/test_model.py checks the count.
BASE_PARAMS = 117_963_659


@dataclass(frozen=True)
class Link:
    """One link class: latency alpha (s) and bandwidth (bytes/s) per GPU and direction."""

    alpha: float
    bandwidth: float


@dataclass(frozen=True)
class Cluster:
    """The modelled cluster; see the module docstring."""

    gpus_per_node: int
    nodes_per_rack: int
    nvlink: Link
    nic: Link
    cross_rack_alpha: float
    oversubscription: float
    contention: float = 0.0

    @property
    def rack(self) -> int:
        return self.gpus_per_node * self.nodes_per_rack

    def cross_rack(self, flows_per_rack: float) -> Link:
        """The link a cross-rack flow gets when ``flows_per_rack`` flows leave each rack at once."""
        uplink = self.rack * self.nic.bandwidth / self.oversubscription * (1.0 - self.contention)
        return Link(self.cross_rack_alpha, min(self.nic.bandwidth, uplink / flows_per_rack))

    def link_for_span(self, span: int, flows_per_rack: float) -> Link:
        """The slowest link class inside a block of ``span`` consecutive GPUs."""
        if span <= self.gpus_per_node:
            return self.nvlink
        if span <= self.rack:
            return self.nic
        return self.cross_rack(flows_per_rack)


def ring(n_bytes: float, participants: int, link: Link, bucket_bytes: float) -> float:
    """Seconds for a ring all-reduce of ``n_bytes`` over ``participants``, one collective per bucket."""
    if participants == 1:
        return 0.0
    collectives = math.ceil(n_bytes / bucket_bytes)
    steps = 2 * (participants - 1)
    return collectives * steps * link.alpha + steps / participants * n_bytes / link.bandwidth


def flat_ring(cluster: Cluster, world: int, n_bytes: float, bucket: float) -> float:
    """One ring over all GPUs: the slowest link class it crosses; G channels cross each rack boundary."""
    return ring(n_bytes, world, cluster.link_for_span(world, cluster.gpus_per_node), bucket)


def hierarchical(cluster: Cluster, world: int, n_bytes: float, bucket: float) -> float:
    """Intra-node reduce-scatter + all-gather (one NVLink ring all-reduce) and G rail rings of n / G bytes."""
    g = cluster.gpus_per_node
    intra = ring(n_bytes, min(g, world), cluster.nvlink, bucket)
    if world <= g:
        return intra
    rails = cluster.link_for_span(world, flows_per_rack=g)
    return intra + ring(n_bytes / g, world // g, rails, bucket)


def dssync_hypercube(cluster: Cluster, world: int, size: int, n_bytes: float, bucket: float) -> float:
    """Mean over one hypercube period; a round spanning racks has every GPU sending across racks at once."""
    bits, per_round = world.bit_length() - 1, size.bit_length() - 1
    rounds = math.ceil(bits / per_round)
    total = 0.0
    for round_ in range(rounds):
        top = max((round_ * per_round + i) % bits for i in range(per_round))
        link = cluster.link_for_span(2 ** (top + 1), flows_per_rack=cluster.rack)  # every GPU sends at once
        total += ring(n_bytes, size, link, bucket)
    return total / rounds


def dssync_topology(cluster: Cluster, world: int, size: int, n_bytes: float, bucket: float) -> float:
    """Mean over the topology schedule's period: intra-node, in-rack rails, intra-node, cross-rack rails."""
    intra = ring(n_bytes, cluster.gpus_per_node, cluster.nvlink, bucket)
    nodes = world // cluster.gpus_per_node
    if nodes == 1:
        return intra
    within = ring(n_bytes, min(size, nodes, cluster.nodes_per_rack), cluster.nic, bucket)
    if world <= cluster.rack:
        return (intra + within) / 2
    across = ring(n_bytes, size, cluster.cross_rack(cluster.rack), bucket)
    return (2 * intra + within + across) / 4


def dssync_hierarchical_rounds(
    cluster: Cluster, world: int, size: int, n_bytes: float, bucket: float
) -> list[float]:
    """Seconds of each round of the hierarchical schedule's period (K nodes per cross-node group)."""
    g = cluster.gpus_per_node
    intra = ring(n_bytes, min(g, world), cluster.nvlink, bucket)  # reduce-scatter + all-gather
    nodes = world // g
    if nodes == 1:
        return [intra]
    bits, per_round = nodes.bit_length() - 1, size.bit_length() - 1
    rounds = []
    for round_ in range(math.ceil(bits / per_round)):
        top = max((round_ * per_round + i) % bits for i in range(per_round))
        span_nodes = 2 ** (top + 1)
        link = cluster.nic if span_nodes <= cluster.nodes_per_rack else cluster.cross_rack(cluster.rack)
        rounds.append(intra + ring(n_bytes / g, size, link, bucket))
    return rounds


def dssync_hypercube_rounds(
    cluster: Cluster, world: int, size: int, n_bytes: float, bucket: float
) -> list[float]:
    """Seconds of each round of the flat hypercube's period."""
    bits, per_round = world.bit_length() - 1, size.bit_length() - 1
    rounds = []
    for round_ in range(math.ceil(bits / per_round)):
        top = max((round_ * per_round + i) % bits for i in range(per_round))
        rounds.append(ring(n_bytes, size, cluster.link_for_span(2 ** (top + 1), cluster.rack), bucket))
    return rounds


ALGORITHMS = (
    "ring",
    "hierarchical",
    "dssync_hypercube_k2",
    "dssync_hypercube_k4",
    "dssync_topology_k2",
    "dssync_hierarchical_k2",
)


def communication(
    cluster: Cluster, world: int, grad_bytes: float, master_bytes: float, args: argparse.Namespace
) -> dict[str, float]:
    """Seconds of communication per iteration for every algorithm at ``world`` GPUs."""
    return {
        "ring": flat_ring(cluster, world, grad_bytes, args.allreduce_bucket_mb * 1e6),
        "hierarchical": hierarchical(cluster, world, grad_bytes, args.allreduce_bucket_mb * 1e6),
        "dssync_hypercube_k2": dssync_hypercube(cluster, world, 2, master_bytes, args.dssync_bucket_mb * 1e6),
        "dssync_hypercube_k4": dssync_hypercube(cluster, world, 4, master_bytes, args.dssync_bucket_mb * 1e6),
        "dssync_topology_k2": dssync_topology(cluster, world, 2, master_bytes, args.dssync_bucket_mb * 1e6),
        "dssync_hierarchical_k2": _mean(
            dssync_hierarchical_rounds(cluster, world, 2, master_bytes, args.dssync_bucket_mb * 1e6)
        ),
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@dataclass(frozen=True)
class Stragglers:
    """Per-rank, per-step compute variability (see the module docstring)."""

    jitter: float
    prob: float
    slowdown: float

    def compute(self, rng: np.random.Generator, compute_s: float, world: int) -> np.ndarray:
        times = (
            compute_s * rng.lognormal(0.0, self.jitter, world) if self.jitter else np.full(world, compute_s)
        )
        if self.prob:
            times = np.where(rng.random(world) < self.prob, times * self.slowdown, times)
        return times


def simulate_step_s(
    kind: str,
    world: int,
    gpus_per_node: int,
    compute_s: float,
    rounds_s: list[float],
    stragglers: Stragglers,
    steps: int,
    seed: int,
) -> float:
    """Mean seconds per step of a max-plus simulation (``kind``: barrier, ranks-k2 or nodes-k2).

    ``barrier``: every step waits for the slowest of all ranks (all-reduce). ``ranks-k2``: a rank waits for
    its hypercube partner of the step (flat DS-Sync, K = 2). ``nodes-k2``: a rank waits for every rank of its
    node and of its partner node (hierarchical DS-Sync). ``rounds_s`` is the communication of each round.
    """
    rng = np.random.default_rng(seed)
    ready = np.zeros(world)
    nodes = world // gpus_per_node
    for step in range(steps):
        done = ready + stragglers.compute(rng, compute_s, world)
        comm = rounds_s[step % len(rounds_s)]
        if kind == "barrier" or world == 1:
            ready = np.full(world, done.max() + comm)
        elif kind == "ranks-k2":
            bit = 1 << (step % (world.bit_length() - 1))
            ready = np.maximum(done, done[np.arange(world) ^ bit]) + comm
        else:
            per_node = done.reshape(nodes, gpus_per_node).max(axis=1)
            if nodes > 1:
                bit = 1 << (step % (nodes.bit_length() - 1))
                per_node = np.maximum(per_node, per_node[np.arange(nodes) ^ bit])
            ready = np.repeat(per_node, gpus_per_node) + comm
    return float(ready.max()) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=BASE_PARAMS, help="synchronized parameters")
    parser.add_argument("--compute-ms", type=float, default=150.0, help="forward+backward+step per iteration")
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--nodes-per-rack", type=int, default=16)
    parser.add_argument("--nvlink-alpha-us", type=float, default=3.0)
    parser.add_argument("--nvlink-gbps", type=float, default=150.0, help="GB/s per GPU and direction")
    parser.add_argument("--nic-alpha-us", type=float, default=8.0)
    parser.add_argument("--nic-gbps", type=float, default=40.0, help="GB/s per GPU NIC (400 Gb/s, effective)")
    parser.add_argument("--cross-rack-alpha-us", type=float, default=12.0)
    parser.add_argument("--oversubscription", type=float, default=4.0, help="rack uplink oversubscription")
    parser.add_argument(
        "--allreduce-bucket-mb", type=float, default=1000.0, help="DeepSpeed ZeRO-0: 500 M elements"
    )
    parser.add_argument("--dssync-bucket-mb", type=float, default=26.2, help="DS-Sync bucket_mb 25 (MiB)")
    parser.add_argument(
        "--contention", type=float, default=0.0, help="fraction of rack uplinks used by other jobs"
    )
    parser.add_argument("--simulate-steps", type=int, default=400, help="steps of the straggler simulation")
    parser.add_argument(
        "--steps-json",
        type=Path,
        default=OUT / "dssync_compare.json",
        help="the last JSON line of benchmarks.dssync_compare (steps to the target loss)",
    )
    args = parser.parse_args()
    cluster = Cluster(
        args.gpus_per_node,
        args.nodes_per_rack,
        Link(args.nvlink_alpha_us * 1e-6, args.nvlink_gbps * 1e9),
        Link(args.nic_alpha_us * 1e-6, args.nic_gbps * 1e9),
        args.cross_rack_alpha_us * 1e-6,
        args.oversubscription,
        args.contention,
    )
    crowded, rings = (
        cluster.cross_rack(cluster.rack).bandwidth,
        cluster.cross_rack(cluster.gpus_per_node).bandwidth,
    )
    print("Assumptions (alpha-beta model, no compute/communication overlap):")
    print(f"  model: SpecAware base, {args.params / 1e6:.1f} M synchronized parameters")
    print(f"  compute per iteration: {args.compute_ms:g} ms (assumed, ViT-B/8 MAE step on one GPU)")
    nvlink, nic = (
        f"{args.nvlink_alpha_us:g} us, {args.nvlink_gbps:g} GB/s",
        f"{args.nic_alpha_us:g} us, {args.nic_gbps:g} GB/s",
    )
    print(f"  {args.gpus_per_node} GPUs/node on NVLink: alpha {nvlink}")
    print(
        f"  one NIC per GPU: alpha {nic}; {args.nodes_per_rack} nodes/rack, non-blocking top-of-rack switch"
    )
    print(
        f"  cross-rack: alpha {args.cross_rack_alpha_us:g} us, "
        f"uplinks oversubscribed {args.oversubscription:g}:1; "
        f"a cross-rack flow gets {crowded / 1e9:.1f} GB/s when every GPU sends across, "
        f"{rings / 1e9:.1f} GB/s for G ring flows"
    )
    print(f"  buckets: all-reduce {args.allreduce_bucket_mb:g} MB, DS-Sync {args.dssync_bucket_mb:g} MB")

    tables: dict[str, dict[int, dict[str, float]]] = {}
    for precision, grad_width, master_width in (("bf16", 2, 4), ("fp32", 4, 4)):
        grad_bytes, master_bytes = args.params * grad_width, args.params * master_width
        print(
            f"\n{precision} training: all-reduce moves {grad_bytes / 1e6:.0f} MB of {precision} gradients, "
            f"DS-Sync {master_bytes / 1e6:.0f} MB of fp32 master weights.\n"
            "Iteration time ms (communication ms):"
        )
        print(f"{'W':>5} " + " ".join(f"{name:>22}" for name in ALGORITHMS))
        tables[precision] = {}
        for world in WORKERS:
            comm = communication(cluster, world, grad_bytes, master_bytes, args)
            tables[precision][world] = {name: round(seconds * 1e3, 2) for name, seconds in comm.items()}
            cells = [
                f"{args.compute_ms + seconds * 1e3:>12.1f} ({seconds * 1e3:>6.1f})"
                for seconds in comm.values()
            ]
            print(f"{world:>5} " + " ".join(f"{cell:>22}" for cell in cells))

    scenarios = _scenarios(cluster, args)
    OUT.mkdir(parents=True, exist_ok=True)
    plot = OUT / "dssync_model.png"
    _plot(tables, args.compute_ms, plot)
    print(f"\nplot: {plot}")
    summary = {
        "params": args.params,
        "compute_ms": args.compute_ms,
        "comm_ms_bf16_1024": tables["bf16"][1024],
        "comm_ms_fp32_1024": tables["fp32"][1024],
        "scenarios_1024_bf16": scenarios,
        "plot": str(plot),
    }
    print(json.dumps(summary))


SCENARIOS = (  # name, jitter, straggler probability, slowdown, extra uplink contention
    ("no stragglers", 0.0, 0.0, 1.0, 0.0),
    ("jitter 5 %", 0.05, 0.0, 1.0, 0.0),
    ("jitter 5 %, 1 % stragglers x2", 0.05, 0.01, 2.0, 0.0),
    ("jitter 5 %, contention 50 %", 0.05, 0.0, 1.0, 0.5),
    ("jitter 10 %, 1 % stragglers x3, contention 50 %", 0.10, 0.01, 3.0, 0.5),
)
# Which loopback run's steps-to-target each modelled algorithm takes (see the module docstring).
STEPS_KEY = {
    "hierarchical": "allreduce",
    "dssync_hypercube_k2": "dssync_flat",
    "dssync_hierarchical_k2": "dssync_hierarchical",
}


def _scenarios(cluster: Cluster, args: argparse.Namespace) -> list[dict[str, object]]:
    """W = 1024, bf16: step times with stragglers and contention, the aim's ratios, time to target."""
    world, grad_bytes, master_bytes = 1024, args.params * 2, args.params * 4
    ar_bucket, ds_bucket = args.allreduce_bucket_mb * 1e6, args.dssync_bucket_mb * 1e6
    steps = (
        json.loads(args.steps_json.read_text()).get("steps_to_target") if args.steps_json.is_file() else None
    )
    print(
        f"\nW = {world}, bf16, compute {args.compute_ms:g} ms: mean step time (ms) from a max-plus simulation "
        f"of {args.simulate_steps} steps"
    )
    if steps:
        print(f"  steps to the target loss (measured in {args.steps_json.name}): {steps}")
    else:
        print(f"  no {args.steps_json}: run python -m benchmarks.dssync_compare for time to target")
    header = f"{'scenario':<48} {'hier. all-reduce':>16} {'flat DS-Sync':>13} {'hier. DS-Sync':>14} {'speed-up':>9}"
    print(header + (f" {'time-to-target':>15}" if steps else ""))
    rows = []
    for name, jitter, prob, slowdown, contention in SCENARIOS:
        loaded = Cluster(
            cluster.gpus_per_node,
            cluster.nodes_per_rack,
            cluster.nvlink,
            cluster.nic,
            cluster.cross_rack_alpha,
            cluster.oversubscription,
            1.0 - (1.0 - cluster.contention) * (1.0 - contention),
        )
        stragglers = Stragglers(jitter, prob, slowdown)
        plans = {
            "hierarchical": ("barrier", [hierarchical(loaded, world, grad_bytes, ar_bucket)]),
            "dssync_hypercube_k2": (
                "ranks-k2",
                dssync_hypercube_rounds(loaded, world, 2, master_bytes, ds_bucket),
            ),
            "dssync_hierarchical_k2": (
                "nodes-k2",
                dssync_hierarchical_rounds(loaded, world, 2, master_bytes, ds_bucket),
            ),
        }
        step_ms = {
            key: 1e3
            * simulate_step_s(
                kind,
                world,
                cluster.gpus_per_node,
                args.compute_ms / 1e3,
                rounds,
                stragglers,
                args.simulate_steps,
                seed=0,
            )  # fmt: skip
            for key, (kind, rounds) in plans.items()
        }
        speedup = step_ms["hierarchical"] / step_ms["dssync_hierarchical_k2"]
        row: dict[str, object] = {"scenario": name, **{k: round(v, 2) for k, v in step_ms.items()}}
        row["speedup_per_step"] = round(speedup, 3)
        line = (
            f"{name:<48} {step_ms['hierarchical']:>16.1f} {step_ms['dssync_hypercube_k2']:>13.1f} "
            f"{step_ms['dssync_hierarchical_k2']:>14.1f} {speedup:>8.2f}x"
        )
        if steps and None not in (
            steps[STEPS_KEY["hierarchical"]],
            steps[STEPS_KEY["dssync_hierarchical_k2"]],
        ):
            ratio = (steps[STEPS_KEY["dssync_hierarchical_k2"]] * step_ms["dssync_hierarchical_k2"]) / (
                steps[STEPS_KEY["hierarchical"]] * step_ms["hierarchical"]
            )
            row["time_to_target_ratio"] = round(ratio, 3)
            line += f" {ratio:>15.3f}"
        print(line)
        rows.append(row)
    comm_ar = hierarchical(cluster, world, grad_bytes, ar_bucket)
    comm_ds = _mean(dssync_hierarchical_rounds(cluster, world, 2, master_bytes, ds_bucket))
    comm_ds_bf16 = _mean(dssync_hierarchical_rounds(cluster, world, 2, grad_bytes, ds_bucket))
    print(
        f"  communication alone: hierarchical all-reduce {comm_ar * 1e3:.2f} ms, hierarchical DS-Sync "
        f"{comm_ds * 1e3:.2f} ms (fp32 masters; {comm_ar / comm_ds:.2f}x); with bf16 transfer (not built) it "
        f"would be {comm_ds_bf16 * 1e3:.2f} ms ({comm_ar / comm_ds_bf16:.2f}x)"
    )
    print(
        "  the intra-node stage alone (reduce-scatter + all-gather of the fp32 masters over NVLink) takes "
        f"{ring(master_bytes, cluster.gpus_per_node, cluster.nvlink, ds_bucket) * 1e3:.2f} ms"
    )
    rows.append(
        {
            "comm_ms_hierarchical_allreduce": round(comm_ar * 1e3, 3),
            "comm_ms_hierarchical_dssync": round(comm_ds * 1e3, 3),
            "comm_ms_hierarchical_dssync_if_bf16": round(comm_ds_bf16 * 1e3, 3),
        }
    )
    return rows


def _plot(tables: dict[str, dict[int, dict[str, float]]], compute_ms: float, path: Path) -> None:
    from hyper400k.figures import plt, save_figure

    figure, axes = plt.subplots(1, len(tables), figsize=(12, 4.5), sharey=True)
    for axis, (precision, table) in zip(axes, tables.items(), strict=True):
        for name in ALGORITHMS:
            axis.plot(WORKERS, [compute_ms + table[w][name] for w in WORKERS], marker="o", label=name)
        axis.set_xscale("log", base=2)
        axis.set_xlabel("workers (GPUs)")
        axis.set_title(f"SpecAware base, {precision} training")
        axis.grid(True, alpha=0.3)
    axes[0].set_ylabel("modelled iteration time (ms)")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path, dpi=120)


if __name__ == "__main__":
    main()
