"""VICReg: variance-invariance-covariance regularisation.

Bardes, Ponce, LeCun. "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning". ICLR 2022. https://arxiv.org/abs/2105.04906
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer.objectives import collectives
from pyxfer.objectives.base import Objective
from pyxfer.objectives.heads import ProjectionHead


def _variance(z: torch.Tensor, eps: float) -> torch.Tensor:
    std = torch.sqrt(z.var(dim=0) + eps)  # (D,) unbiased variance, as the paper
    return F.relu(1 - std).mean()


def _covariance(z: torch.Tensor) -> torch.Tensor:
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = z.T @ z / (n - 1)  # (D, D)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
) -> dict[str, torch.Tensor]:
    """``lambda s(Z, Z') + mu [v(Z) + v(Z')] / 2 + nu [c(Z) + c(Z')]``.

    - invariance ``s``: mean squared error between ``z1`` and ``z2`` (this rank's rows);
    - variance ``v``: mean over dimensions of ``max(0, 1 - sqrt(Var(z_j) + eps))``;
    - covariance ``c``: sum of squared off-diagonal covariances divided by ``D``;

    variance and covariance over the batch gathered from all ranks.

    Args:
        z1: (N, D) embeddings of the first views.
        z2: (N, D) embeddings of the second views.
        sim_coeff: ``lambda``. std_coeff: ``mu``. cov_coeff: ``nu``.
        eps: added to the variance before the square root.

    Returns:
        ``{"loss", "invariance", "variance", "covariance"}`` (the last three unweighted).
    """
    inv = F.mse_loss(z1, z2)
    z1, z2 = collectives.gather_with_grad(z1), collectives.gather_with_grad(z2)
    var = (_variance(z1, eps) + _variance(z2, eps)) / 2
    cov = _covariance(z1) + _covariance(z2)
    loss = sim_coeff * inv + std_coeff * var + cov_coeff * cov
    return {"loss": loss, "invariance": inv, "variance": var, "covariance": cov}


class VICReg(Objective):
    """VICReg (Bardes et al. 2022).

    Backbone -> expander of three ``Linear`` layers (8192 wide in the paper, BN + ReLU after
    the first two) -> :func:`vicreg_loss` with the paper's coefficients 25 / 25 / 1. For small
    backbones ``proj_dim=hidden_dim=2048`` is a sensible choice.

    Args:
        backbone: features (N, C, H, W) -> (N, num_features).
        sim_coeff: invariance weight. std_coeff: variance weight. cov_coeff: covariance weight.
        proj_dim: expander output width.
        hidden_dim: expander hidden width.

    Examples:
        >>> obj = create_objective("vicreg", backbone, proj_dim=2048, hidden_dim=2048)
        ... # doctest: +SKIP
        >>> obj([view1, view2])["loss"].backward()
    """

    consumes: ClassVar[str] = "views"
    augmentation: ClassVar[str] = "byol"
    num_views: ClassVar[int] = 2

    def __init__(
        self,
        backbone: nn.Module,
        sim_coeff: float = 25.0,
        std_coeff: float = 25.0,
        cov_coeff: float = 1.0,
        proj_dim: int = 8192,
        hidden_dim: int = 8192,
    ) -> None:
        super().__init__(backbone)
        for name, value in (
            ("sim_coeff", sim_coeff),
            ("std_coeff", std_coeff),
            ("cov_coeff", cov_coeff),
        ):
            if value < 0:
                raise ValueError(f"{name}: expected >= 0, received {value}")
        self.coeffs = (float(sim_coeff), float(std_coeff), float(cov_coeff))
        self.projector = ProjectionHead(int(backbone.num_features), hidden_dim, proj_dim, 3)

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Compute the loss of one batch.

        Args:
            views: two (N, C, H, W) views.

        Returns:
            ``loss`` and its three terms.
        """
        v1, v2 = self.check_views(views)[:2]
        if v1.shape[0] < 2 and collectives.world_size() == 1:
            raise ValueError(f"views: expected a batch of >= 2 images, received {v1.shape[0]}")
        z1, z2 = self.projector(self.backbone(v1)), self.projector(self.backbone(v2))
        out = vicreg_loss(z1, z2, *self.coeffs)
        return {k: (v if k == "loss" else v.detach()) for k, v in out.items()}
