"""``adapt``: unsupervised domain adaptation from a labelled source to an unlabelled target.

The run trains a registered adaptation objective (``consumes == "source_target"``: DANN,
CDAN, FixMatch, ...; see :mod:`pyxfer.objectives.adaptation`) through the engine with a loader pair:
the labelled source (the objective's ``augmentation``) and the unlabelled target (one view
per preset of ``target_augmentation``). Both domains are first brought to the backbone's
input: channels converted (grey <-> RGB) and images resized to its input size (MNIST 28 px
and scikit-learn digits 8 px both become 28 px).

Model selection uses no target labels: every ``eval_every`` steps the label-free validators
of :mod:`pyxfer.transfer.selection` (``source_accuracy`` on a held-out source split,
``target_entropy`` and ``snd`` on unlabelled target training images) score the model, and
the best checkpoint of each is kept. At the end each kept checkpoint (and the last step) is
evaluated once on the labelled target test split; the validators' scores are reported beside
every result. With ``oracle=True`` the checkpoint chosen by target test accuracy is reported
too, marked as using target labels (``*``): it is an upper bound, not an unsupervised result.

The target's labels are never given to the objective: the target training images are handed
to the engine without labels.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pyxfer.data.store import ImageStore
from pyxfer.engine.clock import Cadence
from pyxfer.transfer.common import (
    RunWriter,
    Source,
    classification_metrics,
    conform,
    load_source,
)

if TYPE_CHECKING:
    from pyxfer.backbone import Backbone
    from pyxfer.objectives.adaptation import AdaptationObjective

log = logging.getLogger("pyxfer.transfer")

#: the label-free validators scored at every evaluation
LABEL_FREE = ("source_accuracy", "target_entropy", "snd")
#: most unlabelled target images used by the validators
MAX_VALIDATION_TARGET = 2000


@dataclass
class Selection:
    """One selected checkpoint and what it scored."""

    selected_by: str
    step: int
    scores: dict[str, float]
    uses_target_labels: bool = False
    target_top1: float = float("nan")
    target_per_class_mean: float = float("nan")
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)


@dataclass
class AdaptResult:
    """What :func:`adapt` returns.

    Attributes:
        run_dir, model_dir: the run and the classifier of the primary selection.
        selections: by criterion (the validators, ``"last"``, ``"target_accuracy*"`` for
            the oracle), the selected step, its scores and target test accuracy.
        select: the criterion whose checkpoint is in ``model/``.
        history: the validators' scores at every evaluation (``step`` included).
        results: the :class:`pyxfer.evaluate.results.Result` list of results.json.
    """

    run_dir: Path | None
    model_dir: Path | None
    selections: dict[str, Selection]
    select: str
    history: list[dict[str, float]]
    results: list[Any]
    objective: Any = None


def _tensors(store: ImageStore, spec: Any, threads: int = 0) -> torch.Tensor:
    """Eval preprocessing of every image: (N, C, S, S) float32 (normalised)."""
    from pyxfer.ops import preprocess

    if len(store) == 0:
        return torch.zeros(0, spec.channels, spec.size, spec.size)
    x = preprocess(
        store.batch(np.arange(len(store))),
        spec.size,
        spec.size,
        list(spec.mean),
        list(spec.std),
        threads=threads,
    )
    return torch.from_numpy(x)


def _unlabelled(store: ImageStore) -> ImageStore:
    return ImageStore(
        store.images,
        np.full(len(store), -1, np.int64),
        store.class_names,
        name=store.name,
        source=store.source,
    )


@torch.no_grad()
def _predict(objective: AdaptationObjective, x: torch.Tensor, batch: int = 512) -> tuple[Any, Any]:
    """(features (N, D), logits (N, K)) numpy of ``objective`` in eval mode."""
    was = objective.training
    objective.eval()
    dev = next(objective.parameters()).device
    feats, logits = [], []
    try:
        for i in range(0, len(x), batch):
            f = objective.embed(x[i : i + batch].to(dev))
            feats.append(f.float().cpu())
            logits.append(objective.classifier(f).float().cpu())
    finally:
        objective.train(was)
    return torch.cat(feats).numpy(), torch.cat(logits).numpy()


def adapt(
    source_data: str | ImageStore,
    target_data: str | ImageStore,
    *,
    objective: str = "dann",
    objective_opts: dict[str, Any] | None = None,
    backbone: str | None = "lenet",
    backbone_opts: dict[str, Any] | None = None,
    weights: str | os.PathLike[str] | None = None,
    from_run: str | os.PathLike[str] | None = None,
    target_test_data: str | ImageStore | None = None,
    target_test_fraction: float = 0.5,
    source_val_fraction: float = 0.1,
    validators: tuple[str, ...] = LABEL_FREE,
    select: str = "last",
    oracle: bool = True,
    eval_every: int | None = None,
    out: str | os.PathLike[str] | None = None,
    seed: int = 0,
    **settings: Any,
) -> AdaptResult:
    """Adapt a classifier from labelled ``source_data`` to unlabelled ``target_data``.

    Args:
        source_data: labelled source images (spec or store).
        target_data: target images; their labels (if any) are used only for the test split.
        objective: a registered adaptation objective (``dann``, ``cdan``, ``fixmatch``...).
        objective_opts: its options (``num_classes`` is set from the data).
        backbone, backbone_opts: the registered backbone (random init unless ``weights`` or
            ``from_run``).
        weights: a weight file for ``backbone``.
        from_run: a pyxfer run or model directory to start from.
        target_test_data: labelled target test images; else ``target_test_fraction`` of the
            labelled target images (stratified) is held out and not trained on (0 with
            unlabelled targets: no test, the validators only).
        source_val_fraction: held-out source share for the ``source_accuracy`` validator.
        validators: the label-free validators to score (a subset of :data:`LABEL_FREE`).
        select: whose checkpoint is saved in ``model/``: ``"last"`` (default) for the last
            step's, or a validator's best (see docs/transfer.md on choosing it).
        oracle: also report the checkpoint chosen by target test accuracy (marked ``*``).
        eval_every: steps between validations (default: about 10 per run).
        out: run directory.
        seed: seed of the splits, the initialisation, the order and augmentation.
        **settings: :class:`pyxfer.engine.TrainConfig` fields (``max_steps``, ``batch_size``...).

    Returns:
        an :class:`AdaptResult`.

    Examples:
        >>> r = adapt("idx:mnist-test", "digits", objective="dann", backbone="lenet",
        ...           max_steps=500, out="runs/dann")  # doctest: +SKIP
    """
    from pyxfer.engine import Trainer

    _check_options(validators, select, target_test_fraction, source_val_fraction)
    domains = _load_domains(source_data, target_data, target_test_data)
    src = _load_backbone(from_run, weights, backbone, backbone_opts, seed)
    model = src.backbone
    spec = model.input_spec
    data = _split_domains(
        domains, spec, target_test_fraction, source_val_fraction, target_test_data, seed
    )
    obj = _build_objective(objective, model, len(domains.classes), objective_opts, seed)
    threads = int(settings.get("threads", 0))
    tracker = _Tracker(
        obj,
        _validation_data(data, spec, seed, threads),
        validators,
        Cadence(eval_every),
        _tensors(data.test, spec, threads) if data.test is not None else None,
        data.test.labels if data.test is not None and oracle else None,
    )
    cfg = _train_config(source_data, data, src, objective, objective_opts, seed, out, settings)
    trainer = Trainer(obj, data.source_train, cfg, target=data.target_train, callbacks=(tracker,))
    result = trainer.fit()
    final_state = copy.deepcopy(obj.state_dict())
    run = Path(out) if out is not None else None
    writer = RunWriter(run, "adapt", src, {"objective": objective})
    try:
        selections = tracker.selections(result.step)
        outputs = _evaluate_selections(obj, selections, tracker.test_x, data, domains.classes)
        primary = selections[select]
        obj.load_state_dict(primary.state if primary.state is not None else final_state)
        protocol = _protocol(objective, data, src.description, seed, spec.size)
        results = _results(selections, protocol)
        adapt_doc = {
            "objective": objective,
            "source_data": source_data if isinstance(source_data, str) else None,
            "target_data": target_data if isinstance(target_data, str) else None,
            "target_test_data": target_test_data if isinstance(target_test_data, str) else None,
            "target_test_fraction": target_test_fraction if target_test_data is None else None,
            "source_val_fraction": source_val_fraction,
            "validators": list(validators),
            "select": select,
            "eval_every": eval_every if eval_every else "10 times per run and the last step",
            "images": protocol,
        }
        writer.add_to_config("adapt", adapt_doc)
        model_dir = _save_classifier(
            writer, obj, domains.classes, {"selected_by": select, "selected_step": primary.step}
        )
        if select in outputs and data.test is not None and writer.run is not None:
            feats, logits = outputs[select]
            writer.test_outputs(feats, logits, data.test.labels, domains.classes, seed)
        writer.results(results, {"adapt": adapt_doc})
        for sel in selections.values():
            sel.state = None  # free the snapshots
        return AdaptResult(writer.run, model_dir, selections, select, tracker.history, results, obj)
    except Exception:
        # an error after training never discards what was trained: keep the last weights
        if writer.run is not None:
            obj.load_state_dict(final_state)
            last = {"selected_by": "last", "selected_step": result.step}
            path = _save_classifier(writer, obj, domains.classes, last)
            log.error("adapt failed after training; the last weights are in %s", path)
        raise


# -- the steps of adapt -----------------------------------------------------------------------
@dataclass
class _Domains:
    """The data sets as given: labelled source, target, optional labelled target test set."""

    source: ImageStore
    target: ImageStore
    test: ImageStore | None
    classes: list[str]


@dataclass
class _Splits:
    """The data sets the run uses, conformed to the backbone's input."""

    source_train: ImageStore
    source_val: ImageStore
    target_train: ImageStore  # without labels
    test: ImageStore | None  # labelled target images, never trained on


