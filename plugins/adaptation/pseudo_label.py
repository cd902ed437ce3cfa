"""Pseudo-labelling: the model's own confident target predictions as labels.

Lee, "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for Deep Neural
Networks", ICML 2013 Workshop on Challenges in Representation Learning, Eq. (15)-(16):

    loss = CE(source) + alpha(t) * 1/n' sum_i 1[max p_i >= threshold] CE(argmax p_i, p_i)

The pseudo-label of a target image is the class of highest predicted probability, recomputed
at every step from the same forward pass (no gradient through the label). ``alpha(t)`` ramps
as in the paper: 0 before ``T1``, linear up to ``alpha_f`` at ``T2``, then constant, with the
paper's ``alpha_f = 3``; ``T1`` and ``T2`` (epochs 100 and 600 in the paper) are given here as
fractions of the run, defaults 0.1 and 0.6. The paper keeps every pseudo-label
(``threshold = 0``); a confidence threshold (default 0.95, FixMatch's) keeps wrong labels out
on a shifted target.

Examples:
    >>> import torch
    >>> from pyxfer import create_backbone, create_objective
    >>> obj = create_objective("pseudo_label", create_backbone("lenet", img_size=28),
    ...                        num_classes=10)
    >>> obj.on_step_end(600, 1000)
    >>> obj.alpha()
    3.0
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer._checks import check_number
from pyxfer.objectives.adaptation import AdaptationObjective, AdaptationOutputs


def pseudo_label_weight(progress: float, t1: float, t2: float, alpha_f: float) -> float:
    """Lee's ramp ``alpha(t)``: 0 for ``t < T1``, linear to ``alpha_f`` at ``T2``, then flat."""
    if progress < t1:
        return 0.0
    if progress >= t2:
        return alpha_f
    return alpha_f * (progress - t1) / (t2 - t1)


class PseudoLabel(AdaptationObjective):
    """Pseudo-labelling (Lee 2013) with a confidence threshold and the paper's weight ramp.

    Args:
        backbone: the feature extractor.
        num_classes: number of classes.
        threshold: confidence a pseudo-label needs (0 keeps all, as in the paper).
        alpha_f: final weight of the pseudo-label loss.
        ramp: ``(T1, T2)``, fractions of the run where the weight starts and stops rising.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        threshold: float = 0.95,
        alpha_f: float = 3.0,
        ramp: tuple[float, float] = (0.1, 0.6),
    ) -> None:
        super().__init__(backbone, num_classes)
        self.threshold = check_number("threshold", threshold, 0.0, 1.0)
        self.alpha_f = check_number("alpha_f", alpha_f)
        if (
            not isinstance(ramp, (tuple, list))
            or len(ramp) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in ramp)
            or not 0.0 <= ramp[0] < ramp[1] <= 1.0
        ):
            raise ValueError(f"ramp: expected (T1, T2) with 0 <= T1 < T2 <= 1, received {ramp!r}")
        self.ramp = (float(ramp[0]), float(ramp[1]))

    def alpha(self) -> float:
        """The weight ``alpha(t)`` at the current progress."""
        return pseudo_label_weight(self.progress, *self.ramp, self.alpha_f)

    def adapt(self, out: AdaptationOutputs) -> tuple[torch.Tensor, dict[str, Any]]:
        logits = out.target_logits[0]  # (N_t, K)
        conf, pseudo = F.softmax(logits.detach(), dim=1).max(dim=1)  # (N_t,), (N_t,)
        mask = (conf >= self.threshold).float()
        loss_pl = (F.cross_entropy(logits, pseudo, reduction="none") * mask).mean()
        alpha = self.alpha()
        return alpha * loss_pl, {
            "loss_pseudo": loss_pl,
            "mask_rate": mask.mean(),
            "alpha": logits.new_tensor(alpha),
        }
