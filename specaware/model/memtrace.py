"""Peak memory of a PyTorch computation on any device, by watching every tensor the dispatcher creates.

CPU tensors are invisible to ``tracemalloc`` and RSS is noisy (allocator caching, other threads), so
:class:`TensorMemory` follows tensors instead: a ``TorchDispatchMode`` sees the outputs of every operator
(forward and backward), adds the bytes of each new storage to a running total and subtracts them when the last
tensor seen on that storage is garbage-collected (``weakref.finalize``). ``peak_bytes`` is the highest total, i.e.
the memory the block needed beyond what existed before it (inputs, parameters; views of those are not counted); ``max_numel`` is the largest single
operator output, which tests use to prove a tensor shape is never materialised.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class TensorMemory(TorchDispatchMode):
    """Context manager; read ``peak_bytes``, ``max_numel`` and ``max_shape`` after (or during) the block."""

    def __init__(self) -> None:
        super().__init__()
        self.live_bytes = 0
        self.peak_bytes = 0
        self.max_numel = 0
        self.max_shape: tuple[int, ...] = ()
        self._storages: dict[int, list[int]] = {}  # storage address -> [bytes, live tensors seen on it]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {
            tensor.untyped_storage().data_ptr()
            for tensor in tree_leaves((args, kwargs))
            if isinstance(tensor, torch.Tensor)
        }
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._track(tensor, inputs)
        return out

    def _track(self, tensor: torch.Tensor, inputs: set[int]) -> None:
        if tensor.numel() > self.max_numel:
            self.max_numel = tensor.numel()
            self.max_shape = tuple(tensor.shape)
        storage = tensor.untyped_storage()
        address = storage.data_ptr()
        if address == 0 or (address in inputs and address not in self._storages):
            return  # empty, or a view of a tensor that existed before the block
        entry = self._storages.get(address)
        if entry is None:
            self._storages[address] = [storage.nbytes(), 1]
            self.live_bytes += storage.nbytes()
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        else:
            entry[1] += 1
        weakref.finalize(tensor, self._release, address)

    def _release(self, address: int) -> None:
        entry = self._storages[address]
        entry[1] -= 1
        if entry[1] == 0:
            del self._storages[address]
            self.live_bytes -= entry[0]

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 1e6
