"""Label-free model selection for domain adaptation (and the labelled oracle beside it).

In unsupervised adaptation the target has no labels, so checkpoints and hyper-parameters must
be chosen by a criterion that does not use them. The validators here:

==================  =====================================  ======  ===================
name                what                                   better  uses target labels
==================  =====================================  ======  ===================
source_accuracy     accuracy on held-out *source* images   higher  no
target_entropy      mean prediction entropy on the target  lower   no
snd                 soft neighbourhood density (Saito      higher  no
                    et al. 2021) of the target predictions
target_accuracy     accuracy on the labelled target        higher  **yes** (marked ``*``)
==================  =====================================  ======  ===================

``target_accuracy`` is the oracle: a number selected with it is not an unsupervised result,
and :func:`format_results` marks it with ``*``.

A validator is called with a model and a :class:`ValidationData`; the model needs
``predict(images) -> logits`` (and ``embed(images) -> features`` for ``snd`` on features),
which every :class:`pyxfer.objectives.adaptation.AdaptationObjective` has. Images are normalised
(N, C, H, W) tensors; the model runs in eval mode without gradients, in batches.

Examples:
    >>> import torch
    >>> from pyxfer.transfer.selection import ValidationData, run_validators
    >>> class Model(torch.nn.Module):
    ...     def predict(self, x):
    ...         return x.flatten(1)[:, :3]
    >>> data = ValidationData(target_images=torch.randn(8, 1, 2, 2))
    >>> sorted(run_validators(Model(), data, ["target_entropy", "snd"]))
    ['snd', 'target_entropy']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn


# -- the scores ------------------------------------------------------------------------------
def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of logits (N, K) against labels (N,)."""
    if logits.dim() != 2 or labels.shape != (logits.shape[0],) or logits.shape[0] == 0:
        raise ValueError(
            f"logits, labels: expected (N, K) and (N,) with N >= 1, received "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    return float((logits.detach().argmax(dim=1) == labels.to(logits.device)).float().mean())


def mean_entropy(logits: torch.Tensor) -> float:
    """Mean Shannon entropy (nats) of ``softmax(logits)`` over the rows of (N, K)."""
    if logits.dim() != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits: expected (N >= 1, K), received {tuple(logits.shape)}")
    logp = F.log_softmax(logits.detach().float(), dim=1)
    return float(-(logp.exp() * logp).sum(dim=1).mean())


def soft_neighborhood_density(x: torch.Tensor, temperature: float = 0.05) -> float:
    """Soft neighbourhood density (Saito et al. 2021, Eq. 1-3) of the rows of ``x`` (N, D).

    Rows are L2-normalised, ``S_ij = x_i . x_j`` for ``j != i`` (the diagonal is set to the
    lowest similarity, -1, so a sample is not its own neighbour), ``P_ij = softmax_j(S_ij /
    temperature)``, and SND is the mean over ``i`` of the entropy ``-sum_j P_ij log P_ij``.
    Dense neighbourhoods (well-clustered samples) spread ``P_i`` over many neighbours and give
    a high SND; higher is better.

    Args:
        x: (N, D) with N >= 2; the paper uses the softmax predictions.
        temperature: the paper's 0.05.
    """
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"x: expected (N >= 2, D), received {tuple(x.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature: expected a positive number, received {temperature!r}")
    z = F.normalize(x.detach().float(), dim=1)  # (N, D)
    sim = z @ z.T  # (N, N)
    sim.fill_diagonal_(-1.0)
    logp = F.log_softmax(sim / temperature, dim=1)  # (N, N)
    return float(-(logp.exp() * logp).sum(dim=1).mean())


# -- data and model plumbing -----------------------------------------------------------------
@dataclass(frozen=True)
class ValidationData:
    """Held-out images for model selection (normalised (N, C, H, W) tensors).

    Attributes:
        source_images: held-out labelled source images (``source_accuracy``).
        source_labels: (N_s,) their labels.
        target_images: target images (``target_entropy``, ``snd``, ``target_accuracy``).
        target_labels: (N_t,) target labels, only for the ``target_accuracy`` oracle.
    """

    source_images: torch.Tensor | None = None
    source_labels: torch.Tensor | None = None
    target_images: torch.Tensor | None = None
    target_labels: torch.Tensor | None = None


