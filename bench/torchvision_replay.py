"""Replay views sampled by pyxfer through torchvision and count the grey levels they differ by.

Inputs are CIFAR-10 test photos (32x32) and 384x512 mosaics of them (16 x 12 photos each) from
the shared data; the SimCLR and BYOL presets give 32 and 96 px views. torchvision gets each
view's parameters as the float32 values pyxfer uses (so both compute with the same factors) and
runs ``torchvision.transforms.v2.functional`` op by op on uint8, in its own interpreter
(``--tv-python``, default ``$PYXFER_TV_PYTHON``: a venv with torchvision; pyxfer never needs
it). Prints, per preset and size and overall, the largest difference, the share of values that
are equal and within one level, and the views that differ by more than one level.

``--golden PATH --views KEY:ROW,...`` (KEY as printed, e.g. ``photo/simclr/96``) also writes
those views, their inputs and torchvision's outputs as a golden file for
``tests/test_augment.py`` (``tests/data/aug_golden_replay.npz`` was written so).

    python bench/torchvision_replay.py --photos 36 --mosaics 36
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = (32, 96)
PRESETS = ("simclr", "byol")


def shared_cifar() -> Path:
    env = os.environ.get("PYXFER_SHARED_DATA")
    base = Path(env) if env else ROOT.parent / "shared" / "data"
    return base / "cifar10-test" / "cifar10-test.tar.gz"


def cifar_photos(n: int, skip: int) -> np.ndarray:
    """n CIFAR-10 test photos (N, 32, 32, 3) uint8, after the first `skip`."""
    from PIL import Image

    out = []
    with tarfile.open(shared_cifar()) as tar:
        for m in tar:
            if m.isfile() and m.name.endswith(".jpg"):
                if skip > 0:
                    skip -= 1
                    continue
                out.append(
                    np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB"))
                )
                if len(out) == n:
                    break
    if len(out) < n:
        raise SystemExit(f"the archive has fewer than {n} photos after the skipped ones")
    return np.stack(out)


def mosaics(photos: np.ndarray) -> np.ndarray:
    """Groups of 192 photos as 384x512 mosaics (12 rows of 16)."""
    groups = photos.reshape(-1, 12, 16, 32, 32, 3)
    return groups.transpose(0, 1, 3, 2, 4, 5).reshape(-1, 384, 512, 3)


# ---- torchvision side (runs in the torchvision interpreter) ----------------------------------


def tv_view(img, p, col: dict, size: int):
    """One parameter row through torchvision.transforms.v2.functional; uint8 CHW out."""
    from torchvision.transforms.v2 import functional as TF

    t, lft, h, w = (int(p[col[k]]) for k in ("top", "left", "crop_h", "crop_w"))
    y = TF.resized_crop(img, t, lft, h, w, [size, size], antialias=True)
    if p[col["flip"]]:
        y = TF.horizontal_flip(y)
    if p[col["jitter"]]:
        ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
        names = ("brightness", "contrast", "saturation", "hue")
        for pos in range(4):
            op = int(p[col["order0"] + pos])
            y = ops[op](y, float(p[col[names[op]]]))
    if p[col["gray"]]:
        y = TF.rgb_to_grayscale(y, num_output_channels=3)
    if p[col["blur"]]:
        k = int(p[col["blur_kernel"]])
        y = TF.gaussian_blur(y, [k, k], [float(p[col["blur_sigma"]])] * 2)
    if p[col["solarize"]]:
        y = TF.solarize(y, float(p[col["solarize_threshold"]]))
    return y


def run_torchvision_child(npz: str, out: str) -> None:
    import torch
    import torchvision

    torch.set_num_threads(1)
    z = np.load(npz)
    col = {name: i for i, name in enumerate(json.loads(str(z["columns"])))}
    versions = f"torch {torch.__version__}, torchvision {torchvision.__version__}"
    res = {"versions": np.array(versions)}
    for key in json.loads(str(z["keys"])):
        x, params, size = z[f"{key}/images"], z[f"{key}/params"], int(z[f"{key}/size"])
        v = len(params) // len(x)
        views = [
            tv_view(torch.from_numpy(x[r // v]).permute(2, 0, 1).contiguous(), p, col, size)
            for r, p in enumerate(params)
        ]
        res[key] = torch.stack(views).numpy()
    np.savez(out, **res)


# ---- pyxfer side -----------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=36, help="CIFAR-10 photos used as they are")
    ap.add_argument("--mosaics", type=int, default=36, help="384x512 mosaics (192 photos each)")
    ap.add_argument("--skip", type=int, default=0, help="archive photos to pass over first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tv-python", default=os.environ.get("PYXFER_TV_PYTHON", ""))
    ap.add_argument("--golden", help="write the --views and torchvision's outputs here")
    ap.add_argument("--views", default="", help="KEY:ROW,... for --golden")
    ap.add_argument("--torchvision-child", nargs=2, metavar=("NPZ", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torchvision_child:
        run_torchvision_child(*args.torchvision_child)
        return
    if not args.tv_python or not Path(args.tv_python).exists():
        raise SystemExit("needs an interpreter with torchvision: --tv-python or PYXFER_TV_PYTHON")

    import pyxfer
    from pyxfer.ops import augment as A

    allp = cifar_photos(args.photos + 192 * args.mosaics, args.skip)
    inputs = {"photo": allp[: args.photos], "mosaic": mosaics(allp[args.photos :])}
    cases, ours = {}, {}
    for name, x in inputs.items():
        if len(x) == 0:
            continue
        for preset in PRESETS:
            for size in SIZES:
                key = f"{name}/{preset}/{size}"
                params = A.sample_params(
                    A.preset(preset, size=size), [x.shape[1:3]] * len(x), seed=args.seed + size
                )
                out = A.apply(x, params, size=size, mean=(0.0,) * 3, std=(1 / 255,) * 3)
                cases[key] = (x, params, size)
                ours[key] = np.rint(out).astype(np.int32)
    with tempfile.TemporaryDirectory() as d:
        npz, res = os.path.join(d, "in.npz"), os.path.join(d, "out.npz")
        arrays = {
            "columns": np.array(json.dumps(list(A.PARAM_COLUMNS))),
            "keys": np.array(json.dumps(list(cases))),
        }
        for key, (x, params, size) in cases.items():
            arrays[f"{key}/images"], arrays[f"{key}/params"] = x, params
            arrays[f"{key}/size"] = np.array(size)
        np.savez(npz, **arrays)
        subprocess.run([args.tv_python, __file__, "--torchvision-child", npz, res], check=True)
        z = np.load(res)
        tv = {key: z[key].astype(np.int32) for key in cases}
        versions = str(z["versions"])
    print(f"pyxfer {pyxfer.__version__} ({pyxfer.build_info().get('augment_simd')}) vs {versions}")
    print(f"{'case':18s} {'views':>5s} {'max':>4s} {'equal %':>9s} {'within 1 %':>10s}")
    total, equal, within, worst = 0, 0, 0, 0
    far = []
    for key in cases:
        err = np.abs(ours[key] - tv[key])
        n, e, w1 = err.size, int((err == 0).sum()), int((err <= 1).sum())
        print(f"{key:18s} {len(err):5d} {err.max():4d} {100 * e / n:9.4f} {100 * w1 / n:10.4f}")
        total, equal, within, worst = total + n, equal + e, within + w1, max(worst, err.max())
        for r in np.nonzero(err.reshape(len(err), -1).max(1) > 1)[0]:
            far.append((int(err[r].max()), f"{key}:{r}", int((err[r] > 1).sum())))
    print(f"{'all':18s} {'':5s} {worst:4d} {100 * equal / total:9.4f} {100 * within / total:10.4f}")
    for d, view, n in sorted(far, reverse=True)[:20]:
        print(f"  {view}: {d} levels ({n} values more than one off)")
    if args.golden:
        write_golden(args.golden, args.views, cases, tv, versions, A.PARAM_COLUMNS)


def write_golden(path, views: str, cases, tv, versions: str, columns) -> None:
    """The named views: input (only the crop box, the row's top/left moved to it), parameter
    row, size and torchvision's uint8 CHW output."""
    col = {name: i for i, name in enumerate(columns)}
    out = {"versions": np.array(versions)}
    for j, spec in enumerate(v for v in views.split(",") if v):
        key, r = spec.rsplit(":", 1)
        x, params, size = cases[key]
        row = params[int(r)].copy()
        t, lft, h, w = (int(row[col[k]]) for k in ("top", "left", "crop_h", "crop_w"))
        img = x[int(r) // (len(params) // len(x))][t : t + h, lft : lft + w]
        row[col["top"]], row[col["left"]] = 0, 0
        out[f"{j:02d}/input"], out[f"{j:02d}/params"] = img, row
        out[f"{j:02d}/size"] = np.array(size)
        out[f"{j:02d}/output"] = tv[key][int(r)].astype(np.uint8)
        out[f"{j:02d}/view"] = np.array(spec)
    np.savez_compressed(path, **out)
    print(f"wrote {path}: {len(out) // 5} views")


if __name__ == "__main__":
    sys.exit(main())