def _check_options(
    validators: tuple[str, ...],
    select: str,
    target_test_fraction: float,
    source_val_fraction: float,
) -> None:
    """The options that can be checked before anything is loaded."""
    from pyxfer.transfer.selection import VALIDATORS

    bad = [v for v in validators if v not in VALIDATORS or VALIDATORS[v].uses_target_labels]
    if bad or not validators:
        raise ValueError(
            f"validators: expected label-free validators from {list(LABEL_FREE)}, received "
            f"{list(validators)}"
        )
    if select not in validators and select != "last":
        raise ValueError(
            f"select: expected 'last' or one of the validators {list(validators)}, received "
            f"{select!r}"
        )
    if not 0 <= target_test_fraction < 1:
        raise ValueError(
            f"target_test_fraction: expected a fraction in [0, 1), received {target_test_fraction}"
        )
    if not 0 < source_val_fraction < 1:
        raise ValueError(
            f"source_val_fraction: expected a fraction in (0, 1), received {source_val_fraction}"
        )


def _load_domains(
    source_data: str | ImageStore,
    target_data: str | ImageStore,
    target_test_data: str | ImageStore | None,
) -> _Domains:
    """Load the data sets and check that they share the source's classes."""
    from pyxfer.data import load_dataset

    def load(spec: Any, name: str) -> ImageStore:
        store = load_dataset(spec) if isinstance(spec, (str, os.PathLike)) else spec
        if len(store) == 0:
            raise ValueError(f"{name}: {spec!r} has no images")
        return store

    src_store = load(source_data, "source_data")
    if not np.any(src_store.labels >= 0):
        raise ValueError(
            f"source_data: {source_data!r} has no labels (the source must be labelled)"
        )
    tgt_store = load(target_data, "target_data")
    classes = list(src_store.class_names)
    test_store = None
    if target_test_data is not None:
        test_store = load(target_test_data, "target_test_data")
    for name, st in (("target_data", tgt_store), ("target_test_data", test_store)):
        if st is not None and st.is_labelled and list(st.class_names) != classes:
            raise ValueError(
                f"{name}: expected the source's classes {classes}, received {st.class_names}"
            )
    return _Domains(src_store, tgt_store, test_store, classes)


