"""Tensors packed into a few flat buffers so one collective moves many tensors.

One all-reduce per tensor costs one network latency per tensor (hundreds per model); packing them into buckets
of about 25 MB costs one latency per bucket and lets the library pipeline large transfers. Buckets are
allocated once and reused every step. Half-precision tensors (bf16/fp16 buffers) are communicated in fp32, so
an average of K replicas is not rounded K times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

_HALF = (torch.float16, torch.bfloat16)


@dataclass
class Bucket:
    """One flat buffer (padded to whole shards) and the tensors it carries, in order; ``shard``: one shard."""

    tensors: list[torch.Tensor]
    flat: torch.Tensor
    shard: torch.Tensor

    def pack(self) -> None:
        """Copy the tensors into the flat buffer."""
        offset = 0
        for tensor in self.tensors:
            self.flat[offset : offset + tensor.numel()].copy_(tensor.detach().reshape(-1))
            offset += tensor.numel()

    def unpack(self) -> None:
        """Copy the flat buffer back into the tensors (casting back where the bucket is wider)."""
        offset = 0
        for tensor in self.tensors:
            tensor.detach().copy_(self.flat[offset : offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()


class FlatBuckets:
    """``tensors`` grouped by device and communication dtype into buckets of at most ``bucket_bytes``.

    A tensor larger than ``bucket_bytes`` gets a bucket of its own; tensors are never split. ``shards`` > 1
    pads every bucket to a multiple of ``shards`` elements so it can be reduce-scattered into equal shards
    (:meth:`average_sharded`); the padding stays zero.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], bucket_bytes: int, shards: int = 1) -> None:
        self.shards = shards
        by_kind: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for tensor in tensors:
            if not tensor.is_floating_point():
                raise TypeError(f"only floating-point tensors can be averaged, got {tensor.dtype}")
            dtype = torch.float32 if tensor.dtype in _HALF else tensor.dtype
            by_kind.setdefault((tensor.device, dtype), []).append(tensor)
        self.buckets: list[Bucket] = []
        for (device, dtype), members in by_kind.items():
            item = torch.empty((), dtype=dtype).element_size()
            current: list[torch.Tensor] = []
            elements = 0
            for tensor in members:
                if current and (elements + tensor.numel()) * item > bucket_bytes:
                    self.buckets.append(_bucket(current, dtype, device, shards))
                    current, elements = [], 0
                current.append(tensor)
                elements += tensor.numel()
            if current:
                self.buckets.append(_bucket(current, dtype, device, shards))

    @property
    def nbytes(self) -> int:
        """Bytes one replica contributes to a collective (the sum of the bucket sizes)."""
        return sum(bucket.flat.numel() * bucket.flat.element_size() for bucket in self.buckets)

    def average(self, group: dist.ProcessGroup, size: int) -> None:
        """Replace every tensor by its mean over the ``size`` ranks of ``group`` (one all-reduce a bucket)."""
        for bucket in self.buckets:
            bucket.pack()
        works = [dist.all_reduce(bucket.flat, group=group, async_op=True) for bucket in self.buckets]
        for bucket, work in zip(self.buckets, works, strict=True):
            work.wait()
            bucket.flat.div_(size)
            bucket.unpack()

    def average_sharded(
        self,
        node: dist.ProcessGroup | None,
        node_size: int,
        rail: dist.ProcessGroup | None,
        rail_size: int,
    ) -> None:
        """Hierarchical mean over ``node_size`` x ``rail_size`` ranks, each NIC carrying 1/``node_size``.

        Reduce-scatter inside the node (this rank gets the node's sum of its shard), all-reduce of that shard
        over ``rail`` (the same local rank on the other nodes of the group), all-gather inside the node. Each
        stage is issued for every bucket before waiting, so buckets pipeline. ``None`` skips a stage (a
        group of one); ``node_size`` must equal ``shards``.
        """
        if node is not None and node_size != self.shards:
            raise ValueError(f"buckets are cut into {self.shards} shards but the node has {node_size} ranks")
        for bucket in self.buckets:
            bucket.pack()
        parts = [bucket.shard for bucket in self.buckets]
        if node is not None:
            _wait([_reduce_scatter(p, b.flat, node) for p, b in zip(parts, self.buckets, strict=True)])
        else:
            for part, bucket in zip(parts, self.buckets, strict=True):
                part.copy_(bucket.flat)
        if rail is not None:
            _wait([dist.all_reduce(part, group=rail, async_op=True) for part in parts])
        for part in parts:
            part.div_(node_size * rail_size)
        if node is not None:
            _wait([_all_gather(b.flat, p, node) for p, b in zip(parts, self.buckets, strict=True)])
        else:
            for part, bucket in zip(parts, self.buckets, strict=True):
                bucket.flat.copy_(part)
        for bucket in self.buckets:
            bucket.unpack()

    def disagreement(self) -> float:
        """max over ranks of ||x_r - mean|| / ||mean|| over all bucketed tensors (mean over the world).

        Leaves the tensors unchanged; every rank must call it (one world all-reduce of the buckets, one
        scalar).
        """
        distance = torch.zeros((), dtype=torch.float64)
        norm = torch.zeros((), dtype=torch.float64)
        world = dist.get_world_size()
        for bucket in self.buckets:
            bucket.pack()
            mean = bucket.flat.clone()
            dist.all_reduce(mean)
            mean.div_(world)
            distance += (bucket.flat.double() - mean.double()).pow(2).sum().cpu()
            norm += mean.double().pow(2).sum().cpu()
        device = self.buckets[0].flat.device if self.buckets else torch.device("cpu")
        worst = distance.sqrt().reshape(1).to(device)
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        return float(worst.item()) / float(norm.sqrt()) if norm > 0 else float(worst.item())


def _bucket(tensors: list[torch.Tensor], dtype: torch.dtype, device: torch.device, shards: int) -> Bucket:
    elements = sum(t.numel() for t in tensors)
    padded = -(-elements // shards) * shards
    flat = torch.zeros(padded, dtype=dtype, device=device)
    shard = torch.zeros(padded // shards, dtype=dtype, device=device)
    return Bucket(tensors, flat, shard)


def _reduce_scatter(shard: torch.Tensor, flat: torch.Tensor, group: dist.ProcessGroup) -> Any:
    """Asynchronous reduce-scatter (sum) of ``flat`` into this rank's ``shard``."""
    return dist.reduce_scatter_single(shard, flat, group=group, async_op=True)


def _all_gather(flat: torch.Tensor, shard: torch.Tensor, group: dist.ProcessGroup) -> Any:
    """Asynchronous all-gather of every rank's ``shard`` into ``flat``."""
    return dist.all_gather_single(flat, shard, group=group, async_op=True)


def _wait(works: list[Any]) -> None:
    for work in works:
        work.wait()
