"""Evaluation protocols for frozen representations.

- :func:`evaluate`: all of the below on one model and data set, each number with its protocol
  (what ``pyxfer eval`` runs);
- :func:`extract_features`: features of a data set (fused preprocessing, cached on disk);
- :func:`knn_accuracy`: weighted kNN (k=200, T=0.07) top-1, top-5, per-class mean;
- :func:`linear_probe`: logistic regression with ``C`` chosen on a train-only validation split;
- :func:`few_shot_probe`: k images per class (1, 5, 10), mean ± std over seeded draws;
- :func:`plot_confusion`, :func:`plot_feature_map`: report figures (PNG; defined in
  :mod:`pyxfer.report.plots` with every other figure);
- :class:`Result`: a number with its protocol, :func:`save_results`, :func:`format_table`.

The command line is ``pyxfer eval``, which calls :func:`evaluate`.

Examples:
    >>> from pyxfer import create_backbone, load_dataset
    >>> from pyxfer.data import stratified_split
    >>> store = load_dataset("digits")
    >>> feats = extract_features(create_backbone("lenet", img_size=8), store, progress=False)
    >>> tr, te = stratified_split(store.labels, (0.8, 0.2), seed=0)
    >>> knn = knn_accuracy(feats[tr], store.labels[tr], feats[te], store.labels[te])
"""

from __future__ import annotations

from pyxfer.evaluate.features import checkpoint_fingerprint, dataset_fingerprint, extract_features
from pyxfer.evaluate.fewshot import FewShotResult, few_shot_probe, nearest_centroid_predict
from pyxfer.evaluate.knn import KNNResult, knn_accuracy
from pyxfer.evaluate.linear import (
    DEFAULT_CS,
    LinearClassifier,
    LinearProbeResult,
    RegularizationChoice,
    fit_linear,
    linear_probe,
    select_regularization,
)
from pyxfer.evaluate.metrics import (
    confusion_matrix,
    mean_per_class_accuracy,
    per_class_accuracy,
    topk_accuracy,
)
from pyxfer.evaluate.pipeline import PROTOCOLS, Evaluation, evaluate
from pyxfer.evaluate.results import Result, format_table, load_results, save_results
from pyxfer.report.plots import plot_confusion, plot_feature_map, project_2d

__all__ = [
    "DEFAULT_CS",
    "PROTOCOLS",
    "Evaluation",
    "FewShotResult",
    "KNNResult",
    "LinearClassifier",
    "LinearProbeResult",
    "RegularizationChoice",
    "Result",
    "checkpoint_fingerprint",
    "confusion_matrix",
    "dataset_fingerprint",
    "evaluate",
    "extract_features",
    "few_shot_probe",
    "fit_linear",
    "format_table",
    "knn_accuracy",
    "linear_probe",
    "load_results",
    "mean_per_class_accuracy",
    "nearest_centroid_predict",
    "per_class_accuracy",
    "plot_confusion",
    "plot_feature_map",
    "project_2d",
    "save_results",
    "select_regularization",
    "topk_accuracy",
]
