"""Pure-torch oracle for the fused augmentation and preprocessing kernels.

Every function follows ``torchvision.transforms.v2.functional`` on uint8 CHW tensors (same
formulas, same casts back to uint8 between ops), written out here because torchvision itself is
not installed in the test environment. Parameter rows use ``pyxfer.ops.augment.PARAM_COLUMNS``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pyxfer.ops.augment import COL, RANDAUGMENT_OPS


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of uint8 (C, H, W), skipped when the size is unchanged."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if tuple(size) == (1, 1) and x.shape[0] > 1:
        # torch's uint8 kernel asserts on a (1, C, 1, 1) output; channels are independent
        return torch.cat([resize(x[i : i + 1], size) for i in range(x.shape[0])])
    return F.interpolate(
        x[None], size=list(size), mode="bilinear", align_corners=False, antialias=True
    )[0]


def resized_crop(x: torch.Tensor, top: int, left: int, h: int, w: int, size) -> torch.Tensor:
    return resize(x[:, top : top + h, left : left + w], size)


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: float) -> torch.Tensor:
    return a.mul(ratio).add_(b, alpha=1.0 - ratio).clamp_(0, 255).to(torch.uint8)


def _gray_float(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(-3)


def adjust_brightness(x: torch.Tensor, f: float) -> torch.Tensor:
    return x.mul(f).clamp_(0, 255).to(torch.uint8)


def adjust_contrast(x: torch.Tensor, f: float) -> torch.Tensor:
    gray = _gray_float(x).floor_() if x.shape[-3] == 3 else x.to(torch.float32)
    mean = torch.mean(gray, dim=(-3, -2, -1), keepdim=True)
    return _blend(x, mean, f)


def adjust_saturation(x: torch.Tensor, f: float) -> torch.Tensor:
    if x.shape[-3] == 1:
        return x
    return _blend(x, _gray_float(x).floor_(), f)


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-3] == 1:
        return x
    return _gray_float(x).to(torch.uint8).expand(3, -1, -1).clone()


def _rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    r, g, _ = image.unbind(dim=-3)
    minc, maxc = torch.aminmax(image, dim=-3)
    eqc = maxc == minc
    channels_range = maxc - minc
    ones = torch.ones_like(maxc)
    s = channels_range / torch.where(eqc, ones, maxc)
    divisor = torch.where(eqc, ones, channels_range).unsqueeze_(dim=-3)
    rc, gc, bc = ((maxc.unsqueeze(dim=-3) - image) / divisor).unbind(dim=-3)
    neq_r = maxc != r
    eq_g = maxc == g
    hg = rc.add(2.0).sub_(bc).mul_(eq_g & neq_r)
    hr = bc.sub_(gc).mul_(~neq_r)
    hb = gc.add_(4.0).sub_(rc).mul_(neq_r.logical_and_(eq_g.logical_not_()))
    h = hr.add_(hg).add_(hb)
    h = h.mul_(1.0 / 6.0).add_(1.0).fmod_(1.0)
    return torch.stack((h, s, maxc), dim=-3)


def _hsv_to_rgb(img: torch.Tensor) -> torch.Tensor:
    h, s, v = img.unbind(dim=-3)
    h6 = h.mul(6)
    i = torch.floor(h6)
    f = h6.sub_(i)
    i = i.to(dtype=torch.int32)
    sxf = s * f
    one_minus_s = 1.0 - s
    q = (1.0 - sxf).mul_(v).clamp_(0.0, 1.0)
    t = sxf.add_(one_minus_s).mul_(v).clamp_(0.0, 1.0)
    p = one_minus_s.mul_(v).clamp_(0.0, 1.0)
    i.remainder_(6)
    vpqt = torch.stack((v, p, q, t), dim=-3)
    select = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])
    idx = select[:, i.long()]  # (3, H, W)
    return vpqt.gather(-3, idx)


def adjust_hue(x: torch.Tensor, hue: float) -> torch.Tensor:
    if x.shape[-3] == 1 or hue == 0:
        return x
    img = x.to(torch.float32).mul_(1.0 / 255)  # to_dtype(x, float32, scale=True)
    hsv = _rgb_to_hsv(img)
    h, s, v = hsv.unbind(dim=-3)
    h.add_(hue).remainder_(1.0)
    rgb = _hsv_to_rgb(torch.stack((h, s, v), dim=-3))
    return rgb.mul(255.0 + 1.0 - 1e-3).to(torch.uint8)


def gaussian_kernel1d(k: int, sigma: float) -> torch.Tensor:
    lim = (k - 1) / (2.0 * math.sqrt(2.0))
    x = torch.linspace(-lim, lim, steps=k, dtype=torch.float32).view(1, -1)
    return torch.softmax(x.div(sigma).pow(2).neg(), dim=1)[0]


def gaussian_blur(x: torch.Tensor, k: int, sigma: float) -> torch.Tensor:
    """Reflect-padded 2-D gaussian (outer product of the 1-D kernels), rounded to uint8."""
    c = x.shape[0]
    k1 = gaussian_kernel1d(k, sigma)
    k2 = (k1[:, None] * k1[None, :]).expand(c, 1, k, k)
    pad = k // 2
    img = x.to(torch.float32)[None]
    img = _reflect_pad(img, pad)
    out = F.conv2d(img, k2, groups=c)[0]
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _reflect_pad(img: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect padding that also works when pad >= size (folds repeatedly)."""
    h, w = img.shape[-2:]

    def idx(n: int) -> torch.Tensor:
        i = torch.arange(-pad, n + pad)
        if n == 1:
            return torch.zeros_like(i)
        period = 2 * (n - 1)
        i = i.remainder(period)
        return torch.where(i < n, i, period - i)

    return img[..., idx(h), :][..., idx(w)]


