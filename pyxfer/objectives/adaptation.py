"""Domain adaptation: the batch protocol and the parts shared by the adaptation objectives.

Every adaptation objective (``pyxfer.plugins.adaptation``: ``source_only``, ``fixmatch``,
``pseudo_label``, ``entropy_min``, ``dann``, ``cdan``, ``coral``, ``mmd``, ``mcc``) is an
:class:`AdaptationObjective`. This module is where the protocol between them and the training
engine is defined.

Batch protocol
--------------
``consumes == "source_target"``. Each training step the engine draws a batch of labelled
source images and a batch of unlabelled target images (the batch sizes may differ) and calls::

    out = objective(source_views, source_labels, target_views)
    out["loss"].backward()
    optimizer.step()
    objective.on_step_end(step, max_steps)

- ``source_views``: a list with one tensor (N_s, C, H, W) (a bare tensor is accepted), the
  source images augmented with the preset named by the class attribute ``augmentation``;
- ``source_labels``: (N_s,) integer class indices in ``[0, num_classes)``;
- ``target_views``: a list of ``num_views`` tensors (N_t, C, H, W), view ``i`` of every target
  image augmented with preset ``target_augmentation[i]`` (FixMatch: ``("fixmatch_weak",
  "fixmatch_strong")``; the others: ``("fixmatch_weak",)``). Extra views are ignored.

All views go through the backbone in one pass when their shapes agree (BatchNorm statistics
then mix source and target, as the reference implementations of DANN, CDAN and FixMatch do).

``forward`` returns a dict of scalar tensors: ``loss`` (the total to minimise, with gradient),
``loss_cls`` (cross-entropy on the source labels) and the objective's own parts (``loss_domain``,
``mask_rate``...; detached). ``loss == loss_cls + <weighted adaptation terms>``.

Every objective owns a classifier (``classifier``: ``Linear(backbone.num_features,
num_classes)``); :meth:`AdaptationObjective.predict` gives logits for evaluation and
:meth:`AdaptationObjective.embed` the backbone features. ``on_step_end(step, max_steps)``
records the training progress ``p = step / max_steps`` in ``progress`` (schedules such as
DANN's gradient-reversal coefficient read it). Learning-rate schedules (DANN's
``mu0 / (1 + 10 p) ** 0.75``) are the engine's business.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer._checks import check_int
from pyxfer.objectives.base import Objective, list_objectives


# -- gradient reversal -----------------------------------------------------------------------
class GradientReversalFunction(torch.autograd.Function):
    """Identity in the forward pass, gradient multiplied by ``-coeff`` in the backward pass.

    Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016, Sec. 5 (the
    gradient reversal layer ``R_lambda``).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = float(coeff)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.neg() * ctx.coeff, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Apply :class:`GradientReversalFunction` (``x`` unchanged, gradient times ``-coeff``)."""
    return GradientReversalFunction.apply(x, coeff)


class GradientReversal(nn.Module):
    """The gradient reversal layer as a module; ``coeff`` may be changed between steps."""

    def __init__(self, coeff: float = 1.0) -> None:
        super().__init__()
        self.coeff = float(coeff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.coeff)

    def extra_repr(self) -> str:
        return f"coeff={self.coeff:.4g}"


def dann_coefficient(progress: float, gamma: float = 10.0, high: float = 1.0) -> float:
    """DANN's schedule of the reversal coefficient: ``high * (2 / (1 + exp(-gamma p)) - 1)``.

    Ganin et al. 2016, Sec. 5.2.2 (``gamma = 10``): 0 at the start of training (``p = 0``),
    rising to about ``high`` at the end (``p = 1``), which keeps the early, noisy domain
    classifier from disturbing the features.

    Args:
        progress: ``p`` in [0, 1], the fraction of training done.
        gamma: steepness.
        high: the limit for ``p -> infinity``.
    """
    if not 0.0 <= progress <= 1.0:  # also rejects NaN
        raise ValueError(f"progress: expected a number in [0, 1], received {progress!r}")
    return high * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


class DomainDiscriminator(nn.Sequential):
    """MLP ``in_features -> hidden -> ... -> 1`` (a domain logit), ReLU and dropout between.

    Ganin et al. 2016, Sec. 5.2.2: two hidden layers of 1024 units with dropout 0.5 (the
    "x -> 1024 -> 1024 -> 2" domain classifier; one logit with a sigmoid here). ``hidden``
    scales it down for small backbones.

    Shapes:
        (N, in_features) -> (N, 1).
    """

    def __init__(
        self, in_features: int, hidden: int = 1024, num_hidden: int = 2, dropout: float = 0.5
    ) -> None:
        check_int("in_features", in_features, 1)
        check_int("hidden", hidden, 1)
        check_int("num_hidden", num_hidden, 0)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a number in [0, 1), received {dropout!r}")
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(num_hidden):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        super().__init__(*layers)


def domain_adversarial_loss(
    d_source: torch.Tensor,
    d_target: torch.Tensor,
    w_source: torch.Tensor | None = None,
    w_target: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary cross-entropy of a domain classifier (source = 1, target = 0).

    The mean over each domain, then the average of the two domains (so unequal batch sizes
    weigh both domains equally). With weights, each domain's mean is weighted:
    ``sum(w_i * bce_i) / sum(w_i)`` (CDAN+E).

    Args:
        d_source: (N_s, 1) or (N_s,) domain logits of source samples.
        d_target: (N_t, 1) or (N_t,) domain logits of target samples.
        w_source: optional (N_s,) non-negative weights.
        w_target: optional (N_t,) non-negative weights.
    """
    ls = F.binary_cross_entropy_with_logits(
        d_source.reshape(-1), torch.ones_like(d_source.reshape(-1)), reduction="none"
    )
    lt = F.binary_cross_entropy_with_logits(
        d_target.reshape(-1), torch.zeros_like(d_target.reshape(-1)), reduction="none"
    )
    if w_source is None or w_target is None:
        return 0.5 * (ls.mean() + lt.mean())
    return 0.5 * ((w_source * ls).sum() / w_source.sum() + (w_target * lt).sum() / w_target.sum())


