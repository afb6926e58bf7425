"""The device a run uses, decided once, and torchrun support: one process per device, NCCL on
CUDA (each process on its ``LOCAL_RANK`` GPU), gloo on the CPU."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def describe_device(device: torch.device) -> str:
    """Where a run computed, for its summary: ``cpu``, or ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return device.type


def resolve_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when available, else the CPU; ``cpu``; ``cuda`` (under torchrun: the
    process's ``LOCAL_RANK`` GPU); ``cuda:N``. Asking for CUDA without it is an error."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if not spec.startswith("cuda"):
        raise ValueError(f"train.device: expected auto, cpu, cuda or cuda:N, got {spec!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"train.device is {spec!r}, but CUDA is not available here; use auto or cpu")
    device = torch.device(spec) if ":" in spec else torch.device("cuda", local_rank)
    if device.index >= torch.cuda.device_count():
        raise ValueError(f"train.device is {spec!r}, but this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes in the environment, or run alone, on the
    device ``device`` names (see ``resolve_device``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistInfo(device=resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device("cuda" if device.startswith("cuda") else device, local_rank)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return DistInfo(rank, world, chosen)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
