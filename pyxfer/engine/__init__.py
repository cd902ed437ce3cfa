"""The training engine: one loop for pretraining, fine-tuning and adaptation.

- :class:`Trainer` / :class:`TrainConfig`: the loop and its settings;
- :mod:`pyxfer.engine.optim`: AdamW / SGD / LARS, parameter groups, warmup + cosine, EMA;
- :mod:`pyxfer.engine.checkpoint`: safetensors + JSON checkpoints (no pickle), atomic;
- :mod:`pyxfer.engine.dist`: ``torchrun`` process groups (gloo on CPU, nccl on CUDA);
- :func:`pretrain`: build backbone + objective + data from a config and train.
"""

from __future__ import annotations

from pyxfer.engine.config import TrainConfig
from pyxfer.engine.optim import EMA, LARS, lr_factor
from pyxfer.engine.pretrain import pretrain, resume_config
from pyxfer.engine.trainer import NonFiniteLossError, Trainer, TrainResult

__all__ = [
    "EMA",
    "LARS",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "lr_factor",
    "pretrain",
    "resume_config",
]
