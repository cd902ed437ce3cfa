"""The torch-free runtime: run an exported bundle with onnxruntime, numpy and Pillow.

The ``onnx`` package is used only to list the external-data files a model refers to (so that
every byte onnxruntime sees is one the bundle lists and hashes).

Importing this package never imports torch (deployment machines do not have it).

Examples:
    >>> from pyxfer.runtime import Predictor
    >>> p = Predictor("bundle/", threads=2)                                 # doctest: +SKIP
    >>> p.predict("cat.jpg", top_k=3)                                       # doctest: +SKIP
    Prediction(labels=['cat', 'dog', 'deer'], scores=[0.91, 0.05, 0.01], indices=[3, 5, 4])
"""

from __future__ import annotations

from pyxfer.runtime.bundle import BundleError
from pyxfer.runtime.predictor import Int8VerificationError, Prediction, Predictor

__all__ = ["BundleError", "Int8VerificationError", "Prediction", "Predictor"]
