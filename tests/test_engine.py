"""Training engine: learning, schedule, clipping, LARS, EMA, run files, checkpoints, resume,
non-finite stop, wall-clock budget, kNN monitor, DDP equivalence."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pyxfer.backbone import Backbone, InputSpec, create_backbone
from pyxfer.data import load_dataset
from pyxfer.engine import EMA, LARS, NonFiniteLossError, TrainConfig, Trainer, lr_factor
from pyxfer.engine import checkpoint as ckpt
from pyxfer.engine.knn import KNNMonitor
from pyxfer.modelio import load_model
from pyxfer.objectives.base import Objective

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models, shared CPU


# -- tiny objectives and backbones ----------------------------------------------------------
class Align(Objective):
    """Two views: distance of normalised projections + a variance hinge (VICReg's)."""

    consumes = "views"
    augmentation = "simclr"
    num_views = 2

    def __init__(self, backbone: nn.Module, dim: int = 16) -> None:
        super().__init__(backbone)
        self.projector = nn.Linear(backbone.num_features, dim)

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        z1, z2 = (self.projector(self.backbone(v)) for v in views)  # (N, dim) each
        align = (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).pow(2).sum(1).mean()
        variance = F.relu(1.0 - torch.sqrt(torch.cat([z1, z2]).var(0) + 1e-4)).mean()
        return {"loss": align + variance, "align": align.detach(), "variance": variance.detach()}


class Supervised(Objective):
    """Cross-entropy of the backbone's head on one view (a fine-tuning objective)."""

    consumes = "labelled"
    augmentation = "fixmatch_weak"
    num_views = 1

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(self.backbone(images), labels)}


class ExplodesAt(Align):
    """Returns a NaN loss on the ``at``-th forward."""

    def __init__(self, backbone: nn.Module, at: int) -> None:
        super().__init__(backbone)
        self.at, self.calls = at, 0

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        out = super().forward(views)
        self.calls += 1
        if self.calls == self.at:
            out["loss"] = out["loss"] * float("nan")
            out["align"] = out["align"] * float("inf")
        return out


class PlainNet(Backbone):
    """conv-ReLU without BatchNorm (no batch statistics: DDP shards give the same gradient)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.num_features = 8
        self.input_spec = InputSpec(1, 8, (0.5,), (0.5,))
        self.reset_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))  # (N, 8, H, W)


def _digits(n: int = 256):
    store = load_dataset("digits")
    return store.subset(np.arange(n))


def _lenet(**kw) -> Backbone:
    torch.manual_seed(0)
    return create_backbone("lenet", img_size=8, width=0.25, **kw)


def _config(**kw) -> TrainConfig:
    base = dict(
        batch_size=32,
        lr=3e-3,
        threads=1,
        device="cpu",
        log_every=1,
        checkpoint_every=0,
        progress=False,
        backbone="lenet",
        backbone_opts={"img_size": 8, "width": 0.25},
    )
    base.update(kw)
    return TrainConfig(**base)


def _losses() -> tuple[list[float], callable]:
    seen: list[float] = []

    def record(trainer, step, out):
        seen.append(float(out["loss"]))

    return seen, record


# -- learning -------------------------------------------------------------------------------
def test_supervised_loss_falls_and_knn_is_logged(tmp_path: Path) -> None:
    data = _digits(320)
    train, held = data.subset(np.arange(256)), data.subset(np.arange(256, 320))
    seen, record = _losses()
    cfg = _config(epochs=4, lr=3e-2, out=str(tmp_path / "run"), knn_every=8)
    result = Trainer(
        Supervised(_lenet(num_classes=10)), train, cfg, knn=(train, held), callbacks=[record]
    ).fit()
    assert result.step == 32 and result.stop_reason == "epochs"
    assert np.mean(seen[-4:]) < 0.6 * np.mean(seen[:4])
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    knn = [r["knn_top1"] for r in records if "knn_top1" in r]
    assert len(knn) == 3 + 1  # steps 8, 16, 24 (not 32, the last), then the final evaluation
    assert all(0.0 <= k <= 1.0 for k in knn) and result.knn_top1 == knn[-1]
    assert knn[-1] > 0.5  # digits are easy (chance is 0.1)


def test_two_view_objective_loss_falls() -> None:
    seen, record = _losses()
    cfg = _config(max_steps=16, lr=1e-2, out=None)
    Trainer(Align(_lenet()), _digits(256), cfg, callbacks=[record]).fit()
    assert len(seen) == 16
    assert np.mean(seen[-3:]) < 0.5 * np.mean(seen[:3])


def test_flip_false_turns_every_flip_off() -> None:
    """``flip=False`` (``--no-flip``): no view of the objective's preset is ever mirrored."""
    on = Trainer(Align(_lenet()), _digits(64), _config(max_steps=1, out=None))
    off = Trainer(Align(_lenet()), _digits(64), _config(max_steps=1, out=None, flip=False))
    on._setup(), off._setup()
    assert [v.flip_p for v in on.loader.specs] == [0.5, 0.5]
    assert [v.flip_p for v in off.loader.specs] == [0.0, 0.0]
    rest = [dataclasses.replace(v, flip_p=0.5) for v in off.loader.specs]
    assert rest == on.loader.specs  # nothing else changed
    assert all(b.views[0].shape[0] == 32 for b in [next(iter(off.loader))])


