"""CUDA augment/preprocess kernels must reproduce the CPU kernels (same shared maths)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyxfer.ops import augment as A
from pyxfer.ops import preprocess

pytestmark = pytest.mark.cuda


def _images(n, h, w, c=3, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(n, h // 4 + 1, w // 4 + 1, c)).repeat(4, 1).repeat(4, 2)
    return np.clip(base[:, :h, :w] + rng.integers(-20, 21, size=(n, h, w, c)), 0, 255).astype(
        np.uint8
    )


@pytest.mark.parametrize("quantize", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_augment_cuda_matches_cpu(quantize, dtype):
    x = _images(4, 75, 100)
    specs = A.preset("byol", size=48)
    params = A.sample_params(specs, [(75, 100)] * 4, seed=3)
    cpu = A.apply(x, params, size=48, dtype=dtype, quantize=quantize)
    gpu = A.apply(torch.from_numpy(x).cuda(), params, size=48, dtype=dtype, quantize=quantize)
    err = np.abs(gpu.cpu().numpy().astype(np.float32) - cpu.astype(np.float32))
    if quantize:
        # identical grey levels; float16 rounding may differ by one ulp of the output
        assert (err < 1e-3).mean() > 0.999
    else:
        assert err.max() < 0.05


def test_augment_cuda_ragged_channels_last_single_channel():
    ims = [_images(1, h, w, c=1, seed=h)[0] for h, w in ((40, 30), (25, 61))]
    params = A.sample_params(A.preset("simclr", size=24), [im.shape[:2] for im in ims], seed=1)
    cpu = A.apply(ims, params, size=24, mean=(0.5,), std=(0.25,), channels_last=True)
    gpu = A.apply(
        [torch.from_numpy(im).cuda() for im in ims],
        params,
        size=24,
        mean=(0.5,),
        std=(0.25,),
        channels_last=True,
    )
    assert (np.abs(gpu.cpu().numpy() - cpu) < 1e-3).mean() > 0.999


@pytest.mark.parametrize(("h", "w", "resize", "crop"), [(120, 90, 64, 56), (30, 31, 40, 36)])
def test_preprocess_cuda_matches_cpu(h, w, resize, crop):
    x = _images(3, h, w, seed=2)
    cpu = preprocess(x, resize, crop)
    gpu = preprocess(torch.from_numpy(x).cuda(), resize, crop)
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu, atol=1e-5)
    half = preprocess(torch.from_numpy(x).cuda(), resize, crop, dtype="float16")
    np.testing.assert_allclose(half.cpu().float().numpy(), cpu, atol=2e-2)
