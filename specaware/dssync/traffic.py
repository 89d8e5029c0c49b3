"""Which collectives a process issues, on which group, and how many bytes each sends per rank.

Used by the tests (no collective may span the job in DS-Sync's steady state) and by the loopback comparison
benchmark (bytes sent per rank per step, and how many of them leave a node). DeepSpeed's comm layer, torch's
model averagers and DS-Sync all call through the ``torch.distributed`` module, so wrapping its functions sees
every collective any of them issues; calls nested inside torch are not double-counted. Bytes follow the
bandwidth-optimal ring algorithms: an all-reduce of ``b`` bytes over ``p`` ranks sends ``2 (p - 1) / p * b``
per rank, a reduce-scatter or all-gather of a ``b``-byte buffer ``(p - 1) / p * b``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

COLLECTIVES = (
    "all_reduce", "reduce", "broadcast", "all_gather", "all_gather_single", "all_gather_into_tensor",
    "reduce_scatter_single", "reduce_scatter_tensor", "reduce_scatter", "barrier", "all_gather_object",
    "broadcast_object_list", "all_to_all_single", "all_reduce_coalesced", "gather", "scatter",
)  # fmt: skip


@dataclass(frozen=True)
class Call:
    """One collective: its name, the sorted member ranks and the bytes this rank sends for it."""

    name: str
    ranks: tuple[int, ...]
    sent: float


def _sent(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], members: int) -> float:
    """Bytes this rank sends in ``name`` on ring algorithms (0 for calls without a tensor payload)."""
    if members < 2:
        return 0.0
    tensors = [value for value in (*args, *kwargs.values()) if isinstance(value, torch.Tensor)]
    if not tensors:
        return 0.0
    if name == "all_reduce":
        return 2 * (members - 1) / members * tensors[0].numel() * tensors[0].element_size()
    if name in ("reduce_scatter_single", "reduce_scatter_tensor"):  # (output shard, input buffer)
        return (members - 1) / members * tensors[1].numel() * tensors[1].element_size()
    if name in ("all_gather_single", "all_gather_into_tensor"):  # (output buffer, input shard)
        return (members - 1) / members * tensors[0].numel() * tensors[0].element_size()
    largest = max(tensors, key=lambda tensor: tensor.numel())
    return float(largest.numel() * largest.element_size())


class CollectiveLog:
    """Records a :class:`Call` for every ``torch.distributed`` collective issued while :attr:`on` is true.

    Installing it wraps the module's functions for the rest of the process (one log per process).
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.on = False
        for name in COLLECTIVES:
            setattr(dist, name, self._wrap(name, getattr(dist, name)))

    def _wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            if self.on:
                group = kwargs.get("group")
                ranks = tuple(
                    range(dist.get_world_size())
                    if group is None
                    else sorted(dist.get_process_group_ranks(group))
                )
                self.calls.append(Call(name, ranks, _sent(name, args, kwargs, len(ranks))))
            return function(*args, **kwargs)

        return recorded

    def take(self) -> list[Call]:
        """The calls recorded since the last :meth:`take`."""
        calls, self.calls = self.calls, []
        return calls
