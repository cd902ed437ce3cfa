"""Frozen features of a data set: fused preprocessing, batched inference, on-disk cache.

The cache is two files per entry in ``cache_dir``: ``<key>.npy`` (float32 (N, D)) and
``<key>.json`` (what the key was made of). The key hashes

- the checkpoint: the backbone class and every state-dict tensor's name, dtype, shape and
  bytes (or a caller-given ``model_id`` such as a weight file's sha256);
- the data set: its name/source, image count, channels, image sizes, labels and a cheap
  content fingerprint (the bytes of up to 64 evenly spaced images);
- the preprocessing: resize, crop size, mean, std, input channels.

Any change recomputes; writes are atomic, so an interrupted run never leaves a half entry.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pyxfer.data.channels import convert_all
from pyxfer.data.store import ImageStore
from pyxfer.fileio import atomic_write_bytes, atomic_write_json

log = logging.getLogger("pyxfer.evaluate")

CACHE_VERSION = 1
#: images whose bytes enter the content fingerprint (evenly spaced over the store)
FINGERPRINT_IMAGES = 64


def checkpoint_fingerprint(model: Any) -> str:
    """sha256 hex digest of a module's class and state dict (names, dtypes, shapes, bytes)."""
    import torch

    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def dataset_fingerprint(store: ImageStore, images: int = FINGERPRINT_IMAGES) -> dict[str, Any]:
    """A cheap identity of a store: name, count, sizes and labels hash, sampled pixel bytes."""
    n = len(store)
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(store.labels).tobytes())
    h.update(np.ascontiguousarray(store.image_sizes()).tobytes())
    picks = np.unique(np.linspace(0, n - 1, num=min(n, images)).round().astype(np.int64))
    content = hashlib.sha256()
    for i in picks if n else ():
        content.update(np.ascontiguousarray(store.image(int(i))).tobytes())
    return {
        "name": store.name,
        "source": store.source,
        "count": n,
        "channels": store.channels,
        "labels_sizes_sha256": h.hexdigest(),
        "content_sha256": content.hexdigest(),
    }


def _features_of(model: Any, x: Any) -> Any:
    """Pooled pre-logit features (B, D) of a pyxfer backbone, or ``model(x)`` otherwise."""
    if hasattr(model, "forward_head") and hasattr(model, "forward_features"):
        return model.forward_head(model.forward_features(x), pre_logits=True)
    return model(x)