def solarize(x: torch.Tensor, threshold: float) -> torch.Tensor:
    return torch.where(x.to(torch.float32) < threshold, x, 255 - x)


# ---- RandAugment's ops (torchvision.transforms.v2.functional on uint8, as RandAugment calls
# them: nearest interpolation, a fill level) and FixMatch's Cutout --------------------------


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    f = x.to(torch.float32)
    lo = f.amin(dim=(-2, -1), keepdim=True)
    hi = f.amax(dim=(-2, -1), keepdim=True)
    eq = hi == lo
    inv_scale = hi.sub(lo).mul_(1.0 / 255)
    lo[eq] = 0.0
    inv_scale[eq] = 1.0
    return f.sub_(lo).div_(inv_scale).clamp_(0, 255).to(torch.uint8)


def equalize(x: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    for ch in range(x.shape[0]):
        flat = x[ch].flatten().to(torch.long)
        hist = torch.bincount(flat, minlength=256)
        top = int(torch.nonzero(hist).max())
        step = (flat.numel() - int(hist[top])) // 255
        if step == 0:
            continue
        cum = hist.cumsum(0)[:-1]
        lut = torch.cat([torch.zeros(1, dtype=torch.long), (cum + step // 2) // step])
        out[ch] = lut.clamp(0, 255).to(torch.uint8)[flat].view(x.shape[1:])
    return out


def posterize(x: torch.Tensor, bits: int) -> torch.Tensor:
    return x & (((1 << bits) - 1) << (8 - bits))


def adjust_sharpness(x: torch.Tensor, f: float) -> torch.Tensor:
    c, h, w = x.shape
    if h <= 2 or w <= 2:
        return x
    k = torch.full((3, 3), 1.0 / 13.0)
    k[1, 1] = 5.0 / 13.0
    out = x.to(torch.float32)
    blurred = F.conv2d(out[None], k.expand(c, 1, 3, 3), groups=c)[0].round_()
    view = out[..., 1:-1, 1:-1]
    view.add_(blurred.sub_(view), alpha=1.0 - f)
    return out.clamp_(0, 255).to(torch.uint8)


def _inverse_affine(center, angle, translate, shear) -> list[float]:
    """torchvision's _get_inverse_affine_matrix with scale 1."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -(a * math.tan(sx) + math.sin(rot))
    c = math.sin(rot - sy) / math.cos(sy)
    d = math.cos(rot) - c * math.tan(sx)
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += cx - m[0] * (cx + tx) - m[1] * (cy + ty)
    m[5] += cy - m[3] * (cx + tx) - m[4] * (cy + ty)
    return m


def _warp(x: torch.Tensor, m: list[float], fill: float) -> torch.Tensor:
    """torchvision's _affine_grid + _apply_grid_transform, nearest, with a fill level."""
    c, h, w = x.shape
    theta = torch.tensor(m, dtype=torch.float32).reshape(1, 2, 3)
    base = torch.empty(1, h, w, 3)
    base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w))
    base[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h).unsqueeze_(-1))
    base[..., 2].fill_(1)
    rescaled = theta.transpose(1, 2).div_(torch.tensor([0.5 * w, 0.5 * h]))
    grid = base.view(1, h * w, 3).bmm(rescaled).view(1, h, w, 2)
    img = torch.cat([x.to(torch.float32), torch.ones(1, h, w)])[None]
    out = F.grid_sample(img, grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]
    img, mask = out[:-1], out[-1:].expand(c, h, w)
    return torch.where(mask < 0.5, torch.full_like(img, fill), img).to(torch.uint8)


def randaugment_op(x: torch.Tensor, op: int, v: float, fill: float) -> torch.Tensor:
    """Op ``op`` (an index of pyxfer.ops.augment.RANDAUGMENT_OPS) with value ``v``."""
    _, h, w = x.shape
    name = RANDAUGMENT_OPS[op]
    if name == "identity":
        return x
    if name == "autocontrast":
        return autocontrast(x)
    if name == "equalize":
        return equalize(x)
    if name == "rotate":
        return _warp(x, _inverse_affine([0.0, 0.0], -(v % 360), [0.0, 0.0], [0.0, 0.0]), fill)
    if name == "solarize":
        return solarize(x, v)
    if name == "color":
        return adjust_saturation(x, v)
    if name == "posterize":
        return posterize(x, int(v))
    if name == "contrast":
        return adjust_contrast(x, v)
    if name == "brightness":
        return adjust_brightness(x, v)
    if name == "sharpness":
        return adjust_sharpness(x, v)
    if name in ("shear_x", "shear_y"):
        deg = math.degrees(math.atan(v))
        shear = [deg, 0.0] if name == "shear_x" else [0.0, deg]
        return _warp(x, _inverse_affine([-w * 0.5, -h * 0.5], 0.0, [0.0, 0.0], shear), fill)
    t = [float(int(v * w)), 0.0] if name == "translate_x" else [0.0, float(int(v * h))]
    return _warp(x, _inverse_affine([0.0, 0.0], 0.0, t, [0.0, 0.0]), fill)


def cutout(x: torch.Tensor, cy: float, cx: float, size: float, fill: float) -> torch.Tensor:
    """FixMatch's CutoutAbs: a square around (cy * h, cx * w), corner clamped, side clipped."""
    _, h, w = x.shape
    vh, vw = int(size * h), int(size * w)
    y0, x0 = int(max(0.0, cy * h - vh / 2.0)), int(max(0.0, cx * w - vw / 2.0))
    out = x.clone()
    out[:, y0 : min(h, y0 + vh), x0 : min(w, x0 + vw)] = int(fill)
    return out


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (C, H, W) -> float32 (x * (1 / 255) - mean) / std."""
    img = x.to(torch.float32).mul_(1.0 / 255)  # to_dtype(x, float32, scale=True)
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return img.sub_(m).div_(s)


def apply_row(x_hwc: torch.Tensor, row, size, mean, std) -> torch.Tensor:
    """One parameter row through the torchvision-style chain; uint8 HWC -> float32 CHW."""
    r = [float(v) for v in row]
    x = x_hwc.permute(2, 0, 1).contiguous()
    top, left, h, w = (int(r[COL[k]]) for k in ("top", "left", "crop_h", "crop_w"))
    x = resized_crop(x, top, left, h, w, size)
    if r[COL["flip"]]:
        x = x.flip(-1)
    for slot in range(2):
        op = int(r[COL[f"ra_op{slot}"]])
        if op:
            x = randaugment_op(x, op, r[COL[f"ra_mag{slot}"]], r[COL["ra_fill"]])
    if r[COL["jitter"]]:
        for pos in range(4):
            op = int(r[COL["order0"] + pos])
            if op == 0 and r[COL["brightness"]] != 1.0:
                x = adjust_brightness(x, r[COL["brightness"]])
            elif op == 1 and r[COL["contrast"]] != 1.0:
                x = adjust_contrast(x, r[COL["contrast"]])
            elif op == 2 and r[COL["saturation"]] != 1.0:
                x = adjust_saturation(x, r[COL["saturation"]])
            elif op == 3 and r[COL["hue"]] != 0.0:
                x = adjust_hue(x, r[COL["hue"]])
    if r[COL["gray"]]:
        x = rgb_to_grayscale(x)
    if r[COL["blur"]]:
        x = gaussian_blur(x, int(r[COL["blur_kernel"]]), r[COL["blur_sigma"]])
    if r[COL["solarize"]]:
        x = solarize(x, r[COL["solarize_threshold"]])
    if r[COL["cutout"]]:
        x = cutout(x, r[COL["cutout_y"]], r[COL["cutout_x"]], r[COL["cutout_size"]],
                   r[COL["cutout_fill"]])
    return normalize(x, mean, std)


def get_params_rrc(
    height: int, width: int, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0), generator=None
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params with torch's RNG: (top, left, h, w)."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = math.exp(
            torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator).item()
        )
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            j = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = round(w / min(ratio))
    elif in_ratio > max(ratio):
        h = height
        w = round(h * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def preprocess(x_hwc: torch.Tensor, resize_to: int, crop: int, mean, std) -> torch.Tensor:
    """torchvision Resize(resize_to) + CenterCrop(crop) + ToDtype + Normalize; HWC -> CHW."""
    x = x_hwc.permute(2, 0, 1).contiguous()
    h, w = x.shape[-2:]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = resize_to, int(resize_to * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    x = resize(x, (new_h, new_w))
    ph = (crop - new_h) if crop > new_h else 0
    pw = (crop - new_w) if crop > new_w else 0
    if ph or pw:
        x = F.pad(x, [pw // 2, (pw + 1) // 2, ph // 2, (ph + 1) // 2], value=0)
    hh, ww = x.shape[-2:]
    top = round((hh - crop) / 2.0)
    left = round((ww - crop) / 2.0)
    x = x[:, top : top + crop, left : left + crop]
    return normalize(x, mean, std)