def test_knn_monitor_matches_a_direct_computation() -> None:
    from pyxfer.ops.knn import knn_classify
    from pyxfer.ops.preprocess import preprocess

    data = _digits(120)
    bank, queries = data.subset(np.arange(100)), data.subset(np.arange(100, 120))
    bb = _lenet().eval()
    top1 = KNNMonitor(bank, queries, k=5, threads=1).evaluate(bb)
    with torch.no_grad():
        feats = [
            bb(torch.from_numpy(preprocess(s.images, 8, 8, (0.5,), (0.5,), threads=1)))
            for s in (bank, queries)
        ]
    _, pred = knn_classify(
        feats[1],
        feats[0],
        torch.from_numpy(bank.labels),
        k=5,
        num_classes=10,
        normalize=True,
        return_predictions=True,
    )
    expected = float((pred == torch.from_numpy(queries.labels)).float().mean())
    assert top1 == pytest.approx(expected, abs=1e-6)


# -- optimisation pieces --------------------------------------------------------------------
def test_warmup_then_cosine_values() -> None:
    total, warm = 10, 3
    expected = [1 / 3, 2 / 3, 1.0] + [
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / 7)) for t in range(7)
    ]
    got = [lr_factor(s, total, warm, 0.1) for s in range(total)]
    assert got == pytest.approx(expected, abs=1e-15)
    assert lr_factor(0, 5) == 1.0 and lr_factor(4, 5) == pytest.approx(
        0.5 * (1 + math.cos(0.8 * math.pi))
    )
    # the trainer applies exactly these values, step by step, to every group
    lrs: list[list[float]] = []
    cfg = _config(max_steps=total, warmup_steps=warm, min_lr_ratio=0.1, lr=0.01)
    Trainer(
        Align(_lenet()),
        _digits(),
        cfg,
        callbacks=[lambda t, s, o: lrs.append([g["lr"] for g in t.optimizer.param_groups])],
    ).fit()
    assert [x[0] for x in lrs] == [0.01 * f for f in expected]
    assert all(len(set(x)) == 1 for x in lrs)


def test_gradient_clipping() -> None:
    norms: list[tuple[float, float]] = []

    def check(trainer, step, out):
        grads = [p.grad for g in trainer.optimizer.param_groups for p in g["params"]]
        after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        norms.append((float(out["grad_norm"]), float(after)))

    cfg = _config(max_steps=3, grad_clip=1e-3)
    Trainer(Align(_lenet()), _digits(), cfg, callbacks=[check]).fit()
    for before, after in norms:
        assert before > 1e-3  # clipping was needed ...
        assert after == pytest.approx(1e-3, rel=1e-4)  # ... and the gradient now has the norm


def test_lars_matches_a_hand_computation() -> None:
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(3, 4))
    b = nn.Parameter(torch.randn(3))
    lr, mom, wd, eta = 0.5, 0.9, 0.1, 0.02
    opt = LARS(
        [{"params": [w]}, {"params": [b], "lars_exclude": True, "weight_decay": 0.0}],
        lr=lr,
        momentum=mom,
        weight_decay=wd,
        eta=eta,
    )
    w_ref, b_ref = w.detach().clone(), b.detach().clone()
    mu_w, mu_b = torch.zeros_like(w), torch.zeros_like(b)
    for _ in range(2):
        gw, gb = torch.randn(3, 4), torch.randn(3)
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        d = gw + wd * w_ref
        trust = eta * w_ref.norm() / d.norm()
        mu_w = mom * mu_w + trust * d
        w_ref = w_ref - lr * mu_w
        mu_b = mom * mu_b + gb  # excluded: no decay, no trust ratio
        b_ref = b_ref - lr * mu_b
    assert torch.allclose(w.detach(), w_ref, atol=1e-6)
    assert torch.allclose(b.detach(), b_ref, atol=1e-6)


