"""DANN: domain-adversarial training through a gradient reversal layer.

Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 17(59), 2016. A domain
classifier ``D`` learns to tell source features (label 1) from target features (label 0);
between the features and ``D`` sits the gradient reversal layer, identity forward and
``-lambda`` times the gradient backward, so one minimisation step trains ``D`` to separate
the domains and the backbone to confuse it:

    loss = CE(source) + weight * BCE(D(R_lambda(f)), domain)
    lambda_p = 2 / (1 + exp(-10 p)) - 1          (Sec. 5.2.2, p = progress in [0, 1])

``D`` is the paper's 1024-1024 MLP with dropout 0.5 (``hidden`` scales it down). ``lambda_p``
follows :meth:`on_step_end`; until it is first called ``p = 0`` and the features are not
pushed at all. The paper's learning-rate schedule ``mu0 / (1 + 10 p) ** 0.75`` is the engine's
to apply. Logged: ``loss_domain``, ``domain_acc`` (0.5 means the domains are confused) and
``grl_coeff``.

Examples:
    >>> import torch
    >>> from pyxfer import create_backbone, create_objective
    >>> obj = create_objective("dann", create_backbone("lenet", img_size=28), num_classes=10,
    ...                        hidden=256)
    >>> obj.on_step_end(500, 1000)
    >>> round(obj.grl.coeff, 4)
    0.9866
    >>> x = torch.randn(4, 1, 28, 28)
    >>> sorted(obj([x], torch.tensor([0, 1, 2, 3]), [x]))
    ['acc_source', 'domain_acc', 'grl_coeff', 'loss', 'loss_cls', 'loss_domain']
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pyxfer._checks import check_number
from pyxfer.objectives.adaptation import (
    AdaptationObjective,
    AdaptationOutputs,
    DomainDiscriminator,
    GradientReversal,
    dann_coefficient,
    domain_accuracy,
    domain_adversarial_loss,
)


class DANN(AdaptationObjective):
    """DANN (Ganin et al. 2016): a domain classifier behind a gradient reversal layer.

    Args:
        backbone: the feature extractor.
        num_classes: number of classes.
        weight: weight of the domain loss.
        hidden: width of the domain classifier's two hidden layers (paper: 1024).
        dropout: dropout of the domain classifier (paper: 0.5).
        gamma: steepness of the reversal-coefficient schedule (paper: 10).
        max_coeff: the coefficient's limit (paper: 1).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        weight: float = 1.0,
        hidden: int = 1024,
        dropout: float = 0.5,
        gamma: float = 10.0,
        max_coeff: float = 1.0,
    ) -> None:
        super().__init__(backbone, num_classes)
        self.weight = check_number("weight", weight)
        self.gamma = check_number("gamma", gamma, low_open=True)
        self.max_coeff = check_number("max_coeff", max_coeff)
        self.grl = GradientReversal(0.0)
        self.discriminator = DomainDiscriminator(self.num_features, hidden, 2, dropout)

    def on_step_end(self, step: int, max_steps: int) -> None:
        """Advance the progress and set the reversal coefficient ``lambda_p``."""
        super().on_step_end(step, max_steps)
        self.grl.coeff = dann_coefficient(self.progress, self.gamma, self.max_coeff)

    def schedule_state(self) -> dict[str, Any]:
        """The progress and the reversal coefficient (the next forward uses it)."""
        return {**super().schedule_state(), "grl_coeff": self.grl.coeff}

    def load_schedule_state(self, state: dict[str, Any]) -> None:
        super().load_schedule_state(state)
        self.grl.coeff = float(state.get("grl_coeff", 0.0))

    def adapt(self, out: AdaptationOutputs) -> tuple[torch.Tensor, dict[str, Any]]:
        fs, ft = out.source_features, out.target_features[0]  # (N_s, D), (N_t, D)
        d = self.discriminator(self.grl(torch.cat([fs, ft])))  # (N_s + N_t, 1)
        ds, dt = d[: fs.shape[0]], d[fs.shape[0] :]
        loss_domain = domain_adversarial_loss(ds, dt)
        return self.weight * loss_domain, {
            "loss_domain": loss_domain,
            "domain_acc": domain_accuracy(ds, dt),
            "grl_coeff": fs.new_tensor(self.grl.coeff),
        }