def domain_accuracy(d_source: torch.Tensor, d_target: torch.Tensor) -> torch.Tensor:
    """Fraction of samples the domain classifier puts on the right side (logit 0 = 0.5)."""
    right = torch.cat([d_source.reshape(-1) > 0, d_target.reshape(-1) <= 0])
    return right.float().mean()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of ``softmax(logits)`` per row: (N, C) -> (N,)."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)


# -- batch checks ----------------------------------------------------------------------------
def _as_views(name: str, views: Any, need: int) -> list[torch.Tensor]:
    if isinstance(views, torch.Tensor):
        views = [views]
    if not isinstance(views, (list, tuple)) or len(views) < need:
        got = len(views) if isinstance(views, (list, tuple)) else type(views).__name__
        raise ValueError(
            f"{name}: expected a list of {need} tensor(s) (N, C, H, W), received {got}"
        )
    views = list(views)[:need]
    for i, v in enumerate(views):
        if not isinstance(v, torch.Tensor) or v.dim() != 4:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"{name}[{i}]: expected a tensor (N, C, H, W), received {shape}")
        if v.shape[0] == 0:
            raise ValueError(f"{name}[{i}]: expected at least one image, received an empty batch")
        if v.shape[0] != views[0].shape[0]:
            raise ValueError(
                f"{name}[{i}]: expected {views[0].shape[0]} images like view 0 (views are of "
                f"the same images), received {v.shape[0]}"
            )
    return views


# -- the base class --------------------------------------------------------------------------
@dataclass
class AdaptationOutputs:
    """What the shared forward pass computed, handed to :meth:`AdaptationObjective.adapt`.

    Attributes:
        source_features: (N_s, D) backbone features of the source images.
        source_logits: (N_s, num_classes).
        source_labels: (N_s,) int64.
        target_features: one (N_t, D) tensor per target view (empty if the objective does not
            look at the target).
        target_logits: one (N_t, num_classes) tensor per target view.
    """

    source_features: torch.Tensor
    source_logits: torch.Tensor
    source_labels: torch.Tensor
    target_features: list[torch.Tensor]
    target_logits: list[torch.Tensor]