def test_default_groups_exclude_biases_and_norms_from_decay() -> None:
    from pyxfer.engine.optim import default_param_groups

    obj = Align(_lenet())
    groups = default_param_groups(obj, 0.05, lr_mults={"projector": 10.0})
    by = {(g["lr_mult"], g["weight_decay"]): g for g in groups}
    assert set(by) == {(1.0, 0.05), (1.0, 0.0), (10.0, 0.05), (10.0, 0.0)}
    assert all(p.ndim > 1 for p in by[(1.0, 0.05)]["params"])
    assert by[(10.0, 0.0)]["names"] == ["projector.bias"]
    assert by[(1.0, 0.0)]["lars_exclude"] and not by[(1.0, 0.05)]["lars_exclude"]
    n = sum(len(g["params"]) for g in groups)
    assert n == len(list(obj.parameters()))


def test_ema_moves_towards_the_weights(tmp_path: Path) -> None:
    lin = nn.Linear(2, 2)
    ema = EMA(lin, 0.9)
    w0 = lin.weight.detach().clone()
    with torch.no_grad():
        lin.weight.add_(1.0)
    ema.update(lin)
    assert torch.allclose(ema.shadow["weight"], 0.9 * w0 + 0.1 * (w0 + 1.0))
    # in a run: the saved model holds the EMA weights, between the start and the live weights
    obj = Align(_lenet())
    start = {k: v.clone() for k, v in obj.backbone.state_dict().items()}
    cfg = _config(max_steps=5, ema=0.5, out=str(tmp_path / "run"))
    Trainer(obj, _digits(), cfg).fit()
    saved = load_model(tmp_path / "run" / "model").backbone.state_dict()
    live = obj.backbone.state_dict()
    key = "stage1.0.0.weight"
    assert not torch.equal(saved[key], live[key]) and not torch.equal(saved[key], start[key])


# -- run directory and checkpoints ------------------------------------------------------------
def test_run_directory_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = _config(max_steps=6, out=str(run), checkpoint_every=2, keep_last=2, log_every=2)
    Trainer(Align(_lenet()), _digits(), cfg).fit()
    config = json.loads((run / "config.json").read_text())
    assert config["views"] == "simclr" and config["size"] == 8 and config["precision"] == "fp32"
    assert config["run"]["total_steps"] == 6 and config["max_steps"] == 6
    assert TrainConfig.from_dict({k: v for k, v in config.items() if k != "run"}).max_steps == 6
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [2, 4, 6]
    for r in steps:
        assert {"epoch", "loss", "align", "variance", "lr", "images_per_s", "time"} <= set(r)
        assert r["images_per_s"] > 0
    assert records[-1]["event"] == "end"
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step-00000004", "step-00000006"]  # keep_last = 2
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".json", ".jsonl", ".safetensors"}  # no pickle
    for p in (run / "checkpoints").rglob("*"):
        if p.is_file():
            assert p.suffix in (".json", ".safetensors")
            assert not p.read_bytes().startswith(b"\x80")  # pickle protocol marker
    tensors, state = ckpt.load_checkpoint(run / "checkpoints" / "step-00000006")
    assert state["step"] == 6 and state["loader"]["position"] == 6
    assert any(k.startswith("optimizer.") and k.endswith(".exp_avg") for k in tensors)
    assert load_model(run / "model").backbone_name == "lenet"


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    root = tmp_path / "ckpt"
    ckpt.save_checkpoint(root, 1, {"a": torch.ones(3)}, {"step": 1}, keep_last=1)
    real = safetensors.torch.save_file

    def failing(tensors, path, metadata=None):
        real(tensors, path, metadata=metadata)
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", failing)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(root, 2, {"a": torch.zeros(3)}, {"step": 2}, keep_last=1)
    assert [p.name for p in root.iterdir()] == ["step-00000001"]  # no partial, no temp dir
    tensors, state = ckpt.load_checkpoint(ckpt.latest_checkpoint(root))
    assert state == {"step": 1} and torch.equal(tensors["a"], torch.ones(3))
    with pytest.raises(TypeError):  # not JSON-safe: nothing is written
        ckpt.save_checkpoint(root, 3, {}, {"x": object()}, keep_last=1)
    assert len(list(root.iterdir())) == 1


