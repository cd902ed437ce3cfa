"""Fused augmentation: sample view parameters with Philox, then apply them in one pass.

The pipeline of one view follows ``torchvision.transforms.v2`` (same sampling, same formulas,
same clamping): random resized crop (antialiased) → horizontal flip → RandAugment ops (up to
two of :data:`RANDAUGMENT_OPS`) → colour jitter (brightness, contrast, saturation, hue in a
random order per view, applied with probability ``jitter_p``) → grayscale → gaussian blur →
solarize → cutout → normalize.

RandAugment's ops compute what ``torchvision.transforms.v2.functional`` computes on uint8
images (the affine ones with nearest interpolation and a fill level, as torchvision's
``RandAugment``); they run in the CPU kernel with ``quantize=True`` only (the float and CUDA
paths refuse rows that use them).

Randomness is Philox4x32-10 keyed by the seed and counted by ``(block, view, sample index,
epoch)``: a view's parameters depend on nothing else (not the thread count, the batch it sits
in, the rank or the device). :func:`sample_params` returns them as a float32 table with the
columns :data:`PARAM_COLUMNS` so they can be inspected, edited or replayed through a reference;
:func:`apply` writes the views.

By default (``quantize=True``) values are rounded back to uint8 levels between ops exactly where
torchvision casts (truncation after the blend ops and hue, round-to-nearest after resize and
blur), so outputs match torchvision on uint8 input to a grey level; ``quantize=False`` keeps
everything in float (slightly smoother; torchvision's truncations bias its output down by up to
about two grey levels after a full jitter chain, float mode does not).

Gaussian blur sums only the kernel's non-negligible taps: the outermost tap pairs whose total
weight stays below 4e-7 are dropped (together they move a value by less than 1e-4 grey levels,
below the float rounding noise of torchvision's own convolution; a 23-tap kernel keeps about
2 * 5 * sigma + 1 taps), and mirrored taps are added before their (exactly symmetric) weight
multiplies them. These are the deliberate numerical differences from torchvision's blur; CPU and
CUDA compute the same sums in the same order.

On x86-64 the CPU kernel for ``quantize=True`` is compiled for the baseline instruction set and
for AVX2 and AVX-512, and the best one the CPU supports runs (``build_info()["augment_simd"]``);
the environment variable ``PYXFER_SIMD=baseline`` or ``avx2`` selects a lower one. All paths
give bit-identical output (integer resampling; a fused multiply-add exactly where torchvision's
vectorised kernels use one — grayscale, contrast and saturation blends — and nowhere else).

CUDA tensors in give CUDA tensors out: parameters are always sampled on the CPU (they are tiny)
and uploaded with the launch; the device kernels share the maths headers with the CPU kernels
and are compiled without FMA contraction (the explicit fused multiply-adds above use
``__fmaf_rn``), so both give the same grey levels. (In float mode the
device sums the contrast mean in a different order, which can move a value by a float ulp.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from pyxfer import _C
from pyxfer._checks import check_int
from pyxfer._tensors import as_numpy, is_torch_tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Column names of a parameter row, in order (see ``cpp/include/pyxfer/augment.h``).
PARAM_COLUMNS: tuple[str, ...] = (
    "top",  # crop box in input pixels (integers)
    "left",
    "crop_h",
    "crop_w",
    "flip",  # 1 = horizontal flip
    "jitter",  # 1 = colour jitter applied
    "brightness",  # jitter factors; identity (1, 1, 1, 0) when not applied
    "contrast",
    "saturation",
    "hue",
    "order0",  # jitter op at each position: 0 brightness, 1 contrast, 2 saturation, 3 hue
    "order1",
    "order2",
    "order3",
    "gray",  # 1 = convert to grayscale
    "blur",  # 1 = gaussian blur
    "blur_sigma",
    "blur_kernel",
    "solarize",  # 1 = solarize
    "solarize_threshold",  # on the 0..255 scale
    "ra_op0",  # RandAugment op of slot 0 (RANDAUGMENT_OPS index; 0 identity)
    "ra_mag0",  # its value: factor, degrees, bits, threshold, shear, translate fraction
    "ra_op1",  # slot 1
    "ra_mag1",
    "ra_fill",  # grey level the affine ops bring in from outside the image
    "cutout",  # 1 = cutout
    "cutout_y",  # centre of the square, fractions of the height and width in [0, 1)
    "cutout_x",
    "cutout_size",  # side, fraction of the output height / width
    "cutout_fill",  # grey level of the square
)
COL = {name: i for i, name in enumerate(PARAM_COLUMNS)}

#: RandAugment's operations (FixMatch's pool), by op code of the ``ra_op*`` columns, with the
#: value range the magnitude m in [0, 1] spans (Sohn et al. 2020, Table 12; signed ops draw a
#: random sign): rotate ±30 degrees, shear ±0.3, translate ±0.3 of the side, factors
#: 0.05..0.95, posterize 8..4 bits, solarize threshold 256..0.
RANDAUGMENT_OPS: tuple[str, ...] = (
    "identity",
    "autocontrast",
    "equalize",
    "rotate",
    "solarize",
    "color",
    "posterize",
    "contrast",
    "brightness",
    "sharpness",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
assert len(PARAM_COLUMNS) == _C.AUGMENT_PARAM_COUNT


@dataclasses.dataclass(frozen=True)
class ViewSpec:
    """How one view is drawn (torchvision v2 transform arguments).

    Attributes:
        size: output (height, width).
        crop: ``"random_resized"`` (RandomResizedCrop) or ``"full"`` (resize the whole image).
        scale: RandomResizedCrop area fraction range.
        ratio: RandomResizedCrop aspect-ratio range (sampled log-uniformly).
        flip_p: RandomHorizontalFlip probability.
        jitter_p: RandomApply probability of ColorJitter.
        brightness, contrast, saturation, hue: ColorJitter strengths (0 disables an op).
        gray_p: RandomGrayscale probability.
        blur_p: probability of GaussianBlur with ``blur_kernel`` and sigma uniform in
            ``blur_sigma``.
        solarize_p: RandomSolarize probability (threshold 128 of 255).
        randaugment_n: RandAugment ops per view (0..2), each one of :data:`RANDAUGMENT_OPS`
            drawn uniformly (with replacement), applied after crop and flip, before the jitter.
        randaugment_magnitude: m in [0, 1] for every op (as torchvision's fixed magnitude), or
            ``None``: drawn uniformly per op and view (FixMatch's RandAugment variant).
        randaugment_p: probability of applying each drawn op.
        randaugment_fill: grey level the affine ops (rotate, shear, translate) fill with.
        cutout_p: probability of Cutout (a grey square, FixMatch's ``CutoutAbs``), last
            before normalisation.
        cutout_size: side of the square as a fraction of the output side.
        cutout_fill: grey level of the square.
    """

    size: tuple[int, int] = (224, 224)
    crop: str = "random_resized"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int = 23
    solarize_p: float = 0.0
    solarize_threshold: float = 128.0
    randaugment_n: int = 0
    randaugment_magnitude: float | None = None
    randaugment_p: float = 1.0
    randaugment_fill: int = 128
    cutout_p: float = 0.0
    cutout_size: float = 0.5
    cutout_fill: int = 127

    def to_config(self) -> dict[str, Any]:
        """The plain settings dict understood by ``pyxfer._C.augment_sample``."""
        if self.crop not in ("random_resized", "full"):
            raise ValueError(f"crop: expected 'random_resized' or 'full', received {self.crop!r}")
        return {
            "crop_mode": 0 if self.crop == "random_resized" else 1,
            "scale_min": self.scale[0],
            "scale_max": self.scale[1],
            "ratio_min": self.ratio[0],
            "ratio_max": self.ratio[1],
            "flip_p": self.flip_p,
            "jitter_p": self.jitter_p,
            "brightness": self.brightness,
            "contrast": self.contrast,
            "saturation": self.saturation,
            "hue": self.hue,
            "gray_p": self.gray_p,
            "blur_p": self.blur_p,
            "sigma_min": self.blur_sigma[0],
            "sigma_max": self.blur_sigma[1],
            "blur_kernel": self.blur_kernel,
            "solarize_p": self.solarize_p,
            "solarize_threshold": self.solarize_threshold,
            "ra_n": self.randaugment_n,
            "ra_magnitude": self.randaugment_magnitude,
            "ra_p": self.randaugment_p,
            "ra_fill": self.randaugment_fill,
            "cutout_p": self.cutout_p,
            "cutout_size": self.cutout_size,
            "cutout_fill": self.cutout_fill,
        }


def _blur_kernel(size: int) -> int:
    """SimCLR's blur kernel: 10 % of the image side, made odd (23 for 224)."""
    k = max(3, int(0.1 * size))
    return k if k % 2 == 1 else k + 1


def _square(size: int) -> tuple[int, int]:
    return (size, size)


def dino_local_size(size: int) -> int:
    """DINO's default local-view side for global views of side ``size``: the paper's 96 / 224 of
    it, rounded to a multiple of 8 (at least 8) so that ViT patch sizes 4 and 8 divide it (96
    at 224, 16 at 32, 24 at 64)."""
    return max(8, 8 * round(size * 96 / 224 / 8))


def preset(
    name: str, size: int = 224, local_size: int | None = None, n_local: int = 6
) -> list[ViewSpec]:
    """The view specs of a named recipe (one entry per view).

    - ``simclr`` — Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
      Representations", App. A: crop (0.08, 1), flip, colour distortion of strength s
      (jitter (0.8s, 0.8s, 0.8s, 0.2s) p 0.8, grayscale p 0.2), blur p 0.5 (kernel 10 % of the
      side, sigma (0.1, 2)); two views. ImageNet-size views use s = 1; views of 32 pixels or
      less use s = 0.5 and no blur, as the paper does for CIFAR-10.
    - ``byol`` — Grill et al. 2020, "Bootstrap Your Own Latent", Table 6: two asymmetric views,
      jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale p 0.2, blur p 1.0 / 0.1, solarize p 0 / 0.2.
    - ``moco_v2`` — Chen et al. 2020, "Improved Baselines with Momentum Contrastive Learning":
      crop (0.2, 1), jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2, blur p 0.5; two views.
    - ``dino`` — Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
      Transformers": multi-crop, 2 global views (``size``, scale (0.4, 1); blur p 1.0 / 0.1,
      solarize p 0 / 0.2) and ``n_local`` local views (``local_size``, scale (0.05, 0.4),
      blur p 0.5); jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale p 0.2. The local side defaults to
      :func:`dino_local_size` of ``size`` (the paper's 96 for 224).
    - ``fixmatch_weak`` — Sohn et al. 2020, "FixMatch": flip and a small translation. The
      paper's pad-and-crop translation (up to 12.5 %) is approximated by a random resized crop
      with scale (0.8, 1) and ratio (3/4, 4/3), which keeps the kernel a single resample.
    - ``fixmatch_strong`` — FixMatch's strong view: the weak geometry, then RandAugment with
      N = 2 ops drawn from :data:`RANDAUGMENT_OPS`, each at a random magnitude (the paper's
      variant, its Table 12 ranges) and applied with probability 0.5 (affine ops fill with
      grey 128), then Cutout of half the side (grey 127) — the ``RandAugmentMC(n=2, m=10)`` +
      ``CutoutAbs`` of the FixMatch-pytorch reimplementation (kekmodel/FixMatch-pytorch); no
      colour jitter, grayscale or blur.
    - ``mae`` — He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners": crop
      (0.2, 1) and flip only, no colour distortion; one view.
    - ``eval`` — resize the whole image to ``size`` (no randomness); ``none`` is the same, for
      objectives that corrupt their input themselves (denoising autoencoder, VAE, GAN).
    - ``rotation`` — Gidaris et al. 2018, "Unsupervised Representation Learning by Predicting
      Image Rotations": flip and a light random resized crop (scale (0.8, 1)); the objective
      rotates the view itself.

    Args:
        name: one of :data:`PRESETS`.
        size: output side of the (global) views.
        local_size: output side of DINO's local views (default :func:`dino_local_size`).
        n_local: number of DINO local views (>= 0).

    Returns:
        One :class:`ViewSpec` per view.
    """
    s = _square(size)
    if name == "simclr":
        small = size <= 32
        strength = 0.5 if small else 1.0
        v = ViewSpec(
            size=s,
            brightness=0.8 * strength,
            contrast=0.8 * strength,
            saturation=0.8 * strength,
            hue=0.2 * strength,
            blur_p=0.0 if small else 0.5,
            blur_kernel=_blur_kernel(size),
        )
        return [v, v]
    if name == "byol":
        common: dict[str, Any] = dict(size=s, saturation=0.2, blur_kernel=_blur_kernel(size))
        return [ViewSpec(blur_p=1.0, **common), ViewSpec(blur_p=0.1, solarize_p=0.2, **common)]
    if name == "moco_v2":
        v = ViewSpec(size=s, scale=(0.2, 1.0), blur_p=0.5, blur_kernel=_blur_kernel(size))
        return [v, v]
    if name == "dino":
        local_size = dino_local_size(size) if local_size is None else local_size
        check_int("n_local", n_local, 0)
        check_int("local_size", local_size, 1)
        g: dict[str, Any] = dict(
            size=s, scale=(0.4, 1.0), saturation=0.2, blur_kernel=_blur_kernel(size)
        )
        local = ViewSpec(
            size=_square(local_size),
            scale=(0.05, 0.4),
            saturation=0.2,
            blur_p=0.5,
            blur_kernel=_blur_kernel(local_size),
        )
        return [ViewSpec(blur_p=1.0, **g), ViewSpec(blur_p=0.1, solarize_p=0.2, **g)] + [
            local
        ] * n_local
    if name == "fixmatch_weak":
        return [ViewSpec(size=s, scale=(0.8, 1.0), jitter_p=0.0, gray_p=0.0)]
    if name == "fixmatch_strong":
        return [
            ViewSpec(
                size=s,
                scale=(0.8, 1.0),
                jitter_p=0.0,
                gray_p=0.0,
                randaugment_n=2,
                randaugment_p=0.5,
                cutout_p=1.0,
            )
        ]
    if name == "mae":
        return [ViewSpec(size=s, scale=(0.2, 1.0), jitter_p=0.0, gray_p=0.0)]
    if name in ("eval", "none"):
        return [ViewSpec(size=s, crop="full", flip_p=0.0, jitter_p=0.0, gray_p=0.0)]
    if name == "rotation":
        return [ViewSpec(size=s, scale=(0.8, 1.0), jitter_p=0.0, gray_p=0.0)]
    raise ValueError(f"name: expected one of {PRESETS}, received {name!r}")


PRESETS: tuple[str, ...] = (
    "simclr",
    "byol",
    "moco_v2",
    "dino",
    "fixmatch_weak",
    "fixmatch_strong",
    "mae",
    "eval",
    "none",
    "rotation",
)


def _specs(views: str | ViewSpec | Sequence[ViewSpec], size: int) -> list[ViewSpec]:
    if isinstance(views, str):
        return preset(views, size=size)
    if isinstance(views, ViewSpec):
        return [views]
    specs = list(views)
    if not specs or not all(isinstance(v, ViewSpec) for v in specs):
        raise ValueError("views: expected a preset name, a ViewSpec or a non-empty list of them")
    return specs


def _image_list(images: Any) -> tuple[Any, list[tuple[int, int]], bool]:
    """(array or list of arrays for _C, per-image (H, W), dense?)."""
    if isinstance(images, (list, tuple)):
        arrs = [as_numpy(im, f"images[{i}]") for i, im in enumerate(images)]
        for i, a in enumerate(arrs):
            if a.ndim != 3:
                raise ValueError(
                    f"images[{i}]: expected shape (H, W, C), received {tuple(a.shape)}"
                )
        return arrs, [(a.shape[0], a.shape[1]) for a in arrs], False
    arr = as_numpy(images, "images")
    if arr.ndim != 4:
        raise ValueError(
            f"images: expected shape (N, H, W, C) or a list of (H, W, C), received "
            f"{tuple(arr.shape)}"
        )
    return arr, [(arr.shape[1], arr.shape[2])] * arr.shape[0], True


def sample_params(
    views: str | ViewSpec | Sequence[ViewSpec],
    sizes: Sequence[tuple[int, int]],
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    seed: int = 0,
    epoch: int = 0,
    size: int = 224,
    threads: int = 0,
) -> np.ndarray:
    """Draw the parameters of every view of every image.

    Args:
        views: a preset name (see :func:`preset`), a :class:`ViewSpec` or a list of them.
        sizes: (H, W) of each image, length N.
        indices: the dataset index of each image (keys the random stream; default 0..N-1).
        seed: 64-bit seed.
        epoch: epoch number (< 2^32).
        size: output side used when ``views`` is a preset name.
        threads: CPU threads (0 = all); the result does not depend on it.

    Returns:
        float32 array (N * V, len(PARAM_COLUMNS)); row ``n * V + v`` is view v of image n.
    """
    specs = _specs(views, size)
    hw = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    idx = np.arange(len(hw), dtype=np.int64) if indices is None else np.asarray(indices)
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed: expected an integer in [0, 2^64), received {seed}")
    return _C.augment_sample(
        [v.to_config() for v in specs],
        hw[:, 0].copy(),
        hw[:, 1].copy(),
        idx.astype(np.int64),
        int(seed),
        int(epoch),
        threads,
    )


def apply(
    images: Any,
    params: np.ndarray,
    out: Any = None,
    *,
    size: tuple[int, int] | int | None = None,
    views: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    dtype: str = "float32",
    channels_last: bool = False,
    quantize: bool = True,
    threads: int = 0,
) -> Any:
    """Apply parameter rows to images in one fused pass.

    Args:
        images: uint8 (N, H, W, C) array/tensor or a list of (H, W, C) of different sizes,
            C in {1, 3}.
        params: float32 (N * V, P) from :func:`sample_params` (row r uses image r // V).
        out: optional preallocated float32/float16 (N * V, C, h, w) (or (N * V, h, w, C) with
            ``channels_last``); gives the output size.
        size: output (h, w) when ``out`` is not given.
        views: V; default ``len(params) // N``.
        mean, std: normalisation per channel in [0, 1] units (one value per channel).
        dtype: ``"float32"`` or ``"float16"`` when ``out`` is not given.
        channels_last: write (N * V, h, w, C).
        quantize: round to uint8 levels between ops like torchvision (see module doc).
        threads: CPU threads (0 = all); the output does not depend on it.

    Returns:
        ``out`` (numpy array, or a torch tensor when ``images`` is a tensor or list of them).
    """
    if _is_cuda(images):
        return _apply_cuda(
            images, params, out, size, views, mean, std, dtype, channels_last, quantize
        )
    src, hw, _ = _image_list(images)
    n = len(hw)
    params = np.ascontiguousarray(params) if isinstance(params, np.ndarray) else params
    if not isinstance(params, np.ndarray) or params.ndim != 2:
        raise ValueError("params: expected a float32 numpy array (N * V, P)")
    if views is None:
        if n == 0 or params.shape[0] % n:
            raise ValueError(
                f"params: expected a multiple of {n} rows (N * V), received {params.shape[0]}"
            )
        views = params.shape[0] // n
    first = images[0] if isinstance(images, (list, tuple)) and images else images
    torch_out = is_torch_tensor(first)
    if out is None:
        if size is None:
            raise ValueError("size: expected an output size when out is not given")
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        c = (
            src[0].shape[-1]
            if isinstance(src, list) and src
            else (src.shape[-1] if not isinstance(src, list) else 3)
        )
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype: expected 'float32' or 'float16', received {dtype!r}")
        shape = (n * views, h, w, c) if channels_last else (n * views, c, h, w)
        out_np = np.empty(shape, dtype=np.float16 if dtype == "float16" else np.float32)
        result: Any = out_np
        if torch_out:
            import torch

            result = torch.from_numpy(out_np)
    else:
        out_np = as_numpy(out, "out")
        result = out
    _C.augment_apply(
        src, params, out_np, views, list(mean), list(std), channels_last, quantize, threads
    )
    return result


def _is_cuda(images: Any) -> bool:
    first = images[0] if isinstance(images, (list, tuple)) and images else images
    return is_torch_tensor(first) and first.device.type == "cuda"


def cuda_image_pointers(images: Any) -> tuple[list[Any], list[int], list[int], int]:
    """(contiguous tensors kept alive, heights, widths, channels) of CUDA uint8 HWC images."""
    import torch

    if isinstance(images, (list, tuple)):
        tensors = [im.contiguous() for im in images]
    else:
        if images.ndim != 4:
            raise ValueError(f"images: expected (N, H, W, C), received {tuple(images.shape)}")
        tensors = list(images.contiguous().unbind(0))
    for i, t in enumerate(tensors):
        if t.dtype != torch.uint8 or t.ndim != 3 or t.device != tensors[0].device:
            raise ValueError(
                f"images[{i}]: expected a uint8 (H, W, C) tensor on {tensors[0].device}, "
                f"received {t.dtype} {tuple(t.shape)} on {t.device}"
            )
    c = int(tensors[0].shape[-1]) if tensors else 3
    if any(int(t.shape[-1]) != c for t in tensors):
        raise ValueError("images: expected the same channel count for every image")
    return tensors, [int(t.shape[0]) for t in tensors], [int(t.shape[1]) for t in tensors], c


def _apply_cuda(images, params, out, size, views, mean, std, dtype, channels_last, quantize):
    import torch

    tensors, hs, ws, c = cuda_image_pointers(images)
    n = len(tensors)
    params = np.ascontiguousarray(np.asarray(params, dtype=np.float32))
    if views is None:
        if n == 0 or params.shape[0] % n:
            raise ValueError(
                f"params: expected a multiple of {n} rows (N * V), received {params.shape[0]}"
            )
        views = params.shape[0] // n
    device = tensors[0].device
    if out is None:
        if size is None:
            raise ValueError("size: expected an output size when out is not given")
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        tdtype = torch.float16 if dtype == "float16" else torch.float32
        shape = (n * views, h, w, c) if channels_last else (n * views, c, h, w)
        out = torch.empty(shape, dtype=tdtype, device=device)
    if not (is_torch_tensor(out) and out.device == device and out.is_contiguous()):
        raise ValueError(f"out: expected a contiguous tensor on {device}")
    if out.dtype not in (torch.float32, torch.float16) or out.ndim != 4:
        raise ValueError(f"out: expected float32/float16 (N*V, C, h, w), received {out.dtype}")
    h, w = (out.shape[1], out.shape[2]) if channels_last else (out.shape[2], out.shape[3])
    want = (n * views, h, w, c) if channels_last else (n * views, c, h, w)
    if tuple(out.shape) != want:
        raise ValueError(f"out: expected shape {want}, received {tuple(out.shape)}")
    stream = torch.cuda.current_stream(device).cuda_stream
    with torch.cuda.device(device):
        _C.augment_apply_cuda(
            [t.data_ptr() for t in tensors],
            hs,
            ws,
            c,
            params,
            out.data_ptr(),
            views,
            h,
            w,
            list(mean),
            list(std),
            out.dtype == torch.float16,
            channels_last,
            quantize,
            stream,
        )
    return out


def augment(
    images: Any,
    views: str | ViewSpec | Sequence[ViewSpec] = "simclr",
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    seed: int = 0,
    epoch: int = 0,
    size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    dtype: str = "float32",
    channels_last: bool = False,
    quantize: bool = True,
    threads: int = 0,
) -> list[Any]:
    """Sample and apply in one call; returns one output per distinct view size.

    Views of the same output size are grouped (in view order): SimCLR gives one
    (N * 2, C, h, w) array whose rows are image-major (image n's views are rows 2n, 2n + 1);
    DINO gives [global (N * 2, ...), local (N * n_local, ...)].

    Examples:
        >>> x = np.zeros((4, 40, 50, 3), np.uint8)
        >>> [a.shape for a in augment(x, "simclr", size=32)]
        [(8, 3, 32, 32)]
    """
    specs = _specs(views, size)
    if _is_cuda(images):
        hw = list(zip(*cuda_image_pointers(images)[1:3], strict=True))
    else:
        _, hw, _ = _image_list(images)
    params = sample_params(specs, hw, indices, seed=seed, epoch=epoch, threads=threads)
    v = len(specs)
    outs = []
    for out_size in dict.fromkeys(s.size for s in specs):
        cols = [i for i, s in enumerate(specs) if s.size == out_size]
        rows = (np.arange(len(hw))[:, None] * v + np.asarray(cols)[None, :]).reshape(-1)
        outs.append(
            apply(
                images,
                np.ascontiguousarray(params[rows]),
                size=out_size,
                views=len(cols),
                mean=mean,
                std=std,
                dtype=dtype,
                channels_last=channels_last,
                quantize=quantize,
                threads=threads,
            )
        )
    return outs
