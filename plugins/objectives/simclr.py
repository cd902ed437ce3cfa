"""SimCLR: contrastive learning with the NT-Xent loss.

Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive Learning of Visual
Representations". ICML 2020. https://arxiv.org/abs/2002.05709
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer.objectives import collectives
from pyxfer.objectives.base import Objective
from pyxfer.objectives.heads import ProjectionHead


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Normalised temperature-scaled cross-entropy over the batch gathered from all ranks.

    For the 2N projections (N images, two views each), anchor ``i`` with positive ``j``::

        l(i, j) = -log( exp(sim(z_i, z_j) / t) / sum_{k != i} exp(sim(z_i, z_k) / t) )

    with ``sim`` the cosine similarity; the loss is the mean over all 2N anchors (the paper's
    ``1/2N sum_k [l(2k-1, 2k) + l(2k, 2k-1)]``). Under ``torch.distributed`` the other ranks'
    projections serve as extra negatives and the loss is the mean over this rank's anchors
    (see :mod:`pyxfer.objectives.collectives` for why the gradients then match one process).

    Args:
        z1: (N, D) projections of the first views.
        z2: (N, D) projections of the second views of the same images.
        temperature: softmax temperature ``t``.

    Returns:
        () the loss.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(
            f"z1, z2: expected two (N, D) tensors of equal shape, received "
            f"{tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    n = z1.shape[0]
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    all1, all2 = collectives.gather_with_grad(z1), collectives.gather_with_grad(z2)  # (M, D)
    m = all1.shape[0]
    off = collectives.gather_offset(n, z1.device)
    anchors = torch.cat([z1, z2])  # (2n, D)
    keys = torch.cat([all1, all2])  # (2M, D)
    logits = anchors @ keys.T / temperature  # (2n, 2M)
    local = torch.arange(n, device=z1.device)
    self_idx = torch.cat([off + local, m + off + local])  # each anchor's own column
    pos_idx = torch.cat([m + off + local, off + local])  # its other view
    rows = torch.arange(2 * n, device=z1.device)
    logits = logits.index_put((rows, self_idx), logits.new_tensor(float("-inf")))  # no i = k
    return F.cross_entropy(logits, pos_idx)


class SimCLR(Objective):
    """SimCLR (Chen et al. 2020): NT-Xent between two augmented views.

    Backbone features go through the paper's projection MLP ``g(h) = W2 ReLU(W1 h)`` (hidden
    width = ``num_features``, 128 outputs as for ResNet-50), with batch norm on the hidden
    layer as in the authors' code; the loss is :func:`nt_xent` with the other images of the
    (gathered) batch as negatives. Both views go through the backbone as one batch (shared
    batch-norm statistics). The representation is the backbone's pooled features (before the
    projector).

    Temperature: the paper uses 0.1 with LARS and batches of 4096 on ImageNet and 0.5 for
    CIFAR-10 (appendix B.9); the default 0.5 suits the small batches this library usually
    trains with; pass ``temperature=0.1`` for large-batch ImageNet runs.

    Args:
        backbone: features (N, C, H, W) -> (N, num_features).
        temperature: NT-Xent temperature.
        proj_dim: projection output width.
        hidden_dim: projector hidden width (default ``num_features``).

    Examples:
        >>> obj = create_objective("simclr", backbone)  # doctest: +SKIP
        >>> out = obj([view1, view2])  # two (N, C, H, W) views of the same images
        >>> out["loss"].backward()
    """

    consumes: ClassVar[str] = "views"
    augmentation: ClassVar[str] = "simclr"
    num_views: ClassVar[int] = 2

    def __init__(
        self,
        backbone: nn.Module,
        temperature: float = 0.5,
        proj_dim: int = 128,
        hidden_dim: int | None = None,
    ) -> None:
        super().__init__(backbone)
        if not temperature > 0:
            raise ValueError(f"temperature: expected > 0, received {temperature}")
        self.temperature = float(temperature)
        nf = int(backbone.num_features)
        self.projector = ProjectionHead(nf, hidden_dim or nf, proj_dim, num_layers=2)

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Compute the loss of one batch.

        Args:
            views: two (N, C, H, W) views.

        Returns:
            ``loss``.
        """
        v1, v2 = self.check_views(views)[:2]
        n = v1.shape[0]
        z = self.projector(self.backbone(torch.cat([v1, v2])))  # (2N, proj_dim)
        loss = nt_xent(z[:n], z[n:], self.temperature)
        return {"loss": loss}
