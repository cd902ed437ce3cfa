"""``Trainer``: the one training loop of pretraining, fine-tuning and adaptation.

Per step: the learning rate of the schedule, the objective's forward (under autocast when
mixed precision is on), a non-finite check that stops the run naming the step and the loss
parts, backward (scaled for fp16), optional gradient clipping, the optimiser step, the
objective's ``on_step_end`` hook, the EMA update. Around it: metrics, the progress bar, the
kNN monitor, checkpoints, the wall-clock budget and the final model.

A run directory (``config.out``) holds::

    config.json        the fully resolved configuration
    metrics.jsonl      one JSON record per logged step (and per kNN evaluation, and the end)
    checkpoints/       step-NNNNNNNN/{tensors.safetensors,state.json}, the last keep_last
    model/             the final backbone (pyxfer.modelio.save_model)

A directory that already holds a run is refused unless the run resumes it (``resume``) or
replaces it (``overwrite``; see :mod:`pyxfer.engine.rundir`). A resumed run continues bit for
bit — weights, optimiser, EMA, loader position, every rank's RNG streams, the run clock and
the objective's schedules (:meth:`Objective.schedule_state`) — from its newest checkpoint
that loads; a changed world size or batch size is refused unless ``allow_layout_change``.

Under ``torchrun`` the objective is wrapped in ``DistributedDataParallel``, the loader shards
by rank, and only rank 0 writes files and shows progress.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from pyxfer.engine import checkpoint as ckpt
from pyxfer.engine import dist as pdist
from pyxfer.engine import rundir
from pyxfer.engine.clock import RunClock
from pyxfer.engine.config import TrainConfig
from pyxfer.engine.knn import KNNMonitor
from pyxfer.engine.loader import Batch, FusedLoader
from pyxfer.engine.optim import (
    EMA,
    default_param_groups,
    lr_factor,
    optimizer_from_config,
    set_lr,
)
from pyxfer.fileio import (
    atomic_write_bytes,
    atomic_write_json,
    clean_stale_temps,
    fsync_path,
    reraise_os_error,
)

if TYPE_CHECKING:
    from pyxfer.backbone import Backbone
    from pyxfer.objectives.base import Objective

log = logging.getLogger("pyxfer.engine")

#: seconds between progress lines when no progress bar is shown
_PROGRESS_EVERY = 10.0

#: ``callback(trainer, step, outputs)`` after every optimiser step (``step`` is 1-based);
#: ``trainer.progress`` and ``trainer.final_step`` say where the run stands
Callback = Callable[["Trainer", int, dict[str, torch.Tensor]], None]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the loss parts."""

    def __init__(self, step: int, epoch: int, parts: dict[str, float]) -> None:
        self.step, self.epoch, self.parts = step, epoch, parts
        text = ", ".join(f"{k}={v:.6g}" for k, v in parts.items())
        super().__init__(
            f"non-finite loss at step {step} (epoch {epoch}): {text}; lower the learning rate, "
            "enable gradient clipping (grad_clip) or check the data"
        )


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    step: int
    epoch: int
    stop_reason: str  # "max_steps" | "epochs" | "max_time" | "early_stop"
    elapsed: float
    knn_top1: float | None = None
    run_dir: Path | None = None
    model_dir: Path | None = None
    last_metrics: dict[str, Any] = field(default_factory=dict)


