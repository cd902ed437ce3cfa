"""Optimisers (AdamW, SGD, LARS), parameter groups, the warmup + cosine schedule and weight EMA."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017, "Large Batch
    Training of Convolutional Networks"; the form used by SimCLR, BYOL and Barlow Twins).

    For every parameter ``p`` with gradient ``g`` of a group that is not ``lars_exclude``::

        d = g + weight_decay * p
        q = eta * ||p|| / ||d||        (1 when ||p|| or ||d|| is 0)
        mu = momentum * mu + q * d
        p = p - lr * mu                (Nesterov: p - lr * (q * d + momentum * mu))

    Groups with ``lars_exclude=True`` (biases, norm parameters) get neither weight decay nor
    the trust ratio: plain momentum SGD.

    Args:
        params: parameters or groups (groups may set ``lars_exclude``).
        lr: learning rate.
        momentum: momentum factor.
        weight_decay: L2 weight decay added to the gradient before scaling.
        eta: trust coefficient.
        nesterov: Nesterov momentum.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        nesterov: bool = False,
    ) -> None:
        if lr <= 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError(
                f"LARS: expected lr > 0, momentum >= 0, weight_decay >= 0, eta > 0, received "
                f"lr={lr}, momentum={momentum}, weight_decay={weight_decay}, eta={eta}"
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            eta=eta,
            nesterov=nesterov,
            lars_exclude=False,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if not group["lars_exclude"]:
                    if group["weight_decay"]:
                        d = d.add(p, alpha=group["weight_decay"])
                    p_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    one = torch.ones_like(p_norm)
                    q = torch.where(
                        p_norm > 0,
                        torch.where(d_norm > 0, group["eta"] * p_norm / d_norm, one),
                        one,
                    )
                    d = d.mul(q)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                mu = state["momentum_buffer"]
                mu.mul_(group["momentum"]).add_(d)
                d = d.add(mu, alpha=group["momentum"]) if group["nesterov"] else mu
                p.add_(d, alpha=-group["lr"])
        return loss


def default_param_groups(
    model: nn.Module, weight_decay: float, lr_mults: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """Trainable parameters split into decayed weights and undecayed biases / norm parameters.

    Parameters with one dimension or less (biases, BatchNorm/LayerNorm scales) get no weight
    decay and are excluded from LARS adaptation (as in SimCLR/BYOL). ``lr_mults`` maps a
    parameter-name prefix to a learning-rate multiplier (longest prefix wins), which gives
    one group per (multiplier, decay) pair.

    Returns:
        groups for a torch optimiser, each with ``params``, ``names``, ``weight_decay``,
        ``lr_mult`` and ``lars_exclude``.
    """
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    prefixes = sorted((lr_mults or {}).items(), key=lambda kv: -len(kv[0]))
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        mult = next(
            (m for pre, m in prefixes if name == pre or name.startswith(pre.rstrip(".") + ".")),
            1.0,
        )
        no_decay = p.ndim <= 1
        g = groups.setdefault(
            (float(mult), no_decay),
            {
                "params": [],
                "names": [],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr_mult": float(mult),
                "lars_exclude": no_decay,
            },
        )
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def build_optimizer(
    groups: list[dict[str, Any]],
    name: str,
    lr: float,
    *,
    momentum: float = 0.9,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eta: float = 0.001,
) -> torch.optim.Optimizer:
    """AdamW, SGD or LARS over ``groups`` (each group keeps its ``weight_decay``)."""
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, eta=eta, nesterov=nesterov)
    raise ValueError(f"optimizer: expected 'adamw', 'sgd' or 'lars', received {name!r}")


def optimizer_from_config(groups: list[dict[str, Any]], cfg: Any) -> torch.optim.Optimizer:
    """:func:`build_optimizer` with the settings of a :class:`pyxfer.engine.TrainConfig`
    (``optimizer``, ``lr``, ``momentum``, ``nesterov``, ``betas``, ``lars_eta``): the trainer's
    optimizer, and that of a baseline that must train as it does."""
    return build_optimizer(
        groups,
        cfg.optimizer,
        cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        betas=cfg.betas,
        eta=cfg.lars_eta,
    )


def lr_factor(
    step: int,
    total_steps: int,
    warmup_steps: int = 0,
    min_ratio: float = 0.0,
    schedule: str = "cosine",
) -> float:
    """Multiplier of the peak lr at ``step`` (0-based): linear warmup, then the decay.

    ``(step + 1) / warmup_steps`` for ``step < warmup_steps``; afterwards, with
    ``t = (step - warmup_steps) / max(1, total_steps - warmup_steps)``,
    ``min_ratio + (1 - min_ratio) * (1 + cos(pi * t)) / 2`` (``schedule="cosine"``) or
    FixMatch's ``cos(7 pi t / 16)`` (``schedule="fixmatch"``, Sohn et al. 2020, Sec. 4: it
    ends at about 0.2 of the peak; ``min_ratio`` is its floor).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "fixmatch":
        return max(min_ratio, math.cos(7.0 * math.pi * t / 16.0))
    if schedule != "cosine":
        raise ValueError(f"schedule: expected 'cosine' or 'fixmatch', received {schedule!r}")
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every group ``lr * group['lr_mult']``."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)


class EMA:
    """Exponential moving average of a module's floating-point parameters and buffers.

    ``shadow = d * shadow + (1 - d) * value`` after every step; integer buffers (BatchNorm's
    step counter) are copied. ``d`` is ``decay``, or with ``warmup`` ``min(decay, (1 + t) /
    (10 + t))`` after step ``t`` (TensorFlow's ``num_updates``), so that a short run averages
    its recent weights instead of staying near its initialisation.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay: expected a value in (0, 1), received {decay}")
        self.decay, self.warmup = decay, warmup
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def decay_at(self, step: int) -> float:
        """The decay of the update after step ``step`` (1-based)."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int = 0) -> None:
        d = self.decay_at(step)
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise ValueError(f"ema state: missing {sorted(missing)[:5]}")
        for k, s in self.shadow.items():
            s.copy_(state[k])
