"""Moved to :mod:`pyxfer.objectives.adaptation` (the adaptation contract and the parts the
adaptation methods share; ``check_int`` and ``check_number`` to :mod:`pyxfer._checks`); this
module re-exports their names so that old imports keep working for one release."""

from __future__ import annotations

from pyxfer._checks import check_int, check_number
from pyxfer.objectives.adaptation import (
    AdaptationObjective,
    AdaptationOutputs,
    DomainDiscriminator,
    GradientReversal,
    GradientReversalFunction,
    adaptation_objective_names,
    dann_coefficient,
    domain_accuracy,
    domain_adversarial_loss,
    entropy,
    grad_reverse,
)

__all__ = [
    "AdaptationObjective",
    "AdaptationOutputs",
    "DomainDiscriminator",
    "GradientReversal",
    "GradientReversalFunction",
    "adaptation_objective_names",
    "check_int",
    "check_number",
    "dann_coefficient",
    "domain_accuracy",
    "domain_adversarial_loss",
    "entropy",
    "grad_reverse",
]
