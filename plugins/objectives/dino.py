"""DINO: self-distillation with no labels, a student matching an EMA teacher across crops.

Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin. "Emerging Properties in
Self-Supervised Vision Transformers". ICCV 2021. https://arxiv.org/abs/2104.14294
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer._checks import check_int, check_number
from pyxfer.objectives import collectives
from pyxfer.objectives.base import Objective
from pyxfer.objectives.heads import DINOHead

from ._momentum import ema_tau, frozen_copy, momentum_update


def dino_loss(
    student: list[torch.Tensor],
    teacher: list[torch.Tensor],
    center: torch.Tensor,
    teacher_temp: float = 0.04,
    student_temp: float = 0.1,
) -> torch.Tensor:
    """Cross-entropy of the student's crops against the teacher's centred, sharpened global crops.

    With ``P_t = softmax((t - c) / teacher_temp)`` for each teacher (global) view ``t`` and
    ``log P_s = log_softmax(s / student_temp)`` for each student view ``s``::

        loss = mean over pairs (t, s), t != s of mean_n [ -sum_k P_t[n, k] log P_s[n, k] ]

    where the student's first views are the same global crops as the teacher's (pair ``(i, i)``
    is skipped) and the rest are local crops. This is the authors' ``DINOLoss`` (and lightly's).

    Args:
        student: V tensors (N, K), the student's outputs for every view, globals first.
        teacher: G tensors (N, K), the teacher's outputs for the G <= V global views.
        center: (K,) or (1, K) the running centre of the teacher's outputs.
        teacher_temp: the teacher's softmax temperature.
        student_temp: the student's softmax temperature.

    Returns:
        () the loss; no gradient flows to ``teacher`` or ``center``.
    """
    if not student or not teacher or len(teacher) > len(student):
        raise ValueError(
            f"student, teacher: expected V >= G >= 1 views, received {len(student)} student and "
            f"{len(teacher)} teacher views"
        )
    if len(student) < 2:
        raise ValueError("student: expected >= 2 views (the loss skips each view with itself)")
    t = torch.stack(teacher).detach()  # (G, N, K)
    s = torch.stack(student)  # (V, N, K)
    if t.shape[1:] != s.shape[1:]:
        raise ValueError(
            f"student, teacher: expected views (N, K) of one shape, received {tuple(s.shape[1:])} "
            f"and {tuple(t.shape[1:])}"
        )
    p_t = F.softmax((t - center.detach().reshape(1, 1, -1)) / teacher_temp, dim=-1)
    log_p_s = F.log_softmax(s / student_temp, dim=-1)
    ce = -torch.einsum("gnk,vnk->gv", p_t, log_p_s) / s.shape[1]  # (G, V) mean over the batch
    g = torch.arange(t.shape[0], device=ce.device)
    keep = torch.ones_like(ce, dtype=torch.bool)
    keep[g, g] = False  # a global view is not its own target
    return ce[keep].mean()


@torch.no_grad()
def update_center(center: torch.Tensor, teacher: list[torch.Tensor], momentum: float) -> None:
    """``center <- momentum * center + (1 - momentum) * mean(teacher outputs)`` in place, the mean
    over every view and every image of the batch gathered from all ranks."""
    t = collectives.gather(torch.cat(teacher))  # (M * G, K)
    center.mul_(momentum).add_(t.mean(dim=0).reshape(center.shape), alpha=1 - momentum)


def teacher_temperature(progress: float, start: float, end: float, warmup: float) -> float:
    """Linear warmup of the teacher temperature from ``start`` to ``end`` over the first
    ``warmup`` fraction of the run, then ``end``."""
    if warmup <= 0 or progress >= warmup:
        return end
    return start + (end - start) * max(progress, 0.0) / warmup


class DINO(Objective):
    """DINO (Caron et al. 2021): self-distillation of an EMA teacher into a student over crops.

    Student: backbone -> :class:`~pyxfer.objectives.heads.DINOHead` (3-layer MLP, bottleneck,
    L2 normalisation, weight-normalised last layer of ``out_dim`` outputs). Teacher: an
    exponential moving average of the student (backbone and head) whose decay rises from
    ``momentum_base`` = 0.996 to 1 on a cosine over the run (the run clock's horizon, as
    BYOL's). Views: the ``dino`` multi-crop preset, 2 global views and ``n_local`` local views
    (``local_size`` pixels, default 96 / 224 of the global side,
    :func:`pyxfer.ops.augment.dino_local_size`); the teacher sees only the global views, the
    student all of them; views of one resolution go through the backbone as one batch. The loss
    is :func:`dino_loss` with the teacher's outputs centred by a running mean (momentum
    ``center_momentum``, updated after each training forward from the whole gathered batch)
    and sharpened by ``teacher_temp``, which warms up linearly from ``warmup_teacher_temp`` over
    the first ``teacher_temp_warmup`` of the run.

    Defaults follow the authors' ``main_dino.py`` except ``out_dim``: 65536 prototypes suit
    ImageNet, 4096 suits the small data sets this library usually trains on. The paper clips the
    gradient norm at 3 (``--grad-clip 3``) and schedules the weight decay from 0.04 to 0.4;
    neither is part of the objective (the trainer's ``grad_clip`` and ``weight_decay`` apply).
    ``freeze_last_layer`` (a fraction of the run, the paper's "first epoch") gives the last layer
    of the head a zero gradient early on.

    Args:
        backbone: features (N, C, H, W) -> (N, num_features); a ViT takes local crops of any
            multiple of its patch size.
        out_dim: head output width K.
        hidden_dim: head hidden width.
        bottleneck_dim: head bottleneck width.
        n_local: local views per image (0: global views only).
        local_size: side of the local views (default from the global side).
        teacher_temp: the teacher's temperature after the warmup.
        warmup_teacher_temp: the teacher's temperature at the start.
        teacher_temp_warmup: fraction of the run over which the temperature warms up.
        student_temp: the student's temperature.
        center_momentum: momentum of the centre.
        momentum_base: the teacher's initial EMA decay.
        norm_last_layer: fix the norm of the head's last layer (more stable).
        freeze_last_layer: fraction of the run during which the last layer gets no gradient.
        batch_norm: batch norm in the head; default: on for backbones other than vision
            transformers (the authors' choice for ResNets).

    Examples:
        >>> obj = create_objective("dino", backbone, n_local=4)  # doctest: +SKIP
        >>> obj(views)["loss"].backward(); opt.step()  # 2 global + 4 local views
        >>> obj.on_step_end(step, max_steps)  # EMA teacher, temperature schedule
    """

    consumes: ClassVar[str] = "views"
    augmentation: ClassVar[str] = "dino"
    num_views: ClassVar[int] = 8  # with the default n_local = 6; an instance sets its own

    def __init__(
        self,
        backbone: nn.Module,
        out_dim: int = 4096,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        n_local: int = 6,
        local_size: int | None = None,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.04,
        teacher_temp_warmup: float = 0.0,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        momentum_base: float = 0.996,
        norm_last_layer: bool = True,
        freeze_last_layer: float = 0.0,
        batch_norm: bool | None = None,
    ) -> None:
        super().__init__(backbone)
        for name, value in (
            ("teacher_temp", teacher_temp),
            ("warmup_teacher_temp", warmup_teacher_temp),
            ("student_temp", student_temp),
        ):
            check_number(name, value, low_open=True)
        for name, value in (
            ("teacher_temp_warmup", teacher_temp_warmup),
            ("center_momentum", center_momentum),
            ("momentum_base", momentum_base),
            ("freeze_last_layer", freeze_last_layer),
        ):
            check_number(name, value, 0.0, 1.0)
        check_int("n_local", n_local, 0)
        if local_size is not None:
            check_int("local_size", local_size, 1)
        self.n_local, self.local_size = n_local, local_size
        self.num_views = 2 + n_local  # type: ignore[misc]  # per instance (see Objective)
        self.teacher_temp_end = float(teacher_temp)
        self.warmup_teacher_temp = float(warmup_teacher_temp)
        self.teacher_temp_warmup = float(teacher_temp_warmup)
        self.student_temp, self.center_momentum = float(student_temp), float(center_momentum)
        self.momentum_base, self.freeze_last_layer = float(momentum_base), float(freeze_last_layer)
        if batch_norm is None:
            batch_norm = not hasattr(backbone, "patch_embed")
        nf = int(backbone.num_features)
        self.head = DINOHead(nf, out_dim, hidden_dim, bottleneck_dim, batch_norm, norm_last_layer)
        self.backbone_teacher = frozen_copy(self.backbone)
        self.head_teacher = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, out_dim))
        # the schedules' current values (set by on_step_end, checkpointed by schedule_state)
        self.tau = self.momentum_base
        self.teacher_temp = teacher_temperature(0.0, *self._temps())
        self.last_layer_frozen = self.freeze_last_layer > 0

    def _temps(self) -> tuple[float, float, float]:
        return self.warmup_teacher_temp, self.teacher_temp_end, self.teacher_temp_warmup

    def preset_options(self) -> dict[str, Any]:
        """``n_local`` and, when given, ``local_size`` of the ``dino`` preset."""
        opts: dict[str, Any] = {"n_local": self.n_local}
        if self.local_size is not None:
            opts["local_size"] = self.local_size
        return opts

    def check_views(self, views: Any) -> list[torch.Tensor]:
        """``2 + n_local`` tensors (N, C, H, W): two global views of one shape, then local
        views of one (any) shape with the same N and C."""
        if isinstance(views, torch.Tensor):
            views = list(views)
        views = list(views)
        ok = len(views) == self.num_views and all(
            isinstance(v, torch.Tensor) and v.dim() == 4 for v in views
        )
        if ok:
            ok = views[1].shape == views[0].shape and all(
                v.shape == views[2].shape and v.shape[:2] == views[0].shape[:2] for v in views[2:]
            )
        if not ok:
            shapes = [tuple(v.shape) if isinstance(v, torch.Tensor) else type(v) for v in views]
            raise ValueError(
                f"views: expected {self.num_views} tensors (N, C, H, W) for DINO, 2 global views "
                f"of one shape then {self.n_local} local views of one shape, received {shapes}"
            )
        return views

    def _student(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Student outputs of every view: one backbone pass per resolution, one head pass."""
        n = views[0].shape[0]
        feats = [self.backbone(torch.cat(views[:2]))]  # (2N, F)
        if len(views) > 2:
            feats.append(self.backbone(torch.cat(views[2:])))  # (n_local N, F)
        out = self.head(torch.cat(feats), freeze_last_layer=self.last_layer_frozen)
        return list(out.split(n))

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Compute the loss of one batch (and, in training, move the centre).

        Args:
            views: 2 global views then ``n_local`` local views (N, C, H, W).

        Returns:
            ``loss``, ``teacher_temp``, ``tau``, ``entropy`` (mean entropy of the teacher's
            sharpened distribution, in nats: 0 means collapse to one prototype,
            ``log(out_dim)`` a uniform output).
        """
        views = self.check_views(views)
        student = self._student(views)
        with torch.no_grad():
            teacher = list(self.head_teacher(self.backbone_teacher(torch.cat(views[:2]))).chunk(2))
        loss = dino_loss(student, teacher, self.center, self.teacher_temp, self.student_temp)
        with torch.no_grad():
            t = torch.cat(teacher)
            p = F.softmax((t - self.center) / self.teacher_temp, dim=-1)
            entropy = -(p * p.clamp_min(1e-12).log()).sum(dim=-1).mean()
        if self.training and torch.is_grad_enabled():
            update_center(self.center, teacher, self.center_momentum)
        return {
            "loss": loss,
            "teacher_temp": torch.tensor(self.teacher_temp),
            "tau": torch.tensor(self.tau),
            "entropy": entropy,
        }

    def schedule_state(self) -> dict[str, Any]:
        return {
            "tau": self.tau,
            "teacher_temp": self.teacher_temp,
            "last_layer_frozen": self.last_layer_frozen,
        }

    def load_schedule_state(self, state: dict[str, Any]) -> None:
        self.tau = float(state.get("tau", self.momentum_base))
        self.teacher_temp = float(state.get("teacher_temp", self.teacher_temp))
        self.last_layer_frozen = bool(state.get("last_layer_frozen", self.last_layer_frozen))

    @torch.no_grad()
    def on_step_end(self, step: int, max_steps: int) -> None:
        progress = min(1.0, step / max_steps) if max_steps > 0 else 0.0
        self.tau = ema_tau(step, max_steps, self.momentum_base)
        momentum_update(self.backbone_teacher, self.backbone, self.tau)
        momentum_update(self.head_teacher, self.head, self.tau)
        self.teacher_temp = teacher_temperature(progress, *self._temps())
        self.last_layer_frozen = progress < self.freeze_last_layer
