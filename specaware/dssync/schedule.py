"""Deterministic DS-Sync schedules: which ranks average together at each step.

A schedule is a fixed, finite list of partitions of the W ranks (every process group DS-Sync will ever use is
a group of one of them, so all groups can be created once up front) plus a rule picking one partition per
step. Every rank computes the same schedule from ``(world, config)`` alone - no communication - so the rule
must be a pure function of the step. Three schedules:

``hypercube`` (W and K powers of two). Write a rank in binary, d = log2 W bits, j = log2 K bits per round.
Round r (= step mod R, R = ceil(d / j)) groups the ranks that differ only in the bits {(r*j + i) mod d : i <
j}: K = 2 gives the classic pairs i <-> i XOR 2^(t mod d). Averaging over such a subcube is a projection
acting on those bit-coordinates only; projections on different coordinates commute, are idempotent, and their
product over rounds that together touch every bit is the average over all W ranks. So R rounds without
parameter updates turn any replicas into the exact global mean (the last round may revisit bits when j does
not divide d; that is harmless because a projection applied twice is the same projection).

``seeded-shuffle`` (W divisible by K, or an explicit ``groups`` list). ``num_partitions`` random partitions of
the ranks into groups of K are drawn once from ``seed``; step t uses partition ``rng(seed, t) mod P``. A fixed
set bounds the number of process groups (a fresh random partition per step could need all C(W, K) groups).

``topology`` (a node/rack map). Even steps average within each node (one group per node, over the fast
intra-node links, whatever K). Odd steps are cross-node rounds on rails: the ranks with the same local index l
on different nodes form rail l, and each rail is split into groups of up to K nodes. The node grouping comes
from a fixed set of ``num_partitions`` node partitions drawn once from ``seed``, of two kinds used in
alternate cross-node rounds: *within-rack* (each rack's nodes shuffled and cut into groups of K, so traffic
stays under the rack switch) and *across-rack* (racks shuffled and cut into groups of K racks; the nodes at
the same shuffled position in those racks form a group, so every group spans K racks). Cross round c uses node
partition ``(q + l) mod P`` on rail l with q = rng(seed, c): the rails mix different node sets in the same
step, and the next intra-node average combines all of them. With a single rack only within-rack rounds exist;
with one node per rack only across-rack rounds.

``hierarchical`` (a node map with equal-size nodes; W = N nodes x G ranks). Not a partition of ranks but three
stages per step: the G ranks of a node reduce-scatter the model over the fast intra-node links (local rank l
ends with the node's sum of shard l, 1/G of the model); each local rank then averages only its shard with the
same local rank of the other nodes in its node group; an all-gather inside the node completes the model. The
node groups follow a schedule over the N nodes built like the flat ones (``hypercube`` when N and K are
powers of two, ``seeded-shuffle`` otherwise), so one node-level period gives the exact global mean and each
NIC carries n / G bytes per round, like the rails of a hierarchical all-reduce.

Every schedule is checked to be *connected* (the union of its partitions links every rank to every other);
otherwise some replicas could never agree and the config is rejected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from specaware.dssync.config import DSSyncConfig, DSSyncConfigError, Group, Partition


@dataclass(frozen=True)
class Schedule:
    """A fixed list of partitions and the rule that picks one per step (identical on every rank).

    ``within_rack`` and ``across_rack`` are the number of partitions of each cross-node kind (``topology``
    only; its partition 0 is the intra-node one).
    """

    world: int
    kind: str
    seed: int
    partitions: tuple[Partition, ...]
    within_rack: int = 0
    across_rack: int = 0

    def index(self, step: int) -> int:
        """Which of :attr:`partitions` step ``step`` uses."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if self.kind == "hypercube":
            return step % len(self.partitions)
        if self.kind == "seeded-shuffle":
            return _pick(self.seed, step, len(self.partitions))
        if step % 2 == 0 or len(self.partitions) == 1:
            return 0
        cross_round = step // 2
        # (index of the kind's first partition, its number of partitions), for the kinds this map has.
        kinds = [
            kind for kind in ((1, self.within_rack), (1 + self.within_rack, self.across_rack)) if kind[1]
        ]
        first, count = kinds[cross_round % len(kinds)]
        return first + _pick(self.seed, cross_round, count)

    def partition(self, step: int) -> Partition:
        """The groups (sorted rank tuples, covering every rank once) that average at step ``step``."""
        return self.partitions[self.index(step)]

    def group_of(self, rank: int, step: int) -> Group:
        """The group ``rank`` belongs to at step ``step``."""
        for group in self.partition(step):
            if rank in group:
                return group
        raise ValueError(f"rank {rank} is outside the world of {self.world}")

    def groups(self) -> tuple[Group, ...]:
        """Every distinct group of two or more ranks, in first-appearance order (the same on every rank)."""
        seen: dict[Group, None] = {}
        for partition in self.partitions:
            for group in partition:
                if len(group) > 1:
                    seen.setdefault(group, None)
        return tuple(seen)

    def groups_of(self, rank: int) -> tuple[Group, ...]:
        """The groups of two or more ranks containing ``rank``, in the order of :meth:`groups`."""
        seen: dict[Group, None] = {}
        for partition in self.partitions:
            for group in partition:
                if rank in group and len(group) > 1:
                    seen.setdefault(group, None)
        return tuple(seen)


