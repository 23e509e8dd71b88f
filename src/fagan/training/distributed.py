"""Process group and device: single process, or ``torchrun`` + DDP (gloo on CPU, NCCL on GPU).

As in nanoGPT, distributed training is detected from torchrun's environment (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``); rank 0 logs and saves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fagan import FaganError

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its device, rank and the number of processes."""

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda`` (the process's local GPU)."""
    if choice not in DEVICES:
        raise FaganError(f"unknown device {choice!r}; choose one of {', '.join(DEVICES)}")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise FaganError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    if local_rank >= torch.cuda.device_count():
        raise FaganError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible)")
    return torch.device("cuda", local_rank)


def start(device: str = "auto") -> Runtime:
    """Pick the device and, under torchrun with several processes, join the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank if world_size > 1 else 0)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return Runtime(resolved, rank, local_rank, world_size)


def stop(runtime: Runtime) -> None:
    """Leave the process group, if this process joined one."""
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean_across_ranks(values: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """The element-wise mean of ``values`` over all processes (itself when single-process)."""
    if not runtime.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / runtime.world_size
