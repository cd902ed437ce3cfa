"""Deep CORAL: align the second-order statistics of source and target activations.

Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation", ECCV 2016
Workshops, Eq. (1)-(3):

    C = 1/(n - 1) (X^T X - (1^T X)^T (1^T X) / n)        (d x d covariance of X (n, d))
    l_CORAL = ||C_S - C_T||_F^2 / (4 d^2)
    loss = CE(source) + weight * l_CORAL

The paper applies it to the last classification layer (``layer="logits"``, the default);
``layer="features"`` aligns the backbone features instead. The paper picks the weight so that
both losses end up about equal; 1.0 is the common default.

Examples:
    >>> import torch
    >>> from pyxfer.plugins.adaptation.coral import coral_loss
    >>> x = torch.randn(16, 3)
    >>> float(coral_loss(x, x))
    0.0
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pyxfer._checks import check_number
from pyxfer.objectives.adaptation import AdaptationObjective, AdaptationOutputs

LAYERS = ("logits", "features")


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Unbiased covariance of the columns of ``x``: (n, d) -> (d, d), n >= 2."""
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"x: expected a matrix (n >= 2, d), received {tuple(x.shape)}")
    xc = x - x.mean(dim=0, keepdim=True)  # (n, d)
    return xc.T @ xc / (x.shape[0] - 1)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||C_S - C_T||_F^2 / (4 d^2)`` for source (n_s, d) and target (n_t, d) activations."""
    if source.dim() != 2 or target.dim() != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(
            f"source, target: expected matrices (n, d) of the same width, received "
            f"{tuple(source.shape)} and {tuple(target.shape)}"
        )
    if source.shape[0] < 2 or target.shape[0] < 2:
        raise ValueError(
            f"source, target: expected at least 2 samples each for a covariance, received "
            f"{source.shape[0]} and {target.shape[0]}"
        )
    d = source.shape[1]
    return (covariance(source) - covariance(target)).pow(2).sum() / (4 * d * d)


class DeepCORAL(AdaptationObjective):
    """Deep CORAL (Sun & Saenko 2016): match source and target covariances.

    Args:
        backbone: the feature extractor.
        num_classes: number of classes.
        weight: weight of the CORAL loss.
        layer: ``"logits"`` (the paper's fc8) or ``"features"``.
    """

    def __init__(
        self, backbone: nn.Module, num_classes: int, weight: float = 1.0, layer: str = "logits"
    ) -> None:
        super().__init__(backbone, num_classes)
        self.weight = check_number("weight", weight)
        if layer not in LAYERS:
            raise ValueError(f"layer: expected one of {LAYERS}, received {layer!r}")
        self.layer = layer

    def adapt(self, out: AdaptationOutputs) -> tuple[torch.Tensor, dict[str, Any]]:
        if self.layer == "logits":
            xs, xt = out.source_logits, out.target_logits[0]
        else:
            xs, xt = out.source_features, out.target_features[0]
        loss_coral = coral_loss(xs, xt)
        return self.weight * loss_coral, {"loss_coral": loss_coral}
