"""Process-group set-up for pretraining: the deepspeed/torchrun launchers' environment, or a single local process."""

from __future__ import annotations

import os

import torch

from specaware.dssync.launch import LOOPBACK, free_port


def ensure_distributed_env() -> None:
    """Fill in a single-process world (rank 0 of 1 on loopback) when no launcher set one, so the same code runs
    under ``python``, ``torchrun`` and ``deepspeed``. Chooses gloo on CPU (``DS_ACCELERATOR=cpu``)."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": LOOPBACK}.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(free_port()))


def backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")
