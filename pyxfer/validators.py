"""Moved to :mod:`pyxfer.transfer.selection` (label-free model selection); this module
re-exports its names so that old imports keep working for one release."""

from __future__ import annotations

from pyxfer.transfer.selection import (
    VALIDATORS,
    SoftNeighborhoodDensity,
    SourceAccuracy,
    TargetAccuracy,
    TargetEntropy,
    ValidationData,
    ValidationResult,
    Validator,
    accuracy,
    create_validator,
    format_results,
    list_validators,
    mean_entropy,
    run_validators,
    soft_neighborhood_density,
)

__all__ = [
    "VALIDATORS",
    "SoftNeighborhoodDensity",
    "SourceAccuracy",
    "TargetAccuracy",
    "TargetEntropy",
    "ValidationData",
    "ValidationResult",
    "Validator",
    "accuracy",
    "create_validator",
    "format_results",
    "list_validators",
    "mean_entropy",
    "run_validators",
    "soft_neighborhood_density",
]
