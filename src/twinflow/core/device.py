"""Device choice, mixed precision and host-to-device transfers.

Training and sampling run on the GPU when there is one and fall back to the CPU cleanly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping

import torch

from twinflow.core.settings import DEVICE_CHOICES, require_choice


def select_device(preference: str = "auto") -> torch.device:
    """Return the torch device to use: ``auto`` picks cuda, then mps, then cpu.

    Asking for ``cuda`` or ``mps`` where none is available falls back to the CPU with a
    message instead of failing deep inside a job.
    """
    require_choice("device", preference, DEVICE_CHOICES)
    if preference in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if preference in ("auto", "mps") and mps is not None and mps.is_available():
        return torch.device("mps")
    if preference not in ("auto", "cpu"):
        print(f"device: {preference} requested but not available, using the CPU")
    return torch.device("cpu")


def cpu_allotment() -> int:
    """Return the CPU threads this job may use: Snakemake's ``OMP_NUM_THREADS``, else the CPUs
    this process may run on (a cgroup's or scheduler's share, not the machine's cores)."""
    return int(os.environ.get("OMP_NUM_THREADS", 0)) or len(os.sched_getaffinity(0))


def configure_cpu_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads to ``threads``; by default, limit them to the job's allotment
    (Snakemake's ``OMP_NUM_THREADS``, else the CPUs this process may run on), never raise them.

    Limiting only: torch's own default counts the machine's cores, not the cgroup's or the
    scheduler's share, so a job must come down to its allotment; but a caller that asked torch
    for fewer threads (a benchmark or a test pinning one) keeps them. More threads than cores
    cost far more than they give: OpenMP's spin-waits made a two-thread training beside a
    one-thread job 12x slower per batch on two cores. The count also sets the order of the
    floating-point sums, so a training reproduces exactly only at the same count."""
    if threads is None:
        threads = min(torch.get_num_threads(), cpu_allotment())
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


def autocast(device: torch.device, enabled: bool = True):
    """Return a mixed-precision context: bfloat16/float16 autocast on CUDA, a no-op elsewhere."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def grad_scaler(device: torch.device, enabled: bool = True) -> torch.amp.GradScaler:
    """Return a GradScaler, active only for float16 autocast on CUDA."""
    active = enabled and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    return torch.amp.GradScaler("cuda", enabled=active)


def to_device(batch, device: torch.device):
    """Move a tensor, or a dict/list/tuple of tensors, to ``device``.

    On CUDA, host tensors are pinned and copied with ``non_blocking=True`` so transfers
    overlap with compute.
    """
    if isinstance(batch, torch.Tensor):
        if device.type == "cuda" and batch.device.type == "cpu":
            return batch.pin_memory().to(device, non_blocking=True)
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