def _load_backbone(
    from_run: Any, weights: Any, backbone: str | None, backbone_opts: Any, seed: int
) -> Source:
    """The starting backbone (a run, a weight file or random init), without a head: the
    objective owns the classifier."""
    src = load_source(
        from_run if from_run is not None else None,
        backbone=backbone if (weights is not None or from_run is None) else None,
        backbone_opts=backbone_opts,
        weights=weights,
        from_scratch=from_run is None and weights is None,
        seed=seed,
        argument="from_run",
    )
    if getattr(src.backbone, "num_classes", 0):
        src.backbone.reset_classifier(0)
    return src


def _split_domains(
    domains: _Domains,
    spec: Any,
    target_test_fraction: float,
    source_val_fraction: float,
    target_test_data: Any,
    seed: int,
) -> _Splits:
    """Conform every set to the backbone's input, hold out the source validation split and
    (without a target test set) the labelled target test split; strip the target's labels."""
    from pyxfer.data.splits import stratified_split

    src_store = conform(domains.source, spec.channels, spec.size)
    tgt_store = conform(domains.target, spec.channels, spec.size)
    test_store = None
    if domains.test is not None:
        test_store = conform(domains.test, spec.channels, spec.size)

    s_lab = np.flatnonzero(src_store.labels >= 0)
    s_tr, s_val = stratified_split(
        src_store.labels[s_lab], (1 - source_val_fraction, source_val_fraction), seed=seed
    )
    src_train, src_val = src_store.subset(s_lab[s_tr]), src_store.subset(s_lab[s_val])
    if test_store is None and target_test_fraction > 0 and tgt_store.is_labelled:
        t_lab = np.flatnonzero(tgt_store.labels >= 0)
        _, t_te = stratified_split(
            tgt_store.labels[t_lab], (1 - target_test_fraction, target_test_fraction), seed=seed
        )
        rest = np.setdiff1d(np.arange(len(tgt_store)), t_lab[t_te])
        test_store = tgt_store.subset(t_lab[t_te])
        tgt_train = _unlabelled(tgt_store.subset(rest))
    else:
        tgt_train = _unlabelled(tgt_store)
    if len(tgt_train) == 0:
        raise ValueError("target_data: no target images left to adapt to after the test split")
    if test_store is not None and not np.any(test_store.labels >= 0):
        raise ValueError(f"target_test_data: {target_test_data!r} has no labels")
    return _Splits(src_train, src_val, tgt_train, test_store)


