"""Tensors packed into a few flat buffers so one collective moves many tensors.

One all-reduce per tensor costs one network latency per tensor (hundreds per model); packing them into buckets
of about 25 MB costs one latency per bucket and lets the library pipeline large transfers. Buckets are
allocated once and reused every step. Half-precision tensors (bf16/fp16 buffers) are communicated in fp32, so
an average of K replicas is not rounded K times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

_HALF = (torch.float16, torch.bfloat16)


@dataclass
class Bucket:
    """One flat buffer and the tensors it carries, in order."""

    tensors: list[torch.Tensor]
    flat: torch.Tensor

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

    A tensor larger than ``bucket_bytes`` gets a bucket of its own; tensors are never split.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], bucket_bytes: int) -> None:
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
                    self.buckets.append(_bucket(current, dtype, device))
                    current, elements = [], 0
                current.append(tensor)
                elements += tensor.numel()
            if current:
                self.buckets.append(_bucket(current, dtype, device))

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


def _bucket(tensors: list[torch.Tensor], dtype: torch.dtype, device: torch.device) -> Bucket:
    return Bucket(tensors, torch.empty(sum(t.numel() for t in tensors), dtype=dtype, device=device))
