"""The ``dssync`` section of a training config, parsed and validated before any process group exists.

Parsing is separate from the schedule so a typo (``"group-size"``, ``"schedule": "hypercub"``) fails at
start-up with a message naming the key, not as a hang inside a collective on 512 ranks. Checks that need the
world size (power of two, divisibility) live in :mod:`specaware.dssync.schedule`, which knows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SCHEDULES = ("hypercube", "seeded-shuffle", "topology", "hierarchical")

Group = tuple[int, ...]
Partition = tuple[Group, ...]


class DSSyncConfigError(ValueError):
    """A ``dssync`` config value is missing, of the wrong type or inconsistent; the message names the key."""


@dataclass(frozen=True)
class TopologyConfig:
    """Where ranks sit: either a regular shape or an explicit map.

    Regular shape: ``ranks_per_node`` consecutive ranks share a node and ``nodes_per_rack`` consecutive nodes
    share a rack (``None``: one rack). Explicit map: ``nodes`` lists each node's ranks and ``racks`` lists
    each rack's node indices (``None``: one rack). The two forms are exclusive.
    """

    ranks_per_node: int | None = None
    nodes_per_rack: int | None = None
    nodes: tuple[tuple[int, ...], ...] | None = None
    racks: tuple[tuple[int, ...], ...] | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TopologyConfig:
        _reject_unknown(raw, {"ranks_per_node", "nodes_per_rack", "nodes", "racks"}, "dssync.topology")
        regular = raw.get("ranks_per_node") is not None or raw.get("nodes_per_rack") is not None
        explicit = raw.get("nodes") is not None or raw.get("racks") is not None
        if regular and explicit:
            raise DSSyncConfigError(
                "dssync.topology: give either ranks_per_node/nodes_per_rack or an explicit nodes/racks map, "
                "not both"
            )
        if explicit:
            if raw.get("nodes") is None:
                raise DSSyncConfigError(
                    "dssync.topology.nodes: an explicit map needs the list of each node's ranks"
                )
            return cls(
                nodes=_int_lists(raw["nodes"], "dssync.topology.nodes"),
                racks=None if raw.get("racks") is None else _int_lists(raw["racks"], "dssync.topology.racks"),
            )
        if raw.get("ranks_per_node") is None:
            raise DSSyncConfigError(
                "dssync.topology: set ranks_per_node (and optionally nodes_per_rack) or an explicit "
                "nodes/racks map"
            )
        return cls(
            ranks_per_node=_positive_int(raw["ranks_per_node"], "dssync.topology.ranks_per_node"),
            nodes_per_rack=None
            if raw.get("nodes_per_rack") is None
            else _positive_int(raw["nodes_per_rack"], "dssync.topology.nodes_per_rack"),
        )

    def resolve(self, world: int) -> tuple[tuple[Group, ...], tuple[tuple[int, ...], ...]]:
        """Each node's ranks and each rack's node indices for ``world`` ranks, checked to cover it once."""
        if self.nodes is not None:
            nodes = tuple(tuple(sorted(node)) for node in self.nodes)
            ranks = sorted(rank for node in nodes for rank in node)
            if ranks != list(range(world)):
                raise DSSyncConfigError(
                    f"dssync.topology.nodes must list every rank 0..{world - 1} exactly once, "
                    f"got {sorted(ranks)}"
                )
        else:
            per_node = self.ranks_per_node or world
            if world % per_node:
                raise DSSyncConfigError(
                    f"dssync.topology.ranks_per_node={per_node} does not divide the world size {world}"
                )
            nodes = tuple(tuple(range(start, start + per_node)) for start in range(0, world, per_node))
        if self.racks is not None:
            racks = tuple(tuple(sorted(rack)) for rack in self.racks)
            listed = sorted(node for rack in racks for node in rack)
            if listed != list(range(len(nodes))):
                raise DSSyncConfigError(
                    f"dssync.topology.racks must list every node 0..{len(nodes) - 1} exactly once, "
                    f"got {listed}"
                )
        else:
            per_rack = self.nodes_per_rack or len(nodes)
            racks = tuple(
                tuple(range(start, min(start + per_rack, len(nodes))))
                for start in range(0, len(nodes), per_rack)
            )
        return nodes, racks


@dataclass(frozen=True)
class DSSyncConfig:
    """Every DS-Sync setting.

    ``group_size`` is K, the number of ranks that average together in one step (under ``hierarchical``: the
    number of nodes whose same-local-rank shards average together in the cross-node stage). ``groups`` replaces the
    randomly drawn partition set of ``seeded-shuffle`` with an explicit list of partitions (each a list of
    groups covering every rank once). ``num_partitions`` is the size of the fixed set ``seeded-shuffle`` and
    ``topology`` draw from ``seed``. ``global_average_every`` > 0 replaces every N-th group average by a
    whole-world average; ``disagreement_every`` > 0 measures (and logs) replica disagreement every N steps,
    which costs one world all-reduce of the model. ``bucket_mb`` caps the size of one flattened communication
    bucket.
    """

    enabled: bool = False
    group_size: int | None = 2
    groups: tuple[Partition, ...] | None = None
    schedule: str = "hypercube"
    seed: int = 0
    num_partitions: int = 8
    topology: TopologyConfig | None = None
    global_average_every: int = 0
    disagreement_every: int = 50
    bucket_mb: float = 25.0

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> DSSyncConfig:
        """Parse the ``dssync`` section (``None`` or ``{}``: disabled defaults); unknown keys are an error."""
        raw = raw or {}
        if not isinstance(raw, Mapping):
            raise DSSyncConfigError(f"dssync must be a mapping, got {type(raw).__name__}")
        _reject_unknown(raw, {field for field in cls.__dataclass_fields__}, "dssync")
        schedule = raw.get("schedule", cls.schedule)
        if schedule not in SCHEDULES:
            raise DSSyncConfigError(
                f"dssync.schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}"
            )
        groups = None if raw.get("groups") is None else _partitions(raw["groups"])
        if groups is not None and schedule != "seeded-shuffle":
            raise DSSyncConfigError(
                "dssync.groups (an explicit partition set) works with schedule 'seeded-shuffle', "
                f"not {schedule!r}"
            )
        topology = (
            None if raw.get("topology") is None else TopologyConfig.from_dict(_mapping(raw["topology"]))
        )
        if schedule in ("topology", "hierarchical") and topology is None:
            raise DSSyncConfigError(
                f"dssync.schedule {schedule!r} needs dssync.topology (ranks_per_node or nodes map)"
            )
        group_size = raw.get("group_size", None if groups is not None else cls.group_size)
        if group_size is not None:
            group_size = _positive_int(group_size, "dssync.group_size")
        elif groups is None:
            raise DSSyncConfigError("dssync.group_size is required unless dssync.groups lists the partitions")
        bucket_mb = raw.get("bucket_mb", cls.bucket_mb)
        if not isinstance(bucket_mb, int | float) or isinstance(bucket_mb, bool) or bucket_mb <= 0:
            raise DSSyncConfigError(f"dssync.bucket_mb must be a positive number, got {bucket_mb!r}")
        enabled = raw.get("enabled", cls.enabled)
        if not isinstance(enabled, bool):
            raise DSSyncConfigError(f"dssync.enabled must be true or false, got {enabled!r}")
        return cls(
            enabled=enabled,
            group_size=group_size,
            groups=groups,
            schedule=schedule,
            seed=_int(raw.get("seed", cls.seed), "dssync.seed"),
            num_partitions=_positive_int(
                raw.get("num_partitions", cls.num_partitions), "dssync.num_partitions"
            ),
            topology=topology,
            global_average_every=_non_negative_int(
                raw.get("global_average_every", cls.global_average_every), "dssync.global_average_every"
            ),
            disagreement_every=_non_negative_int(
                raw.get("disagreement_every", cls.disagreement_every), "dssync.disagreement_every"
            ),
            bucket_mb=float(bucket_mb),
        )


def _reject_unknown(raw: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise DSSyncConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DSSyncConfigError(f"dssync.topology must be a mapping, got {type(value).__name__}")
    return value


def _int(value: Any, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DSSyncConfigError(f"{key} must be an integer, got {value!r}")
    return value


def _positive_int(value: Any, key: str) -> int:
    if _int(value, key) < 1:
        raise DSSyncConfigError(f"{key} must be >= 1, got {value}")
    return value


def _non_negative_int(value: Any, key: str) -> int:
    if _int(value, key) < 0:
        raise DSSyncConfigError(f"{key} must be >= 0 (0 disables it), got {value}")
    return value


def _int_lists(value: Any, key: str) -> tuple[tuple[int, ...], ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise DSSyncConfigError(f"{key} must be a non-empty list of lists of integers")
    lists = []
    for item in value:
        if not isinstance(item, Sequence) or isinstance(item, str) or not item:
            raise DSSyncConfigError(
                f"{key} must be a non-empty list of non-empty lists of integers, got {item!r}"
            )
        lists.append(tuple(_int(element, key) for element in item))
    return tuple(lists)


def _partitions(value: Any) -> tuple[Partition, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise DSSyncConfigError(
            "dssync.groups must be a non-empty list of partitions (each a list of rank lists)"
        )
    return tuple(_int_lists(partition, "dssync.groups") for partition in value)