@torch.no_grad()
def _batched(
    fn: Callable[[torch.Tensor], torch.Tensor], model: Any, images: torch.Tensor, batch_size: int
) -> torch.Tensor:
    was_training = model.training if isinstance(model, nn.Module) else False
    if isinstance(model, nn.Module):
        model.eval()
        ref = next(model.parameters(), None)
        device = ref.device if ref is not None else images.device
    else:
        device = images.device
    try:
        outs = [
            fn(images[i : i + batch_size].to(device)) for i in range(0, len(images), batch_size)
        ]
    finally:
        if was_training:
            model.train()
    return torch.cat(outs).float()


class SharedPredictions:
    """``model`` seen by several validators at once: each image set is predicted (and embedded)
    once, in eval mode, however many validators read it.

    ``target_entropy`` and ``snd`` both read the target logits; scoring through this wrapper
    halves the target forwards of an evaluation. Use it as a context manager: it puts the model
    in eval mode for the evaluation and restores its mode after.
    """

    def __init__(self, model: Any, batch_size: int = 256) -> None:
        self.model, self.batch_size = model, batch_size
        self._memo: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._was_training = False

    def __enter__(self) -> SharedPredictions:
        if isinstance(self.model, nn.Module):
            self._was_training = self.model.training
            self.model.eval()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._memo.clear()
        if isinstance(self.model, nn.Module) and self._was_training:
            self.model.train()

    def _cached(self, kind: str, images: torch.Tensor) -> torch.Tensor:
        key = (kind, id(images))
        hit = self._memo.get(key)
        if hit is None or hit[0] is not images:
            out = _batched(getattr(self.model, kind), self.model, images, self.batch_size)
            self._memo[key] = hit = (images, out)  # keeps ``images`` alive: ids stay unique
        return hit[1]

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """``model.predict(images)``, computed once per tensor."""
        return self._cached("predict", images)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``model.embed(images)``, computed once per tensor."""
        return self._cached("embed", images)


def _require(name: str, value: torch.Tensor | None, field: str) -> torch.Tensor:
    if value is None or value.shape[0] == 0:
        raise ValueError(f"data.{field}: validator {name!r} needs it, received none")
    return value


class Validator:
    """A model-selection criterion.

    Attributes:
        name: registry name.
        higher_is_better: whether larger values mean a better model.
        uses_target_labels: True for criteria that read target labels (reports mark them).
    """

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    uses_target_labels: ClassVar[bool] = False

    def __init__(self, batch_size: int = 256) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, received {batch_size!r}")
        self.batch_size = batch_size

    def __call__(self, model: Any, data: ValidationData) -> float:  # pragma: no cover
        raise NotImplementedError

    def logits(self, model: Any, images: torch.Tensor) -> torch.Tensor:
        """``model.predict`` over ``images`` in eval mode, batched: (N, K)."""
        if isinstance(model, SharedPredictions):
            return model.predict(images)
        return _batched(model.predict, model, images, self.batch_size)

    def is_better(self, a: float, b: float) -> bool:
        """Whether score ``a`` is strictly better than ``b`` (NaN is never better)."""
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        return a > b if self.higher_is_better else a < b


class SourceAccuracy(Validator):
    """Accuracy on held-out source images (no target labels)."""

    name = "source_accuracy"
    higher_is_better = True

    def __call__(self, model: Any, data: ValidationData) -> float:
        x = _require(self.name, data.source_images, "source_images")
        y = _require(self.name, data.source_labels, "source_labels")
        return accuracy(self.logits(model, x), y)


class TargetEntropy(Validator):
    """Mean entropy of the target predictions (no target labels); lower is better."""

    name = "target_entropy"
    higher_is_better = False

    def __call__(self, model: Any, data: ValidationData) -> float:
        x = _require(self.name, data.target_images, "target_images")
        return mean_entropy(self.logits(model, x))


class SoftNeighborhoodDensity(Validator):
    """Soft neighbourhood density of the target (Saito et al. 2021, ICCV; no target labels).

    Saito, Kim, Teterwak, Sclaroff, Darrell & Saenko, "Tune it the Right Way: Unsupervised
    Validation of Domain Adaptation via Soft Neighborhood Density", ICCV 2021.

    Args:
        temperature: the paper's 0.05.
        on: ``"probs"`` (softmax predictions, as in the paper) or ``"features"``
            (``model.embed``).
        batch_size: images per forward pass.
    """

    name = "snd"
    higher_is_better = True

    def __init__(self, temperature: float = 0.05, on: str = "probs", batch_size: int = 256) -> None:
        super().__init__(batch_size)
        if on not in ("probs", "features"):
            raise ValueError(f"on: expected 'probs' or 'features', received {on!r}")
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not (temperature > 0)
        ):
            raise ValueError(f"temperature: expected a positive number, received {temperature!r}")
        self.temperature = float(temperature)
        self.on = on

    def __call__(self, model: Any, data: ValidationData) -> float:
        x = _require(self.name, data.target_images, "target_images")
        if self.on == "features":
            z = (
                model.embed(x)
                if isinstance(model, SharedPredictions)
                else _batched(model.embed, model, x, self.batch_size)
            )
        else:
            z = F.softmax(self.logits(model, x), dim=1)
        return soft_neighborhood_density(z, self.temperature)


class TargetAccuracy(Validator):
    """Accuracy on labelled target images: the oracle, it **uses target labels**."""

    name = "target_accuracy"
    higher_is_better = True
    uses_target_labels = True

    def __call__(self, model: Any, data: ValidationData) -> float:
        x = _require(self.name, data.target_images, "target_images")
        y = _require(self.name, data.target_labels, "target_labels")
        return accuracy(self.logits(model, x), y)


VALIDATORS: dict[str, type[Validator]] = {
    cls.name: cls
    for cls in (SourceAccuracy, TargetEntropy, SoftNeighborhoodDensity, TargetAccuracy)
}


def list_validators(label_free: bool = False) -> list[str]:
    """Validator names; ``label_free=True`` leaves out those that use target labels."""
    return [n for n, c in VALIDATORS.items() if not (label_free and c.uses_target_labels)]


def create_validator(name: str, **kwargs: Any) -> Validator:
    """The validator called ``name`` (see :data:`VALIDATORS`)."""
    if name not in VALIDATORS:
        raise ValueError(f"name: expected one of {sorted(VALIDATORS)}, received {name!r}")
    return VALIDATORS[name](**kwargs)


@dataclass(frozen=True)
class ValidationResult:
    """One validator's score and how to read it."""

    name: str
    value: float
    higher_is_better: bool
    uses_target_labels: bool

    @property
    def label(self) -> str:
        """``name``, with ``*`` when the score uses target labels."""
        return self.name + ("*" if self.uses_target_labels else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for ``metrics.jsonl`` and reports)."""
        return {
            "name": self.name,
            "value": self.value,
            "higher_is_better": self.higher_is_better,
            "uses_target_labels": self.uses_target_labels,
        }


def run_validators(
    model: Any, data: ValidationData, names: Sequence[str] | None = None, batch_size: int = 256
) -> dict[str, ValidationResult]:
    """Score ``model`` with each validator in ``names``.

    ``None`` runs every validator whose data is present (``target_accuracy`` only when
    ``data.target_labels`` is given, ``source_accuracy`` only with source images).
    """
    if names is None:
        names = [
            n
            for n in VALIDATORS
            if (n != "source_accuracy" or data.source_images is not None)
            and (n != "target_accuracy" or data.target_labels is not None)
            and (n == "source_accuracy" or data.target_images is not None)
        ]
    results: dict[str, ValidationResult] = {}
    with SharedPredictions(model, batch_size) as shared:
        for n in names:
            v = create_validator(n, batch_size=batch_size)
            results[n] = ValidationResult(
                n, v(shared, data), v.higher_is_better, v.uses_target_labels
            )
    return results


def format_results(results: dict[str, ValidationResult] | Sequence[ValidationResult]) -> str:
    """A small text table; scores that used target labels are marked ``*`` with a footnote."""
    rows = list(results.values()) if isinstance(results, dict) else list(results)
    width = max([len(r.label) for r in rows] + [9])
    lines = [f"{'validator':<{width}}  {'value':>9}  better"]
    for r in rows:
        better = "higher" if r.higher_is_better else "lower"
        lines.append(f"{r.label:<{width}}  {r.value:>9.4f}  {better}")
    if any(r.uses_target_labels for r in rows):
        lines.append("* uses target labels (oracle, not an unsupervised result)")
    return "\n".join(lines)
