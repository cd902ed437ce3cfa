"""``finetune``: train a classifier on few labels, starting from a pretrained backbone.

Strategies (``strategy=``):

- ``linear`` — linear probe: the backbone is frozen (and kept in eval mode, so its BatchNorm
  statistics do not move either); only the head is trained.
- ``full`` — every parameter is trained.
- ``partial`` — the first ``freeze_groups`` parameter groups of ``backbone.param_groups()``
  (stem first) are frozen, the rest is trained.
- ``lp-ft`` — Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and
  Underperform Out-of-Distribution": a linear probe first (``probe_fraction`` of the steps),
  then full fine-tuning that starts from the probed head.

Learning rates: the backbone trains at ``lr`` and the head at ``head_lr`` (default ``lr``; the
probe phases use ``head_lr`` or ``10 * lr``). With ``layer_decay=d``, group ``i`` of ``G``
parameter groups (the head is group ``G - 1``) gets ``lr * d ** (G - 1 - i)`` (BEiT, Bao et
al. 2022). BatchNorm (``bn=``): ``train`` (batch statistics, running averages updated),
``eval`` (running statistics, affine parameters trained) or ``frozen`` (running statistics,
affine parameters fixed).

Data: the labelled images are split into test (``test_data`` or a stratified
``test_fraction``) and a training pool; ``labels_per_class=k`` draws k images per class from
the pool (seeded); ``val_fraction`` of those labels (stratified) is the validation split used
for early stopping and model selection. The test split is touched once, at the end. Batches
are class-balanced (each class repeated to the largest class's count) and augmented with the
``fixmatch_weak`` preset by default.

A run directory holds ``config.json`` (the engine's settings plus ``finetune``),
``metrics.jsonl`` (training records and ``val_top1``), ``model/`` (task ``classifier`` with
class names and input spec), and with a test split ``results.json``, ``predictions.npz`` and
``features.npz``. ``lp-ft`` keeps its probe phase in ``probe/``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pyxfer._checks import check
from pyxfer.data.store import ImageStore
from pyxfer.engine import clock as run_clock
from pyxfer.objectives.base import Objective
from pyxfer.transfer.common import RunWriter, Source, accuracy, classify, conform, load_source

if TYPE_CHECKING:
    from pyxfer.backbone import Backbone

log = logging.getLogger("pyxfer.transfer")

STRATEGIES = ("linear", "full", "partial", "lp-ft")
BN_MODES = ("train", "eval", "frozen")


class Classifier(Objective):
    """Cross-entropy on labelled images through a backbone with a head.

    Args:
        backbone: a pyxfer backbone with ``num_classes > 0``.
        bn: ``"train"``, ``"eval"`` or ``"frozen"`` (BatchNorm layers stay in eval mode for
            the latter two; see the module docstring).
        body_eval: keep every layer but the head in eval mode (linear probe).
        label_smoothing: cross-entropy label smoothing.
    """

    consumes = "labelled"
    augmentation = "fixmatch_weak"
    num_views = 1

    def __init__(
        self,
        backbone: Backbone,
        bn: str = "train",
        body_eval: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(backbone)
        self.bn, self.body_eval, self.label_smoothing = bn, body_eval, label_smoothing

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if mode and self.body_eval:
            self.backbone.eval()
            self.backbone.get_classifier().train()
        elif mode and self.bn != "train":
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (N, C, H, W), labels (N,) -> ``loss`` and batch ``acc``."""
        logits = self.backbone(images)  # (N, K)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        acc = (logits.detach().argmax(1) == labels).float().mean()
        return {"loss": loss, "acc": acc}


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns.

    Attributes:
        run_dir, model_dir: the run and its classifier (``None`` without ``out``).
        backbone: the selected model (best validation accuracy, else the last step).
        test: ``{"top1", "per_class_mean"}`` on the test split (empty without one).
        val_top1: validation accuracy of the selected model (NaN without validation).
        selected_step: the step of the selected model (within the last phase).
        phases: per phase ``strategy``, ``steps``, ``best_val``, ``start_head`` (the head's
            tensors when the phase started).
        splits: the image indices of ``train``, ``val`` (into ``data``) and ``test`` (into
            ``data``, or into ``test_data``).
        results: the :class:`pyxfer.evaluate.results.Result` list written to results.json.
    """

    run_dir: Path | None
    model_dir: Path | None
    backbone: Any
    test: dict[str, float]
    val_top1: float
    selected_step: int
    phases: list[dict[str, Any]] = field(default_factory=list)
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    results: list[Any] = field(default_factory=list)


def split_data(
    store: ImageStore,
    *,
    test_store: ImageStore | None,
    test_fraction: float,
    labels_per_class: int | None,
    val_fraction: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """Indices of ``train``, ``val`` (into ``store``) and ``test`` (into the test store).

    The test split comes first and is never looked at again; the label budget and the
    validation split are drawn from what remains.
    """
    from pyxfer.data.splits import few_shot, stratified_split

    labelled = np.flatnonzero(store.labels >= 0)
    if test_store is not None:
        test = np.flatnonzero(test_store.labels >= 0)
        pool = labelled
    elif test_fraction > 0:
        pool_rel, test_rel = stratified_split(
            store.labels[labelled], (1 - test_fraction, test_fraction), seed=seed
        )
        pool, test = labelled[pool_rel], labelled[test_rel]
    else:
        pool, test = labelled, np.zeros(0, np.int64)
    lab = store.labels[pool]
    if labels_per_class is not None:
        try:
            pick = few_shot(lab, labels_per_class, seed=seed, num_classes=store.num_classes)
        except ValueError as exc:
            raise ValueError(
                f"labels_per_class: {exc} (after holding out the test split)".replace("k: ", "")
            ) from None
        pool = pool[pick]
        lab = store.labels[pool]
    if val_fraction > 0:
        tr_rel, val_rel = stratified_split(lab, (1 - val_fraction, val_fraction), seed=seed + 1)
        # every class keeps at least one training image
        for c in np.unique(lab):
            if not np.any(lab[tr_rel] == c):
                move = val_rel[lab[val_rel] == c][:1]
                tr_rel = np.sort(np.concatenate([tr_rel, move]))
                val_rel = val_rel[val_rel != move[0]]
        train, val = pool[tr_rel], pool[val_rel]
    else:
        train, val = pool, np.zeros(0, np.int64)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def balanced(indices: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """``indices`` with each class repeated (seeded picks) up to the largest class's count."""
    lab = labels[indices]
    classes, counts = np.unique(lab, return_counts=True)
    if classes.size == 0 or counts.min() == counts.max():
        return indices
    rng = np.random.default_rng(seed)
    out = []
    for c in classes:
        idx = indices[lab == c]
        reps = counts.max() // idx.size
        extra = rng.choice(idx, counts.max() - reps * idx.size, replace=False)
        out.append(np.concatenate([np.tile(idx, reps), extra]))
    return np.concatenate(out)


