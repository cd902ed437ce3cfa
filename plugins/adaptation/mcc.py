"""MCC: minimum class confusion on the target predictions.

Jin et al., "Minimum Class Confusion for Versatile Domain Adaptation", ECCV 2020, Eq. (1)-(7),
on the target logits ``Z`` (B, K):

    Y = softmax(Z / T)                                   (temperature T = 2.5)
    H_i = -sum_j Y_ij log Y_ij
    W_ii = B (1 + exp(-H_i)) / sum_i' (1 + exp(-H_i'))   (entropy-based reweighting)
    C = Y^T W Y                                          (K x K class correlation)
    C~_jj' = C_jj' / sum_j'' C_j''j'                      (category normalisation)
    l_MCC = 1/K sum_j sum_{j' != j} C~_jj'
    loss = CE(source) + weight * l_MCC

The weights carry no gradient (as in the authors' code). Weight 1 as in the paper's
unsupervised domain adaptation experiments.

Examples:
    >>> import torch
    >>> from pyxfer.plugins.adaptation.mcc import mcc_loss
    >>> confident = torch.eye(4) * 50  # four images, four classes, no confusion
    >>> float(mcc_loss(confident)) < 1e-6
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer._checks import check_number
from pyxfer.objectives.adaptation import AdaptationObjective, AdaptationOutputs, entropy


def mcc_loss(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """Minimum-class-confusion loss of target logits (B, K)."""
    if logits.dim() != 2:
        raise ValueError(f"logits: expected (B, K), received {tuple(logits.shape)}")
    b, k = logits.shape
    probs = F.softmax(logits / temperature, dim=1)  # (B, K)
    w = 1.0 + torch.exp(-entropy(logits.detach() / temperature))  # (B,)
    w = b * w / w.sum()
    confusion = probs.T @ (w.unsqueeze(1) * probs)  # (K, K)
    confusion = confusion / confusion.sum(dim=0, keepdim=True)  # columns sum to 1
    return (confusion.sum() - confusion.trace()) / k


class MCC(AdaptationObjective):
    """MCC (Jin et al. 2020): penalise pairwise class confusion on the target.

    Args:
        backbone: the feature extractor.
        num_classes: number of classes.
        weight: weight of the MCC loss.
        temperature: ``T`` of the probability rescaling (paper: 2.5).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        weight: float = 1.0,
        temperature: float = 2.5,
    ) -> None:
        super().__init__(backbone, num_classes)
        self.weight = check_number("weight", weight)
        self.temperature = check_number("temperature", temperature, low_open=True)

    def adapt(self, out: AdaptationOutputs) -> tuple[torch.Tensor, dict[str, Any]]:
        loss_mcc = mcc_loss(out.target_logits[0], self.temperature)
        return self.weight * loss_mcc, {"loss_mcc": loss_mcc}