def test_rng_state_round_trip_is_json() -> None:
    import random

    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    state = json.loads(json.dumps(ckpt.rng_state()))
    a = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


class _Stop(Exception):
    pass


@pytest.mark.parametrize(
    ("every", "crash_at", "shards"),
    [(5, 7, None), (8, 10, None), (5, 7, "raw"), (5, 7, "jpeg")],
)
def test_resume_is_bit_for_bit(
    tmp_path: Path, every: int, crash_at: int, shards: str | None
) -> None:
    """Crash mid-epoch 0 (checkpoint at step 5) or in epoch 1 with the checkpoint exactly at
    the end of epoch 0 (step 8); the resumed run ends with the uninterrupted run's weights.
    The same from a sharded store (4 shards of 64 images), raw or compressed (JPEG)."""
    data = _digits(256)  # 8 steps per epoch at batch 32
    if shards is not None:
        from pyxfer.data import pack, pack_jpeg

        path = (
            pack(data, tmp_path / "sh", size=8, shard_size=64)
            if shards == "raw"
            else pack_jpeg(data, tmp_path / "sh", channels=data.channels, shard_size=64)
        )
        data = load_dataset(f"packed:{path}")
        assert data.num_shards == 4
    kw = dict(
        epochs=2,
        checkpoint_every=every,
        warmup_steps=3,
        ema=0.9,
        grad_clip=5.0,
        weight_decay=0.1,
    )

    def objective() -> Align:
        return Align(_lenet())

    full = objective()
    Trainer(full, data, _config(out=str(tmp_path / "a"), **kw)).fit()

    def crash(trainer, step, out):
        if step == crash_at:
            raise _Stop

    broken = objective()
    threads = threading.active_count()
    with pytest.raises(_Stop):
        Trainer(broken, data, _config(out=str(tmp_path / "b"), **kw), callbacks=[crash]).fit()
    assert threading.active_count() == threads  # the loader thread was stopped
    latest = ckpt.latest_checkpoint(tmp_path / "b" / "checkpoints")
    assert latest is not None and latest.name == f"step-{every:08d}"

    resumed = objective()
    cfg = _config(out=str(tmp_path / "b"), resume=str(tmp_path / "b"), **kw)
    result = Trainer(resumed, data, cfg).fit()
    assert result.step == 16
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ema_a = load_model(tmp_path / "a" / "model").backbone.state_dict()
    ema_b = load_model(tmp_path / "b" / "model").backbone.state_dict()
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    steps = [
        json.loads(x)["step"]
        for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(x)
    ]
    assert steps == list(range(1, 17))  # the records after the checkpoint were redone once
    if shards is not None:  # the run records where its images live; the report shows it
        run = json.loads((tmp_path / "b" / "config.json").read_text())["run"]
        assert run["storage"]["storage"] == "sharded" and run["storage"]["shards"] == 4
        from pyxfer.report import write_report

        assert f"sharded ({shards} shards): 4 shards" in write_report(tmp_path / "b").read_text()


class SourceTarget(Objective):
    """Labelled source + unlabelled target: cross-entropy on the source, and the target's
    mean-feature distance to the source (a crude alignment term)."""

    consumes = "source_target"
    augmentation = "fixmatch_weak"
    num_views = 1

    def forward(self, source, source_labels, target):
        # the batch protocol: a list with the source view, a list of target views
        assert len(source) == 1 and len(target) == self.num_views
        fs, ft = (
            self.backbone.forward_features(source[0]),
            self.backbone.forward_features(target[0]),
        )
        ce = F.cross_entropy(self.backbone.forward_head(fs), source_labels)
        gap = (fs.mean((0, 2, 3)) - ft.mean((0, 2, 3))).pow(2).sum()
        return {"loss": ce + gap, "ce": ce, "gap": gap}


class TwoTargetViews(SourceTarget):
    """Target views from two presets (FixMatch's weak and strong)."""

    num_views = 2
    target_augmentation = ("fixmatch_weak", "eval")


