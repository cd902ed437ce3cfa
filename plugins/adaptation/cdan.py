"""CDAN: domain adversary conditioned on the classifier's predictions (with entropy weights).

Long et al., "Conditional Adversarial Domain Adaptation", NeurIPS 2018. The domain
discriminator sees the multilinear map ``h = f (x) g`` of the features ``f`` (N, D) and the
class probabilities ``g = softmax(logits)`` (N, K): the flattened outer product (N, D*K), or,
when ``D * K > 4096``, the randomised multilinear map ``(f R_f) * (g R_g) / sqrt(d)`` with
fixed Gaussian ``R_f`` (D, d), ``R_g`` (K, d) and ``d = 1024`` (Sec. 3.1). As in DANN a
gradient reversal layer (coefficient ``2 / (1 + exp(-10 p)) - 1``) sits in front of the
discriminator, a 1024-1024 MLP.

CDAN+E (``entropy_conditioning=True``, the paper's best variant) weighs every sample by
``w = 1 + exp(-H(g))`` so that confident, transferable examples count more; within each
domain the weights are normalised, ``sum_i w_i * bce_i / sum_i w_i``, and the two domains
averaged. ``g`` and ``w`` carry no gradient (the authors' code detaches the predictions).

Examples:
    >>> import torch
    >>> from pyxfer import create_backbone, create_objective
    >>> obj = create_objective("cdan", create_backbone("lenet", img_size=28), num_classes=10,
    ...                        hidden=256)
    >>> obj.randomized  # 128 features x 10 classes = 1280 <= 4096
    False
    >>> x = torch.randn(4, 1, 28, 28)
    >>> float(obj([x], torch.tensor([0, 1, 2, 3]), [x])["loss_domain"]) > 0
    True
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer._checks import check_int, check_number
from pyxfer.objectives.adaptation import (
    AdaptationObjective,
    AdaptationOutputs,
    DomainDiscriminator,
    GradientReversal,
    dann_coefficient,
    domain_accuracy,
    domain_adversarial_loss,
    entropy,
)

#: above this size of the outer product the randomised map is used (Long et al. 2018)
MAX_MULTILINEAR_DIM = 4096


def multilinear_map(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Flattened outer product: (N, D), (N, K) -> (N, D * K), entry ``[n, d * K + k]``."""
    return (f.unsqueeze(2) * g.unsqueeze(1)).flatten(1)  # (N, D, K) -> (N, D*K)


class RandomizedMultilinearMap(nn.Module):
    """``(f R_f) * (g R_g) / sqrt(dim)`` with fixed standard-normal ``R_f``, ``R_g``.

    The matrices are buffers (saved with the model) drawn from a seeded generator.

    Shapes:
        (N, features), (N, classes) -> (N, dim).
    """

    def __init__(self, features: int, classes: int, dim: int = 1024, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.register_buffer("r_f", torch.randn(features, dim, generator=gen))
        self.register_buffer("r_g", torch.randn(classes, dim, generator=gen))

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (f @ self.r_f) * (g @ self.r_g) / math.sqrt(self.dim)


def entropy_weights(logits: torch.Tensor) -> torch.Tensor:
    """CDAN+E sample weights ``1 + exp(-H(softmax(logits)))``: (N, K) -> (N,), no gradient."""
    return 1.0 + torch.exp(-entropy(logits.detach()))


class CDAN(AdaptationObjective):
    """CDAN(+E) (Long et al. 2018): adversary on ``features (x) predictions``, entropy-weighted.

    Args:
        backbone: the feature extractor.
        num_classes: number of classes.
        weight: weight of the domain loss.
        entropy_conditioning: CDAN+E's sample weights ``1 + exp(-H)``.
        randomized: use the randomised multilinear map; ``None`` chooses it when
            ``num_features * num_classes > 4096``.
        randomized_dim: output width ``d`` of the randomised map.
        hidden: width of the discriminator's two hidden layers (paper: 1024).
        dropout: dropout of the discriminator (paper: 0.5).
        gamma: steepness of the reversal-coefficient schedule (10).
        seed: seed of the randomised map's matrices.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        weight: float = 1.0,
        entropy_conditioning: bool = True,
        randomized: bool | None = None,
        randomized_dim: int = 1024,
        hidden: int = 1024,
        dropout: float = 0.5,
        gamma: float = 10.0,
        seed: int = 0,
    ) -> None:
        super().__init__(backbone, num_classes)
        self.weight = check_number("weight", weight)
        self.gamma = check_number("gamma", gamma, low_open=True)
        self.entropy_conditioning = bool(entropy_conditioning)
        full = self.num_features * num_classes
        self.randomized = full > MAX_MULTILINEAR_DIM if randomized is None else bool(randomized)
        self.random_map: RandomizedMultilinearMap | None = None
        if self.randomized:
            check_int("randomized_dim", randomized_dim, 1)
            self.random_map = RandomizedMultilinearMap(
                self.num_features, num_classes, randomized_dim, seed
            )
        self.grl = GradientReversal(0.0)
        self.discriminator = DomainDiscriminator(
            randomized_dim if self.randomized else full, hidden, 2, dropout
        )

    def on_step_end(self, step: int, max_steps: int) -> None:
        """Advance the progress and the reversal coefficient (DANN's schedule)."""
        super().on_step_end(step, max_steps)
        self.grl.coeff = dann_coefficient(self.progress, self.gamma)

    def schedule_state(self) -> dict[str, Any]:
        """The progress and the reversal coefficient (the next forward uses it)."""
        return {**super().schedule_state(), "grl_coeff": self.grl.coeff}

    def load_schedule_state(self, state: dict[str, Any]) -> None:
        super().load_schedule_state(state)
        self.grl.coeff = float(state.get("grl_coeff", 0.0))

    def condition(self, f: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The discriminator's input ``T(f, g)``, ``g = softmax(logits)`` detached."""
        g = F.softmax(logits.detach(), dim=1)  # (N, K)
        if self.random_map is not None:
            return self.random_map(f, g)  # (N, d)
        return multilinear_map(f, g)  # (N, D*K)

    def adapt(self, out: AdaptationOutputs) -> tuple[torch.Tensor, dict[str, Any]]:
        f = torch.cat([out.source_features, out.target_features[0]])  # (N_s + N_t, D)
        logits = torch.cat([out.source_logits, out.target_logits[0]])  # (N_s + N_t, K)
        n_s = out.source_features.shape[0]
        d = self.discriminator(self.grl(self.condition(f, logits)))  # (N_s + N_t, 1)
        ds, dt = d[:n_s], d[n_s:]
        parts: dict[str, Any] = {}
        if self.entropy_conditioning:
            w = entropy_weights(logits)  # (N_s + N_t,)
            loss_domain = domain_adversarial_loss(ds, dt, w[:n_s], w[n_s:])
            parts["entropy_weight_target"] = w[n_s:].mean()
        else:
            loss_domain = domain_adversarial_loss(ds, dt)
        parts.update(
            loss_domain=loss_domain,
            domain_acc=domain_accuracy(ds, dt),
            grl_coeff=f.new_tensor(self.grl.coeff),
        )
        return self.weight * loss_domain, parts
