"""``adapt``: unsupervised domain adaptation from a labelled source to an unlabelled target.

The run trains a registered adaptation objective (``consumes == "source_target"``: DANN,
CDAN, FixMatch, ...; see :mod:`pyxfer.adaptation`) through the engine with a loader pair:
the labelled source (the objective's ``augmentation``) and the unlabelled target (one view
per preset of ``target_augmentation``). Both domains are first brought to the backbone's
input: channels converted (grey <-> RGB) and images resized to its input size (MNIST 28 px
and scikit-learn digits 8 px both become 28 px).

Model selection uses no target labels: every ``eval_every`` steps the label-free validators
of :mod:`pyxfer.validators` (``source_accuracy`` on a held-out source split,
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
from typing import Any

import numpy as np
import torch
from torch import nn

from pyxfer.data.store import ImageStore
from pyxfer.transfer.common import conform, load_source

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
def _predict(objective: nn.Module, x: torch.Tensor, batch: int = 512) -> tuple[Any, Any]:
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
    select: str = "source_accuracy",
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
        select: the validator whose checkpoint is saved in ``model/``.
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
    from pyxfer.data import load_dataset
    from pyxfer.data.splits import stratified_split
    from pyxfer.engine import TrainConfig, Trainer
    from pyxfer.engine.clock import Cadence
    from pyxfer.objective import create_objective
    from pyxfer.validators import VALIDATORS, ValidationData, create_validator

    bad = [v for v in validators if v not in VALIDATORS or VALIDATORS[v].uses_target_labels]
    if bad or not validators:
        raise ValueError(
            f"validators: expected label-free validators from {list(LABEL_FREE)}, received "
            f"{list(validators)}"
        )
    if select not in validators:
        raise ValueError(
            f"select: expected one of the validators {list(validators)}, received {select!r}"
        )
    if not 0 <= target_test_fraction < 1:
        raise ValueError(
            f"target_test_fraction: expected a fraction in [0, 1), received {target_test_fraction}"
        )
    if not 0 < source_val_fraction < 1:
        raise ValueError(
            f"source_val_fraction: expected a fraction in (0, 1), received {source_val_fraction}"
        )

    # -- data --------------------------------------------------------------------------------
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

    src = load_source(
        from_run if from_run is not None else None,
        backbone=backbone if (weights is not None or from_run is None) else None,
        backbone_opts=backbone_opts,
        weights=weights,
        from_scratch=from_run is None and weights is None,
        seed=seed,
        argument="from_run",
    )
    model = src.backbone
    if getattr(model, "num_classes", 0):
        model.reset_classifier(0)  # the objective owns the classifier
    spec = model.input_spec
    src_store = conform(src_store, spec.channels, spec.size)
    tgt_store = conform(tgt_store, spec.channels, spec.size)
    if test_store is not None:
        test_store = conform(test_store, spec.channels, spec.size)

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

    # -- objective, validation data ----------------------------------------------------------
    from pyxfer.pluginmanager import registry

    entry = registry("objectives").get(objective)
    consumes = getattr(entry.factory, "consumes", entry.metadata.get("consumes"))
    if consumes != "source_target":
        raise ValueError(
            f"objective: expected an adaptation objective (consumes 'source_target'), received "
            f"{objective!r} (consumes {consumes!r})"
        )
    torch.manual_seed(seed)
    obj = create_objective(objective, model, num_classes=len(classes), **(objective_opts or {}))
    rng = np.random.default_rng(seed)
    val_t = np.arange(len(tgt_train))
    if val_t.size > MAX_VALIDATION_TARGET:
        val_t = np.sort(rng.choice(val_t.size, MAX_VALIDATION_TARGET, replace=False))
    threads = int(settings.get("threads", 0))
    vdata = ValidationData(
        source_images=_tensors(src_val, spec, threads),
        source_labels=torch.from_numpy(src_val.labels),
        target_images=_tensors(tgt_train.subset(val_t), spec, threads),
    )
    scorers = {v: create_validator(v) for v in validators}
    test_x = _tensors(test_store, spec, threads) if test_store is not None else None
    test_y = test_store.labels if test_store is not None else None

    settings = dict(settings)
    settings.setdefault("checkpoint_every", 0)
    for name, n in (("source", len(src_train)), ("target", len(tgt_train))):
        if int(settings.get("batch_size", 256)) > n:
            log.info("batch_size > %d %s images: using %d", n, name, n)
            settings["batch_size"] = n
    cfg = TrainConfig(
        data=str(source_data if isinstance(source_data, str) else src_store.source),
        backbone=src.name,
        backbone_opts=dict(src.kwargs),
        objective=objective,
        objective_opts=dict(objective_opts or {}),
        seed=seed,
        out=None if out is None else str(out),
        **settings,
    )
    # every ``eval_every`` steps, else ten times over the run's progress (steps or time), and
    # always at the last step: a time budget cannot skip validation
    cadence = Cadence(eval_every)

    history: list[dict[str, float]] = []
    best: dict[str, Selection] = {}
    oracle_best: dict[str, Any] = {}

    def test_top1(state_obj: nn.Module) -> float:
        _, logits = _predict(state_obj, test_x)
        return float((logits.argmax(1) == test_y).mean())

    def validate(trainer: Trainer, step: int, out_: dict[str, torch.Tensor]) -> None:
        if not cadence.due(step, trainer.progress, trainer.final_step):
            return
        scores = {v: float(s(obj, vdata)) for v, s in scorers.items()}
        record: dict[str, Any] = {"step": step, **{f"val_{k}": v for k, v in scores.items()}}
        state = None
        for v, s in scorers.items():
            cur = best.get(v)
            if cur is None or s.is_better(scores[v], cur.scores[v]):
                state = state or copy.deepcopy(obj.state_dict())
                best[v] = Selection(v, step, scores, state=state)
        if oracle and test_x is not None:
            acc = test_top1(obj)
            record["oracle_target_top1*"] = acc
            if not oracle_best or acc > oracle_best["acc"]:
                state = state or copy.deepcopy(obj.state_dict())
                oracle_best.update(acc=acc, step=step, scores=scores, state=state)
        history.append({"step": step, **scores})
        trainer._log(record)

    def save_classifier(run: Path, extra: dict[str, Any]) -> Path:
        from pyxfer.modelio import save_model

        classifier = copy.deepcopy(obj.backbone)
        classifier.reset_classifier(len(classes))
        classifier.get_classifier().load_state_dict(obj.classifier.state_dict())
        return save_model(
            run / "model",
            classifier,
            backbone_name=src.name,
            backbone_kwargs=dict(src.kwargs),
            task="classifier",
            class_names=classes,
            extra={"producer": "adapt", "objective": objective, **extra},
        )

    trainer = Trainer(obj, src_train, cfg, target=tgt_train, callbacks=(validate,))
    result = trainer.fit()
    final_state = copy.deepcopy(obj.state_dict())
    try:
        last_scores = history[-1] if history and history[-1]["step"] == result.step else {}
        selections: dict[str, Selection] = dict(best)
        selections["last"] = Selection(
            "last",
            result.step,
            {k: v for k, v in last_scores.items() if k != "step"},
            state=copy.deepcopy(obj.state_dict()),
        )
        if oracle_best:
            selections["target_accuracy*"] = Selection(
                "target_accuracy*",
                oracle_best["step"],
                oracle_best["scores"],
                uses_target_labels=True,
                state=oracle_best["state"],
            )

        # -- evaluation of each selection on the target test split --------------------------------
        from pyxfer.evaluate.metrics import mean_per_class_accuracy
        from pyxfer.evaluate.results import Result

        outputs: dict[str, Any] = {}
        for name, sel in selections.items():
            if test_x is None or sel.state is None:
                continue
            obj.load_state_dict(sel.state)
            feats, logits = _predict(obj, test_x)
            pred = logits.argmax(1)
            sel.target_top1 = float((pred == test_y).mean())
            sel.target_per_class_mean = mean_per_class_accuracy(test_y, pred, len(classes))
            outputs[name] = (feats, logits)
        primary = selections[select]
        obj.load_state_dict(primary.state if primary.state is not None else final_state)

        protocol_base = {
            "protocol": "adapt",
            "method": objective,
            "train": len(src_train),
            "target_train": len(tgt_train),
            "test": 0 if test_x is None else len(test_x),
            "source_val": len(src_val),
            "source": src.description,
            "seed": seed,
            "size": spec.size,
        }
        results: list[Any] = []
        for name, sel in selections.items():
            protocol = {
                **protocol_base,
                "selected_by": name,
                "selected_step": sel.step,
                "uses_target_labels": sel.uses_target_labels,
                "validators": sel.scores,
            }
            results.append(Result(f"adapt/target_top1@{name}", sel.target_top1, protocol))
            results.append(
                Result(f"adapt/target_per_class_mean@{name}", sel.target_per_class_mean, protocol)
            )

        run = Path(out) if out is not None else None
        model_dir = None
        if run is not None:
            import json

            from pyxfer.evaluate.results import save_results
            from pyxfer.fileio import atomic_write_json
            from pyxfer.transfer.common import write_test_outputs

            doc_path = run / "config.json"
            doc = json.loads(doc_path.read_text()) if doc_path.is_file() else {}
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
                "images": protocol_base,
            }
            doc["adapt"] = adapt_doc
            atomic_write_json(doc_path, doc)
            model_dir = save_classifier(run, {"selected_by": select, "selected_step": primary.step})
            if select in outputs:
                feats, logits = outputs[select]
                write_test_outputs(run, feats, logits, test_y, classes, seed)
            save_results(run / "results.json", results, {"adapt": adapt_doc})
        for sel in selections.values():
            sel.state = None  # free the snapshots
        return AdaptResult(run, model_dir, selections, select, history, results, obj)
    except Exception:
        # an error after training never discards what was trained: keep the last weights
        if out is not None:
            obj.load_state_dict(final_state)
            path = save_classifier(Path(out), {"selected_by": "last", "selected_step": result.step})
            log.error("adapt failed after training; the last weights are in %s", path)
        raise


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