@dataclass(frozen=True)
class HierarchicalSchedule:
    """The ``hierarchical`` schedule: intra-node stages on ``nodes`` and a node-level schedule ``across``.

    ``nodes[n][l]`` is the rank with local index ``l`` on node ``n``; ``across`` is a :class:`Schedule` whose
    "ranks" are node indices.
    """

    world: int
    seed: int
    nodes: tuple[Group, ...]
    across: Schedule
    kind: str = "hierarchical"

    @property
    def ranks_per_node(self) -> int:
        return len(self.nodes[0])

    @property
    def partitions(self) -> tuple[Partition, ...]:
        """The rail groups of each node-level partition (what the cross-node stage averages over)."""
        return tuple(self._rails(partition) for partition in self.across.partitions)

    def partition(self, step: int) -> Partition:
        """The rail groups whose shards average across nodes at step ``step``."""
        return self._rails(self.across.partition(step))

    def locate(self, rank: int) -> tuple[int, int]:
        """(node index, local index) of ``rank``."""
        for node, members in enumerate(self.nodes):
            if rank in members:
                return node, members.index(rank)
        raise ValueError(f"rank {rank} is outside the world of {self.world}")

    def node_group(self, rank: int) -> Group:
        """The sorted ranks sharing ``rank``'s node (the intra-node reduce-scatter and all-gather group)."""
        return tuple(sorted(self.nodes[self.locate(rank)[0]]))

    def rail_group(self, rank: int, step: int) -> Group:
        """The ranks ``rank`` averages its shard with at ``step``: its local index on its node group's nodes."""
        node, local = self.locate(rank)
        return tuple(sorted(self.nodes[n][local] for n in self.across.group_of(node, step)))

    def groups(self) -> tuple[Group, ...]:
        """Every intra-node group, then every rail group (two or more ranks), in a canonical order."""
        seen: dict[Group, None] = {tuple(sorted(node)): None for node in self.nodes if len(node) > 1}
        for partition in self.partitions:
            for group in partition:
                if len(group) > 1:
                    seen.setdefault(group, None)
        return tuple(seen)

    def groups_of(self, rank: int) -> tuple[Group, ...]:
        """The groups containing ``rank`` in the order of :meth:`groups`, computed without listing them all."""
        node, local = self.locate(rank)
        seen: dict[Group, None] = {}
        if self.ranks_per_node > 1:
            seen[self.node_group(rank)] = None
        for partition in self.across.partitions:
            for node_group in partition:
                if node in node_group and len(node_group) > 1:
                    seen.setdefault(tuple(sorted(self.nodes[n][local] for n in node_group)), None)
        return tuple(seen)

    def _rails(self, node_partition: Partition) -> Partition:
        return tuple(
            sorted(
                tuple(sorted(self.nodes[n][local] for n in node_group))
                for node_group in node_partition
                for local in range(self.ranks_per_node)
            )
        )


