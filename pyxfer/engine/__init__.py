"""The training engine: one loop for pretraining, fine-tuning and adaptation.

- :class:`Trainer` / :class:`TrainConfig`: the loop and its settings;
- :mod:`pyxfer.engine.optim`: AdamW / SGD / LARS, parameter groups, warmup + cosine, EMA;
- :mod:`pyxfer.engine.checkpoint`: safetensors + JSON checkpoints (no pickle), atomic;
- :mod:`pyxfer.engine.dist`: everything about ranks: ``torchrun`` process groups (gloo on CPU,
  nccl on CUDA), the rank queries, ``$RANK``;
- :func:`pretrain` (:mod:`pyxfer.engine.pretraining`): build backbone + objective + data from a
  config and train.

Importing :mod:`pyxfer.engine.config` alone (the command line's flags) imports no torch: the
names below are resolved on first use.
"""

from __future__ import annotations

from typing import Any

from pyxfer._lazy import lazy_attributes

# public name -> module that defines it (imported lazily)
_LAZY: dict[str, str] = {
    "EMA": "pyxfer.engine.optim",
    "LARS": "pyxfer.engine.optim",
    "NonFiniteLossError": "pyxfer.engine.trainer",
    "TrainConfig": "pyxfer.engine.config",
    "TrainResult": "pyxfer.engine.trainer",
    "Trainer": "pyxfer.engine.trainer",
    "lr_factor": "pyxfer.engine.optim",
    "pretrain": "pyxfer.engine.pretraining",
    "resume_config": "pyxfer.engine.pretraining",
}

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


_getattr, __dir__ = lazy_attributes(__name__, _LAZY)


def __getattr__(name: str) -> Any:
    return _getattr(name)
