"""Moved to :mod:`pyxfer.objectives.heads`; this module re-exports its names so that old
imports keep working for one release."""

from __future__ import annotations

from pyxfer.objectives.heads import (
    ConvDecoder,
    PredictionHead,
    ProjectionHead,
    check_image_shape,
    image_spec,
)

__all__ = ["ConvDecoder", "PredictionHead", "ProjectionHead", "check_image_shape", "image_spec"]
