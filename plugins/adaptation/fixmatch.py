"""FixMatch: pseudo-labels from a weak view, cross-entropy on a strong view where confident.

Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with Consistency and
Confidence", NeurIPS 2020, Eq. (4):

    q_b = softmax(f(weak(u_b)))            (no gradient)
    l_u = 1/(mu B) sum_b 1[max q_b >= tau] CE(argmax q_b, f(strong(u_b)))
    loss = l_s + lambda_u * l_u

with the paper's defaults ``tau = 0.95`` and ``lambda_u = 1``. The mean runs over *all*
unlabelled images (masked ones count as zero), as in the paper. The paper's ratio ``mu = 7``
of unlabelled to labelled images is the loader's batch sizes. Target views: view 0 from the
``fixmatch_weak`` preset, view 1 from ``fixmatch_strong``.

Examples:
    >>> import torch
    >>> from pyxfer import create_backbone, create_objective
    >>> obj = create_objective("fixmatch", create_backbone("lenet", img_size=28),
    ...                        num_classes=10)
    >>> obj.target_augmentation
    ('fixmatch_weak', 'fixmatch_strong')
    >>> xs, weak, strong = (torch.randn(4, 1, 28, 28) for _ in range(3))
    >>> out = obj([xs], torch.tensor([0, 1, 2, 3]), [weak, strong])
    >>> 0.0 <= float(out["mask_rate"]) <= 1.0
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer._checks import check_number
from pyxfer.objectives.adaptation import AdaptationObjective, AdaptationOutputs


def fixmatch_loss(
    weak_logits: torch.Tensor, strong_logits: torch.Tensor, threshold: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """FixMatch's unlabelled loss and its mask.

    Args:
        weak_logits: (N, K) logits of the weak views (detached inside).
        strong_logits: (N, K) logits of the strong views of the same images.
        threshold: ``tau``, the confidence a pseudo-label needs.

    Returns:
        ``(l_u, mask)``: the scalar loss and the (N,) float mask of confident images.
    """
    probs = F.softmax(weak_logits.detach(), dim=1)  # (N, K)
    conf, pseudo = probs.max(dim=1)  # (N,), (N,)
    mask = (conf >= threshold).float()  # (N,)
    ce = F.cross_entropy(strong_logits, pseudo, reduction="none")  # (N,)
    return (ce * mask).mean(), mask


class FixMatch(AdaptationObjective):
    """FixMatch (Sohn et al. 2020): confident weak-view pseudo-labels train the strong view.

    Args:
        backbone: the feature extractor.
        num_classes: number of classes.
        threshold: ``tau``, confidence threshold of the pseudo-labels.
        weight: ``lambda_u``, weight of the unlabelled loss.
    """

    num_views = 2
    target_augmentation = ("fixmatch_weak", "fixmatch_strong")

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        threshold: float = 0.95,
        weight: float = 1.0,
    ) -> None:
        super().__init__(backbone, num_classes)
        self.threshold = check_number("threshold", threshold, 0.0, 1.0)
        self.weight = check_number("weight", weight)

    def adapt(self, out: AdaptationOutputs) -> tuple[torch.Tensor, dict[str, Any]]:
        weak, strong = out.target_logits[0], out.target_logits[1]
        loss_u, mask = fixmatch_loss(weak, strong, self.threshold)
        return self.weight * loss_u, {"loss_unlabelled": loss_u, "mask_rate": mask.mean()}
