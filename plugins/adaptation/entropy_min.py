"""Entropy minimisation: make the predictions on the target confident.

Grandvalet & Bengio, "Semi-supervised Learning by Entropy Minimization", NIPS 2005:
``L = CE(source) + lambda * mean_t H(p(y | x_t))`` with ``H(p) = -sum_k p_k log p_k``. The paper
chooses ``lambda`` by cross-validation; 0.1 is the value adaptation baselines commonly use
(with 1.0 the classifier collapses to one class on hard shifts).

Examples:
    >>> import torch
    >>> from pyxfer import create_backbone, create_objective
    >>> obj = create_objective("entropy_min", create_backbone("lenet", img_size=28),
    ...                        num_classes=10)
    >>> x = torch.randn(4, 1, 28, 28)
    >>> out = obj([x], torch.tensor([0, 1, 2, 3]), [x])
    >>> float(out["loss"].detach()) >= float(out["loss_cls"])
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pyxfer._checks import check_number
from pyxfer.objectives.adaptation import AdaptationObjective, AdaptationOutputs, entropy


class EntropyMinimization(AdaptationObjective):
    """Entropy minimisation (Grandvalet & Bengio 2005) on the target predictions.

    Args:
        backbone: the feature extractor.
        num_classes: number of classes.
        weight: ``lambda``, the weight of the mean target entropy.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, weight: float = 0.1) -> None:
        super().__init__(backbone, num_classes)
        self.weight = check_number("weight", weight)

    def adapt(self, out: AdaptationOutputs) -> tuple[torch.Tensor, dict[str, Any]]:
        loss_ent = entropy(out.target_logits[0]).mean()  # mean over (N_t,)
        return self.weight * loss_ent, {"loss_entropy": loss_ent}
