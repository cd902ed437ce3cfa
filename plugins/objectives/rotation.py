"""Rotation prediction: a 4-way classifier of image rotations as the pretext task.

Gidaris, Singh, Komodakis. "Unsupervised Representation Learning by Predicting Image
Rotations". ICLR 2018. https://arxiv.org/abs/1803.07728
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer.objectives.base import Objective


def rotate_batch(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All four rotations of every image, with their labels.

    Args:
        images: (N, C, S, S) square images.

    Returns:
        ``(rotated, labels)``: (4N, C, S, S) images rotated by 0, 90, 180, 270 degrees
        (counter-clockwise; block ``r`` holds rotation ``r``) and (4N,) labels ``r``.
    """
    if images.dim() != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(
            f"images: expected square images (N, C, S, S) for rotation prediction, received "
            f"{tuple(images.shape)}"
        )
    rotated = torch.cat([torch.rot90(images, r, dims=(2, 3)) for r in range(4)])
    labels = torch.arange(4, device=images.device).repeat_interleave(images.shape[0])
    return rotated, labels


class RotationPrediction(Objective):
    """RotNet (Gidaris et al. 2018): predict which of 0/90/180/270 degrees an image was turned.

    The objective rotates each view itself (all four rotations of every image in the same
    batch, which the paper found best) and trains a linear classifier on the backbone's pooled
    features with cross-entropy.

    Args:
        backbone: features (N, C, S, S) -> (N, num_features); images must be square.

    Examples:
        >>> obj = create_objective("rotation", backbone)  # doctest: +SKIP
        >>> out = obj([images])  # one (N, C, S, S) view -> 4N rotated images
        >>> out["loss"].backward(); out["accuracy"]
    """

    consumes: ClassVar[str] = "views"
    augmentation: ClassVar[str] = "rotation"
    num_views: ClassVar[int] = 1

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__(backbone)
        self.classifier = nn.Linear(int(backbone.num_features), 4)

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Compute the loss of one batch.

        Args:
            views: one (N, C, S, S) view.

        Returns:
            ``loss``, ``accuracy``.
        """
        images, labels = rotate_batch(self.check_views(views)[0])
        logits = self.classifier(self.backbone(images))  # (4N, 4)
        loss = F.cross_entropy(logits, labels)
        acc = (logits.detach().argmax(1) == labels).float().mean()
        return {"loss": loss, "accuracy": acc}
