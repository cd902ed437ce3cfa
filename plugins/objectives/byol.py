"""BYOL: bootstrap your own latent, an online network predicting an EMA target.

Grill, Strub, Altché, Tallec, Richemond, et al. "Bootstrap Your Own Latent: A New Approach
to Self-Supervised Learning". NeurIPS 2020. https://arxiv.org/abs/2006.07733
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer.objectives.base import Objective
from pyxfer.objectives.heads import PredictionHead, ProjectionHead

from ._momentum import ema_tau, frozen_copy, momentum_update


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``||p/|p| - z/|z| ||^2 = 2 - 2 cos(p, z)`` per row.

    Args:
        p: (N, D) online predictions.
        z: (N, D) target projections (no gradient).

    Returns:
        (N,) the per-sample loss.
    """
    return 2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)


class BYOL(Objective):
    """BYOL (Grill et al. 2020).

    Online network: backbone -> projector (4096 hidden, 256 out, BN) -> predictor (same
    shape). Target network: an exponential moving average of the online backbone and
    projector. The symmetric loss is ``mean_i [2 - 2 cos(q_1, z'_2) + 2 - 2 cos(q_2, z'_1)]``.
    :meth:`on_step_end` moves the target with decay ``tau`` rising from ``tau_base`` = 0.996 to
    1 on a cosine schedule over ``max_steps``.

    Args:
        backbone: features (N, C, H, W) -> (N, num_features).
        proj_dim: projection (and prediction) width.
        hidden_dim: hidden width of projector and predictor.
        tau_base: initial target decay.

    Examples:
        >>> obj = create_objective("byol", backbone)  # doctest: +SKIP
        >>> obj([view1, view2])["loss"].backward(); opt.step()
        >>> obj.on_step_end(step, max_steps)  # EMA of the target network
    """

    consumes: ClassVar[str] = "views"
    augmentation: ClassVar[str] = "byol"
    num_views: ClassVar[int] = 2

    def __init__(
        self,
        backbone: nn.Module,
        proj_dim: int = 256,
        hidden_dim: int = 4096,
        tau_base: float = 0.996,
    ) -> None:
        super().__init__(backbone)
        if not 0.0 <= tau_base <= 1.0:
            raise ValueError(f"tau_base: expected a value in [0, 1], received {tau_base}")
        self.tau_base = float(tau_base)
        self.tau = float(tau_base)
        nf = int(backbone.num_features)
        self.projector = ProjectionHead(nf, hidden_dim, proj_dim, num_layers=2)
        self.predictor = PredictionHead(proj_dim, hidden_dim, proj_dim)
        self.backbone_target = frozen_copy(self.backbone)
        self.projector_target = frozen_copy(self.projector)

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Compute the loss of one batch.

        Args:
            views: two (N, C, H, W) views.

        Returns:
            ``loss``.
        """
        v1, v2 = self.check_views(views)[:2]
        n = v1.shape[0]
        both = torch.cat([v1, v2])  # (2N, C, H, W)
        q = self.predictor(self.projector(self.backbone(both)))  # (2N, D)
        with torch.no_grad():
            z = self.projector_target(self.backbone_target(both))  # (2N, D)
        loss = (byol_loss(q[:n], z[n:]) + byol_loss(q[n:], z[:n])).mean()
        return {"loss": loss, "tau": torch.tensor(self.tau)}

    def schedule_state(self) -> dict[str, Any]:
        """The current ``tau`` (logged by the next forward)."""
        return {"tau": self.tau}

    def load_schedule_state(self, state: dict[str, Any]) -> None:
        self.tau = float(state.get("tau", self.tau_base))

    @torch.no_grad()
    def on_step_end(self, step: int, max_steps: int) -> None:
        self.tau = ema_tau(step, max_steps, self.tau_base)
        momentum_update(self.backbone_target, self.backbone, self.tau)
        momentum_update(self.projector_target, self.projector, self.tau)