def optimizer_groups(
    objective: Classifier,
    *,
    trainable: list[bool],
    lr: float,
    head_lr: float,
    layer_decay: float | None,
    weight_decay: float,
) -> list[dict[str, Any]]:
    """Engine parameter groups from ``backbone.param_groups()`` (stem -> head).

    Group ``i`` of ``G`` gets ``lr_mult = layer_decay ** (G - 1 - i)`` (1 without decay); the
    head's multiplier is ``head_lr / lr``. Frozen groups get ``requires_grad=False`` and are
    left out. Parameters with one dimension or less get no weight decay.
    """
    backbone = objective.backbone
    groups = backbone.param_groups()
    names = {id(p): n for n, p in objective.named_parameters()}
    out: list[dict[str, Any]] = []
    for i, ((gname, params), train) in enumerate(zip(groups, trainable, strict=True)):
        mult = 1.0 if layer_decay is None else float(layer_decay) ** (len(groups) - 1 - i)
        if gname == "head":
            mult = head_lr / lr
        for decay in (True, False):
            ps = [p for p in params if (p.ndim > 1) == decay]
            if not train:
                for p in ps:
                    p.requires_grad_(False)
                continue
            ps = [p for p in ps if p.requires_grad]
            if ps:
                out.append(
                    {
                        "params": ps,
                        "names": [names[id(p)] for p in ps],
                        "weight_decay": weight_decay if decay else 0.0,
                        "lr_mult": mult,
                        "lars_exclude": not decay,
                        "group": gname,
                    }
                )
    return out


