"""Distributed data parallel (DDP) setup: process group, device per rank, threads per rank."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from twinflow.core.device import (
    configure_cpu_threads,
    cpu_allotment,
    select_device,
)


def init_distributed(preference: str) -> tuple[torch.device, int, int]:
    """Return (device, rank, world size), joining the torchrun process group if there is one.

    With ``WORLD_SIZE`` > 1 (set by torchrun) this process uses NCCL on its own GPU
    (``LOCAL_RANK``) when CUDA is available, otherwise gloo on the CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = select_device(preference)
    if world <= 1:
        return device, 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        dist.init_process_group("nccl")
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    return device, dist.get_rank(), dist.get_world_size()


def configure_threads_for_rank(world: int) -> None:
    """Share the CPU threads allotted to the job between the ranks on this node."""
    configure_cpu_threads(
        max(1, cpu_allotment() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    )
