"""preprocess: uint8 images of any size -> resize shorter side -> centre crop -> normalize."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pyxfer import _C
from pyxfer._tensors import as_numpy, is_torch_tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess(
    images: Any,
    resize: int = 256,
    crop: int | tuple[int, int] = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    dtype: str = "float32",
    channels_last: bool = False,
    quantize: bool = True,
    out: Any = None,
    threads: int = 0,
) -> Any:
    """Inference preprocessing in one fused pass per image.

    Same result as ``torchvision.transforms.v2`` ``Resize(resize, antialias=True)`` (shorter
    side to ``resize``, longer side ``int(resize * long / short)``) → ``CenterCrop(crop)``
    (offsets ``int(round((H - crop) / 2))``, zero padding when the crop is larger) →
    ``ToDtype(float32, scale=True)`` → ``Normalize(mean, std)`` on uint8 input. Only the
    cropped window is resampled.

    Args:
        images: uint8 (N, H, W, C) array/tensor, a single (H, W, C) image, or a list of
            (H, W, C) images of different sizes; C in {1, 3}.
        resize: target shorter side (0 keeps the size).
        crop: output side, or (h, w).
        mean, std: per-channel normalisation in [0, 1] units.
        dtype: ``"float32"`` or ``"float16"``.
        channels_last: write (N, h, w, C) instead of (N, C, h, w).
        quantize: round the resize to uint8 levels as torchvision's uint8 path does.
        out: optional preallocated output.
        threads: CPU threads (0 = all); the output does not depend on it.

    Returns:
        float (N, C, h, w) (numpy, or torch when the input is a tensor or a list of tensors).

    Examples:
        >>> x = np.zeros((2, 300, 400, 3), np.uint8)
        >>> preprocess(x, 256, 224).shape
        (2, 3, 224, 224)
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype: expected 'float32' or 'float16', received {dtype!r}")
    ch, cw = (crop, crop) if isinstance(crop, int) else tuple(crop)
    single = getattr(images, "ndim", None) == 3
    first_any = images[0] if isinstance(images, (list, tuple)) and images else images
    if is_torch_tensor(first_any) and first_any.device.type == "cuda":
        res = _preprocess_cuda(
            images[None] if single else images,
            resize,
            ch,
            cw,
            mean,
            std,
            dtype,
            channels_last,
            quantize,
            out,
        )
        return res[0] if single else res
    if isinstance(images, (list, tuple)):
        src: Any = [as_numpy(im, f"images[{i}]") for i, im in enumerate(images)]
        first = images[0] if images else None
        n = len(src)
        c = src[0].shape[-1] if src else 3
    else:
        first = images
        src = as_numpy(images, "images")
        if single:
            src = src[None]
        n, c = src.shape[0], src.shape[-1] if src.ndim == 4 else 3
    if out is None:
        shape = (n, ch, cw, c) if channels_last else (n, c, ch, cw)
        out_np = np.empty(shape, dtype=np.float16 if dtype == "float16" else np.float32)
        result: Any = out_np
        if is_torch_tensor(first):
            import torch

            result = torch.from_numpy(out_np)
    else:
        out_np = as_numpy(out, "out")
        result = out
    _C.preprocess(src, out_np, resize, list(mean), list(std), channels_last, quantize, threads)
    return result[0] if single else result


def _preprocess_cuda(images, resize, ch, cw, mean, std, dtype, channels_last, quantize, out):
    import torch

    from pyxfer.ops.augment import cuda_image_pointers

    tensors, hs, ws, c = cuda_image_pointers(images)
    n = len(tensors)
    device = tensors[0].device
    tdtype = torch.float16 if dtype == "float16" else torch.float32
    shape = (n, ch, cw, c) if channels_last else (n, c, ch, cw)
    if out is None:
        out = torch.empty(shape, dtype=tdtype, device=device)
    elif tuple(out.shape) != shape or out.dtype != tdtype or out.device != device:
        raise ValueError(
            f"out: expected {tdtype} {shape} on {device}, received {out.dtype} "
            f"{tuple(out.shape)} on {out.device}"
        )
    stream = torch.cuda.current_stream(device).cuda_stream
    with torch.cuda.device(device):
        _C.preprocess_cuda(
            [t.data_ptr() for t in tensors],
            hs,
            ws,
            c,
            out.data_ptr(),
            resize,
            ch,
            cw,
            list(mean),
            list(std),
            tdtype == torch.float16,
            channels_last,
            quantize,
            stream,
        )
    return out
