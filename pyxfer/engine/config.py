"""``TrainConfig``: every setting of a training run, JSON-round-trippable (``config.json``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("adamw", "sgd", "lars")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Settings of one training run (pretraining, fine-tuning or adaptation).

    The descriptive fields (``data``, ``backbone``, ``objective``...) are what
    :func:`pyxfer.engine.pretrain` builds the run from; the :class:`~pyxfer.engine.Trainer`
    records them in ``config.json`` and uses ``backbone``/``backbone_opts`` to save the final
    model. ``batch_size`` is per process: under ``torchrun`` the global batch is
    ``batch_size * world_size``.
    """

    # -- what is trained ------------------------------------------------------------------
    data: str | None = None  # data-set spec (pyxfer.load_dataset)
    backbone: str | None = None  # registered backbone name
    backbone_opts: dict[str, Any] = field(default_factory=dict)  # its constructor options
    objective: str | None = None  # registered objective name
    objective_opts: dict[str, Any] = field(default_factory=dict)
    views: str | None = None  # augmentation preset; None: the objective's own
    size: int | None = None  # view side; None: the backbone's input size
    flip: bool = True  # horizontal flips in the training views (False: digits, text, ...)
    # -- budget ---------------------------------------------------------------------------
    # A run stops at whichever limit comes first. With none given it trains one epoch; with
    # only max_time it trains until the time is up (see pyxfer.engine.clock).
    epochs: int | None = None  # passes over the data; None: 1, or no limit under max_time
    max_steps: int | None = None  # optimiser steps; None: from epochs / max_time
    max_time: float | None = None  # wall-clock seconds (Lightning's max_time); None: no limit
    batch_size: int = 256  # images per process per step
    # -- optimisation ---------------------------------------------------------------------
    optimizer: str = "adamw"  # adamw | sgd | lars
    lr: float = 1e-3  # peak learning rate (after warmup)
    min_lr_ratio: float = 0.0  # final lr of the cosine as a fraction of lr
    weight_decay: float = 0.05  # not applied to biases and norm parameters
    momentum: float = 0.9  # SGD / LARS momentum
    nesterov: bool = False  # SGD / LARS Nesterov momentum
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW
    lars_eta: float = 0.001  # LARS trust coefficient (You et al. 2017)
    warmup_steps: int = 0  # linear warmup steps, then cosine to min_lr_ratio * lr
    grad_clip: float | None = None  # max global gradient L2 norm; None: no clipping
    ema: float | None = None  # EMA decay of the weights (e.g. 0.999); None: no EMA
    precision: str = "auto"  # auto (fp16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    # -- data path ------------------------------------------------------------------------
    seed: int = 0
    threads: int = 0  # augmentation threads (0 = all cores)
    prefetch: int = 2  # batches augmented ahead
    device: str = "auto"  # auto | cpu | cuda
    # -- monitoring -----------------------------------------------------------------------
    knn_every: int = 0  # steps between kNN evaluations (0 = only at the end, if configured)
    knn_data: str | None = None  # labelled data-set spec of the kNN queries
    knn_holdout: float | None = None  # or: hold out this fraction of the data as queries
    knn_k: int = 20  # neighbours (Wu et al. 2018 use 200, DINO 20)
    knn_temperature: float = 0.07
    knn_max_bank: int = 10000  # at most this many bank images (a seeded subset)
    log_every: int = 10  # steps between metrics.jsonl records (0: only the last step)
    progress: bool | None = None  # tqdm bar; None: only when stderr is a terminal
    # -- run directory --------------------------------------------------------------------
    out: str | None = None  # run directory; None: nothing is written
    checkpoint_every: int = 500  # steps between checkpoints (0: only at the end)
    keep_last: int = 2  # checkpoints kept
    resume: str | None = None  # run directory to continue from its last checkpoint
    overwrite: bool = False  # replace the run in out (deletes only the files a run writes)
    allow_layout_change: bool = False  # resume with another batch size or process count

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer: expected one of {OPTIMIZERS}, received {self.optimizer!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision: expected one of {PRECISIONS}, received {self.precision!r}"
            )
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ValueError(
                f"device: expected one of {DEVICES} or 'cuda:N', received {self.device!r}"
            )
        for name in ("batch_size", "epochs", "max_steps"):
            v = getattr(self, name)
            if v is None and name != "batch_size":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                none = "" if name == "batch_size" else " or None"
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
