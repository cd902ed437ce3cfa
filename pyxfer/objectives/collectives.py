"""Collectives the objectives use under ``torch.distributed``: all-gathers with gradients.

Everything here is a no-op (rank 0 of 1) when ``torch.distributed`` is unavailable or no
process group is initialised, so objectives call these helpers unconditionally. The rank
queries (:func:`rank`, :func:`world_size`, :func:`is_initialized`) belong to
:mod:`pyxfer.engine.dist`, which owns everything about ranks; they are re-exported here so an
objective needs one import.

Gradient convention. :func:`gather_with_grad` concatenates every rank's tensor; its backward
sums, over ranks, the gradients that reach each rank's slice (the semantics of
``torch.distributed.nn.all_gather``). An objective whose loss on each rank is (a) the loss of
the whole gathered batch, or (b) the mean over the local anchors of a loss against the gathered
batch, therefore produces on each rank ``world_size`` times its share of the gradient of the
global loss; DDP's average over ranks turns that into exactly the gradient of one process over
the concatenated batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from pyxfer.engine.dist import is_initialized, rank, world_size

__all__ = ["gather", "gather_offset", "gather_with_grad", "is_initialized", "rank", "world_size"]


def _all_sizes(n: int, device: torch.device) -> list[int]:
    """First-dimension sizes of every rank's tensor."""
    size = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def _gather(tensor: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Concatenate every rank's ``tensor`` along dim 0 (sizes may differ by rank)."""
    sizes = _all_sizes(tensor.shape[0], tensor.device)
    longest = max(sizes)
    padded = tensor
    if tensor.shape[0] < longest:
        pad = tensor.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))
        padded = torch.cat([tensor, pad])
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)]), sizes


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        gathered, sizes = _gather(tensor)
        ctx.sizes = sizes
        return gathered

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every rank's gradient for every slice
        start = sum(ctx.sizes[: rank()])
        return grad[start : start + ctx.sizes[rank()]]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """All-gather ``tensor`` along dim 0 across ranks, keeping gradients.

    Args:
        tensor: (n_r, ...) this rank's rows; ``n_r`` may differ between ranks.

    Returns:
        (sum_r n_r, ...) the rows of rank 0, then rank 1, ...; ``tensor`` itself when not
        distributed. The backward pass gives each rank the sum over ranks of the gradients of
        its own rows. Every rank must call this (and backpropagate through it) the same number
        of times, as with any collective.
    """
    if world_size() == 1:
        return tensor
    if not tensor.requires_grad or not torch.is_grad_enabled():
        return _gather(tensor.detach())[0]
    return _GatherWithGrad.apply(tensor)


@torch.no_grad()
def gather(tensor: torch.Tensor) -> torch.Tensor:
    """All-gather ``tensor`` along dim 0 without gradient (MoCo keys, statistics)."""
    if world_size() == 1:
        return tensor.detach()
    return _gather(tensor.detach())[0]


def gather_offset(n: int, device: torch.device | str = "cpu") -> int:
    """Index of this rank's first row in a gathered batch whose local size is ``n``."""
    if world_size() == 1:
        return 0
    return sum(_all_sizes(n, torch.device(device))[: rank()])
