"""Source only: cross-entropy on the labelled source, the target never seen.

The lower bound every adaptation method is measured against (the "source only" rows of
Ganin et al. 2016 and Long et al. 2018). The target images are not passed through the
backbone, so not even BatchNorm statistics adapt to them.

Examples:
    >>> import torch
    >>> from pyxfer import create_backbone, create_objective
    >>> obj = create_objective("source_only", create_backbone("lenet", img_size=28),
    ...                        num_classes=10)
    >>> xs, ys = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    >>> out = obj([xs], ys, [torch.randn(4, 1, 28, 28)])
    >>> sorted(out)
    ['acc_source', 'loss', 'loss_cls']
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pyxfer.objectives.adaptation import AdaptationObjective, AdaptationOutputs


class SourceOnly(AdaptationObjective):
    """Source only: supervised cross-entropy on the source, no adaptation (the baseline).

    Args:
        backbone: the feature extractor.
        num_classes: number of classes.
    """

    uses_target = False

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__(backbone, num_classes)

    def adapt(self, out: AdaptationOutputs) -> tuple[torch.Tensor, dict[str, Any]]:
        return out.source_logits.new_zeros(()), {}