def _parts(out: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The scalar tensors of an objective's output dict (``loss`` first)."""
    return {
        k: v.detach().float()
        for k, v in out.items()
        if isinstance(v, torch.Tensor) and v.numel() == 1
    }


class Trainer:
    """Train an objective on a data set.

    Args:
        objective: a :class:`pyxfer.objectives.base.Objective` (its ``backbone`` is what is saved).
        data: an ``ImageStore`` or a torch ``Dataset`` of uint8 HWC images (+ labels).
        config: the settings.
        target: for ``consumes == "source_target"`` objectives, the unlabelled target data.
        knn: ``(bank, queries)`` labelled stores for the kNN monitor, or a ``KNNMonitor``.
        param_groups: optimiser groups (dicts with ``params``, ``names`` and optionally
            ``lr_mult``, ``weight_decay``, ``lars_exclude``); default
            :func:`pyxfer.engine.optim.default_param_groups`.
        callbacks: called after each step as ``callback(trainer, step, outputs)``; an
            exception stops the run (the loader thread is shut down).
        clock: wall clock for ``max_time`` (seconds); default :func:`pyxfer.engine.clock.now`.

    Examples:
        >>> from pyxfer import create_backbone, create_objective, load_dataset
        >>> bb = create_backbone("lenet", img_size=8)
        >>> cfg = TrainConfig(backbone="lenet", backbone_opts={"img_size": 8}, max_steps=100,
        ...                   batch_size=128, optimizer="lars", lr=0.3, warmup_steps=10,
        ...                   out="runs/ssl")
        >>> result = Trainer(create_objective("simclr", bb), load_dataset("digits"), cfg).fit()
        ... # doctest: +SKIP
    """

    def __init__(
        self,
        objective: Objective,
        data: Any,
        config: TrainConfig,
        *,
        target: Any = None,
        knn: tuple[Any, Any] | KNNMonitor | None = None,
        param_groups: list[dict[str, Any]] | None = None,
        callbacks: Sequence[Callback] = (),
        clock: Callable[[], float] | None = None,
    ) -> None:
        config.validate()
        self.objective = objective
        self.data = data
        self.target = target
        self.config = config
        self.callbacks = list(callbacks)
        self.clock = clock
        self._groups = param_groups
        if isinstance(knn, tuple):
            knn = KNNMonitor(
                knn[0],
                knn[1],
                k=config.knn_k,
                temperature=config.knn_temperature,
                max_bank=config.knn_max_bank,
                threads=config.threads,
                seed=config.seed,
            )
        self.knn = knn
        consumes = getattr(objective, "consumes", "views")
        if consumes == "source_target" and target is None:
            raise ValueError("target: this objective consumes source and target data; give target=")
        self.consumes = consumes
        self.step = 0
        self.run_dir = Path(config.out) if config.out else None
        #: the id of the run (config.json, every checkpoint); set by fit()
        self.run_id: str | None = None
        #: fraction of the run done after the last step, from :class:`RunClock` (callbacks
        #: read it to schedule work that a time budget must not skip)
        self.progress = 0.0
        #: True while the callbacks of the run's last step run
        self.final_step = False

    # -- set-up -------------------------------------------------------------------------------
    @property
    def backbone(self) -> Backbone:
        return self.objective.backbone

    def _precision(self, device: torch.device) -> str:
        p = self.config.precision
        if p == "auto":
            return "fp16" if device.type == "cuda" else "fp32"
        if p == "fp16" and device.type != "cuda":
            raise ValueError("precision: 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
        return p

    def _target_views(self) -> Any:
        """The target loader's views: one per preset of ``objective.target_augmentation``
        (FixMatch's weak and strong views), else the source's."""
        presets = getattr(self.objective, "target_augmentation", None)
        if not presets:
            return None
        from pyxfer.ops.augment import preset

        size = self.config.size or self.backbone.input_spec.size
        return [spec for name in presets for spec in preset(name, size=size)]

    def _preset_options(self) -> dict[str, Any]:
        """The objective's arguments of its preset (:meth:`Objective.preset_options`)."""
        get = getattr(self.objective, "preset_options", None)
        return dict(get()) if callable(get) else {}

    def _no_flip(self, views: Any) -> Any:
        """``views`` with every flip probability at 0 (``flip=False``: FixMatch drops the flip
        for SVHN's digits; a mirrored digit or letter is another symbol or none)."""
        import dataclasses

        from pyxfer.ops.augment import ViewSpec, preset

        if isinstance(views, str):
            size = self.config.size or self.backbone.input_spec.size
            views = preset(views, size=size, **self._preset_options())
        elif isinstance(views, ViewSpec):
            views = [views]
        return [dataclasses.replace(v, flip_p=0.0) for v in views]

    def _make_loader(
        self, data: Any, seed: int, views: Any = None, batch_size: int | None = None
    ) -> FusedLoader:
        cfg = self.config
        views = views or cfg.views or getattr(self.objective, "augmentation", "simclr")
        if not cfg.flip:
            views = self._no_flip(views)
        return FusedLoader(
            data,
            batch_size or cfg.batch_size,
            views,
            size=cfg.size,
            seed=seed,
            rank=self.info.rank,
            world_size=self.info.world_size,
            threads=cfg.threads,
            prefetch=cfg.prefetch,
            input_spec=self.backbone.input_spec,
            pin_memory=self.device.type == "cuda",
            preset_options=self._preset_options() if isinstance(views, str) else None,
        )

    def _setup(self) -> None:
        cfg = self.config
        self.info = pdist.setup(cfg.device)
        self.device = self.info.device
        self.precision = self._precision(self.device)
        self.objective.to(self.device)
        groups = self._groups or default_param_groups(self.objective, cfg.weight_decay)
        for g in groups:
            g.setdefault("names", [f"p{i}" for i in range(len(g["params"]))])
        self.optimizer = optimizer_from_config(groups, cfg)
        self.ema = EMA(self.objective, cfg.ema, cfg.ema_warmup) if cfg.ema else None
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.precision == "fp16" and self.device.type == "cuda"
        )
        # Objectives with several players (a GAN's discriminator and generator) are optimised
        # in turn: per step and player, that player's loss is back-propagated and only its
        # parameters (objective.param_groups()[player]) are stepped; one optimiser holds them
        # all, so checkpoints and schedules are unchanged.
        self.players: tuple[str, ...] = tuple(getattr(self.objective, "players", ("main",)))
        self._player_params: dict[str, set[int]] = {}
        if len(self.players) > 1:
            owned = self.objective.param_groups()
            self._player_params = {p: {id(t) for t in owned[p]} for p in self.players}
        self.model: nn.Module = self.objective
        if self.info.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(
                self.objective, device_ids=ids, find_unused_parameters=len(self.players) > 1
            )
        self.loader = self._make_loader(self.data, cfg.seed)
        if len(self.loader) == 0:
            raise ValueError(
                f"batch_size: {cfg.batch_size} per process is larger than the "
                f"{len(self.data)} images / {self.info.world_size} processes (drop_last)"
            )
        # the unlabelled batch is unlabelled_ratio times the labelled one (FixMatch's mu); an
        # objective that never looks at the target (source only) gets no target loader
        self.target_loader = (
            self._make_loader(
                self.target,
                cfg.seed + 1,
                self._target_views(),
                cfg.batch_size * cfg.unlabelled_ratio,
            )
            if self.target is not None and getattr(self.objective, "uses_target", True)
            else None
        )
        if self.consumes == "views":
            want = getattr(self.objective, "num_views", self.loader.num_views)
            if self.loader.num_views != want:
                raise ValueError(
                    f"views: the objective needs {want} views per image, the augmentation "
                    f"{self.loader.views!r} gives {self.loader.num_views}"
                )
        per_epoch = len(self.loader)
        #: the step limit (None: the time budget alone ends the run); a callback may lower it
        #: to stop early
        self.total_steps: int | None = cfg.step_limit(per_epoch)
        self.steps_per_epoch = per_epoch
        self.run_clock = RunClock(self.total_steps, cfg.max_time, clock=self.clock)

    def resolved_config(self) -> dict[str, Any]:
        """``config.json``: every setting, with the automatic ones resolved."""
        d = self.config.to_dict()
        d.update(
            views=self.loader.views if isinstance(self.loader.views, str) else self.config.views,
            size=self.loader.size,
            precision=self.precision,
            device=str(self.device),
        )
        d["run"] = {
            "format": rundir.RUN_FORMAT,
            "id": self.run_id,
            "world_size": self.info.world_size,
            "global_batch_size": self.config.batch_size * self.info.world_size,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "images": len(self.data),
            "storage": _storage(self.data),
            "parameters": sum(p.numel() for p in self.objective.parameters()),
            "objective_class": type(self.objective).__name__,
            "preset_options": self.loader.preset_options,
            "torch": torch.__version__,
            "knn": None
            if self.knn is None
            else {"bank": len(self.knn.bank), "queries": len(self.knn.queries)},
        }
        return d

    # -- checkpoints --------------------------------------------------------------------------
    def _checkpoint_dir(self) -> Path | None:
        return self.run_dir / "checkpoints" if self.run_dir else None

    def save_checkpoint(self, elapsed: float) -> Path | None:
        """Write a checkpoint of the current step (called on every rank; rank 0 writes)."""
        root = self._checkpoint_dir()
        if root is None:
            return None
        rng: list[dict[str, Any] | None] = [ckpt.rng_state()]
        if self.info.distributed:  # every rank's RNG streams, so each resumes its own
            rng = [None] * self.info.world_size
            torch.distributed.all_gather_object(rng, ckpt.rng_state())
        if not self.info.is_main:
            return None
        metrics = root.parent / "metrics.jsonl"
        if metrics.is_file():  # the records up to this step reach the disk before it does
            fsync_path(metrics)
        tensors = {f"model.{k}": v for k, v in self.objective.state_dict().items()}
        opt_t, opt_s = ckpt.optimizer_tensors(self.optimizer)
        tensors.update(opt_t)
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        state = {
            "format": ckpt.FORMAT,
            "version": 1,
            "run_id": self.run_id,
            "step": self.step,
            "epoch": self.loader.epoch,
            "elapsed": elapsed,
            "loader": self._loader_state(self.loader),
            "target_loader": None
            if self.target_loader is None
            else self._loader_state(self.target_loader),
            "rng": rng,  # one entry per rank
            "objective": self._objective_state(),
            "optimizer_scalars": opt_s,
            "scaler": {k: v for k, v in self.scaler.state_dict().items()},
            "schedule": {
                "total_steps": self.total_steps,
                "warmup_steps": self.config.warmup_steps,
                "max_time": self.config.max_time,
                "progress": self.progress,
            },
            "config": self.config.to_dict(),
        }
        return ckpt.save_checkpoint(root, self.step, tensors, state, self.config.keep_last)

    def _loader_state(self, loader: FusedLoader) -> dict[str, Any]:
        """The loader's position with the layout it counts in (batch size, world size)."""
        return {
            **loader.state_dict(),
            "batch_size": int(loader.batch_size),
            "world_size": self.info.world_size,
        }

    def _objective_state(self) -> dict[str, Any]:
        get = getattr(self.objective, "schedule_state", None)
        return dict(get()) if get is not None else {}

    def _load_loader_state(
        self, loader: FusedLoader, state: dict[str, Any], layout: tuple[int, int]
    ) -> None:
        """Restore a loader's position; under a changed layout (``allow_layout_change``),
        from the images of the epoch already consumed (rounded down to a whole batch)."""
        own = {k: v for k, v in state.items() if k not in ("batch_size", "world_size")}
        batch, world = layout
        new = (int(loader.batch_size), self.info.world_size)
        if (batch, world) != new:
            seen = int(own["position"]) * batch * world
            own["position"] = seen // (new[0] * new[1])
            again = seen - own["position"] * new[0] * new[1]
            if again and self.info.is_main:
                log.warning(
                    "resume: %d images of epoch %d are seen again (batch size x world size "
                    "changed from %d x %d to %d x %d)",
                    again,
                    own["epoch"],
                    batch,
                    world,
                    *new,
                )
        loader.load_state_dict(own)

    def _layout(self, state: dict[str, Any]) -> tuple[int, int]:
        """(batch size, world size) a checkpoint was written with (older checkpoints: from
        its config and its RNG states) — refused when it differs from this run's unless
        ``allow_layout_change``."""
        loader = state.get("loader", {})
        batch = int(loader.get("batch_size", state.get("config", {}).get("batch_size", 0)))
        world = int(loader.get("world_size", len(state.get("rng", [None]))))
        now = (int(self.loader.batch_size), self.info.world_size)
        if (batch, world) != now and not self.config.allow_layout_change:
            raise ValueError(
                f"resume: the checkpoint was written with batch_size {batch} per process and "
                f"world size {world}, this run has batch_size {now[0]} and world size "
                f"{now[1]}; a resumed run continues bit for bit only with the same ones. Run "
                "with the same batch size and number of processes, or set "
                "allow_layout_change (--allow-layout-change) to continue anyway (the position "
                "in the epoch is kept to a whole global batch, every rank starts new RNG "
                "streams)"
            )
        return batch, world

    def _resume(self) -> float:
        """Restore the newest loadable checkpoint of the run ``config.resume``; returns the
        elapsed seconds (0 when the run has no checkpoint yet: it starts from step 0)."""
        cfg = self.config
        if not cfg.resume:
            raise ValueError("resume: expected the run directory to resume from, received none")
        root = Path(cfg.resume) / "checkpoints"
        if not (Path(cfg.resume) / "config.json").is_file():
            raise FileNotFoundError(
                f"resume: {str(cfg.resume)!r} has no config.json (not a run directory)"
            )
        found = ckpt.load_latest(root, self.run_id)
        if found is None:
            if self.info.is_main:
                log.warning("resume: no checkpoint in %s yet: starting from step 0", root)
            return 0.0
        path, tensors, state = found
        layout = self._layout(state)
        model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        self.objective.load_state_dict(model, strict=True)
        ckpt.load_optimizer_tensors(
            self.optimizer,
            {k: v for k, v in tensors.items() if k.startswith("optimizer.")},
            state["optimizer_scalars"],
        )
        if self.ema is not None:
            self.ema.load_state_dict(
                {k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")}
            )
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self._load_loader_state(self.loader, state["loader"], layout)
        if self.target_loader is not None and state.get("target_loader"):
            t = state["target_loader"]
            t_layout = (int(t.get("batch_size", layout[0])), int(t.get("world_size", layout[1])))
            self._load_loader_state(self.target_loader, t, t_layout)
        load_schedule = getattr(self.objective, "load_schedule_state", None)
        if load_schedule is not None and state.get("objective") is not None:
            load_schedule(state["objective"])
        self.step = int(state["step"])
        self.progress = float(state.get("schedule", {}).get("progress", 0.0))
        rank, world = self.info.rank, self.info.world_size
        if layout[1] == world:
            ckpt.set_rng_state(state["rng"][rank])
        else:  # a new layout: every rank its own new streams (never rank 0's copied)
            seed = (cfg.seed * 1_000_003 + rank) * 1_000_003 + self.step
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
        if self.info.is_main:
            log.info("resumed from %s (step %d, epoch %d)", path, self.step, state["epoch"])
        return float(state.get("elapsed", 0.0))

    # -- metrics ------------------------------------------------------------------------------
    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append ``record`` to the run's ``metrics.jsonl`` (rank 0 only; nothing without a run
        directory). Callbacks log their own records (validation scores) through this."""
        if self.run_dir is None or not self.info.is_main:
            return
        path = self.run_dir / "metrics.jsonl"
        try:
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            reraise_os_error(exc, path)

    _log = log_metrics  # the former private name, kept for one release

    def _truncate_metrics(self) -> None:
        """On resume, drop the records written after the checkpoint (they will be redone),
        the end record (it will be written again) and a line torn by a crash mid-write."""
        path = self.run_dir / "metrics.jsonl" if self.run_dir else None
        if path is None or not path.is_file() or not self.info.is_main:
            return
        keep, torn = [], 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                torn += 1
                continue
            if not isinstance(record, dict):
                torn += 1
            elif record.get("step", 0) <= self.step and record.get("event") != "end":
                keep.append(line)
        if torn:
            log.warning("resume: dropped %d unreadable line(s) of %s (a torn write)", torn, path)
        atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())

    def _mean_parts(self, parts: dict[str, torch.Tensor]) -> dict[str, float]:
        if not parts:
            return {}
        vec = torch.stack([parts[k] for k in parts])
        if self.info.distributed:
            torch.distributed.all_reduce(vec)
            vec /= self.info.world_size
        return dict(zip(parts, vec.tolist(), strict=True))

    # -- one step -----------------------------------------------------------------------------
    def _inputs(self, batch: Batch, target: Batch | None) -> tuple[Any, ...]:
        dev = self.device
        if self.consumes == "views":
            return ([v.to(dev, non_blocking=True) for v in batch.views],)
        labels = batch.labels.to(dev) if batch.labels is not None else None
        if self.consumes == "labelled":
            return (batch.views[0].to(dev, non_blocking=True), labels)
        if target is None:  # an objective without use for the target (source only)
            return ([batch.views[0].to(dev)], labels, [])
        return ([batch.views[0].to(dev)], labels, [v.to(dev) for v in target.views])

    def _autocast(self) -> Any:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if self.precision == "fp16":
            return torch.autocast(self.device.type, dtype=torch.float16)
        return nullcontext()

    def _horizon(self) -> int:
        """The step count the schedules stretch over now (see :class:`RunClock`); the same on
        every rank (rank 0's clock)."""
        clock = getattr(self, "run_clock", None)
        if clock is None:  # train_step called without fit(): the configured steps
            return self.total_steps or 1
        clock.step_limit = self.total_steps
        elapsed = pdist.broadcast_float(clock.elapsed(), self.info)
        return clock.horizon(self.step, elapsed)

    def train_step(self, batch: Batch, target: Batch | None = None) -> dict[str, torch.Tensor]:
        """One optimiser step on ``batch``; returns the objective's outputs (detached)."""
        cfg = self.config
        horizon = self._horizon()
        set_lr(
            self.optimizer,
            cfg.lr
            * lr_factor(self.step, horizon, cfg.warmup_steps, cfg.min_lr_ratio, cfg.lr_schedule),
        )
        inputs = self._inputs(batch, target)
        if len(self.players) == 1:
            out = self._player_step(inputs, None)
        else:
            out, total = {}, 0.0
            for player in self.players:
                part = self._player_step(inputs, player)
                total = total + part.pop("loss")
                out.update(part)
            out["loss"] = total
        self.step += 1
        self.objective.on_step_end(self.step, max(self.step, self._horizon()))
        if self.ema is not None:
            self.ema.update(self.objective, self.step)
        return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in out.items()}

    def _player_step(self, inputs: tuple[Any, ...], player: str | None) -> dict[str, Any]:
        """Forward, non-finite check, backward and optimiser step for one player (or all)."""
        cfg = self.config
        kwargs = {} if player is None else {"player": player}
        with self._autocast():
            out = self.model(*inputs, **kwargs)
        loss = out["loss"]
        finite = bool(torch.isfinite(loss.detach()).all())
        if not pdist.all_true(finite, self.info):
            parts = {k: float(v) for k, v in _parts(out).items()}
            if player is not None:
                parts = {f"{player}.{k}": v for k, v in parts.items()}
            raise NonFiniteLossError(self.step + 1, self.loader.epoch, parts)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if player is not None:  # step only this player's parameters
            mine = self._player_params[player]
            for p in params:
                if id(p) not in mine:
                    p.grad = None
            params = [p for p in params if id(p) in mine]
        if cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            out["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return out

    def _target_batch(self, it: Any) -> tuple[Batch | None, Any]:
        if self.target_loader is None:
            return None, None
        for _ in range(2):
            if it is None:
                it = iter(self.target_loader)
            try:
                return next(it), it
            except StopIteration:
                it = None
        raise ValueError("target: the target loader gives no batches")

    # -- the run ------------------------------------------------------------------------------
    def eval_backbone(self) -> Backbone:
        """The backbone to evaluate and save: the EMA weights when EMA is on."""
        if self.ema is None:
            return self.backbone
        bb = copy.deepcopy(self.backbone)
        shadow = self.ema.state_dict()
        bb.load_state_dict(
            {k[len("backbone.") :]: v for k, v in shadow.items() if k.startswith("backbone.")}
        )
        return bb

    def evaluate_knn(self) -> float | None:
        """kNN top-1 of the current backbone (None without a monitor)."""
        return None if self.knn is None else self.knn.evaluate(self.eval_backbone())

    def fit(self) -> TrainResult:
        """Train until the step, epoch or time budget is spent; see the module docstring."""
        self._setup()
        try:
            return self._fit()
        finally:
            self.loader.close()
            if self.target_loader is not None:
                self.target_loader.close()
            pdist.cleanup(self.info)

    def _claim_run_dir(self) -> None:
        """Refuse (on every rank) an ``out`` that holds another run, or clear it under
        ``overwrite`` (rank 0); set the run's id (a resumed run keeps its own)."""
        cfg = self.config
        if cfg.resume:
            self.run_id = rundir.run_id(cfg.resume)
        elif self.run_dir is not None:
            self.run_id = rundir.new_run_id()
        if self.run_dir is None:
            return
        error: Exception | None = None
        if self.info.is_main:
            try:
                rundir.claim(self.run_dir, resume=cfg.resume, overwrite=cfg.overwrite)
            except ValueError as exc:
                error = exc
        if not pdist.broadcast_flag(error is None, self.info):
            raise error or ValueError(f"out: rank 0 refused the run directory {cfg.out!r}")

    def _fit(self) -> TrainResult:
        cfg = self.config
        main = self.info.is_main
        torch.manual_seed(cfg.seed + self.info.rank)  # dropout & co. differ between ranks
        np.random.seed((cfg.seed + self.info.rank) % 2**32)
        self._claim_run_dir()
        elapsed0 = self._resume() if cfg.resume else 0.0
        if self.run_dir is not None and main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            clean_stale_temps(self.run_dir)
            atomic_write_json(self.run_dir / "config.json", self.resolved_config())
            if cfg.resume:
                self._truncate_metrics()
        show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
        from tqdm.auto import tqdm

        bar = tqdm(
            total=self.total_steps, initial=self.step, disable=not (show and main), unit="step"
        )
        clock = self.run_clock = RunClock(
            self.total_steps, cfg.max_time, clock=self.clock, elapsed=elapsed0
        )
        clock.start()
        images_per_step = cfg.batch_size * self.info.world_size
        last_t, last_step, last_wait = time.perf_counter(), self.step, self.loader.wait_time
        stop_reason = "max_steps" if cfg.max_steps else "epochs"
        record: dict[str, Any] = {}
        target_it = None
        last_ckpt = self.step if cfg.resume else -1
        # without a progress bar (stderr is a log file or a pipe), a line every
        # ``_PROGRESS_EVERY`` seconds, so a log shows the run move
        lines = main and not show
        last_line = time.perf_counter()
        try:
            stopped = self.total_steps is not None and self.step >= self.total_steps
            while not stopped:
                for batch in self.loader:
                    epoch = self.loader.epoch
                    target, target_it = self._target_batch(target_it)
                    out = self.train_step(batch, target)
                    step = self.step
                    elapsed = pdist.broadcast_float(clock.elapsed(), self.info)
                    self.progress = clock.progress(step, elapsed)
                    done = self.total_steps is not None and step >= self.total_steps
                    out_of_time = clock.out_of_time(elapsed)
                    self.final_step = done or out_of_time
                    limit = self.total_steps
                    for cb in self.callbacks:
                        cb(self, step, out)
                    self.final_step = False
                    if self.total_steps != limit:  # a callback stopped the run early
                        done = self.total_steps is not None and step >= self.total_steps
                        if done:
                            stop_reason = "early_stop"
                    elif out_of_time and not done:
                        stop_reason = "max_time"
                    if (cfg.log_every and step % cfg.log_every == 0) or done or out_of_time:
                        now = time.perf_counter()
                        dt = max(now - last_t, 1e-9)
                        parts = self._mean_parts(_parts(out))
                        record = {
                            "step": step,
                            "epoch": epoch,
                            **parts,
                            "lr": self.optimizer.param_groups[0]["lr"]
                            / self.optimizer.param_groups[0].get("lr_mult", 1.0),
                            "images_per_s": (step - last_step) * images_per_step / dt,
                            "loader_wait_frac": (self.loader.wait_time - last_wait) / dt,
                            "loader_starved": self.loader.starved,
                            "time": elapsed,
                            "progress": self.progress,
                        }
                        self._log(record)
                        bar.set_postfix(
                            loss=f"{parts.get('loss', float('nan')):.4g}",
                            img_s=f"{record['images_per_s']:.0f}",
                        )
                        last_t, last_step, last_wait = now, step, self.loader.wait_time
                    bar.update(1)
                    if (
                        self.knn is not None
                        and cfg.knn_every
                        and step % cfg.knn_every == 0
                        and not (done or out_of_time)
                    ):
                        self._log({"step": step, "epoch": epoch, "knn_top1": self.evaluate_knn()})
                    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                        self.save_checkpoint(clock.elapsed())
                        last_ckpt = step
                    if lines and time.perf_counter() - last_line >= _PROGRESS_EVERY:
                        last_line = time.perf_counter()
                        self._progress_line(record)
                    if done or out_of_time:
                        stopped = True
                        break
        finally:
            bar.close()
        elapsed = clock.elapsed()
        if last_ckpt != self.step:
            self.save_checkpoint(elapsed)
        knn = self.evaluate_knn()
        model_dir = self._save_model(knn, stop_reason)
        end = {
            "step": self.step,
            "epoch": self.loader.epoch,
            "event": "end",
            "stop_reason": stop_reason,
            "time": elapsed,
        }
        if knn is not None:
            end["knn_top1"] = knn
        self._log(end)
        if main:
            log.info(
                "stopped (%s) at step %d%s",
                stop_reason,
                self.step,
                "" if knn is None else f", kNN top-1 {100 * knn:.2f} %",
            )
        return TrainResult(
            self.step,
            self.loader.epoch,
            stop_reason,
            elapsed,
            knn,
            self.run_dir,
            model_dir,
            record,
        )

    def _progress_line(self, record: dict[str, Any]) -> None:
        """One log line: epoch, step (of the limit), progress, loss, speed, elapsed time."""
        limit = f"/{self.total_steps}" if self.total_steps is not None else ""
        loss = record.get("loss")
        speed = record.get("images_per_s")
        log.info(
            "epoch %d, step %d%s (%.0f %%)%s%s, %.0f s elapsed",
            self.loader.epoch,
            self.step,
            limit,
            100 * self.progress,
            "" if loss is None else f", loss {loss:.4g}",
            "" if speed is None else f", {speed:.0f} images/s",
            self.run_clock.elapsed(),
        )

    def _save_model(self, knn: float | None, stop_reason: str) -> Path | None:
        if self.run_dir is None or not self.info.is_main:
            return None
        if not self.config.backbone:
            log.warning("config.backbone is not set: the final model is not saved")
            return None
        from pyxfer.modelio import save_model

        extra = {
            "objective": self.config.objective,
            "objective_opts": self.config.objective_opts,
            "steps": self.step,
            "stop_reason": stop_reason,
            "knn_top1": None if knn is None or math.isnan(knn) else knn,
            "ema": self.config.ema,
        }
        return save_model(
            self.run_dir / "model",
            self.eval_backbone(),
            backbone_name=self.config.backbone,
            backbone_kwargs=dict(self.config.backbone_opts),
            extra=extra,
        )


def _storage(data: Any) -> dict[str, Any] | None:
    """Where the training images live on disk (format, shards, size), for the report."""
    from pyxfer.data.shards import storage_info

    return storage_info(data)