def test_target_views_follow_the_objective_target_augmentation() -> None:
    data = _digits(128)
    source, target = data.subset(np.arange(64)), data.subset(np.arange(64, 128))
    shapes: list[list[tuple[int, ...]]] = []

    class Spy(TwoTargetViews):
        def forward(self, source, source_labels, target):
            shapes.append([tuple(v.shape) for v in target])
            return super().forward(source, source_labels, target)

    cfg = _config(max_steps=2, batch_size=32)
    Trainer(Spy(_lenet(num_classes=10)), source, cfg, target=target).fit()
    assert shapes == [[(32, 1, 8, 8), (32, 1, 8, 8)]] * 2


def test_source_target_objective_and_bf16_autocast() -> None:
    data = _digits(320)
    source, target = data.subset(np.arange(256)), data.subset(np.arange(256, 320))
    seen, record = _losses()
    cfg = _config(max_steps=10, lr=3e-2, precision="bf16")
    trainer = Trainer(
        SourceTarget(_lenet(num_classes=10)), source, cfg, target=target, callbacks=[record]
    )
    trainer.fit()
    assert trainer.precision == "bf16" and len(seen) == 10 and all(np.isfinite(seen))
    assert trainer.target_loader.epoch >= 4  # 2 target batches per epoch, cycled
    with pytest.raises(ValueError, match="target"):
        Trainer(SourceTarget(_lenet(num_classes=10)), source, cfg)
    with pytest.raises(ValueError, match="fp16"):
        Trainer(Align(_lenet()), source, _config(precision="fp16")).fit()


def test_non_finite_loss_stops_naming_step_and_parts() -> None:
    cfg = _config(max_steps=10)
    obj = ExplodesAt(_lenet(), at=3)
    with pytest.raises(NonFiniteLossError, match=r"step 3 \(epoch 0\): loss=nan, align=inf") as e:
        Trainer(obj, _digits(), cfg).fit()
    assert e.value.step == 3 and set(e.value.parts) == {"loss", "align", "variance"}


def test_max_time_stops_cleanly(tmp_path: Path) -> None:
    ticks = iter(range(10**6))
    cfg = _config(max_steps=100, max_time=5.0, out=str(tmp_path / "run"), checkpoint_every=50)
    data = _digits(320)
    train, held = data.subset(np.arange(256)), data.subset(np.arange(256, 320))
    result = Trainer(
        Align(_lenet()), train, cfg, knn=(train, held), clock=lambda: float(next(ticks))
    ).fit()
    assert result.stop_reason == "max_time" and 1 <= result.step < 10
    assert (
        ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints").name == f"step-{result.step:08d}"
    )
    model = load_model(tmp_path / "run" / "model")
    assert model.extra["stop_reason"] == "max_time" and model.extra["steps"] == result.step
    end = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert end["event"] == "end" and end["stop_reason"] == "max_time" and "knn_top1" in end


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ValueError, match="knn_holdout"):
        TrainConfig(knn_holdout=1.5)
    with pytest.raises(ValueError, match="unknown keys"):
        TrainConfig.from_dict({"learning_rate": 1.0})
    with pytest.raises(ValueError, match="views"):
        Trainer(Align(_lenet()), _digits(), _config(views="fixmatch_weak")).fit()
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(Align(_lenet()), _digits(16), _config()).fit()


