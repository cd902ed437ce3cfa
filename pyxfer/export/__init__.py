"""Export a trained model to a self-verified ONNX bundle (see :mod:`pyxfer.runtime.bundle`).

Examples:
    >>> from pyxfer.export import to_onnx
    >>> to_onnx("runs/ft", "bundle/", input="uint8-nhwc", quantize="int8",
    ...         calibration=train_images)                                   # doctest: +SKIP

The options can also travel as one :class:`ExportSpec` (``to_onnx(model, out, spec)``).
"""

from __future__ import annotations

from pyxfer.export._trace import ExportError
from pyxfer.export.core import ExportSpec, to_onnx
from pyxfer.export.verify import VerificationError

__all__ = ["ExportError", "ExportSpec", "VerificationError", "to_onnx"]
