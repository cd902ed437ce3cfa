"""Zero-shot learning: recognise classes that had no training images, from class descriptions.

All methods are scikit-learn style and work on image *features* (N, D) plus an explicit class
table (C, A) whose rows are listed by ``class_ids``; ``predict`` takes any class table, so a
deployed model is extended to a new class by adding its description row (no retraining).

- :class:`ESZSL` - closed-form linear compatibility (Romera-Paredes & Torr 2015).
- :class:`DAP` - per-attribute classifiers combined through the class table (Lampert et al.).
- :class:`BilinearZSL` - bilinear compatibility with an SJE/ALE ranking loss (Akata et al.),
  optionally fine-tuning a backbone.
- :class:`AttributeBackbone` - fine-tune a backbone on seen classes with attribute supervision,
  so that its features encode the descriptions (end-to-end DAP / ALE recipe).
- :class:`PrototypeZSL` - nearest class prototype by cosine, for class-name/sentence encoders.
- :class:`CalibratedStacking` - generalised zero-shot prediction (Chao et al. 2016).
- :mod:`pyxfer.zeroshot.metrics` - per-class mean accuracy, ZSL accuracy, GZSL s/u/H, AUSUC.
- :mod:`pyxfer.zeroshot.descriptions` - class tables from CSV / NPY / ``att_splits.mat``.
- :mod:`pyxfer.zeroshot.layout` - a backbone trained on the seen classes for a run, and pooled
  or spatial (grid) features chosen on validation classes (``pyxfer zeroshot fit``).

Examples:
    >>> import numpy as np
    >>> from pyxfer.zeroshot import ESZSL, digit_descriptions
    >>> table = digit_descriptions()  # (10, 20) attributes of the ten digits, graded 0/0.5/1
    >>> rng = np.random.default_rng(0)
    >>> A = rng.normal(size=(20, 32))
    >>> y = np.repeat(np.arange(7), 30)  # images of digits 0..6 only
    >>> X = table.matrix[y] @ A + 0.1 * rng.normal(size=(210, 32))
    >>> model = ESZSL(gamma=1.0, lam=1.0).fit(X, y, table)
    >>> unseen = table.select([7, 8, 9])
    >>> model.predict(unseen.matrix @ A, unseen).tolist()
    [7, 8, 9]
"""

from __future__ import annotations

from pyxfer.zeroshot._base import ZeroShotClassifier, check_split
from pyxfer.zeroshot.bilinear import BilinearZSL
from pyxfer.zeroshot.calibration import CalibratedStacking
from pyxfer.zeroshot.dap import DAP
from pyxfer.zeroshot.descriptions import (
    AttSplits,
    ClassDescriptions,
    load_att_splits,
    load_csv,
    load_descriptions,
    load_npy,
)
from pyxfer.zeroshot.digits_attributes import digit_descriptions
from pyxfer.zeroshot.eszsl import ESZSL
from pyxfer.zeroshot.finetune import AttributeBackbone
from pyxfer.zeroshot.metrics import (
    ausuc,
    calibrated_stacking,
    gzsl_accuracy,
    harmonic_mean,
    mean_per_class_accuracy,
    per_class_accuracy,
    seen_unseen_curve,
    zsl_accuracy,
)
from pyxfer.zeroshot.prototype import PrototypeZSL, cosine_topk

__all__ = [
    "DAP",
    "ESZSL",
    "AttSplits",
    "AttributeBackbone",
    "BilinearZSL",
    "CalibratedStacking",
    "ClassDescriptions",
    "PrototypeZSL",
    "ZeroShotClassifier",
    "ausuc",
    "calibrated_stacking",
    "check_split",
    "cosine_topk",
    "digit_descriptions",
    "gzsl_accuracy",
    "harmonic_mean",
    "load_att_splits",
    "load_csv",
    "load_descriptions",
    "load_npy",
    "mean_per_class_accuracy",
    "per_class_accuracy",
    "seen_unseen_curve",
    "zsl_accuracy",
]
