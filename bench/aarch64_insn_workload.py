"""One workload of the pyxfer kernels for bench/aarch64_insn_counts.sh: a warm-up call, then
`reps` calls (threads=1) between two getppid() marks, where the counting plugin prints its count.

    python aarch64_insn_workload.py normalize|preprocess|augment-224|augment-32 REPS
"""

import os
import sys

import numpy as np

from pyxfer.ops import augment as A
from pyxfer.ops import normalize, preprocess

which, reps = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)


def images(n, h, w):  # smooth + noise, as the tests' _random_images
    base = rng.integers(0, 256, size=(n, h // 4 + 1, w // 4 + 1, 3)).repeat(4, 1).repeat(4, 2)
    noise = rng.integers(-20, 21, size=(n, h, w, 3))
    return np.clip(base[:, :h, :w] + noise, 0, 255).astype(np.uint8)


if which == "preprocess":  # the runtime's path: 375x500 -> shorter side 256 -> centre 224
    x = images(2, 375, 500)
    f = lambda: preprocess(x, 256, 224, threads=1)  # noqa: E731
elif which == "normalize":
    x = images(2, 224, 224)
    f = lambda: normalize(x, threads=1)  # noqa: E731
else:  # augment-<size>: SimCLR views (2 per image) of 256x256 (224 px) or 32x32 (32 px) images
    size = int(which.split("-")[1])
    hw = 256 if size == 224 else 32
    n = 2 if size == 224 else 32
    x = images(n, hw, hw)
    params = A.sample_params("simclr", [(hw, hw)] * n, seed=1, size=size)
    f = lambda: A.apply(x, params, size=size, threads=1)  # noqa: E731
f()  # warm-up: scratch buffers, axis caches
os.getppid()  # marks (the counting plugin prints its count at each getppid)
for _ in range(reps):
    f()
os.getppid()
