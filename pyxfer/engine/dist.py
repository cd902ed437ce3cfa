"""Everything about ranks: process-group set-up for ``torchrun`` (rank, device, backend: gloo
on CPU, nccl on CUDA), the rank queries, and the small collectives the engine itself uses.

``torchrun --nproc-per-node 2 -m pyxfer pretrain ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` reads them and initialises
the default process group (``env://``). A process group created by the caller (tests with
``init_method="tcp://127.0.0.1:PORT"``) is used as it is and left for the caller to destroy.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

log = logging.getLogger("pyxfer.engine")


@dataclass
class DistInfo:
    """Where this process sits: rank, world size, local rank, device, and who owns the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def is_initialized() -> bool:
    """Whether a ``torch.distributed`` process group is up."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the live process group (0 when not distributed)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes in the live process group (1 when not distributed)."""
    return dist.get_world_size() if is_initialized() else 1


def env_rank() -> int:
    """This process's rank as the launcher set it (``$RANK``; 0 when not under ``torchrun``).

    Unlike :func:`rank` it does not need a live process group, so it still answers after a run
    destroyed the group it created (the command line reports from rank 0 only).
    """
    return int(os.environ.get("RANK", "0"))


def choose_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: the process's CUDA device when there is one, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device: 'cuda' requested but torch sees no CUDA device")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(device)


def setup(device: str = "auto") -> DistInfo:
    """Join (or create, from torchrun's environment) the default process group.

    Returns:
        ``DistInfo`` with the device this process trains on. Without a process group and
        without ``WORLD_SIZE > 1`` in the environment this is a single process.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if is_initialized():
        dev = choose_device(device, local_rank)
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = choose_device(device, local_rank)
    if world <= 1:
        return DistInfo(0, 1, local_rank, dev, False)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend=backend, init_method="env://")
    log.info("process group: %s, rank %d of %d", backend, dist.get_rank(), dist.get_world_size())
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, True)


def cleanup(info: DistInfo) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_true(flag: bool, info: DistInfo) -> bool:
    """True when ``flag`` holds on every rank (one all-reduce; no-op on a single process)."""
    if not info.distributed:
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=info.device)
    dist.all_reduce(t)
    return bool(t.item() == 0)


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's ``flag`` on every rank."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.broadcast(t, 0)
    return bool(t.item() != 0)


def broadcast_float(value: float, info: DistInfo) -> float:
    """Rank 0's ``value`` on every rank (the run clock, so every rank follows one schedule)."""
    if not info.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.broadcast(t, 0)
    return float(t.item())