# -- DDP --------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_config(batch_size: int) -> TrainConfig:
    return _config(
        batch_size=batch_size,
        max_steps=1,
        optimizer="sgd",
        lr=0.5,
        momentum=0.0,
        weight_decay=0.0,
        backbone=None,
    )


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.manual_seed(0)
        obj = Supervised(PlainNet())
        Trainer(obj, _digits(64), _ddp_config(8).replace(out=f"{out}/run")).fit()
        save_file(
            {k: v.contiguous() for k, v in obj.state_dict().items()},
            f"{out}/rank{rank}.safetensors",
        )
        dist.barrier()  # no rank tears gloo down while another's messages are still in flight
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_equal_one_process_on_the_joint_batch(tmp_path: Path) -> None:
    """Two gloo processes, 8 images each, one SGD step == one process with those 16 images.

    The net has no BatchNorm: with batch statistics each rank would normalise with its own
    half-batch statistics, which is not the single-process computation. The comparison is to
    float rounding (the gradient all-reduce sums in another order), not bitwise.
    """
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    torch.manual_seed(0)
    single = Supervised(PlainNet())
    start = {k: v.clone() for k, v in single.state_dict().items()}
    Trainer(single, _digits(64), _ddp_config(16)).fit()
    # fork: the children reuse this process's imports (two fresh interpreters importing torch
    # and its optimiser machinery take tens of seconds on a busy 2-core machine)
    mp.start_processes(
        _ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="fork"
    )
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2))
    ref = single.state_dict()
    for k in ref:
        assert torch.equal(r0[k], r1[k])  # the ranks agree exactly
        assert torch.allclose(r0[k], ref[k], atol=1e-6, rtol=1e-5), k
        assert not torch.equal(ref[k], start[k])  # and the step changed the weights
    # rank 0 wrote the run; the checkpoint holds both ranks' RNG states
    _, state = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000001")
    assert len(state["rng"]) == 2 and state["rng"][0]["torch"] != state["rng"][1]["torch"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["run"]["world_size"] == 2


def test_multi_player_objective_steps_each_player_in_turn(tmp_path) -> None:
    """A GAN trains through the engine: each player's parameters move, the other's grads are
    dropped before its step."""
    import pyxfer
    from pyxfer.engine import TrainConfig, Trainer

    torch.manual_seed(0)
    backbone = pyxfer.create_backbone("lenet", img_size=8)
    gan = pyxfer.create_objective("gan", backbone, image_size=8, channels=1)
    owned = gan.param_groups()
    before = {k: [p.detach().clone() for p in v] for k, v in owned.items()}
    data = pyxfer.load_dataset("digits")
    cfg = TrainConfig(
        max_steps=3,
        batch_size=32,
        lr=1e-3,
        log_every=1,
        progress=False,
        threads=1,
        out=str(tmp_path / "run"),
        checkpoint_every=0,
    )
    result = Trainer(gan, data, cfg).fit()
    assert result.step == 3
    for player, params in owned.items():
        moved = any(not torch.equal(a, b) for a, b in zip(before[player], params, strict=True))
        assert moved, f"{player} parameters did not change"
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    steps = [r for r in records if "loss_discriminator" in r]
    assert steps and all("loss_generator" in r for r in steps)


# heads sized down for a quick CPU run; everything else is each objective's default
_SMALL = {
    "barlow_twins": {"proj_dim": 64, "hidden_dim": 64},
    "vicreg": {"proj_dim": 64, "hidden_dim": 64},
    "byol": {"proj_dim": 32, "hidden_dim": 64},
    "moco_v2": {"queue_size": 256},
    "dino": {"hidden_dim": 64, "out_dim": 64, "bottleneck_dim": 32, "n_local": 2},
}


def _view_objectives() -> list[str]:
    import pyxfer

    names = []
    for name in pyxfer.list_objectives():
        entry = pyxfer.get_registry("objectives").get(name)
        if getattr(entry.factory, "consumes", "views") == "views" and not getattr(
            entry.factory, "requires", None
        ):
            names.append(name)
    return names


@pytest.mark.parametrize("name", _view_objectives())
def test_every_view_objective_trains_through_pretrain(name: str, tmp_path) -> None:
    """The engine feeds each registered objective the views its augmentation preset gives."""
    import pyxfer

    result = pyxfer.pretrain(
        "digits",
        backbone="lenet",
        backbone_opts={"img_size": 8},
        objective=name,
        objective_opts=_SMALL.get(name, {}),
        max_steps=2,
        batch_size=32,
        threads=1,
        progress=False,
        out=str(tmp_path / name),
        checkpoint_every=0,
    )
    assert result.step == 2
    assert (tmp_path / name / "model" / "model.json").is_file()


# -- one clock for every schedule -----------------------------------------------------------
def _ticking(seconds_per_step: float = 1.0):
    """A fake wall clock that advances by ``seconds_per_step`` after every optimiser step."""
    now = [0.0]

    def tick(trainer, step, out) -> None:
        now[0] += seconds_per_step

    return (lambda: now[0]), tick


def test_time_budget_alone_trains_past_one_epoch_and_decays_the_lr_to_the_floor(tmp_path):
    """``max_time`` alone is a budget: the default of one epoch does not stop the run first,
    and the cosine reaches its floor at the end as it would under a step limit."""
    clock, tick = _ticking()
    data = _digits(256)  # 8 steps per epoch at batch 32
    cfg = _config(max_time=20.0, min_lr_ratio=0.1, warmup_steps=2, out=str(tmp_path / "run"))
    assert cfg.epochs is None and cfg.max_steps is None
    result = Trainer(Align(_lenet()), data, cfg, callbacks=(tick,), clock=clock).fit()
    assert result.stop_reason == "max_time" and result.step == 21 and result.epoch >= 2
    records = [
        json.loads(line)
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
        if '"lr"' in line
    ]
    lrs = [r["lr"] for r in records]
    assert lrs[0] < lrs[2]  # warmup
    assert max(lrs) == pytest.approx(cfg.lr, rel=0.05)
    assert lrs[-1] == pytest.approx(0.1 * cfg.lr, rel=1e-6)  # the floor, at the last step
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(lrs[2:]))  # cosine falls
    assert records[-1]["progress"] == pytest.approx(1.0)


