"""Momentum (EMA) target networks shared by MoCo, BYOL and DINO."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters take no gradient (a target network)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def momentum_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online``, parameter by parameter.

    Buffers (batch-norm statistics) are left to the target's own forward passes, as in the
    authors' implementations.
    """
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o.detach(), 1.0 - momentum)


def ema_tau(step: int, max_steps: int, base: float = 0.996) -> float:
    """The cosine target decay of BYOL and DINO, ``1 - (1 - base) (cos(pi k / K) + 1) / 2``:
    ``base`` at step 0, rising to 1 at ``max_steps`` (the run clock's horizon)."""
    if max_steps <= 0:
        return base
    k = min(max(step, 0), max_steps)
    return 1 - (1 - base) * (math.cos(math.pi * k / max_steps) + 1) / 2
