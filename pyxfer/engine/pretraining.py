"""``pretrain``: build a backbone, an objective and the data from a :class:`TrainConfig`, train."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from pyxfer.engine.config import TrainConfig
from pyxfer.engine.trainer import Callback, Trainer, TrainResult

log = logging.getLogger("pyxfer.engine")


def knn_split(store: Any, config: TrainConfig) -> tuple[Any, tuple[Any, Any] | None]:
    """(training data, (kNN bank, kNN queries) or None) from ``knn_holdout`` / ``knn_data``.

    - ``knn_holdout=f``: a stratified, seeded fraction ``f`` of the data is held out (not
      trained on) as the queries; the bank is the labelled rest of the training data.
    - ``knn_data=SPEC``: the queries are that labelled data set; the bank is the labelled
      training data, or, when the training data has no labels, a stratified 80 % of the
      queries (the other 20 % stay queries).
    """
    from pyxfer.data import load_dataset
    from pyxfer.data.splits import stratified_split

    if config.knn_holdout is not None:
        if not store.is_labelled:
            raise ValueError("knn_holdout: the training data has no labels to evaluate with")
        train_idx, held_idx = stratified_split(
            store.labels, (1 - config.knn_holdout, config.knn_holdout), seed=config.seed
        )
        train = store.subset(train_idx)
        return train, (train, store.subset(held_idx))
    if config.knn_data is not None:
        queries = load_dataset(config.knn_data)
        if not queries.is_labelled:
            raise ValueError(f"knn_data: {config.knn_data!r} has no labels")
        if store.is_labelled:
            return store, (store, queries)
        lab = np.flatnonzero(queries.labels >= 0)
        bank_idx, query_idx = stratified_split(queries.labels[lab], (0.8, 0.2), seed=config.seed)
        return store, (queries.subset(lab[bank_idx]), queries.subset(lab[query_idx]))
    return store, None


def resume_config(run: str | Path, **overrides: Any) -> TrainConfig:
    """The configuration recorded in ``RUN/config.json`` with ``overrides``, set to resume."""
    path = Path(run) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"resume: {str(run)!r} has no config.json (not a run directory)")
    d = json.loads(path.read_text())
    d.pop("run", None)
    if "backbone_opts" in d and "backbone_opts" not in overrides:
        # a run directory is data: its options never name a file to load (weights come from
        # the command line only)
        from pyxfer.backbone import check_stored_kwargs

        d["backbone_opts"] = check_stored_kwargs(d.get("backbone"), d["backbone_opts"], str(path))
    d.update(out=str(run))  # the run continues where it lies now (it may have been moved)
    d.update(overwrite=False, allow_layout_change=False)  # choices of a start, not the run's
    d.update(overwrite=False, allow_layout_change=False)  # choices of a start, not the run's
    d.update(overrides)
    d.update(resume=str(run))
    return TrainConfig.from_dict(d)


def pretrain(
    data: Any = None,
    *,
    config: TrainConfig | None = None,
    callbacks: tuple[Callback, ...] = (),
    **settings: Any,
) -> TrainResult:
    """Self-supervised pretraining of a registered backbone with a registered objective.

    Args:
        data: an ``ImageStore``, a data-set spec (default ``config.data``) or a torch Dataset.
        config: base settings; ``settings`` (any :class:`TrainConfig` field) override them.
        callbacks: see :class:`~pyxfer.engine.Trainer`.

    Returns:
        the :class:`~pyxfer.engine.TrainResult`; with ``out`` set, the run directory holds the
        final model in ``model/``.

    Examples:
        >>> result = pretrain("digits", backbone="lenet", backbone_opts={"img_size": 8},
        ...                   objective="simclr", max_steps=100, out="runs/ssl")  # doctest: +SKIP
    """
    import torch

    from pyxfer.backbone import create_backbone
    from pyxfer.data import load_dataset
    from pyxfer.objectives.base import create_objective, objective_consumes

    cfg = (config or TrainConfig()).replace(**settings) if settings else (config or TrainConfig())
    if isinstance(data, str):
        cfg = cfg.replace(data=data)
    if data is None or isinstance(data, str):
        if cfg.data is None:
            raise ValueError("data: expected a data-set spec or an ImageStore, received none")
        data = load_dataset(cfg.data)
    elif cfg.data is None:
        cfg = cfg.replace(data=str(getattr(data, "source", "") or type(data).__name__))
    if not cfg.backbone or not cfg.objective:
        raise ValueError(
            f"backbone, objective: expected registered names, received {cfg.backbone!r}, "
            f"{cfg.objective!r}"
        )
    if objective_consumes(cfg.objective) == "source_target":
        raise ValueError(
            f"objective: expected an objective that trains on unlabelled views, received the "
            f"adaptation objective {cfg.objective!r} (labelled source + unlabelled target); "
            "train it with pyxfer.adapt (`pyxfer adapt`)"
        )
    torch.manual_seed(cfg.seed)
    backbone = create_backbone(cfg.backbone, **cfg.backbone_opts)
    objective = create_objective(cfg.objective, backbone, **cfg.objective_opts)
    knn = None
    if hasattr(data, "subset") and hasattr(data, "labels"):
        data, knn = knn_split(data, cfg)
    elif cfg.knn_data or cfg.knn_holdout:
        raise ValueError("knn_data, knn_holdout: need the data as an ImageStore")
    if cfg.knn_every and knn is None:
        raise ValueError(
            "knn_every: needs labelled images to evaluate on (knn_data or knn_holdout)"
        )
    return Trainer(objective, data, cfg, knn=knn, callbacks=callbacks).fit()