def _build_objective(
    objective: str,
    model: Backbone,
    num_classes: int,
    objective_opts: dict[str, Any] | None,
    seed: int,
) -> Any:
    """The registered adaptation objective ``objective`` around ``model`` (seeded)."""
    from pyxfer.objectives.base import create_objective, objective_consumes

    consumes = objective_consumes(objective)
    if consumes != "source_target":
        raise ValueError(
            f"objective: expected an adaptation objective (consumes 'source_target'), received "
            f"{objective!r} (consumes {consumes!r})"
        )
    torch.manual_seed(seed)
    return create_objective(objective, model, num_classes=num_classes, **(objective_opts or {}))


def _validation_data(data: _Splits, spec: Any, seed: int, threads: int) -> Any:
    """What the label-free validators score: the held-out source images with their labels and
    at most :data:`MAX_VALIDATION_TARGET` unlabelled target training images."""
    from pyxfer.transfer.selection import ValidationData

    rng = np.random.default_rng(seed)
    val_t = np.arange(len(data.target_train))
    if val_t.size > MAX_VALIDATION_TARGET:
        val_t = np.sort(rng.choice(val_t.size, MAX_VALIDATION_TARGET, replace=False))
    return ValidationData(
        source_images=_tensors(data.source_val, spec, threads),
        source_labels=torch.from_numpy(data.source_val.labels),
        target_images=_tensors(data.target_train.subset(val_t), spec, threads),
    )