class AdaptationObjective(Objective):
    """Base of the adaptation objectives: labelled source + unlabelled target (module docstring).

    Subclasses implement :meth:`adapt`, which returns the weighted adaptation term and the
    parts to log; the base class checks the batch, runs the backbone and the classifier, and
    adds the source cross-entropy.

    Args:
        backbone: a pyxfer backbone (``forward(x) -> (N, num_features)``).
        num_classes: classes of the source (and target) label space.

    Attributes:
        augmentation: preset of the (single) source view.
        target_augmentation: preset of each target view; ``num_views`` of them.
        uses_target: False for objectives that never look at the target (source only).
        classifier: ``Linear(num_features, num_classes)``.
        progress: fraction of training done, set by :meth:`on_step_end`.
    """

    consumes: ClassVar[str] = "source_target"
    augmentation: ClassVar[str] = "fixmatch_weak"
    target_augmentation: ClassVar[tuple[str, ...]] = ("fixmatch_weak",)
    num_views: ClassVar[int] = 1
    uses_target: ClassVar[bool] = True

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__(backbone)
        if len(self.target_augmentation) != self.num_views:
            raise TypeError(
                f"{type(self).__name__}: target_augmentation has {len(self.target_augmentation)} "
                f"presets, expected num_views={self.num_views}"
            )
        check_int("num_classes", num_classes, 2)
        num_features = getattr(backbone, "num_features", None)
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(
                f"backbone: expected a backbone with a positive integer num_features, received "
                f"{type(backbone).__name__} with num_features={num_features!r}"
            )
        self.num_classes = num_classes
        self.num_features = num_features
        self.classifier = nn.Linear(num_features, num_classes)
        self.progress = 0.0

    # -- evaluation --------------------------------------------------------------------------
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features: (N, C, H, W) -> (N, num_features)."""
        return self.backbone(images)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits for evaluation: (N, C, H, W) -> (N, num_classes)."""
        return self.classifier(self.backbone(images))

    def on_step_end(self, step: int, max_steps: int) -> None:
        """Record the progress ``step / max_steps`` (clipped to 1) for the schedules."""
        check_int("max_steps", max_steps, 1)
        check_int("step", step, 0)
        self.progress = min(1.0, step / max_steps)

    def schedule_state(self) -> dict[str, Any]:
        """The progress (the schedules of the next forward read it)."""
        return {"progress": self.progress}

    def load_schedule_state(self, state: dict[str, Any]) -> None:
        self.progress = float(state.get("progress", 0.0))

    # -- training ----------------------------------------------------------------------------
    def forward(
        self, source_views: Any, source_labels: torch.Tensor, target_views: Any
    ) -> dict[str, torch.Tensor]:
        """One training step's losses (see the module docstring for the batch protocol).

        Args:
            source_views: [(N_s, C, H, W)] source images (or the bare tensor).
            source_labels: (N_s,) class indices.
            target_views: ``num_views`` tensors (N_t, C, H, W) of the same target images.

        Returns:
            ``loss``, ``loss_cls``, ``acc_source`` and the parts of :meth:`adapt`.
        """
        (xs,) = _as_views("source_views", source_views, 1)
        ys = self._check_labels(source_labels, xs.shape[0])
        xts = _as_views("target_views", target_views, self.num_views) if self.uses_target else []
        inputs = [xs, *xts]
        if all(x.shape[1:] == xs.shape[1:] for x in inputs):
            feats = self.backbone(torch.cat(inputs)).split([x.shape[0] for x in inputs])
        else:
            feats = [self.backbone(x) for x in inputs]
        logits = [self.classifier(f) for f in feats]
        out = AdaptationOutputs(feats[0], logits[0], ys, list(feats[1:]), logits[1:])
        loss_cls = F.cross_entropy(out.source_logits, ys)
        adapt_loss, parts = self.adapt(out)
        acc = (out.source_logits.detach().argmax(1) == ys).float().mean()
        logs = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in parts.items()}
        return {
            "loss": loss_cls + adapt_loss,
            "loss_cls": loss_cls.detach(),
            "acc_source": acc,
            **logs,
        }

    def adapt(self, out: AdaptationOutputs) -> tuple[torch.Tensor, dict[str, Any]]:
        """The weighted adaptation term (added to ``loss_cls``) and the parts to log."""
        raise NotImplementedError

    def _check_labels(self, labels: Any, n: int) -> torch.Tensor:
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != n:
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"source_labels: expected a tensor of shape ({n},), received {got}")
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise ValueError(
                f"source_labels: expected integer class indices, received dtype {labels.dtype}"
            )
        if labels.device.type == "cpu" and (
            int(labels.min()) < 0 or int(labels.max()) >= self.num_classes
        ):
            raise ValueError(
                f"source_labels: expected values in [0, {self.num_classes}), received "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
        return labels.long()


def adaptation_objective_names() -> list[str]:
    """Registered objectives that consume labelled source + unlabelled target, sorted."""
    return list_objectives(consumes="source_target")
