"""The real MNIST and CIFAR-10 test splits in ../shared/data (skipped without them)."""

from __future__ import annotations

import numpy as np

from pyxfer.data import load_dataset, pack


def test_mnist_idx(shared_data) -> None:
    store = load_dataset(f"idx:{shared_data / 'mnist-test'}")
    assert store.images.shape == (10_000, 28, 28, 1)
    assert store.num_classes == 10 and store.class_names[0] == "0"
    counts = store.class_counts()
    assert counts.sum() == 10_000 and counts[1] == 1135  # the well-known test-split counts
    assert store.images.max() == 255


def test_cifar10_tar_and_pack(shared_data, tmp_path) -> None:
    archive = shared_data / "cifar10-test" / "cifar10-test.tar.gz"
    store = load_dataset(f"tar:{archive}", progress=False)
    assert store.images.shape == (10_000, 32, 32, 3)
    assert store.class_names[:3] == ["airplane", "automobile", "bird"]
    assert store.class_counts().tolist() == [1000] * 10
    sub = store.subset(np.arange(0, 10_000, 100))
    out = pack(sub, tmp_path / "c16", size=16, progress=False)
    packed = load_dataset(f"packed:{out}")
    assert packed.images.shape == (100, 16, 16, 3)
    assert packed.labels.tolist() == sub.labels.tolist()