def _train_config(
    source_data: Any,
    data: _Splits,
    src: Source,
    objective: str,
    objective_opts: dict[str, Any] | None,
    seed: int,
    out: Any,
    settings: dict[str, Any],
) -> Any:
    """The engine settings (the batch fits both domains; no periodic checkpoints)."""
    from pyxfer.engine import TrainConfig

    settings = dict(settings)
    settings.setdefault("checkpoint_every", 0)
    for name, n in (("source", len(data.source_train)), ("target", len(data.target_train))):
        if int(settings.get("batch_size", 256)) > n:
            log.info("batch_size > %d %s images: using %d", n, name, n)
            settings["batch_size"] = n
    return TrainConfig(
        data=str(source_data if isinstance(source_data, str) else data.source_train.source),
        backbone=src.name,
        backbone_opts=dict(src.kwargs),
        objective=objective,
        objective_opts=dict(objective_opts or {}),
        seed=seed,
        out=None if out is None else str(out),
        **settings,
    )


class _Tracker:
    """The engine callback of :func:`adapt`: at each due step it scores the model with the
    validators and keeps the best checkpoint of each (and, with ``oracle_y``, of target test
    accuracy), logging the scores to ``metrics.jsonl``.

    Validation happens every ``eval_every`` steps, else ten times over the run's progress
    (steps or time), and always at the last step: a time budget cannot skip it.
    """

    def __init__(
        self,
        obj: AdaptationObjective,
        vdata: Any,
        validators: tuple[str, ...],
        cadence: Any,
        test_x: torch.Tensor | None,
        oracle_y: np.ndarray | None,
    ) -> None:
        from pyxfer.transfer.selection import create_validator

        self.obj, self.vdata, self.cadence = obj, vdata, cadence
        self.scorers = {v: create_validator(v) for v in validators}
        self.test_x, self.oracle_y = test_x, oracle_y
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Selection] = {}
        self.oracle_best: dict[str, Any] = {}

    def __call__(self, trainer: Any, step: int, out: dict[str, torch.Tensor]) -> None:
        if not self.cadence.due(step, trainer.progress, trainer.final_step):
            return
        from pyxfer.transfer.selection import SharedPredictions

        obj = self.obj
        with SharedPredictions(obj) as shared:  # each image set predicted once
            scores = {v: float(s(shared, self.vdata)) for v, s in self.scorers.items()}
        record: dict[str, Any] = {"step": step, **{f"val_{k}": v for k, v in scores.items()}}
        state = None
        for v, s in self.scorers.items():
            cur = self.best.get(v)
            if cur is None or s.is_better(scores[v], cur.scores[v]):
                state = state or copy.deepcopy(obj.state_dict())
                self.best[v] = Selection(v, step, scores, state=state)
        if self.oracle_y is not None and self.test_x is not None:
            _, logits = _predict(obj, self.test_x)
            acc = float((logits.argmax(1) == self.oracle_y).mean())
            record["oracle_target_top1*"] = acc
            if not self.oracle_best or acc > self.oracle_best["acc"]:
                state = state or copy.deepcopy(obj.state_dict())
                self.oracle_best.update(acc=acc, step=step, scores=scores, state=state)
        self.history.append({"step": step, **scores})
        trainer.log_metrics(record)

    def selections(self, last_step: int) -> dict[str, Selection]:
        """The best checkpoint of each validator, the last step's and the oracle's (``*``)."""
        history = self.history
        last_scores = history[-1] if history and history[-1]["step"] == last_step else {}
        selections: dict[str, Selection] = dict(self.best)
        selections["last"] = Selection(
            "last",
            last_step,
            {k: v for k, v in last_scores.items() if k != "step"},
            state=copy.deepcopy(self.obj.state_dict()),
        )
        if self.oracle_best:
            selections["target_accuracy*"] = Selection(
                "target_accuracy*",
                self.oracle_best["step"],
                self.oracle_best["scores"],
                uses_target_labels=True,
                state=self.oracle_best["state"],
            )
        return selections