def _head_state(backbone: Backbone) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in backbone.get_classifier().state_dict().items()}


def _probe_on_features(
    backbone: Backbone,
    train: ImageStore,
    val: ImageStore,
    *,
    config: Any,
    head_lr: float,
    eval_every: int | None,
    patience: int | None,
    label_smoothing: float,
) -> dict[str, Any]:
    """The linear probe's fast path: the backbone's features of every image are computed once
    (eval preprocessing, no augmentation) and the head itself is trained on them with the
    engine's optimiser settings and warmup + cosine schedule, in minibatches of
    ``config.batch_size``. The backbone is untouched. Records go to ``metrics.jsonl``."""
    from pyxfer.engine.clock import Cadence, RunClock
    from pyxfer.engine.optim import build_optimizer, lr_factor, set_lr
    from pyxfer.evaluate.features import extract_features
    from pyxfer.fileio import atomic_write_json

    head = backbone.get_classifier()
    dev = next(head.parameters()).device
    threads = config.threads
    ftr = torch.from_numpy(extract_features(backbone, train, threads=threads, progress=False))
    ytr = torch.from_numpy(train.labels)
    fval = extract_features(backbone, val, threads=threads, progress=False) if len(val) else None
    groups = [
        {"params": [head.weight], "weight_decay": config.weight_decay, "lr_mult": 1.0},
        {"params": [head.bias], "weight_decay": 0.0, "lr_mult": 1.0, "lars_exclude": True},
    ]
    opt = build_optimizer(
        groups, config.optimizer, head_lr, momentum=config.momentum, betas=config.betas
    )
    run = Path(config.out) if config.out else None
    if run is not None:
        from pyxfer.engine import rundir

        rundir.claim(run, overwrite=config.overwrite)
        run.mkdir(parents=True, exist_ok=True)
        doc = {**config.to_dict(), "fast_probe": True, "lr": head_lr}
        atomic_write_json(run / "config.json", doc)
        (run / "metrics.jsonl").write_text("")

    def log_record(record: dict[str, Any]) -> None:
        if run is not None:
            with open(run / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    phase: dict[str, Any] = {
        "strategy": "linear",
        "start_head": _head_state(backbone),
        "best_val": float("nan"),
        "best_step": 0,
        "lrs": {"head": head_lr},
        "frozen_groups": [n for n, _ in backbone.param_groups() if n != "head"],
        "fast_probe": True,
    }
    bad, best = 0, None
    gen = torch.Generator().manual_seed(config.seed)
    b = min(config.batch_size, len(ftr))
    total = config.step_limit(max(1, len(ftr) // b))
    clock = RunClock(total, config.max_time)
    clock.start()
    cadence = Cadence(eval_every)
    order = torch.randperm(len(ftr), generator=gen)
    pos = 0
    step = 0
    while True:
        step += 1
        if pos + b > len(order):
            order, pos = torch.randperm(len(ftr), generator=gen), 0
        idx = order[pos : pos + b]
        pos += b
        horizon = clock.horizon(step - 1)
        set_lr(
            opt, head_lr * lr_factor(step - 1, horizon, config.warmup_steps, config.min_lr_ratio)
        )
        logits = head(ftr[idx].to(dev))  # (B, K)
        loss = F.cross_entropy(logits, ytr[idx].to(dev), label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if config.log_every and step % config.log_every == 0:
            log_record(
                {"step": step, "loss": float(loss.detach()), "lr": opt.param_groups[0]["lr"]}
            )
        last = clock.binding(step) is not None
        if fval is None or not cadence.due(step, clock.progress(step), last):
            if last:
                break
            continue
        with torch.no_grad():
            pred = head(torch.from_numpy(fval).to(dev)).argmax(1).cpu().numpy()
        acc = float((pred == val.labels).mean())
        log_record({"step": step, "val_top1": acc, "phase": "linear"})
        if np.isnan(phase["best_val"]) or acc > phase["best_val"]:
            phase["best_val"], phase["best_step"], bad = acc, step, 0
            best = copy.deepcopy(head.state_dict())
        else:
            bad += 1
            if patience is not None and bad >= patience:
                phase["early_stop"] = step
                break
        if last:
            break
    log_record({"step": step, "event": "end", "loss": float(loss.detach())})
    phase["steps"] = step
    if best is not None:
        head.load_state_dict(best)
    else:
        phase["best_step"] = step
    return phase


def _run_phase(
    backbone: Backbone,
    train: ImageStore,
    val: ImageStore,
    *,
    strategy: str,
    config: Any,
    lr: float,
    head_lr: float,
    layer_decay: float | None,
    freeze_groups: int,
    bn: str,
    eval_every: int | None,
    patience: int | None,
    label_smoothing: float,
    fast_probe: bool = False,
) -> dict[str, Any]:
    """One training phase through the engine; leaves the best-on-validation weights loaded."""
    from pyxfer.engine import Trainer
    from pyxfer.engine.clock import Cadence

    if strategy == "linear" and fast_probe:
        return _probe_on_features(
            backbone,
            train,
            val,
            config=config,
            head_lr=head_lr,
            eval_every=eval_every,
            patience=patience,
            label_smoothing=label_smoothing,
        )

    for p in backbone.parameters():
        p.requires_grad_(True)
    linear = strategy == "linear"
    groups = backbone.param_groups()
    g = len(groups)
    if linear:
        trainable = [name == "head" for name, _ in groups]
    else:
        trainable = [i >= freeze_groups for i in range(g)]
    if bn == "frozen" or linear:
        for m in backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                for p in m.parameters(recurse=False):
                    p.requires_grad_(False)
    objective = Classifier(backbone, bn=bn, body_eval=linear, label_smoothing=label_smoothing)
    param_groups = optimizer_groups(
        objective,
        trainable=trainable,
        lr=lr,
        head_lr=head_lr,
        layer_decay=layer_decay,
        weight_decay=config.weight_decay,
    )
    if linear:
        for p in backbone.get_classifier().parameters():
            p.requires_grad_(True)
    phase: dict[str, Any] = {
        "strategy": strategy,
        "start_head": _head_state(backbone),
        "best_val": float("nan"),
        "best_step": 0,
        "lrs": {grp["group"]: lr * grp["lr_mult"] for grp in param_groups},
        "frozen_groups": [name for (name, _), t in zip(groups, trainable, strict=True) if not t],
    }
    best: dict[str, Any] = {"state": None, "bad": 0}
    threads = config.threads

    cadence = Cadence(eval_every)

    def validate(trainer: Trainer, step: int, out: dict[str, torch.Tensor]) -> None:
        last = trainer.final_step
        if len(val) == 0 or not cadence.due(step, trainer.progress, last):
            return
        acc = accuracy(backbone, val, threads=threads)
        objective.train()  # back to the phase's modes (evaluation restores plain train mode)
        trainer.log_metrics({"step": step, "val_top1": acc, "phase": strategy})
        if np.isnan(phase["best_val"]) or acc > phase["best_val"]:
            phase["best_val"], phase["best_step"] = acc, step
            best["state"] = copy.deepcopy(backbone.state_dict())
            best["bad"] = 0
        else:
            best["bad"] += 1
            if patience is not None and best["bad"] >= patience and not last:
                log.info("early stop at step %d (best val top-1 %.4f)", step, phase["best_val"])
                phase["early_stop"] = step
                trainer.total_steps = step  # the engine stops cleanly after this step

    objective.train()  # the engine does not change modes: set the phase's (BN, probe) here
    trainer = Trainer(objective, train, config, param_groups=param_groups, callbacks=(validate,))
    result = trainer.fit()
    phase["steps"] = result.step
    if best["state"] is not None:
        backbone.load_state_dict(best["state"])
    else:
        phase["best_step"] = result.step
    for p in backbone.parameters():
        p.requires_grad_(True)
    return phase


def finetune(
    source: Any = None,
    data: str | ImageStore | None = None,
    *,
    strategy: str = "lp-ft",
    backbone: str | None = None,
    backbone_opts: dict[str, Any] | None = None,
    weights: str | os.PathLike[str] | None = None,
    from_scratch: bool = False,
    keep_head: bool = False,
    labels_per_class: int | None = None,
    test_data: str | ImageStore | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
    freeze_groups: int = 0,
    layer_decay: float | None = None,
    lr: float = 1e-3,
    head_lr: float | None = None,
    bn: str = "train",
    probe_fraction: float = 0.5,
    eval_every: int | None = None,
    patience: int | None = None,
    label_smoothing: float = 0.0,
    balance: bool = True,
    fast_probe: bool = False,
    out: str | os.PathLike[str] | None = None,
    seed: int = 0,
    **settings: Any,
) -> FinetuneResult:
    """Fine-tune a backbone on labelled images; see the module docstring.

    Args:
        source: a pyxfer run directory, a model directory, or a weight file (``.safetensors``
            or a torchvision-format state dict, with ``backbone``); or ``None`` with
            ``weights`` / ``from_scratch``.
        data: a data-set spec or an ``ImageStore`` with labels.
        strategy: one of :data:`STRATEGIES`.
        backbone, backbone_opts: registered backbone for weight files and ``from_scratch``.
        weights: a weight file (instead of ``source``).
        from_scratch: random initialisation (the baseline).
        keep_head: keep the source model's classifier (its class count must match the data);
            otherwise a new head is made.
        labels_per_class: k labelled images per class (seeded), or ``None`` for all.
        test_data: a separate labelled test set (spec or store), else ``test_fraction`` of
            ``data`` (0: no test evaluation).
        val_fraction: fraction of the training labels for validation (0: keep the last step).
        freeze_groups: ``partial``: parameter groups frozen from the stem.
        layer_decay: layer-wise lr decay factor (e.g. 0.65), ``None``: off.
        lr, head_lr: backbone and head learning rates.
        bn: one of :data:`BN_MODES`.
        probe_fraction: ``lp-ft``: share of the steps spent on the probe.
        eval_every: steps between validations (default: about 10 per phase).
        patience: stop after this many validations without improvement (``None``: never).
        label_smoothing: cross-entropy label smoothing.
        balance: class-balanced batches.
        fast_probe: train linear-probe phases on cached features (no augmentation; the
            backbone runs once per image): much faster on CPU.
        out: run directory (``None``: nothing written).
        seed: seed of the splits, the head initialisation, the order and augmentation.
        **settings: :class:`pyxfer.engine.TrainConfig` fields (``max_steps``, ``epochs``,
            ``batch_size``, ``optimizer``, ``weight_decay``, ``views``, ``device``...).

    Returns:
        a :class:`FinetuneResult`.

    Examples:
        >>> r = finetune("runs/ssl", "digits", strategy="lp-ft", labels_per_class=10,
        ...              max_steps=200, out="runs/ft")  # doctest: +SKIP
        >>> r.test["top1"]  # doctest: +SKIP
    """
    _check_options(
        strategy=strategy,
        bn=bn,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        lr=lr,
        head_lr=head_lr,
        probe_fraction=probe_fraction,
        layer_decay=layer_decay,
        labels_per_class=labels_per_class,
        patience=patience,
        eval_every=eval_every,
        freeze_groups=freeze_groups,
    )
    labelled = _load_data(
        data,
        test_data,
        test_fraction=test_fraction,
        labels_per_class=labels_per_class,
        val_fraction=val_fraction,
        seed=seed,
    )
    src = load_source(
        source,
        backbone=backbone,
        backbone_opts=backbone_opts,
        weights=weights,
        from_scratch=from_scratch,
        seed=seed,
    )
    _prepare_head(src, labelled.store, strategy, freeze_groups, keep_head, seed)
    train_set, val_set, test_set = _training_sets(src.backbone, labelled, balance, seed)
    base = _base_config(src, labelled.spec, train_set, lr, seed, settings)
    run = Path(out) if out is not None else None
    writer = RunWriter(run, "finetune", src, {"source": src.description})
    head_lr_ = head_lr if head_lr is not None else lr
    probe_lr = head_lr if head_lr is not None else 10 * lr
    phases = _train_phases(
        src.backbone,
        train_set,
        val_set,
        _plan(strategy, probe_fraction, lr, head_lr_, probe_lr),
        base=base,
        run=run,
        probe_fraction=probe_fraction,
        writer=writer,
        class_names=list(labelled.store.class_names),
        layer_decay=layer_decay,
        eval_every=eval_every,
        freeze_groups=freeze_groups if strategy == "partial" else 0,
        bn=bn,
        patience=patience,
        label_smoothing=label_smoothing,
        fast_probe=fast_probe,
    )
    finetune_doc = {
        "strategy": strategy,
        "source": src.description,
        "labels_per_class": labels_per_class,
        "keep_head": keep_head,
        "freeze_groups": freeze_groups,
        "layer_decay": layer_decay,
        "lr": lr,
        "head_lr": head_lr_,
        "probe_lr": probe_lr,
        "bn": bn,
        "balance": balance,
        "fast_probe": fast_probe,
        "val_fraction": val_fraction,
        "test": f"test_fraction={test_fraction}" if test_data is None else "test_data",
        "test_data": test_data if isinstance(test_data, str) else None,
        "images": {k: int(v.size) for k, v in labelled.splits.items()},
        "phases": [{k: v for k, v in p.items() if k != "start_head"} for p in phases],
    }
    return _write_outputs(
        writer,
        src,
        labelled,
        test_set,
        phases,
        finetune_doc,
        strategy=strategy,
        labels_per_class=labels_per_class,
        bn=bn,
        seed=seed,
        threads=base.threads,
    )


# -- the steps of finetune --------------------------------------------------------------------
@dataclass
class _Labelled:
    """The labelled data of a run: where it came from, the stores and the index splits."""

    spec: str
    store: ImageStore
    test_store: ImageStore | None
    splits: dict[str, np.ndarray]


def _check_options(
    *,
    strategy: str,
    bn: str,
    test_fraction: float,
    val_fraction: float,
    lr: float,
    head_lr: float | None,
    probe_fraction: float,
    layer_decay: float | None,
    labels_per_class: int | None,
    patience: int | None,
    eval_every: int | None,
    freeze_groups: int,
) -> None:
    """Every option that can be checked before anything is loaded."""
    check("strategy", strategy, strategy in STRATEGIES, f"one of {STRATEGIES}")
    check("bn", bn, bn in BN_MODES, f"one of {BN_MODES}")
    check("test_fraction", test_fraction, 0 <= test_fraction < 1, "a fraction in [0, 1)")
    check("val_fraction", val_fraction, 0 <= val_fraction < 1, "a fraction in [0, 1)")
    check("lr", lr, lr > 0, "> 0")
    check("head_lr", head_lr, head_lr is None or head_lr > 0, "> 0 or None")
    check("probe_fraction", probe_fraction, 0 < probe_fraction < 1, "a fraction in (0, 1)")
    check(
        "layer_decay",
        layer_decay,
        layer_decay is None or 0 < layer_decay <= 1,
        "a factor in (0, 1] or None",
    )
    check(
        "labels_per_class",
        labels_per_class,
        labels_per_class is None
        or (isinstance(labels_per_class, (int, np.integer)) and labels_per_class >= 1),
        "an int >= 1 or None (all labels)",
    )
    check("patience", patience, patience is None or patience >= 1, "an int >= 1 or None")
    check("eval_every", eval_every, eval_every is None or eval_every >= 1, "an int >= 1")
    if strategy != "partial" and freeze_groups:
        raise ValueError(
            f"freeze_groups: only used by strategy 'partial', received {freeze_groups} with "
            f"strategy {strategy!r}"
        )


def _load_data(
    data: str | ImageStore | None,
    test_data: str | ImageStore | None,
    *,
    test_fraction: float,
    labels_per_class: int | None,
    val_fraction: float,
    seed: int,
) -> _Labelled:
    """Load and check the data sets and split them (before anything is trained)."""
    from pyxfer.data import load_dataset

    if data is None:
        raise ValueError("data: expected a data-set spec or an ImageStore, received none")
    spec = data if isinstance(data, str) else getattr(data, "source", "") or "store"
    store = load_dataset(data) if isinstance(data, str) else data
    if len(store) == 0 or not np.any(store.labels >= 0):
        raise ValueError(f"data: {spec!r} has no labelled images (received {len(store)} images)")
    test_store = None
    if test_data is not None:
        test_store = load_dataset(test_data) if isinstance(test_data, str) else test_data
        if len(test_store) == 0 or not np.any(test_store.labels >= 0):
            raise ValueError(f"test_data: {test_data!r} has no labelled images")
        if list(test_store.class_names) != list(store.class_names):
            raise ValueError(
                f"test_data: expected the classes of data {store.class_names}, received "
                f"{test_store.class_names}"
            )
    splits = split_data(
        store,
        test_store=test_store,
        test_fraction=test_fraction if test_store is None else 0.0,
        labels_per_class=labels_per_class,
        val_fraction=val_fraction,
        seed=seed,
    )
    return _Labelled(str(spec), store, test_store, splits)


def _prepare_head(
    src: Source, store: ImageStore, strategy: str, freeze_groups: int, keep_head: bool, seed: int
) -> None:
    """Check ``freeze_groups`` against the backbone; keep the source's head or make a new one."""
    model = src.backbone
    num_classes = store.num_classes
    groups = model.param_groups()
    n_body = sum(1 for name, _ in groups if name != "head")
    if strategy == "partial":
        check(
            "freeze_groups",
            freeze_groups,
            isinstance(freeze_groups, (int, np.integer)) and 0 <= freeze_groups <= n_body,
            f"an int in [0, {n_body}] (the backbone's groups before the head: "
            f"{[n for n, _ in groups if n != 'head']})",
        )
    if keep_head:
        have = int(getattr(model, "num_classes", 0))
        if have != num_classes:
            raise ValueError(
                f"keep_head: the source's head has {have} classes, the data has {num_classes} "
                f"({store.class_names}); drop keep_head to train a new head"
            )
        if src.class_names and list(src.class_names) != list(store.class_names):
            log.warning(
                "keep_head: class names differ: %s vs %s", src.class_names, store.class_names
            )
    else:
        torch.manual_seed(seed)
        model.reset_classifier(num_classes)


def _training_sets(
    model: Backbone, labelled: _Labelled, balance: bool, seed: int
) -> tuple[ImageStore, ImageStore, ImageStore | None]:
    """The (class-balanced) training, validation and test stores, in the model's channels."""
    store, splits = labelled.store, labelled.splits
    channels = model.input_spec.channels
    train_store = conform(store, channels)
    test_store = labelled.test_store
    test_conf = conform(test_store, channels) if test_store is not None else train_store
    train_idx = balanced(splits["train"], store.labels, seed) if balance else splits["train"]
    test_set = test_conf.subset(splits["test"]) if splits["test"].size else None
    return train_store.subset(train_idx), train_store.subset(splits["val"]), test_set


def _base_config(
    src: Source, spec: str, train_set: ImageStore, lr: float, seed: int, settings: dict[str, Any]
) -> Any:
    """The engine settings every phase starts from (the batch fits the training set)."""
    from pyxfer.engine import TrainConfig

    settings = dict(settings)
    settings.setdefault("views", "fixmatch_weak")
    settings.setdefault("checkpoint_every", 0)
    batch = int(settings.get("batch_size", 256))
    if batch > len(train_set):
        log.info(
            "batch_size %d > %d training images: using %d", batch, len(train_set), len(train_set)
        )
        settings["batch_size"] = len(train_set)
    return TrainConfig(
        data=spec,
        backbone=src.name,
        backbone_opts=dict(src.kwargs),
        objective="classifier",
        lr=lr,
        seed=seed,
        **settings,
    )


#: one phase of a plan: strategy, share of the budget, sub-directory, lr, head lr
_Phase = tuple[str, float, str | None, float, float]


def _plan(
    strategy: str, probe_fraction: float, lr: float, head_lr: float, probe_lr: float
) -> list[_Phase]:
    """The phases of ``strategy``: lp-ft is a probe (in ``probe/``) then a full fine-tune."""
    if strategy == "lp-ft":
        return [
            ("linear", probe_fraction, "probe", probe_lr, probe_lr),
            ("full", 1 - probe_fraction, None, lr, head_lr),
        ]
    if strategy == "linear":
        return [("linear", 1.0, None, probe_lr, probe_lr)]
    return [(strategy, 1.0, None, lr, head_lr)]


def _train_phases(
    model: Backbone,
    train_set: ImageStore,
    val_set: ImageStore,
    plan: list[_Phase],
    *,
    base: Any,
    run: Path | None,
    probe_fraction: float,
    writer: RunWriter,
    class_names: list[str],
    layer_decay: float | None,
    eval_every: int | None,
    **common: Any,
) -> list[dict[str, Any]]:
    """Run the phases in order; each leaves its best-on-validation weights loaded.

    The run's budget (steps and/or time) is shared between the phases: lp-ft's probe gets
    ``probe_fraction`` of it, the fine-tune what is left.
    """
    steps_total = base.step_limit(max(1, len(train_set) // base.batch_size))
    t_start = run_clock.now()

    def phase_config(share: float, sub: str | None, last: bool) -> Any:
        dest = None if run is None else str(run / sub if sub else run)
        steps = None
        if steps_total is not None:
            probe = max(1, round(probe_fraction * steps_total))
            steps = max(
                1, steps_total - probe if last and share < 1 else round(share * steps_total)
            )
        max_time = None
        if base.max_time is not None:
            left = base.max_time - (run_clock.now() - t_start)
            max_time = max(1e-3, left if last else share * base.max_time)
        return base.replace(max_steps=steps, epochs=None, max_time=max_time, out=dest)

    phases = []
    for i, (strat, share, sub, lr_, hlr) in enumerate(plan):
        cfg = phase_config(share, sub, last=i == len(plan) - 1)
        phase = _run_phase(
            model,
            train_set,
            val_set,
            strategy=strat,
            config=cfg.replace(lr=lr_),
            lr=lr_,
            head_lr=hlr,
            layer_decay=layer_decay if strat != "linear" else None,
            eval_every=eval_every,
            **common,
        )
        phases.append(phase)
        if sub is not None:
            writer.save_classifier(model, class_names, {"phase": strat}, where=f"{sub}/model")
    return phases


def _write_outputs(
    writer: RunWriter,
    src: Source,
    labelled: _Labelled,
    test_set: ImageStore | None,
    phases: list[dict[str, Any]],
    finetune_doc: dict[str, Any],
    *,
    strategy: str,
    labels_per_class: int | None,
    bn: str,
    seed: int,
    threads: int,
) -> FinetuneResult:
    """config.json's ``finetune`` section, ``model/``, and with a test split its evaluation
    (``results.json``, ``predictions.npz``, ``features.npz``)."""
    from pyxfer.evaluate.results import Result, format_table

    model = src.backbone
    splits = labelled.splits
    class_names = list(labelled.store.class_names)
    last = phases[-1]
    writer.add_to_config("finetune", finetune_doc)
    model_dir = writer.save_classifier(
        model,
        class_names,
        {"strategy": strategy, "val_top1": last["best_val"], "step": last["best_step"]},
    )
    metrics: dict[str, float] = {}
    results: list[Any] = []
    if test_set is not None:
        feats, logits = classify(model, test_set, threads=threads)
        protocol = {
            "protocol": "finetune",
            "method": strategy,
            "shots": labels_per_class if labels_per_class is not None else "all",
            "train": int(splits["train"].size),
            "val": int(splits["val"].size),
            "test": int(splits["test"].size),
            "selected_by": "val_top1" if splits["val"].size else "last_step",
            "selected_step": last["best_step"],
            "source": src.description,
            "bn": bn,
            "seed": seed,
            "size": model.input_spec.size,
        }
        metrics = writer.test_outputs(feats, logits, test_set.labels, class_names, seed)
        results = [
            Result("finetune/top1", metrics["top1"], protocol),
            Result("finetune/per_class_mean", metrics["per_class_mean"], protocol),
            Result("finetune/val_top1", last["best_val"], {**protocol, "split": "validation"}),
        ]
        writer.results(results, {"finetune": finetune_doc})
        log.debug("test results:\n%s", format_table(results))
        log.info(
            "test top-1 %.4f, per-class mean %.4f (%d images)",
            metrics["top1"],
            metrics["per_class_mean"],
            len(test_set),
        )
    return FinetuneResult(
        writer.run,
        model_dir,
        model,
        metrics,
        float(last["best_val"]),
        int(last["best_step"]),
        phases,
        splits,
        results,
    )
