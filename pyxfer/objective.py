"""The objective contract: what a training objective declares and returns.

An objective is an ``nn.Module`` built around a backbone. It declares what it ``consumes``
(views of unlabelled images, or labelled source plus unlabelled target) and with which
augmentation preset, returns a dict with ``loss`` and its logged parts, and may act at the end
of an optimiser step (EMA targets, queues).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from pyxfer.pluginmanager import registry

#: what an objective can consume from the loader
CONSUMES = ("views", "labelled", "source_target")


class Objective(nn.Module):
    """Base class of training objectives.

    Subclasses set the class attributes and implement :meth:`forward`.

    Attributes:
        consumes: ``"views"`` (``forward(views)`` with a list of V tensors (N, C, H, W) of the
            same images), ``"labelled"`` (``forward(images, labels)``) or
            ``"source_target"`` (``forward(source, source_labels, target)``).
        augmentation: name of the augmentation preset the views come from (``"simclr"``...).
        num_views: views per image the objective needs.
    """

    consumes: ClassVar[str] = "views"
    augmentation: ClassVar[str] = "simclr"
    num_views: ClassVar[int] = 2

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        if self.consumes not in CONSUMES:
            raise ValueError(
                f"{type(self).__name__}.consumes: expected one of {CONSUMES}, "
                f"received {self.consumes!r}"
            )
        self.backbone = backbone

    def forward(self, *batch: Any) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_step_end(self, step: int, max_steps: int) -> None:
        """Called after each optimiser step (momentum encoders, queues). Default: nothing."""


def create_objective(name: str, backbone: nn.Module, **kwargs: Any) -> Objective:
    """Build the objective registered as ``name`` around ``backbone``."""
    obj = registry("objectives").create(name, backbone, **kwargs)
    if not isinstance(obj, Objective):
        raise TypeError(
            f"objective {name!r}: factory returned {type(obj).__name__}, expected a "
            "pyxfer.objective.Objective"
        )
    return obj


def list_objectives(pattern: str = "*") -> list[str]:
    """Registered objective names matching ``pattern``."""
    return registry("objectives").list(pattern)
