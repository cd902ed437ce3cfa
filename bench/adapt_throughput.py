"""Images/s of a domain-adaptation step, and where its time goes, against a plain loop of the
digit benchmark recipe.

Runs :func:`pyxfer.adapt` (the path ``pyxfer adapt`` takes) for each backbone and objective
with a step limit, and reads from the training loop: images per second counting **both
domains** (the source batch plus every target view), with and without the validations, the
share of the loop spent waiting on the fused loaders and the share spent validating (the
label-free validators and the oracle test; ten validations and the last step's, as in a real
run, so short runs overstate it: at ``--steps 60`` eleven validations share 60 steps, a 240 s
run spreads them over ~700). Setting up (loading, splitting, normalising the held-out sets) and
finishing (scoring the selections, saving) are printed apart.

The baseline (``--baseline``, on by default) is the digit recipe of the domain-adaptation
libraries (TLlib's DANN on MNIST: its two-convolution LeNet, a 256-wide bottleneck with batch
norm, a 1024-1024 domain discriminator with batch norm, SGD with Nesterov momentum 0.9, weight
decay 1e-3, batch 128 per domain) written out here in plain PyTorch, with a
``torch.utils.data.DataLoader`` (``--workers`` processes) over the same uint8 images,
normalised per item as ``ToTensor`` + ``Normalize(0.5, 0.5)`` do. TLlib itself is not on
PyPI; this loop does the same arithmetic per step. It runs in the same process as pyxfer's
runs, so the two see the same machine.

pyxfer's default ``lenet`` costs about ten times the multiply-adds of the benchmark LeNet
(22 M against 2.3 M per 28 px image); ``lenet5`` is the benchmark's layout. Both are measured.

    python bench/adapt_throughput.py                       # MNIST test -> digits:mnist
    python bench/adapt_throughput.py --steps 40 --objectives dann --backbones lenet5
    PYXFER_SIMD=avx2 python bench/adapt_throughput.py     # the augmentation's AVX2 path

Needs the MNIST test set (``--source``, default ``idx:`` of ``../shared/data/mnist-test``
next to the project, or ``$PYXFER_SHARED_DATA/mnist-test``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _default_source() -> str:
    root = os.environ.get("PYXFER_SHARED_DATA") or str(
        Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
    return f"idx:{Path(root) / 'mnist-test'}"


# -- pyxfer ---------------------------------------------------------------------------------
def run_pyxfer(
    source: str, target: str, objective: str, backbone: str, steps: int, batch: int, seed: int
) -> dict[str, Any]:
    """One ``pyxfer.adapt`` run; images/s of both domains and the time shares."""
    import importlib

    import pyxfer

    adapt_mod = importlib.import_module("pyxfer.transfer.adapt")  # the module, not the function

    spent = {"validation": 0.0}
    call = adapt_mod._Tracker.__call__

    def timed(self: Any, trainer: Any, step: int, out: Any) -> None:
        t = time.perf_counter()
        call(self, trainer, step, out)
        spent["validation"] += time.perf_counter() - t

    loop: dict[str, float] = {}
    fit = pyxfer.engine.Trainer.fit

    def timed_fit(self: Any) -> Any:
        t = time.perf_counter()
        result = fit(self)
        loop["wall"] = time.perf_counter() - t
        loop["wait"] = self.loader.wait_time + (
            self.target_loader.wait_time if self.target_loader is not None else 0.0
        )
        return result

    adapt_mod._Tracker.__call__ = timed  # type: ignore[method-assign]
    pyxfer.engine.Trainer.fit = timed_fit  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        result = pyxfer.adapt(
            source,
            target,
            objective=objective,
            backbone=backbone,
            max_steps=steps,
            batch_size=batch,
            seed=seed,
            progress=False,
        )
        wall = time.perf_counter() - t0
    finally:
        adapt_mod._Tracker.__call__ = call  # type: ignore[method-assign]
        pyxfer.engine.Trainer.fit = fit  # type: ignore[method-assign]
    obj = result.objective
    views = batch * (1 + (obj.num_views if obj.uses_target else 0))
    training = loop["wall"] - spent["validation"]
    return {
        "images_per_s": steps * views / loop["wall"],
        "train_images_per_s": steps * views / max(training, 1e-9),
        "views_per_step": views,
        "loader_wait": loop["wait"] / loop["wall"],
        "validation": spent["validation"] / loop["wall"],
        "validations": len(result.history),
        "setup_and_finish_s": wall - loop["wall"],
    }


# -- the benchmark recipe in plain PyTorch --------------------------------------------------
class _Items(torch.utils.data.Dataset):
    """uint8 (N, H, W, 1) images -> normalised float (1, H, W), as ToTensor + Normalize(0.5)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1).float().div_(255)
        return x.sub_(0.5).div_(0.5), int(self.labels[i])


