"""Write tests/data/aug_golden_randaugment.npz: torchvision's RandAugment ops on uint8 images.

Runs once, in an environment with torchvision (the test suite reads the file and needs no
torchvision). Each case is one op of ``torchvision.transforms.v2.functional`` with an explicit
value, called exactly as ``torchvision.transforms.v2.RandAugment`` calls it (nearest
interpolation, fill 128 for the affine ops; ShearX/Y about the top-left corner, translations
by ``int(fraction * side)`` pixels), plus Cutout as ``F.erase`` of FixMatch's ``CutoutAbs`` box.
Values are stored as float32, the kernel's parameter type, and torchvision receives the same
float32 values.

    python bench/randaugment_golden.py tests/data/aug_golden_randaugment.npz
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch
import torchvision
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

FILL = 128
CUTOUT_FILL = 127

#: op code (pyxfer.ops.augment.RANDAUGMENT_OPS index) and the values each is checked at
CASES: dict[str, tuple[int, tuple[float, ...]]] = {
    "autocontrast": (1, (0.0,)),
    "equalize": (2, (0.0,)),
    "rotate": (3, (13.7, -27.3, 30.0, -5.0, 90.0)),
    "solarize": (4, (0.0, 100.0, 200.5, 255.0)),
    "color": (5, (0.05, 0.5, 0.95, 1.7)),
    "posterize": (6, (1.0, 4.0, 6.0, 8.0)),
    "contrast": (7, (0.05, 0.37, 0.95, 1.6)),
    "brightness": (8, (0.05, 0.37, 0.95, 1.6)),
    "sharpness": (9, (0.05, 0.37, 0.95, 1.6)),
    "shear_x": (10, (0.3, -0.17, 0.05)),
    "shear_y": (11, (0.3, -0.17, 0.05)),
    "translate_x": (12, (0.3, -0.25, 0.04)),
    "translate_y": (13, (0.3, -0.25, 0.04)),
}


def images() -> list[np.ndarray]:
    """(H, W, C) uint8 test images: full-range noise, low-contrast noise, smooth gradients."""
    rng = np.random.default_rng(20261201)
    ims = [
        rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
        rng.integers(60, 181, (20, 27, 3), dtype=np.uint8),
        rng.integers(0, 256, (17, 23, 1), dtype=np.uint8),
    ]
    y, x = np.mgrid[0:24, 0:30]
    grad = np.stack([(x * 8) % 256, (y * 10) % 256, ((x + y) * 5) % 256], -1).astype(np.uint8)
    ims.append(grad)
    return ims


def apply_op(t: torch.Tensor, op: str, v: float) -> torch.Tensor:
    """One op on a (C, H, W) uint8 tensor, as torchvision's RandAugment applies it."""
    h, w = t.shape[-2:]
    nearest = InterpolationMode.NEAREST
    fill = [float(FILL)] * t.shape[0]
    if op == "autocontrast":
        return F.autocontrast(t)
    if op == "equalize":
        return F.equalize(t)
    if op == "rotate":
        return F.rotate(t, angle=v, interpolation=nearest, fill=fill)
    if op == "solarize":
        return F.solarize(t, threshold=v)
    if op == "color":
        return F.adjust_saturation(t, saturation_factor=v)
    if op == "posterize":
        return F.posterize(t, bits=int(v))
    if op == "contrast":
        return F.adjust_contrast(t, contrast_factor=v)
    if op == "brightness":
        return F.adjust_brightness(t, brightness_factor=v)
    if op == "sharpness":
        return F.adjust_sharpness(t, sharpness_factor=v)
    if op in ("shear_x", "shear_y"):
        deg = math.degrees(math.atan(v))
        shear = [deg, 0.0] if op == "shear_x" else [0.0, deg]
        return F.affine(
            t,
            angle=0.0,
            translate=[0, 0],
            scale=1.0,
            shear=shear,
            interpolation=nearest,
            fill=fill,
            center=[0, 0],
        )
    if op in ("translate_x", "translate_y"):
        tr = [int(v * w), 0] if op == "translate_x" else [0, int(v * h)]
        return F.affine(
            t,
            angle=0.0,
            translate=tr,
            scale=1.0,
            shear=[0.0, 0.0],
            interpolation=nearest,
            fill=fill,
        )
    raise ValueError(op)


def cutout_box(h: int, w: int, cy: float, cx: float, size: float) -> tuple[int, int, int, int]:
    """FixMatch's CutoutAbs box (top, left, height, width) of the kernel's cutout columns."""
    vh, vw = int(size * h), int(size * w)
    y0 = int(max(0.0, cy * h - vh / 2.0))
    x0 = int(max(0.0, cx * w - vw / 2.0))
    y1, x1 = min(h, y0 + vh), min(w, x0 + vw)
    return y0, x0, y1 - y0, x1 - x0


def main(path: str) -> None:
    ims = images()
    out: dict[str, np.ndarray] = {f"image{i}": im for i, im in enumerate(ims)}
    op_code, values, image_index, results = [], [], [], []
    for name, (code, vals) in CASES.items():
        for v in vals:
            v32 = float(np.float32(v))
            for i, im in enumerate(ims):
                t = torch.from_numpy(im).permute(2, 0, 1).contiguous()
                r = apply_op(t, name, v32)
                op_code.append(code)
                values.append(v32)
                image_index.append(i)
                results.append(r.permute(1, 2, 0).numpy())
    cut = []
    for i, im in enumerate(ims):
        for cy, cx, size in ((0.5, 0.5, 0.5), (0.05, 0.9, 0.5), (0.99, 0.01, 0.3)):
            cy32, cx32, s32 = (float(np.float32(x)) for x in (cy, cx, size))
            t = torch.from_numpy(im).permute(2, 0, 1).contiguous()
            top, left, hh, ww = cutout_box(im.shape[0], im.shape[1], cy32, cx32, s32)
            r = F.erase(t, top, left, hh, ww, torch.tensor(float(CUTOUT_FILL)))
            cut.append((i, cy32, cx32, s32))
            out[f"cutout{len(cut) - 1}"] = r.permute(1, 2, 0).numpy()
    out["op"] = np.asarray(op_code, np.int32)
    out["value"] = np.asarray(values, np.float32)
    out["image"] = np.asarray(image_index, np.int32)
    for k, r in enumerate(results):
        out[f"out{k}"] = r
    out["cutout"] = np.asarray(cut, np.float32)
    out["fill"] = np.asarray([FILL, CUTOUT_FILL], np.int32)
    out["torchvision"] = np.asarray(torchvision.__version__)
    out["torch"] = np.asarray(torch.__version__)
    np.savez_compressed(path, **out)
    print(
        f"{path}: {len(results)} op cases, {len(cut)} cutout cases "
        f"(torchvision {torchvision.__version__}, torch {torch.__version__})"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/aug_golden_randaugment.npz")
