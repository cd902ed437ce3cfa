"""``example_alignment``: a minimal two-view objective.

Loss = mean squared distance between the L2-normalised projections of two views of the same
image, plus a hinge that keeps each projection dimension's standard deviation above 1 (the
variance term of VICReg, Bardes et al. 2022) so that the trivial constant solution is not a
minimum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer.objectives.base import Objective


class Alignment(Objective):
    consumes = "views"
    augmentation = "simclr"
    num_views = 2

    def __init__(self, backbone: nn.Module, dim: int = 32, variance_weight: float = 1.0) -> None:
        super().__init__(backbone)
        self.projector = nn.Linear(backbone.num_features, dim)
        self.variance_weight = variance_weight

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        z1, z2 = (self.projector(self.backbone(v)) for v in views)  # (N, dim) each
        align = (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).pow(2).sum(1).mean()
        std = torch.sqrt(torch.cat([z1, z2]).var(dim=0) + 1e-4)  # (dim,)
        variance = F.relu(1.0 - std).mean()
        loss = align + self.variance_weight * variance
        return {"loss": loss, "align": align.detach(), "variance": variance.detach()}
