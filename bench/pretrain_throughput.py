"""Images/s of one SimCLR training step end to end: pyxfer's fused loader vs torchvision.

The same step on both sides: a small-image ResNet-18 (3x3 stem, no max-pool, stage widths
``64 * width``; defined here from ``torch.nn`` so that both sides run the very same network),
SimCLR's projection MLP and NT-Xent loss (temperature 0.5; Chen et al. 2020), AdamW. Only the
input pipeline differs:

- ``--side pyxfer``: :class:`pyxfer.engine.loader.FusedLoader` over the packed uint8 images with the
  ``simclr`` preset (two views at 32 px: crop (0.08, 1), flip, colour jitter
  (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2, no blur), prefetching in a thread. Its
  ``wait_time`` is the time the step blocked on the loader.
- ``--side torchvision``: a ``torch.utils.data.DataLoader`` with ``--workers`` worker
  processes over the same uint8 array, each item two ``torchvision.transforms.v2`` views with
  the same recipe (``RandomResizedCrop``, ``RandomHorizontalFlip``, ``RandomApply(ColorJitter)``,
  ``RandomGrayscale``, ``ToDtype``, ``Normalize``). This side needs only torch and
  torchvision (not pyxfer), so it runs in any environment that has them.
- ``--side synthetic``: no loader, the same two random tensors every step: the model step
  alone, to tell the torch build's compute speed from the input pipeline's cost when the
  two sides run in environments with different torch builds.

Prints one JSON line: images/s (each image gives two views), step time, the share of the
step spent waiting for the loader, and the compute-only images/s (step time minus wait).

Examples::

    python bench/pretrain_throughput.py --side pyxfer --data /tmp/cifar32
    /path/to/venv-with-torchvision/bin/python bench/pretrain_throughput.py \\
        --side torchvision --data /tmp/cifar32 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


class SmallResNet18(nn.Module):
    """ResNet-18 with the small-image stem: (N, 3, 32, 32) -> (N, 512 * width)."""

    def __init__(self, width: float) -> None:
        super().__init__()
        w = [max(1, round(64 * 2**i * width)) for i in range(4)]
        self.stem = nn.Sequential(nn.Conv2d(3, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]))
        layers, cin = [], w[0]
        for i, c in enumerate(w):
            layers += [Block(cin, c, 2 if i else 1), Block(c, c, 1)]
            cin = c
        self.layers = nn.Sequential(*layers)
        self.num_features = w[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(F.relu(self.stem(x))).mean(dim=(2, 3))


class SimCLRStep(nn.Module):
    def __init__(self, width: float) -> None:
        super().__init__()
        self.backbone = SmallResNet18(width)
        d = self.backbone.num_features
        self.projector = nn.Sequential(
            nn.Linear(d, d, bias=False), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, 128)
        )

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.projector(self.backbone(torch.cat([v1, v2]))), dim=1)  # (2N, 128)
        n = v1.shape[0]
        sim = z @ z.T / 0.5
        sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        return F.cross_entropy(sim, target)


def pyxfer_batches(images: np.ndarray, args: argparse.Namespace):
    from pyxfer.data import ImageStore
    from pyxfer.engine.loader import FusedLoader

    loader = FusedLoader(
        ImageStore(images),
        args.batch_size,
        "simclr",
        size=32,
        seed=0,
        threads=args.threads,
        mean=MEAN,
        std=STD,
        labels=False,
    )

    def gen():
        with loader:
            while True:
                for batch in loader:
                    yield batch.views[0], batch.views[1]

    return gen(), lambda: loader.wait_time, f"pyxfer FusedLoader (threads={args.threads})"


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray) -> None:
        from torchvision.transforms import v2

        self.images = images
        self.t = v2.Compose(
            [
                v2.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                v2.RandomGrayscale(p=0.2),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(MEAN, STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = torch.from_numpy(np.array(self.images[i])).permute(2, 0, 1)  # (C, H, W)
        return self.t(img), self.t(img)


def torchvision_batches(images: np.ndarray, args: argparse.Namespace):
    import torchvision

    loader = torch.utils.data.DataLoader(
        TwoViews(images),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    wait = [0.0]

    def gen():
        while True:
            it = iter(loader)
            while True:
                t0 = time.perf_counter()
                try:
                    v1, v2 = next(it)
                except StopIteration:
                    break
                wait[0] += time.perf_counter() - t0
                yield v1, v2

    what = f"torchvision {torchvision.__version__} DataLoader (workers={args.workers})"
    return gen(), lambda: wait[0], what


def synthetic_batches(images: np.ndarray, args: argparse.Namespace):
    """The same two fixed random tensors every step: the model step alone (no loader)."""
    g = torch.Generator().manual_seed(0)
    v1, v2 = (torch.randn(args.batch_size, 3, 32, 32, generator=g) for _ in range(2))

    def gen():
        while True:
            yield v1, v2

    return gen(), lambda: 0.0, "synthetic (no loader: the model step alone)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", choices=("pyxfer", "torchvision", "synthetic"), required=True)
    ap.add_argument("--data", default="/tmp/cifar32", help="a packed folder (images.npy)")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="measured steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="torchvision DataLoader workers")
    ap.add_argument("--threads", type=int, default=0, help="pyxfer augmentation threads")
    args = ap.parse_args()

    images = np.load(Path(args.data) / "images.npy", mmap_mode="r")  # (N, 32, 32, 3) uint8
    torch.manual_seed(0)
    model = SimCLRStep(args.width)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    make = {
        "pyxfer": pyxfer_batches,
        "torchvision": torchvision_batches,
        "synthetic": synthetic_batches,
    }[args.side]
    batches, wait_time, what = make(images, args)
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            t0, w0 = time.perf_counter(), wait_time()
        v1, v2 = next(batches)
        loss = model(v1, v2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    dt, wait = time.perf_counter() - t0, wait_time() - w0
    n = args.steps * args.batch_size
    print(
        json.dumps(
            {
                "side": what,
                "torch": torch.__version__,
                "torch_threads": torch.get_num_threads(),
                "batch": args.batch_size,
                "width": args.width,
                "steps": args.steps,
                "images_per_s": round(n / dt, 1),
                "step_ms": round(1e3 * dt / args.steps, 1),
                "loader_wait_share": round(wait / dt, 4),
                "compute_images_per_s": round(n / (dt - wait), 1),
                "loss": round(loss.item(), 4),
                "loadavg": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    main()
