"""Barlow Twins: redundancy reduction through the cross-correlation of two views.

Zbontar, Jing, Misra, LeCun, Deny. "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction". ICML 2021. https://arxiv.org/abs/2103.03230
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from pyxfer.objectives import collectives
from pyxfer.objectives.base import Objective
from pyxfer.objectives.heads import ProjectionHead


def standardise(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Batch normalisation without affine parameters: (z - mean) / sqrt(var + eps), biased
    variance over the batch (what ``BatchNorm1d(affine=False)`` does in training mode)."""
    mean = z.mean(dim=0)
    var = z.var(dim=0, unbiased=False)
    return (z - mean) / torch.sqrt(var + eps)


def barlow_twins_loss(
    z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3
) -> dict[str, torch.Tensor]:
    """``sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2`` with ``C`` the cross-correlation of
    the batch-standardised embeddings, computed over the batch gathered from all ranks.

    Args:
        z1: (N, D) embeddings of the first views.
        z2: (N, D) embeddings of the second views.
        lambd: weight of the redundancy-reduction term.

    Returns:
        ``{"loss", "on_diag", "off_diag"}`` scalars (the last two unweighted).
    """
    z1 = collectives.gather_with_grad(z1)  # (M, D)
    z2 = collectives.gather_with_grad(z2)
    c = standardise(z1).T @ standardise(z2) / z1.shape[0]  # (D, D)
    diag = torch.diagonal(c)
    on_diag = (1 - diag).pow(2).sum()
    off_diag = c.pow(2).sum() - diag.pow(2).sum()
    return {"loss": on_diag + lambd * off_diag, "on_diag": on_diag, "off_diag": off_diag}


class BarlowTwins(Objective):
    """Barlow Twins (Zbontar et al. 2021).

    Backbone -> projector of three ``Linear`` layers (8192 wide in the paper; BN + ReLU after
    the first two, no biases) -> :func:`barlow_twins_loss` with ``lambda = 5e-3``. The paper's
    projector is large; ``proj_dim=hidden_dim=2048`` is a sensible choice for small backbones.

    Args:
        backbone: features (N, C, H, W) -> (N, num_features).
        lambd: redundancy-reduction weight.
        proj_dim: projector output width.
        hidden_dim: projector hidden width.

    Examples:
        >>> obj = create_objective("barlow_twins", backbone, proj_dim=2048, hidden_dim=2048)
        ... # doctest: +SKIP
        >>> obj([view1, view2])["loss"].backward()
    """

    consumes: ClassVar[str] = "views"
    augmentation: ClassVar[str] = "byol"
    num_views: ClassVar[int] = 2

    def __init__(
        self,
        backbone: nn.Module,
        lambd: float = 5e-3,
        proj_dim: int = 8192,
        hidden_dim: int = 8192,
    ) -> None:
        super().__init__(backbone)
        if lambd < 0:
            raise ValueError(f"lambd: expected >= 0, received {lambd}")
        self.lambd = float(lambd)
        self.projector = ProjectionHead(
            int(backbone.num_features), hidden_dim, proj_dim, num_layers=3, bias=False
        )

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Compute the loss of one batch.

        Args:
            views: two (N, C, H, W) views.

        Returns:
            ``loss``, ``on_diag``, ``off_diag``.
        """
        v1, v2 = self.check_views(views)[:2]
        if v1.shape[0] < 2 and collectives.world_size() == 1:
            raise ValueError(f"views: expected a batch of >= 2 images, received {v1.shape[0]}")
        z1, z2 = self.projector(self.backbone(v1)), self.projector(self.backbone(v2))
        out = barlow_twins_loss(z1, z2, self.lambd)
        return {
            "loss": out["loss"],
            "on_diag": out["on_diag"].detach(),
            "off_diag": out["off_diag"].detach(),
        }
