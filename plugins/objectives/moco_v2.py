"""MoCo v2: momentum contrast with a queue of negatives and an MLP projector.

He, Fan, Wu, Xie, Girshick. "Momentum Contrast for Unsupervised Visual Representation
Learning". CVPR 2020. https://arxiv.org/abs/1911.05722

Chen, Fan, Girshick, He. "Improved Baselines with Momentum Contrastive Learning". 2020.
https://arxiv.org/abs/2003.04297
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer.objectives import collectives
from pyxfer.objectives.base import Objective
from pyxfer.objectives.heads import ProjectionHead

from ._momentum import frozen_copy, momentum_update


def moco_loss(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """InfoNCE of queries against their keys (positives) and a queue (negatives).

    ``loss = -log( exp(q.k+ / t) / (exp(q.k+ / t) + sum_j exp(q.n_j / t)) )``, mean over the
    batch, with ``q``, ``k`` and the queue L2-normalised.

    Args:
        q: (N, D) normalised queries.
        k: (N, D) normalised keys, no gradient.
        queue: (D, K) normalised negatives.
        temperature: ``t``.

    Returns:
        () the loss.
    """
    l_pos = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
    l_neg = q @ queue  # (N, K)
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # (N, 1 + K)
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


class MoCoV2(Objective):
    """MoCo v2 (Chen et al. 2020, after He et al. 2020).

    A query encoder (backbone + 2-layer MLP projector without BN, 128-d output) is trained
    with InfoNCE against keys from a momentum encoder and a queue of past keys. Following the
    paper's Algorithm 1, the forward pass computes the loss against the current queue; after
    the optimiser step :meth:`on_step_end` updates the key encoder
    (``theta_k <- m theta_k + (1 - m) theta_q``) and enqueues the keys (gathered from all
    ranks). Shuffling BN across GPUs is not implemented (use SyncBN or per-rank BN).

    Paper defaults: ``temperature=0.2``, ``momentum=0.999``, ``queue_size=65536``,
    ``proj_dim=128``; for small data sets (CIFAR-10) ``queue_size=4096`` is common.

    Args:
        backbone: features (N, C, H, W) -> (N, num_features).
        temperature: InfoNCE temperature.
        momentum: key-encoder momentum ``m``.
        queue_size: number of negatives ``K``.
        proj_dim: projection width.
        hidden_dim: projector hidden width (default ``num_features``).

    Examples:
        >>> obj = create_objective("moco_v2", backbone, queue_size=4096)  # doctest: +SKIP
        >>> obj([query_view, key_view])["loss"].backward(); opt.step()
        >>> obj.on_step_end(step, max_steps)  # momentum update + enqueue
    """

    consumes: ClassVar[str] = "views"
    augmentation: ClassVar[str] = "moco_v2"
    num_views: ClassVar[int] = 2

    def __init__(
        self,
        backbone: nn.Module,
        temperature: float = 0.2,
        momentum: float = 0.999,
        queue_size: int = 65536,
        proj_dim: int = 128,
        hidden_dim: int | None = None,
    ) -> None:
        super().__init__(backbone)
        if not temperature > 0:
            raise ValueError(f"temperature: expected > 0, received {temperature}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum: expected a value in [0, 1], received {momentum}")
        if queue_size < 1:
            raise ValueError(f"queue_size: expected >= 1, received {queue_size}")
        self.temperature, self.momentum = float(temperature), float(momentum)
        nf = int(backbone.num_features)
        self.projector = ProjectionHead(nf, hidden_dim or nf, proj_dim, batch_norm=False)
        self.backbone_momentum = frozen_copy(self.backbone)
        self.projector_momentum = frozen_copy(self.projector)
        self.register_buffer("queue", F.normalize(torch.randn(proj_dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending: torch.Tensor | None = None

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Compute the loss of one batch.

        Args:
            views: query and key views (N, C, H, W).

        Returns:
            ``loss``, ``accuracy``.
        """
        vq, vk = self.check_views(views)[:2]
        q = F.normalize(self.projector(self.backbone(vq)), dim=1)  # (N, D)
        with torch.no_grad():
            k = F.normalize(self.projector_momentum(self.backbone_momentum(vk)), dim=1)
        loss = moco_loss(q, k, self.queue.clone(), self.temperature)
        if self.training and torch.is_grad_enabled():
            self._pending = collectives.gather(k)  # (M, D), enqueued after the step
        with torch.no_grad():
            acc = ((q * k).sum(1) > (q @ self.queue).max(1).values).float().mean()
        return {"loss": loss, "accuracy": acc}

    @torch.no_grad()
    def on_step_end(self, step: int, max_steps: int) -> None:
        momentum_update(self.backbone_momentum, self.backbone, self.momentum)
        momentum_update(self.projector_momentum, self.projector, self.momentum)
        if self._pending is not None:
            self._enqueue(self._pending)
            self._pending = None

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest entries of the queue by ``keys`` (M, D), wrapping around."""
        size = self.queue.shape[1]
        keys = keys[-size:]
        idx = (int(self.queue_ptr) + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[:, idx] = keys.T.to(self.queue.dtype)
        self.queue_ptr.fill_((int(self.queue_ptr) + keys.shape[0]) % size)