def test_explicit_step_and_epoch_limits_stop_before_the_time_budget() -> None:
    clock, tick = _ticking()
    data = _digits(256)
    r = Trainer(
        Align(_lenet()), data, _config(max_steps=5, max_time=1000.0), callbacks=(tick,), clock=clock
    ).fit()
    assert r.stop_reason == "max_steps" and r.step == 5
    r = Trainer(
        Align(_lenet()), data, _config(epochs=1, max_time=1000.0), callbacks=(tick,), clock=clock
    ).fit()
    assert r.stop_reason == "epochs" and r.step == 8
    r = Trainer(Align(_lenet()), data, _config(), callbacks=(tick,), clock=clock).fit()
    assert r.stop_reason == "epochs" and r.step == 8  # no limit given: one epoch


def test_time_budget_completes_the_gradient_reversal_ramp() -> None:
    """DANN's coefficient reads the run's progress: under a time budget with a far step limit
    it still ramps to its final value by the end."""
    from pyxfer.objectives.base import create_objective

    clock, tick = _ticking()
    digits = _digits(512)
    src, tgt = digits.subset(np.arange(256)), digits.subset(np.arange(256, 512))
    obj = create_objective("dann", _lenet(), num_classes=10)
    seen = []
    cfg = _config(max_steps=100_000, max_time=12.0)
    Trainer(
        obj,
        src,
        cfg,
        target=tgt,
        callbacks=(tick, lambda t, s, o: seen.append((t.progress, obj.grl.coeff))),
        clock=clock,
    ).fit()
    progress, coeffs = zip(*seen, strict=True)
    from pyxfer.objectives.adaptation import dann_coefficient

    final = dann_coefficient(1.0, obj.gamma, obj.max_coeff)  # the ramp's value at its end
    assert progress[-1] == pytest.approx(1.0) and coeffs[-1] == pytest.approx(final)
    assert coeffs[0] < 0.2 * obj.max_coeff  # it started low: the ramp is by time, not steps
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(coeffs))


def test_callbacks_see_the_last_step_of_a_time_budgeted_run() -> None:
    clock, tick = _ticking()
    finals = []
    cfg = _config(max_steps=100_000, max_time=6.0)
    r = Trainer(
        Align(_lenet()),
        _digits(256),
        cfg,
        clock=clock,
        callbacks=(tick, lambda t, s, o: finals.append((s, t.final_step))),
    ).fit()
    assert [s for s, final in finals if final] == [r.step]


def test_cadence_validates_ten_times_by_progress_and_at_the_last_step() -> None:
    from pyxfer.engine.clock import Cadence, RunClock

    c = Cadence()
    due = [s for s in range(1, 101) if c.due(s, s / 100, s == 100)]
    assert due == list(range(10, 101, 10))
    c = Cadence()  # progress jumps (a slow step under a time budget): one validation, not five
    assert [c.due(1, 0.05, False), c.due(2, 0.55, False), c.due(3, 0.58, False)] == [
        False,
        True,
        False,
    ]
    assert Cadence(every=7).due(14, 0.0, False) and Cadence(every=7).due(3, 0.0, True)
    with pytest.raises(ValueError, match="every"):
        Cadence(every=0)
    rc = RunClock(100, 50.0, clock=lambda: 10.0, elapsed=5.0)
    rc.start()
    assert rc.progress(10) == pytest.approx(0.1) and rc.progress(30, elapsed=10.0) == 0.3
    assert rc.horizon(10, elapsed=25.0) == 20 and rc.binding(100) == "steps"
    assert RunClock(40, None).horizon(3) == 40
    with pytest.raises(ValueError, match="neither"):
        RunClock(None, None)