def _benchmark_lenet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(20, 50, 5), nn.Dropout2d(0.5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(1), nn.Linear(800, 500), nn.ReLU(), nn.Dropout(0.5),
    )  # fmt: skip


def run_baseline(
    source: np.ndarray, ys: np.ndarray, target: np.ndarray, steps: int, batch: int, workers: int
) -> dict[str, Any]:
    """The benchmark DANN step (both domains forward, discriminator, backward, SGD)."""
    torch.manual_seed(0)
    backbone = _benchmark_lenet()
    bottleneck = nn.Sequential(nn.Linear(500, 256), nn.BatchNorm1d(256), nn.ReLU())
    head = nn.Linear(256, 10)
    disc = nn.Sequential(
        nn.Linear(256, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
        nn.Linear(1024, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
        nn.Linear(1024, 1), nn.Sigmoid(),
    )  # fmt: skip
    params = [*backbone.parameters(), *bottleneck.parameters(), *head.parameters()]
    opt = torch.optim.SGD(
        [*params, *disc.parameters()], lr=0.01, momentum=0.9, weight_decay=1e-3, nesterov=True
    )

    def loader(images: np.ndarray, labels: np.ndarray) -> Any:
        while True:
            yield from torch.utils.data.DataLoader(
                _Items(images, labels),
                batch_size=batch,
                shuffle=True,
                drop_last=True,
                num_workers=workers,
                persistent_workers=workers > 0,
            )

    src, tgt = loader(source, ys), loader(target, np.zeros(len(target), np.int64))
    ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)
    t0 = time.perf_counter()
    for step in range(steps):
        (xs, y), (xt, _) = next(src), next(tgt)
        f = bottleneck(backbone(torch.cat([xs, xt])))
        loss = F.cross_entropy(head(f[:batch]), y)
        coeff = 2.0 / (1.0 + np.exp(-10 * step / steps)) - 1.0  # the gradient-reversal ramp
        reversed_f = _Reverse.apply(f, coeff)
        loss = loss + F.binary_cross_entropy(disc(reversed_f), torch.cat([ones, zeros]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    wall = time.perf_counter() - t0
    return {"images_per_s": steps * 2 * batch / wall, "views_per_step": 2 * batch, "wall_s": wall}


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default=_default_source(), help="labelled source spec")
    ap.add_argument("--target", default="digits:mnist", help="target spec")
    ap.add_argument("--objectives", default="source_only,dann,cdan,fixmatch")
    ap.add_argument("--backbones", default="lenet,lenet5")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=128, help="images per domain per step")
    ap.add_argument("--workers", type=int, default=2, help="the baseline's DataLoader workers")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--no-baseline", dest="baseline", action="store_false")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import pyxfer

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), augmentation path "
        f"{pyxfer.build_info().get('augment_simd')}, steps {args.steps}, "
        f"batch {args.batch} per domain"
    )
    rows = []
    if args.baseline:
        src = pyxfer.load_dataset(args.source)
        tgt = pyxfer.load_dataset(args.target)
        r = run_baseline(
            np.asarray(src.images), np.asarray(src.labels), np.asarray(tgt.images),
            args.steps, args.batch, args.workers,
        )  # fmt: skip
        rows.append({"method": "benchmark recipe (plain PyTorch)", "backbone": "LeNet", **r})
        print(json.dumps(rows[-1]))
    for backbone in args.backbones.split(","):
        for objective in args.objectives.split(","):
            r = run_pyxfer(args.source, args.target, objective, backbone, args.steps, args.batch, 0)
            rows.append({"method": f"pyxfer {objective}", "backbone": backbone, **r})
            print(json.dumps(rows[-1]))
    base = rows[0]["images_per_s"] if args.baseline else None
    print(
        f"\n{'method':34s} {'backbone':8s} {'img/s':>7s} {'vs base':>7s} {'no val':>7s} "
        f"{'vs base':>7s} {'wait':>6s} {'val':>6s}"
    )
    for r in rows:
        train = r.get("train_images_per_s", r["images_per_s"])
        ratio = f"{r['images_per_s'] / base:.2f}x" if base else "-"
        ratio_train = f"{train / base:.2f}x" if base else "-"
        wait = f"{100 * r['loader_wait']:.1f}%" if "loader_wait" in r else "-"
        val = f"{100 * r['validation']:.1f}%" if "validation" in r else "-"
        print(
            f"{r['method']:34s} {r['backbone']:8s} {r['images_per_s']:7.0f} {ratio:>7s} "
            f"{train:7.0f} {ratio_train:>7s} {wait:>6s} {val:>6s}"
        )


if __name__ == "__main__":
    main()