def build_schedule(world: int, config: DSSyncConfig) -> Schedule | HierarchicalSchedule:
    """The schedule ``config`` describes for ``world`` ranks, validated (sizes, coverage, connectivity)."""
    if world < 1:
        raise ValueError(f"world size must be >= 1, got {world}")
    if config.seed < 0:
        raise DSSyncConfigError(f"dssync.seed must be >= 0, got {config.seed}")
    if config.group_size is not None and config.group_size > world:
        raise DSSyncConfigError(
            f"dssync.group_size={config.group_size} is larger than the world size {world}"
        )
    if config.schedule == "hypercube":
        schedule = Schedule(world, "hypercube", config.seed, _hypercube(world, _size(config)))
    elif config.schedule == "seeded-shuffle":
        partitions = (
            tuple(_checked_partition(partition, world) for partition in config.groups)
            if config.groups is not None
            else _shuffled(world, _size(config), config.num_partitions, config.seed)
        )
        schedule = Schedule(world, "seeded-shuffle", config.seed, partitions)
    elif config.schedule == "hierarchical":
        return _hierarchical(world, config)
    else:
        if config.topology is None:
            raise DSSyncConfigError("dssync.schedule 'topology' needs dssync.topology")
        nodes, racks = config.topology.resolve(world)
        schedule = _topology(world, nodes, racks, _size(config), config.num_partitions, config.seed)
    _check_connected(schedule)
    return schedule


def _hierarchical(world: int, config: DSSyncConfig) -> HierarchicalSchedule:
    if config.topology is None:
        raise DSSyncConfigError("dssync.schedule 'hierarchical' needs dssync.topology (ranks_per_node)")
    nodes, _ = config.topology.resolve(world)
    if len({len(node) for node in nodes}) > 1:
        raise DSSyncConfigError(
            "dssync.schedule 'hierarchical' needs the same number of ranks on every node, got "
            f"{sorted({len(node) for node in nodes})}"
        )
    size = _size(config) if len(nodes) > 1 else 1
    if size > len(nodes):
        raise DSSyncConfigError(
            f"dssync.group_size={size} (nodes per cross-node group under 'hierarchical') is larger than "
            f"the {len(nodes)} nodes"
        )
    count = len(nodes)
    power_of_two = not count & (count - 1) and not size & (size - 1)
    node_config = DSSyncConfig(
        group_size=size,
        schedule="hypercube" if power_of_two else "seeded-shuffle",
        seed=config.seed,
        num_partitions=config.num_partitions,
    )
    across = build_schedule(count, node_config)
    assert isinstance(across, Schedule)
    return HierarchicalSchedule(world, config.seed, tuple(nodes), across)


def _size(config: DSSyncConfig) -> int:
    if config.group_size is None:
        raise DSSyncConfigError(f"dssync.group_size is required for schedule {config.schedule!r}")
    return config.group_size


def _pick(seed: int, step: int, count: int) -> int:
    """A seeded, stateless choice in [0, count): the same on every rank for the same (seed, step)."""
    return int(np.random.default_rng([seed, 1, step]).integers(count))


def _hypercube(world: int, size: int) -> tuple[Partition, ...]:
    if world & (world - 1) or size & (size - 1):
        raise DSSyncConfigError(
            f"dssync.schedule 'hypercube' needs a power-of-two world size and group_size, got world={world}, "
            f"group_size={size}; use 'seeded-shuffle' or 'topology' otherwise"
        )
    if world == 1:
        return (((0,),),)
    if size == 1:
        raise DSSyncConfigError("dssync.group_size must be >= 2: a group of one never synchronizes")
    bits, per_round = world.bit_length() - 1, size.bit_length() - 1
    partitions = []
    for round_ in range(math.ceil(bits / per_round)):
        mask = sum(1 << ((round_ * per_round + i) % bits) for i in range(per_round))
        subsets = [s for s in range(world) if s & ~mask == 0]
        bases = sorted({rank & ~mask for rank in range(world)})
        partitions.append(tuple(tuple(sorted(base | s for s in subsets)) for base in bases))
    return tuple(partitions)


