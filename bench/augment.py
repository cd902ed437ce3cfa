"""Throughput of the fused augmentation kernel vs a batched pure-torch pipeline.

Full SimCLR views (random resized crop, flip, colour jitter p 0.8 in random order, grayscale
p 0.2, gaussian blur p 0.5, normalize) in two settings: (a) 32x32 -> 32x32 (blur kernel 3),
(b) random-content 500x375 -> 224x224 (blur kernel 23). Both implementations run in this
process with the same thread count and the same sampled parameters; the ratio is
fused / torch views per second.

    python bench/augment.py                 # CPU, 1 and 2 threads
    python bench/augment.py --device cuda   # GPU (needs a CUDA build of pyxfer._C)
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from pyxfer.ops import augment as A
from pyxfer.ops.augment import COL

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def simclr_specs(size: int) -> list[A.ViewSpec]:
    spec = A.preset("simclr", size=size)[0]
    k = max(3, int(0.1 * size)) | 1
    return [dataclasses.replace(spec, blur_p=0.5, blur_kernel=k)] * 2


def _gray(x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1, H, W)
    return 0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _hue(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    cr = maxc - minc
    eq = cr == 0
    s = cr / torch.where(eq, torch.ones_like(maxc), maxc)
    d = torch.where(eq, torch.ones_like(cr), cr)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    hh = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hh = (hh / 6.0 + 1.0).remainder(1.0)
    hh = (hh + h.view(-1, 1, 1)).remainder(1.0)
    i = torch.floor(hh * 6.0)
    f = hh * 6.0 - i
    i = i.long() % 6
    p, q, t = maxc * (1 - s), maxc * (1 - s * f), maxc * (1 - s * (1 - f))
    v = maxc
    stack = torch.stack((v, p, q, t), 1)
    sel = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])
    return stack.gather(1, sel.to(x.device)[:, i].permute(1, 0, 2, 3))


def torch_pipeline(images: torch.Tensor, params: np.ndarray, size: int, v: int) -> torch.Tensor:
    """Batched float pipeline, per-view parameters (crop + resize per view, rest batched)."""
    dev = images.device
    p = torch.from_numpy(params).to(dev)
    x = images.permute(0, 3, 1, 2)  # (N, C, H, W) uint8
    crops = []
    for r in range(len(params)):
        t, lft, h, w = (int(params[r, k]) for k in range(4))
        c = x[r // v, :, t : t + h, lft : lft + w].float()[None]
        crops.append(F.interpolate(c, size=(size, size), mode="bilinear", antialias=True))
    y = torch.cat(crops) / 255.0  # (B, 3, s, s)
    flip = p[:, COL["flip"]].bool()
    y = torch.where(flip.view(-1, 1, 1, 1), y.flip(-1), y)
    jit = p[:, COL["jitter"]].bool().view(-1, 1, 1, 1)
    order = p[:, COL["order0"] : COL["order0"] + 4].long()
    for pos in range(4):
        op = order[:, pos].view(-1, 1, 1, 1)
        b = p[:, COL["brightness"]].view(-1, 1, 1, 1)
        c = p[:, COL["contrast"]].view(-1, 1, 1, 1)
        s = p[:, COL["saturation"]].view(-1, 1, 1, 1)
        yb = (y * b).clamp(0, 1)
        yc = (c * y + (1 - c) * _gray(y).mean((1, 2, 3), keepdim=True)).clamp(0, 1)
        ys = (s * y + (1 - s) * _gray(y)).clamp(0, 1)
        yh = _hue(y, p[:, COL["hue"]])
        new = torch.where(op == 0, yb, torch.where(op == 1, yc, torch.where(op == 2, ys, yh)))
        y = torch.where(jit, new, y)
    gray = p[:, COL["gray"]].bool().view(-1, 1, 1, 1)
    y = torch.where(gray, _gray(y).expand_as(y), y)
    k = int(params[0, COL["blur_kernel"]])
    lim = (k - 1) / (2.0 * math.sqrt(2.0))
    xs = torch.linspace(-lim, lim, k, device=dev)
    sig = p[:, COL["blur_sigma"]].view(-1, 1)
    k1 = torch.softmax(-((xs[None] / sig) ** 2), dim=1)  # (B, k)
    bsz = y.shape[0]
    z = F.pad(y.reshape(1, bsz * 3, size, size), [k // 2] * 4, mode="reflect")
    kh = k1.repeat_interleave(3, 0).view(bsz * 3, 1, 1, k)
    kv = k1.repeat_interleave(3, 0).view(bsz * 3, 1, k, 1)
    z = F.conv2d(F.conv2d(z, kh, groups=bsz * 3), kv, groups=bsz * 3).view_as(y)
    y = torch.where(p[:, COL["blur"]].bool().view(-1, 1, 1, 1), z, y)
    m = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1)
    sd = torch.tensor(STD, device=dev).view(1, 3, 1, 1)
    return (y - m) / sd


def _fused_cpu(x, params, size, dtype, threads):
    A.apply(x, params, size=size, dtype=dtype, mean=MEAN, std=STD, threads=threads)


def _fused_cuda(x, params, size, dtype):
    A.apply(x, params, size=size, dtype=dtype, mean=MEAN, std=STD)
    torch.cuda.synchronize()


def _torch_ref(x, params, size, v, td):
    torch_pipeline(x, params, size, v).to(td)
    if x.device.type == "cuda":
        torch.cuda.synchronize()


def bench(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cases = [("32x32->32", 512, (32, 32), 32), ("500x375->224", 16, (375, 500), 224)]
    print(
        f"{'case':14s} {'dtype':8s} {'thr':>3s} {'fused v/s':>10s} {'torch v/s':>10s} "
        f"{'ratio':>6s} {'fused v/s/core':>14s}"
    )
    for name, n, (h, w), size in cases:
        x = rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)
        specs = simclr_specs(size)
        params = A.sample_params(specs, [(h, w)] * n, seed=0)
        views = n * len(specs)
        for dtype in ("float32", "float16"):
            for t in [int(s) for s in args.threads.split(",")]:
                torch.set_num_threads(t)
                if args.device == "cuda":
                    fused = functools.partial(
                        _fused_cuda, torch.from_numpy(x).cuda(), params, size, dtype
                    )
                else:
                    fused = functools.partial(_fused_cpu, x, params, size, dtype, t)
                td = torch.float16 if dtype == "float16" else torch.float32
                xt = torch.from_numpy(x).to(args.device)
                ref = functools.partial(_torch_ref, xt, params, size, len(specs), td)
                tf = bench(fused, args.repeats)
                tr = bench(ref, max(1, args.repeats - 1))
                print(
                    f"{name:14s} {dtype:8s} {t:3d} {views / tf:10.0f} {views / tr:10.0f} "
                    f"{tr / tf:6.1f} {views / tf / t:14.0f}"
                )
                if args.device == "cuda":
                    break


if __name__ == "__main__":
    main()
