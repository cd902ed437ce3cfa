"""Throughput of the fused augmentation kernel vs a batched pure-torch pipeline and torchvision.

Full SimCLR views (random resized crop, flip, colour jitter p 0.8 in random order, grayscale
p 0.2, gaussian blur, normalize) with the 224-pixel preset's own blur probability 0.5 (kernel
10 % of the side: 23 at 224, 3 at 32; ``--blur-p`` changes it) in these settings:

(a) random 32x32 inputs -> 32x32 views,
(b) random-content 500x375 images -> 224x224 views,
(c) CIFAR-10 test JPEGs upsampled to 256x256 -> 224x224 views (when the shared data exists:
    ``../shared/data`` beside the project, or ``$PYXFER_SHARED_DATA``).

All implementations replay the same sampled parameters. Baselines: a batched pure-torch
pipeline (this process, same thread count) and the torchvision v2 per-image functional
pipeline, run in a separate interpreter that has torchvision (``--tv-python``, default
``$PYXFER_TV_PYTHON``: a venv with torchvision) and talks to this one through an .npz file
and JSON, so pyxfer never needs torchvision. torchvision runs with one torch thread, as each
DataLoader worker does; its
``tv v/s`` at t threads is t times that (t ideal workers). Ratios are pyxfer / baseline.
``v/s/core`` is wall-clock views per second divided by the thread count; ``cpu v/s`` is views
per second of process CPU time (all threads), which stays meaningful when the machine is
shared; ``out= v/s`` writes into one preallocated output reused by every call (the documented
fast path; the other columns allocate the output per call, as ``apply(..., size=...)`` does);
``scale`` is the ``out=`` speed-up over the first thread count. The thread counts of a case
are timed in turns (1, 2, 1, 2, ...), best of ``--repeats`` each, so that a slow moment of a
shared machine falls on all of them and the ratios stay comparable.
The load averages are printed with the table.

    python bench/augment.py                 # CPU, 1 and 2 threads, all baselines
    python bench/augment.py --device cuda   # GPU (needs a CUDA build of pyxfer._C)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SHARED = (
    Path(os.environ["PYXFER_SHARED_DATA"])
    if os.environ.get("PYXFER_SHARED_DATA")
    else Path(__file__).resolve().parents[2] / "shared" / "data"
)
CIFAR = SHARED / "cifar10-test" / "cifar10-test.tar.gz"


def timed(fn, repeats: int) -> tuple[float, float]:
    """(best wall seconds, process CPU seconds of that run) after one warm-up call."""
    return timed_together({0: fn}, repeats)[0]


def timed_together(fns: dict, repeats: int) -> dict:
    """``timed`` for several calls at once, taking turns (a, b, a, b, ...): a slow moment of a
    shared machine then falls on all of them, so their ratios (e.g. 2 threads / 1 thread) are
    measured under the same conditions."""
    for fn in fns.values():
        fn()
    best = {k: (float("inf"), float("inf")) for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            t, c = time.perf_counter() - t0, time.process_time() - c0
            if t < best[k][0]:
                best[k] = (t, c)
    return best


# ---- torchvision v2 per-image baseline (runs in the torchvision interpreter) -----------------


def torchvision_views(x, params, col, size, td):
    """Per-image torchvision.transforms.v2.functional chain with given parameters."""
    import torch
    from torchvision.transforms.v2 import functional as TF

    outs = []
    v = len(params) // len(x)
    for r, p in enumerate(params):
        img = x[r // v]  # uint8 (3, H, W)
        t, lft, h, w = (int(p[col[k]]) for k in ("top", "left", "crop_h", "crop_w"))
        y = TF.resized_crop(img, t, lft, h, w, [size, size], antialias=True)
        if p[col["flip"]]:
            y = TF.horizontal_flip(y)
        if p[col["jitter"]]:
            for pos in range(4):
                op = int(p[col["order0"] + pos])
                if op == 0:
                    y = TF.adjust_brightness(y, float(p[col["brightness"]]))
                elif op == 1:
                    y = TF.adjust_contrast(y, float(p[col["contrast"]]))
                elif op == 2:
                    y = TF.adjust_saturation(y, float(p[col["saturation"]]))
                else:
                    y = TF.adjust_hue(y, float(p[col["hue"]]))
        if p[col["gray"]]:
            y = TF.rgb_to_grayscale(y, num_output_channels=3)
        if p[col["blur"]]:
            k = int(p[col["blur_kernel"]])
            y = TF.gaussian_blur(y, [k, k], [float(p[col["blur_sigma"]])] * 2)
        y = TF.normalize(TF.to_dtype(y, torch.float32, scale=True), MEAN, STD)
        outs.append(y.to(td))
    return torch.stack(outs)


def run_torchvision_child(npz: str, out_json: str) -> None:
    import torch

    z = np.load(npz)
    meta = json.loads(str(z["meta"]))
    col = {name: i for i, name in enumerate(meta["columns"])}
    results = {}
    for case in meta["cases"]:
        x = torch.from_numpy(z[f"{case}/images"]).permute(0, 3, 1, 2).contiguous()
        params = z[f"{case}/params"]
        size = int(z[f"{case}/size"])
        torch.set_num_threads(1)  # one per-image pipeline per core, as DataLoader workers run
        for dtype in meta["dtypes"]:
            td = torch.float16 if dtype == "float16" else torch.float32
            wall, cpu = timed(
                lambda x=x, p=params, s=size, d=td: torchvision_views(x, p, col, s, d),
                meta["repeats"],
            )
            results[f"{case}/{dtype}"] = [wall, cpu]
        # one output for an agreement check against pyxfer (grey levels)
        one = torchvision_views(x[:2], params[: 2 * (len(params) // len(x))], col, size, td)
        np.save(out_json + f".{case}.npy", one.float().numpy())
    Path(out_json).write_text(json.dumps(results))


# ---- pure-torch batched baseline --------------------------------------------------------------


def _gray(x):  # (B, 3, H, W) -> (B, 1, H, W)
    return 0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _hue(x, h):
    import torch

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
    stack = torch.stack((maxc, p, q, t), 1)
    sel = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])
    return stack.gather(1, sel.to(x.device)[:, i].permute(1, 0, 2, 3))


def torch_pipeline(images, params: np.ndarray, size: int, v: int, col: dict):
    """Batched float pipeline, per-view parameters (crop + resize per view, rest batched)."""
    import torch
    import torch.nn.functional as F

    dev = images.device
    p = torch.from_numpy(params).to(dev)
    x = images.permute(0, 3, 1, 2)  # (N, C, H, W) uint8
    crops = []
    for r in range(len(params)):
        t, lft, h, w = (int(params[r, k]) for k in range(4))
        c = x[r // v, :, t : t + h, lft : lft + w].float()[None]
        crops.append(F.interpolate(c, size=(size, size), mode="bilinear", antialias=True))
    y = torch.cat(crops) / 255.0  # (B, 3, s, s)
    flip = p[:, col["flip"]].bool()
    y = torch.where(flip.view(-1, 1, 1, 1), y.flip(-1), y)
    jit = p[:, col["jitter"]].bool().view(-1, 1, 1, 1)
    order = p[:, col["order0"] : col["order0"] + 4].long()
    for pos in range(4):
        op = order[:, pos].view(-1, 1, 1, 1)
        b = p[:, col["brightness"]].view(-1, 1, 1, 1)
        c = p[:, col["contrast"]].view(-1, 1, 1, 1)
        s = p[:, col["saturation"]].view(-1, 1, 1, 1)
        yb = (y * b).clamp(0, 1)
        yc = (c * y + (1 - c) * _gray(y).mean((1, 2, 3), keepdim=True)).clamp(0, 1)
        ys = (s * y + (1 - s) * _gray(y)).clamp(0, 1)
        yh = _hue(y, p[:, col["hue"]])
        new = torch.where(op == 0, yb, torch.where(op == 1, yc, torch.where(op == 2, ys, yh)))
        y = torch.where(jit, new, y)
    gray = p[:, col["gray"]].bool().view(-1, 1, 1, 1)
    y = torch.where(gray, _gray(y).expand_as(y), y)
    k = int(params[0, col["blur_kernel"]])
    lim = (k - 1) / (2.0 * math.sqrt(2.0))
    xs = torch.linspace(-lim, lim, k, device=dev)
    sig = p[:, col["blur_sigma"]].view(-1, 1)
    k1 = torch.softmax(-((xs[None] / sig) ** 2), dim=1)  # (B, k)
    bsz = y.shape[0]
    z = F.pad(y.reshape(1, bsz * 3, size, size), [k // 2] * 4, mode="reflect")
    kh = k1.repeat_interleave(3, 0).view(bsz * 3, 1, 1, k)
    kv = k1.repeat_interleave(3, 0).view(bsz * 3, 1, k, 1)
    z = F.conv2d(F.conv2d(z, kh, groups=bsz * 3), kv, groups=bsz * 3).view_as(y)
    y = torch.where(p[:, col["blur"]].bool().view(-1, 1, 1, 1), z, y)
    m = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1)
    sd = torch.tensor(STD, device=dev).view(1, 3, 1, 1)
    return (y - m) / sd


# ---- inputs -----------------------------------------------------------------------------------


def cifar_256(n: int) -> np.ndarray | None:
    """n CIFAR-10 test JPEGs upsampled (bicubic) to 256x256 uint8 (N, 256, 256, 3)."""
    if not CIFAR.exists():
        return None
    import io
    import tarfile

    from PIL import Image

    out = []
    with tarfile.open(CIFAR) as tar:
        for m in tar:
            if m.isfile() and m.name.endswith(".jpg"):
                im = Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")
                out.append(np.asarray(im.resize((256, 256), Image.BICUBIC)))
                if len(out) == n:
                    break
    return np.stack(out)


def load_averages() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--blur-p", type=float, default=0.5, help="blur probability of every view")
    ap.add_argument("--tv-python", default=os.environ.get("PYXFER_TV_PYTHON", ""))
    ap.add_argument("--no-torch", action="store_true", help="skip the batched torch baseline")
    ap.add_argument("--torchvision-child", nargs=2, metavar=("NPZ", "JSON"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torchvision_child:
        run_torchvision_child(*args.torchvision_child)
        return

    import dataclasses
    import functools

    import torch

    import pyxfer
    from pyxfer.ops import augment as A

    col = A.COL
    threads = [int(s) for s in args.threads.split(",")]
    rng = np.random.default_rng(0)
    inputs = {
        "32x32->32": (rng.integers(0, 256, size=(256, 32, 32, 3), dtype=np.uint8), 32),
        "500x375->224": (rng.integers(0, 256, size=(16, 375, 500, 3), dtype=np.uint8), 224),
    }
    cif = cifar_256(16)
    if cif is not None:
        inputs["cifar256->224"] = (cif, 224)
    cases = {}
    for name, (x, size) in inputs.items():
        spec = A.preset("simclr", size=224)[0]  # strength 1; the 32 px preset differs below
        if size <= 32:
            spec = A.preset("simclr", size=size)[0]
        spec = dataclasses.replace(
            spec, size=(size, size), blur_p=args.blur_p, blur_kernel=max(3, int(0.1 * size)) | 1
        )
        specs = [spec, spec]
        params = A.sample_params(specs, [x.shape[1:3]] * len(x), seed=0)
        cases[name] = (x, size, specs, params)
    dtypes = ["float32", "float16"]

    # torchvision in its own interpreter
    tv: dict[str, list[float]] = {}
    tv_check: dict[str, np.ndarray] = {}
    if args.device == "cpu" and args.tv_python and Path(args.tv_python).exists():
        with tempfile.TemporaryDirectory() as d:
            npz, js = os.path.join(d, "in.npz"), os.path.join(d, "out.json")
            arrays = {}
            for name, (x, size, _, params) in cases.items():
                arrays[f"{name}/images"], arrays[f"{name}/params"] = x, params
                arrays[f"{name}/size"] = np.array(size)
            meta = dict(
                columns=list(A.PARAM_COLUMNS),
                cases=list(cases),
                dtypes=dtypes,
                threads=threads,
                repeats=max(1, args.repeats - 1),
            )
            np.savez(npz, meta=np.array(json.dumps(meta)), **arrays)
            res = subprocess.run(
                [args.tv_python, __file__, "--torchvision-child", npz, js],
                capture_output=True,
                text=True,
            )
            if res.returncode == 0:
                tv = json.loads(Path(js).read_text())
                for name in cases:
                    tv_check[name] = np.load(js + f".{name}.npy")
            else:
                print(f"torchvision baseline failed:\n{res.stderr[-2000:]}", file=sys.stderr)
    else:
        print(
            f"torchvision baseline skipped (no interpreter at {args.tv_python!r}; set "
            "PYXFER_TV_PYTHON or --tv-python)",
            file=sys.stderr,
        )

    info = pyxfer.build_info()
    print(
        f"pyxfer augment bench: blur p {args.blur_p}, SIMD path {info.get('augment_simd')}, "
        f"{os.cpu_count()} CPUs, load averages {load_averages()} (start)"
    )
    head = (
        f"{'case':14s} {'dtype':7s} {'thr':>3s} {'pyxfer v/s':>10s} {'v/s/core':>9s} "
        f"{'cpu v/s':>8s} {'out= v/s':>9s} {'scale':>5s} {'torch v/s':>9s} {'x torch':>7s} "
        f"{'tv v/s':>7s} "
        f"{'x tv':>6s} "
        f"{'x tv cpu':>8s}"
    )
    print(head)
    for name, (x, size, specs, params) in cases.items():
        views = len(params)
        v = len(specs)
        if name in tv_check:  # agreement with torchvision, grey levels
            ours = A.apply(x[:2], params[: 2 * v], size=size, mean=MEAN, std=STD)
            err = np.abs(ours - tv_check[name]) * 255 * np.asarray(STD)[:, None, None]
            agree = f"max |pyxfer - torchvision| {err.max():.2f} grey levels, "
            agree += f"{(err <= 1.001).mean() * 100:.3f} % within 1"
        else:
            agree = ""
        for dtype in dtypes:
            if args.device == "cpu":  # every thread count in turns, the ratios in one moment
                calls = {
                    t: functools.partial(
                        A.apply, x, params, size=size, dtype=dtype, mean=MEAN, std=STD, threads=t
                    )
                    for t in threads
                }
                fused_times = timed_together(calls, args.repeats)
                out = calls[threads[0]]()
                into_times = timed_together(
                    {
                        t: functools.partial(A.apply, x, params, out, mean=MEAN, std=STD, threads=t)
                        for t in threads
                    },
                    args.repeats,
                )
            for t in threads:
                torch.set_num_threads(t)
                if args.device == "cuda":
                    xc = torch.from_numpy(x).cuda()

                    def fused(xc=xc, p=params, s=size, d=dtype):
                        A.apply(xc, p, size=s, dtype=d, mean=MEAN, std=STD)
                        torch.cuda.synchronize()

                    wall, cpu = timed(fused, args.repeats)
                else:
                    wall, cpu = fused_times[t]
                row = (
                    f"{name:14s} {dtype:7s} {t:3d} {views / wall:10.0f} {views / wall / t:9.0f} "
                    f"{views / cpu:8.0f}"
                )
                if args.device == "cpu":
                    into = into_times[t][0]
                    row += f" {views / into:9.0f} {into_times[threads[0]][0] / into:5.2f}"
                else:
                    row += f" {'-':>9s} {'-':>5s}"
                if not args.no_torch:
                    td = torch.float16 if dtype == "float16" else torch.float32
                    xt = torch.from_numpy(x).to(args.device)
                    ref = functools.partial(
                        lambda a, b, c, d, e: torch_pipeline(a, b, c, d, col).to(e),
                        xt,
                        params,
                        size,
                        v,
                        td,
                    )
                    tw, _ = timed(ref, max(1, args.repeats - 1))
                    row += f" {views / tw:9.0f} {tw / wall:7.1f}"
                else:
                    row += f" {'-':>9s} {'-':>7s}"
                key = f"{name}/{dtype}"
                if key in tv:  # t single-threaded pipelines (ideal DataLoader workers)
                    tvw, tvc = tv[key]
                    row += f" {t * views / tvw:7.0f} {tvw / t / wall:6.1f} {tvc / cpu:8.1f}"
                print(row, flush=True)
                if args.device == "cuda":
                    break
        if agree:
            print(f"  {name}: {agree}")
    print(f"load averages {load_averages()} (end)")


if __name__ == "__main__":
    main()
