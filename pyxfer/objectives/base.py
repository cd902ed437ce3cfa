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
        augmentation: name of the augmentation preset the views come from (``"simclr"``...);
            :meth:`preset_options` may add arguments of the preset (DINO's local views).
        num_views: views per image the objective needs (an instance may set its own, when an
            option changes it: DINO's ``2 + n_local``).
        requires: the backbone family the objective needs, or ``None`` (the default) when any
            backbone with ``num_features`` works. ``"vit"``: a vision transformer with
            ``patch_embed``, ``embed_patches`` and ``encode_tokens`` (MAE). Generic code that
            builds every registered objective around one stand-in backbone (tests, sweeps)
            reads this class attribute to pick a suitable backbone or skip.
        players: names of the parameter sets optimised in turn. One player (``("main",)``,
            the default) means one optimiser over :meth:`param_groups` ``["main"]`` and
            ``forward(*batch)``. Several players (a GAN's ``("discriminator", "generator")``)
            means the *alternating protocol*: each iteration, for each player in order, the
            engine zeroes all gradients, calls ``forward(*batch, player=name)``, backpropagates
            that ``loss`` and steps only that player's optimiser (over
            ``param_groups()[name]``). Under DDP such objectives need
            ``find_unused_parameters=True`` (each player's pass leaves the other's unused).

    Examples:
        >>> class Mean(Objective):  # doctest: +SKIP
        ...     consumes, augmentation, num_views = "views", "simclr", 1
        ...     def forward(self, views):
        ...         loss = self.backbone(views[0]).pow(2).mean()
        ...         return {"loss": loss}
    """

    #: the model the objective trains: a pyxfer backbone (:class:`pyxfer.backbone.Backbone`) or
    #: a module with the same methods
    backbone: Any

    consumes: ClassVar[str] = "views"
    augmentation: ClassVar[str] = "simclr"
    num_views: ClassVar[int] = 2
    requires: ClassVar[str | None] = None
    players: ClassVar[tuple[str, ...]] = ("main",)

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
        """Called after each optimiser step (momentum encoders, queues). Default: nothing.

        Args:
            step: optimiser steps completed so far (1 after the first step).
            max_steps: steps the run will make in total (for schedules such as BYOL's EMA).
        """

    def preset_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`pyxfer.ops.augment.preset` besides the name and size with
        which the views of this objective's ``augmentation`` are drawn (DINO: ``n_local``,
        ``local_size``). The trainer passes them to the loader, also when ``views`` names the
        preset explicitly. Default: none."""
        return {}

    def schedule_state(self) -> dict[str, Any]:
        """JSON-safe state that :meth:`on_step_end` keeps outside the tensors (a schedule's
        position, a coefficient the next forward reads); checkpointed with the weights, so a
        resumed run's first step sees what the uninterrupted run's would. Default: none.
        """
        return {}

    def load_schedule_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`schedule_state` returned (called on resume, before the first
        step)."""

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by player (see ``players``), each parameter once.

        The default puts every parameter that requires a gradient under ``"main"``; targets
        updated without gradients (EMA encoders) set ``requires_grad=False`` and stay out.
        """
        return {"main": [p for p in self.parameters() if p.requires_grad]}

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The learned representation, for kNN / linear monitoring.

        Args:
            images: (N, C, H, W) normalised images.

        Returns:
            (N, num_features) the backbone's pooled features.
        """
        return self.backbone(images)

    def check_views(self, views: Any) -> list[torch.Tensor]:
        """``views`` as a list of ``num_views`` tensors (N, C, H, W) of equal shape."""
        if isinstance(views, torch.Tensor):
            views = [views] if views.dim() == 4 else list(views)
        views = list(views)
        if len(views) < self.num_views or any(
            not isinstance(v, torch.Tensor) or v.dim() != 4 or v.shape != views[0].shape
            for v in views
        ):
            shapes = [tuple(v.shape) if isinstance(v, torch.Tensor) else type(v) for v in views]
            raise ValueError(
                f"views: expected {self.num_views} tensors (N, C, H, W) of equal shape for "
                f"{type(self).__name__}, received {shapes}"
            )
        return views


def create_objective(name: str, backbone: nn.Module, **kwargs: Any) -> Objective:
    """Build the objective registered as ``name`` around ``backbone``."""
    obj = registry("objectives").create(name, backbone, **kwargs)
    if not isinstance(obj, Objective):
        raise TypeError(
            f"objective {name!r}: factory returned {type(obj).__name__}, expected a "
            "pyxfer.objectives.base.Objective"
        )
    return obj


def objective_consumes(name: str) -> str:
    """What the objective registered as ``name`` consumes (one of :data:`CONSUMES`).

    The factory's ``consumes`` attribute, else the ``consumes`` its plugin registered it with,
    else ``"views"`` (the :class:`Objective` default).
    """
    entry = registry("objectives").get(name)
    return str(getattr(entry.factory, "consumes", entry.metadata.get("consumes", "views")))


def list_objectives(pattern: str = "*", consumes: str | None = None) -> list[str]:
    """Registered objective names matching ``pattern``, sorted.

    Args:
        pattern: a glob on the names.
        consumes: only the objectives that consume this (``"views"``: pretraining,
            ``"source_target"``: adaptation); ``None``: all.
    """
    if consumes is not None and consumes not in CONSUMES:
        raise ValueError(f"consumes: expected one of {CONSUMES} or None, received {consumes!r}")
    names = registry("objectives").list(pattern)
    if consumes is None:
        return names
    return [n for n in names if objective_consumes(n) == consumes]