def extract_features(
    backbone: Any,
    store: ImageStore,
    *,
    batch_size: int = 256,
    size: int | None = None,
    resize: int | None = None,
    crop_pct: float = 1.0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: Any = None,
    threads: int = 0,
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    model_id: str | None = None,
) -> np.ndarray:
    """Features of every image of ``store`` under ``backbone``, in store order.

    Each batch goes through the fused inference preprocessing (:func:`pyxfer.ops.preprocess`:
    resize the shorter side with antialiasing, centre crop, normalize; dense or ragged stores),
    then ``backbone`` in eval mode under ``torch.inference_mode`` (its training mode is
    restored afterwards). A backbone with a classifier head gives its pooled pre-logit
    features.

    The default ``resize`` equals ``size`` (whole image, shorter side scaled to the crop):
    small images such as 8x8 digits or 32x32 CIFAR are then never scaled up by surprise. The
    torchvision/timm ImageNet evaluation (resize 256, crop 224) is ``crop_pct=0.875``, i.e.
    ``resize = round(size / 0.875)``; or pass ``resize`` explicitly.

    Args:
        backbone: a pyxfer backbone (or any module mapping (B, C, S, S) to (B, D)); it needs
            ``input_spec`` unless ``size``, ``mean`` and ``std`` are all given.
        store: the images (labels are not used).
        batch_size: images per forward pass.
        size: crop side S (default ``backbone.input_spec.size``).
        resize: shorter side before the crop (default ``round(size / crop_pct)``).
        crop_pct: fraction of the resized image the crop keeps when ``resize`` is not given.
        mean, std: normalisation (default from ``input_spec``).
        device: where the batches go; the backbone must already be there (default: the device
            of its parameters).
        threads: CPU threads of the preprocessing kernel (0 = all).
        progress: show a progress bar (only when stderr is a terminal).
        cache_dir: read/write the features here (see the module docstring); ``None`` = no cache.
        model_id: identity of the checkpoint for the cache key (default: a hash of the state
            dict).

    Returns:
        float32 numpy (N, D).

    Examples:
        >>> from pyxfer import create_backbone, load_dataset
        >>> feats = extract_features(create_backbone("lenet", img_size=8), load_dataset("digits"))
        >>> feats.shape
        (1797, 128)
    """
    import torch

    if not isinstance(store, ImageStore):
        raise ValueError(f"store: expected a pyxfer ImageStore, received {type(store).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, received {batch_size!r}")
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct: expected a fraction in (0, 1], received {crop_pct}")
    spec: Any = getattr(backbone, "input_spec", None)
    if spec is None and (size is None or mean is None or std is None):
        raise ValueError("backbone: has no input_spec; pass size, mean and std explicitly")
    size = int(size if size is not None else spec.size)
    if size < 1:
        raise ValueError(f"size: expected an int >= 1, received {size}")
    resize = int(resize) if resize is not None else round(size / crop_pct)
    if resize < 1:
        raise ValueError(f"resize: expected an int >= 1, received {resize}")
    mean = tuple(float(m) for m in (mean if mean is not None else spec.mean))
    std = tuple(float(s) for s in (std if std is not None else spec.std))
    channels = len(mean)
    settings = {"size": size, "resize": resize, "mean": list(mean), "std": list(std)}
    if store.channels != channels:  # the grey <-> RGB definition shapes the pixels too
        from pyxfer.data.channels import LUMA

        settings["channels"] = {"from": store.channels, "luma": [float(w) for w in LUMA]}

    path = None
    if cache_dir is not None:
        key_doc = {
            "version": CACHE_VERSION,
            "model": model_id or checkpoint_fingerprint(backbone),
            "data": dataset_fingerprint(store),
            "preprocess": settings,
        }
        key = hashlib.sha256(json.dumps(key_doc, sort_keys=True).encode()).hexdigest()[:40]
        path = Path(cache_dir) / f"features-{key}"
        cached = _read_cache(path, key_doc, len(store))
        if cached is not None:
            log.info("features: loaded %s from the cache %s.npy", cached.shape, path)
            return cached

    first = next(iter(backbone.parameters()), None)
    if device is None:
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if first is not None and first.device.type != device.type:
        raise ValueError(
            f"device: the backbone's parameters are on {first.device}, received device={device}; "
            "move the backbone first (backbone.to(device))"
        )
    feats = _compute(backbone, store, batch_size, settings, channels, device, threads, progress)
    if path is not None:
        buf = io.BytesIO()
        np.save(buf, feats)
        atomic_write_bytes(path.with_suffix(".npy"), buf.getvalue())
        doc = {**key_doc, "shape": list(feats.shape)}
        atomic_write_json(path.with_suffix(".json"), doc)
        log.info("features: wrote %s to the cache %s.npy", feats.shape, path)
    return feats


def _read_cache(path: Path, key_doc: dict[str, Any], n: int) -> np.ndarray | None:
    npy, meta = path.with_suffix(".npy"), path.with_suffix(".json")
    if not (npy.is_file() and meta.is_file()):
        return None
    try:
        doc = json.loads(meta.read_text())
        feats = np.load(npy)
    except (OSError, ValueError) as exc:
        log.warning("features: ignoring an unreadable cache entry %s (%s)", path, exc)
        return None
    same = {k: doc.get(k) for k in key_doc} == json.loads(json.dumps(key_doc))
    if not same or feats.dtype != np.float32 or feats.ndim != 2 or feats.shape[0] != n:
        log.warning("features: cache entry %s does not match; recomputing", path)
        return None
    return feats


def _compute(
    backbone: Any,
    store: ImageStore,
    batch_size: int,
    settings: dict[str, Any],
    channels: int,
    device: Any,
    threads: int,
    progress: bool,
) -> np.ndarray:
    import torch
    from tqdm.auto import tqdm

    from pyxfer.ops import preprocess

    n = len(store)
    was_training = backbone.training
    backbone.eval()
    chunks: list[np.ndarray] = []
    bar = tqdm(
        total=n,
        desc="features",
        unit="img",
        disable=not progress or not sys.stderr.isatty(),
        leave=False,
    )
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                idx = np.arange(start, min(start + batch_size, n))
                images = convert_all(store.batch(idx), channels)
                x = preprocess(
                    images,
                    settings["resize"],
                    settings["size"],
                    settings["mean"],
                    settings["std"],
                    threads=threads,
                )  # (B, C, S, S) float32
                xt = torch.from_numpy(x).to(device, non_blocking=True)
                out = _features_of(backbone, xt)  # (B, D)
                if out.ndim != 2:
                    raise ValueError(
                        f"backbone: expected pooled features (B, D), received shape "
                        f"{tuple(out.shape)}"
                    )
                chunks.append(out.float().cpu().numpy())
                bar.update(len(idx))
    finally:
        bar.close()
        backbone.train(was_training)
    if not chunks:
        width = int(getattr(backbone, "num_features", 0))
        return np.zeros((0, width), np.float32)
    feats = np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)
    if not np.isfinite(feats).all():
        raise ValueError("backbone: produced non-finite features (NaN or inf)")
    return feats