def _evaluate_selections(
    obj: AdaptationObjective,
    selections: dict[str, Selection],
    test_x: torch.Tensor | None,
    data: _Splits,
    classes: list[str],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each selection's target test top-1 and per-class mean (set on it); the test features
    and logits of each."""
    outputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if test_x is None or data.test is None:
        return outputs
    for name, sel in selections.items():
        if sel.state is None:
            continue
        obj.load_state_dict(sel.state)
        feats, logits = _predict(obj, test_x)
        metrics = classification_metrics(logits, data.test.labels, len(classes))
        sel.target_top1, sel.target_per_class_mean = metrics["top1"], metrics["per_class_mean"]
        outputs[name] = (feats, logits)
    return outputs


def _protocol(
    objective: str, data: _Splits, source: dict[str, Any], seed: int, size: int
) -> dict[str, Any]:
    """What every result of the run shares: the method, the image counts, the source."""
    return {
        "protocol": "adapt",
        "method": objective,
        "train": len(data.source_train),
        "target_train": len(data.target_train),
        "test": 0 if data.test is None else len(data.test),
        "source_val": len(data.source_val),
        "source": source,
        "seed": seed,
        "size": size,
    }


def _results(selections: dict[str, Selection], protocol: dict[str, Any]) -> list[Any]:
    """The target test top-1 and per-class mean of each selection, with its protocol."""
    from pyxfer.evaluate.results import Result

    results: list[Any] = []
    for name, sel in selections.items():
        p = {
            **protocol,
            "selected_by": name,
            "selected_step": sel.step,
            "uses_target_labels": sel.uses_target_labels,
            "validators": sel.scores,
        }
        results.append(Result(f"adapt/target_top1@{name}", sel.target_top1, p))
        results.append(Result(f"adapt/target_per_class_mean@{name}", sel.target_per_class_mean, p))
    return results


def _save_classifier(
    writer: RunWriter, obj: Any, classes: list[str], extra: dict[str, Any]
) -> Path | None:
    """The objective's backbone with its classifier as the run's ``model/``."""
    if writer.run is None:
        return None
    classifier = copy.deepcopy(obj.backbone)
    classifier.reset_classifier(len(classes))
    classifier.get_classifier().load_state_dict(obj.classifier.state_dict())
    return writer.save_classifier(classifier, classes, extra)


def format_selections(selections: dict[str, Selection]) -> str:
    """A text table: criterion, step, target top-1 / per-class mean, validator scores."""
    names = sorted({k for s in selections.values() for k in s.scores})
    head = ["selected by", "step", "target top-1", "per-class", *names]
    rows = [head]
    for key, s in selections.items():

        def pct(x: float) -> str:
            return "n/a" if math.isnan(x) else f"{100 * x:.2f}%"

        rows.append(
            [
                key,
                str(s.step),
                pct(s.target_top1),
                pct(s.target_per_class_mean),
                *[f"{s.scores[n]:.4f}" if n in s.scores else "" for n in names],
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if any(s.uses_target_labels for s in selections.values()):
        lines.append("* selected with target labels (oracle, not an unsupervised result)")
    return "\n".join(lines)