def _shuffled(world: int, size: int, count: int, seed: int) -> tuple[Partition, ...]:
    if world % size:
        raise DSSyncConfigError(
            f"dssync.group_size={size} does not divide the world size {world}; "
            "list the partitions in dssync.groups instead"
        )
    rng = np.random.default_rng([seed, 0])
    partitions = []
    for _ in range(count):
        order = rng.permutation(world).tolist()
        groups = [tuple(sorted(order[start : start + size])) for start in range(0, world, size)]
        partitions.append(tuple(sorted(groups)))
    return tuple(partitions)


def _checked_partition(partition: Partition, world: int) -> Partition:
    ranks = sorted(rank for group in partition for rank in group)
    if ranks != list(range(world)):
        raise DSSyncConfigError(
            f"dssync.groups: each partition must list every rank 0..{world - 1} exactly once, "
            f"got {list(partition)}"
        )
    return tuple(sorted(tuple(sorted(group)) for group in partition))


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _topology(
    world: int,
    nodes: tuple[Group, ...],
    racks: tuple[tuple[int, ...], ...],
    size: int,
    count: int,
    seed: int,
) -> Schedule:
    intra = tuple(sorted(nodes))
    if len(nodes) == 1:
        return Schedule(world, "topology", seed, (intra,))
    if size == 1:
        raise DSSyncConfigError(
            "dssync.group_size must be >= 2: cross-node groups of one never mix the nodes"
        )
    rng = np.random.default_rng([seed, 0])
    within: list[list[list[int]]] = []
    if max(len(rack) for rack in racks) > 1:
        for _ in range(count):
            within.append(
                [group for rack in racks for group in _chunks(rng.permutation(rack).tolist(), size)]
            )
    across: list[list[list[int]]] = []
    if len(racks) > 1:
        for _ in range(count):
            orders = [rng.permutation(rack).tolist() for rack in racks]
            node_groups = []
            for rack_group in _chunks(rng.permutation(len(racks)).tolist(), size):
                depth = max(len(orders[rack]) for rack in rack_group)
                for position in range(depth):
                    node_groups.append([orders[r][position] for r in rack_group if position < len(orders[r])])
            across.append(node_groups)
    rails = max(len(node) for node in nodes)

    def on_rails(node_partitions: list[list[list[int]]], offset: int) -> Partition:
        groups = []
        for rail in range(rails):
            for node_group in node_partitions[(offset + rail) % len(node_partitions)]:
                ranks = tuple(sorted(nodes[n][rail] for n in node_group if rail < len(nodes[n])))
                if ranks:
                    groups.append(ranks)
        return tuple(sorted(groups))

    partitions = [intra]
    partitions += [on_rails(within, q) for q in range(len(within))]
    partitions += [on_rails(across, q) for q in range(len(across))]
    return Schedule(world, "topology", seed, tuple(partitions), len(within), len(across))


def _check_connected(schedule: Schedule) -> None:
    parent = list(range(schedule.world))

    def root(rank: int) -> int:
        while parent[rank] != rank:
            parent[rank] = parent[parent[rank]]
            rank = parent[rank]
        return rank

    for group in schedule.groups():
        for rank in group[1:]:
            parent[root(rank)] = root(group[0])
    components = {root(rank) for rank in range(schedule.world)}
    if len(components) > 1:
        raise DSSyncConfigError(
            f"dssync schedule {schedule.kind!r} never mixes all {schedule.world} ranks: its partitions leave "
            f"{len(components)} disconnected sets, so replicas could never agree; use more partitions "
            "(dssync.num_partitions), a larger group_size, or another seed"
        )
