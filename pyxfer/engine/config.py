"""``TrainConfig``: every setting of a training run, JSON-round-trippable (``config.json``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("adamw", "sgd", "lars")
LR_SCHEDULES = ("cosine", "fixmatch")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


#: FixMatch's training settings (Sohn et al. 2020, Sec. 4 and App. B.1) as TrainConfig values:
#: what ``pyxfer semisup`` trains with unless told otherwise (``ema_warmup`` is not the
#: paper's: it keeps short runs from evaluating weights that are mostly their initialisation)
FIXMATCH_SETTINGS: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.03,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "batch_size": 64,
    "unlabelled_ratio": 7,
    "lr_schedule": "fixmatch",
    "ema": 0.999,
    "ema_warmup": True,
}


def _doc(help: str, metavar: str | tuple[str, ...] | None = None, **cli: Any) -> dict[str, Any]:
    """A field's documentation: ``help``, ``metavar`` and ``cli`` (``choices``; ``flag`` when
    the flag is not ``--field-name``; ``short``; ``unset``: what ``None`` means)."""
    return {"help": help, "metavar": metavar, **cli}


def _setting(
    default: Any, help: str, metavar: str | tuple[str, ...] | None = None, **cli: Any
) -> Any:
    """A :class:`TrainConfig` field with an immutable ``default`` and its documentation."""
    return field(default=default, metadata=_doc(help, metavar, **cli))


@dataclass
class TrainConfig:
    """Settings of one training run (pretraining, fine-tuning or adaptation).

    The descriptive fields (``data``, ``backbone``, ``objective``...) are what
    :func:`pyxfer.engine.pretrain` builds the run from; the :class:`~pyxfer.engine.Trainer`
    records them in ``config.json`` and uses ``backbone``/``backbone_opts`` to save the final
    model. ``batch_size`` is per process: under ``torchrun`` the global batch is
    ``batch_size * world_size``. ``out=None`` writes nothing.
    """

    # Each field carries its documentation in ``metadata`` (see _doc): ``pyxfer pretrain``,
    # ``finetune`` and ``adapt`` generate their training flags from it, defaults included
    # (pyxfer.cli.options).

    # -- what is trained ------------------------------------------------------------------
    data: str | None = _setting(
        None, "training images: a data-set spec (digits, folder:DIR, packed:DIR, ...)", "SPEC"
    )
    backbone: str | None = _setting(None, "registered backbone name", "NAME")
    backbone_opts: dict[str, Any] = field(
        default_factory=dict,
        metadata=_doc(
            "backbone constructor option (repeatable)", "K=V", flag="--backbone-opt", short="-o"
        ),
    )
    objective: str | None = _setting(None, "registered objective name", "NAME")
    objective_opts: dict[str, Any] = field(
        default_factory=dict,
        metadata=_doc("objective option (repeatable)", "K=V", flag="--objective-opt"),
    )
    views: str | None = _setting(
        None, "augmentation preset of the training views", "PRESET", unset="the objective's own"
    )
    size: int | None = _setting(
        None, "side of the training views", "S", unset="the backbone's input size"
    )
    flip: bool = _setting(True, "horizontal flips in the training views (off: digits, text)")
    # -- budget ---------------------------------------------------------------------------
    # A run stops at whichever limit comes first. With none given it trains one epoch; with
    # only max_time it trains until the time is up (see pyxfer.engine.clock).
    epochs: int | None = _setting(
        None, "passes over the data", "E", unset="1, or no limit under a time budget"
    )
    max_steps: int | None = _setting(
        None, "optimiser steps", "N", unset="from the epochs or the time budget"
    )
    max_time: float | None = _setting(
        None, "wall-clock budget in seconds; stops cleanly", "SECONDS", unset="no limit"
    )
    batch_size: int = _setting(256, "images per process per step", "B")
    unlabelled_ratio: int = _setting(
        1,
        "unlabelled images per labelled image in a step (FixMatch's mu): the unlabelled "
        "batch is batch-size times this",
        "MU",
    )
    # -- optimisation ---------------------------------------------------------------------
    optimizer: str = _setting("adamw", "optimiser", choices=OPTIMIZERS)
    lr: float = _setting(1e-3, "peak learning rate (after warmup)", "LR")
    min_lr_ratio: float = _setting(
        0.0, "final learning rate of the cosine, as a fraction of the peak", "R"
    )
    weight_decay: float = _setting(0.05, "weight decay (not on biases and norm parameters)", "WD")
    momentum: float = _setting(0.9, "SGD / LARS momentum", "M")
    nesterov: bool = _setting(False, "SGD / LARS Nesterov momentum")
    betas: tuple[float, float] = _setting((0.9, 0.999), "AdamW betas", ("B1", "B2"))
    lars_eta: float = _setting(0.001, "LARS trust coefficient (You et al. 2017)", "ETA")
    warmup_steps: int = _setting(0, "linear warmup steps (then a cosine decay)", "N")
    lr_schedule: str = _setting(
        "cosine",
        "decay after the warmup: cosine (half a cosine to --min-lr-ratio) or fixmatch "
        "(lr * cos(7 pi p / 16), Sohn et al. 2020)",
        choices=LR_SCHEDULES,
    )
    grad_clip: float | None = _setting(
        None, "clip the global gradient L2 norm to this", "NORM", unset="no clipping"
    )
    ema: float | None = _setting(
        None, "EMA decay of the weights (e.g. 0.999)", "DECAY", unset="no EMA"
    )
    ema_warmup: bool = _setting(
        False,
        "ramp the EMA decay as min(decay, (1 + step) / (10 + step)), so that short runs "
        "average recent weights",
    )
    precision: str = _setting(
        "auto", "mixed precision (auto: fp16 on CUDA, fp32 on CPU)", choices=PRECISIONS
    )
    # -- data path ------------------------------------------------------------------------
    seed: int = _setting(0, "random seed", "N")
    threads: int = _setting(0, "augmentation threads (0: all cores)", "N")
    prefetch: int = _setting(2, "batches augmented ahead", "N")
    device: str = _setting("auto", "auto | cpu | cuda | cuda:N", "DEVICE")
    # -- monitoring -----------------------------------------------------------------------
    knn_every: int = _setting(
        0, "steps between kNN evaluations (0: only at the end, if configured)", "N"
    )
    knn_data: str | None = _setting(None, "labelled data-set spec of the kNN queries", "SPEC")
    knn_holdout: float | None = _setting(
        None, "or: hold out this fraction of the data as kNN queries", "FRACTION"
    )
    knn_k: int = _setting(20, "kNN neighbours (Wu et al. 2018 use 200, DINO 20)", "K")
    knn_temperature: float = _setting(0.07, "kNN vote temperature", "T")
    knn_max_bank: int = _setting(10000, "at most this many bank images (a seeded subset)", "N")
    log_every: int = _setting(
        10, "steps between metrics.jsonl records (0: only the last step)", "N"
    )
    progress: bool | None = _setting(
        None, "tqdm progress bar", unset="only when stderr is a terminal"
    )
    # -- run directory --------------------------------------------------------------------
    out: str | None = _setting(None, "run directory", "RUN")
    checkpoint_every: int = _setting(500, "steps between checkpoints (0: only at the end)", "N")
    keep_last: int = _setting(2, "checkpoints kept", "N")
    resume: str | None = _setting(None, "run directory to continue from its last checkpoint", "RUN")
    overwrite: bool = _setting(
        False, "replace the run in the run directory (deletes only the files a run writes)"
    )
    allow_layout_change: bool = _setting(
        False, "resume with another batch size or process count (the loader position converts)"
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer: expected one of {OPTIMIZERS}, received {self.optimizer!r}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule: expected one of {LR_SCHEDULES}, received {self.lr_schedule!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision: expected one of {PRECISIONS}, received {self.precision!r}"
            )
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ValueError(
                f"device: expected one of {DEVICES} or 'cuda:N', received {self.device!r}"
            )
        for name in ("batch_size", "unlabelled_ratio", "epochs", "max_steps"):
            v = getattr(self, name)
            if v is None and name not in ("batch_size", "unlabelled_ratio"):
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                none = "" if name in ("batch_size", "unlabelled_ratio") else " or None"
                raise ValueError(f"{name}: expected an integer >= 1{none}, received {v!r}")
        if self.max_time is not None and not self.max_time > 0:
            raise ValueError(f"max_time: expected seconds > 0 or None, received {self.max_time}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected > 0, received {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: expected >= 0, received {self.weight_decay}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps: expected >= 0, received {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio: expected in [0, 1], received {self.min_lr_ratio}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip: expected > 0 or None, received {self.grad_clip}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema: expected a decay in (0, 1) or None, received {self.ema}")
        if self.knn_holdout is not None and not 0 < self.knn_holdout < 1:
            raise ValueError(
                f"knn_holdout: expected a fraction in (0, 1), received {self.knn_holdout}"
            )
        if self.knn_data is not None and self.knn_holdout is not None:
            raise ValueError("knn_data, knn_holdout: give one of them, received both")
        for name in ("knn_every", "log_every", "checkpoint_every", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, received {getattr(self, name)}")
        if self.keep_last < 1:
            raise ValueError(f"keep_last: expected >= 1, received {self.keep_last}")
        if self.overwrite and self.resume is not None:
            raise ValueError("overwrite, resume: give one of them, received both")
        if self.prefetch < 1:
            raise ValueError(f"prefetch: expected >= 1, received {self.prefetch}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))

    def step_limit(self, steps_per_epoch: int) -> int | None:
        """The step at which the run stops by count: ``max_steps``, else ``epochs`` passes,
        else none when ``max_time`` is the budget, else one epoch."""
        if self.max_steps is not None:
            return self.max_steps
        if self.epochs is not None:
            return self.epochs * steps_per_epoch
        if self.max_time is not None:
            return None
        return steps_per_epoch

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"config: unknown keys {unknown}; known keys are {sorted(names)}")
        d = dict(data)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with ``changes``."""
        return dataclasses.replace(self, **changes)
