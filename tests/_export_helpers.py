"""Small trained models for the export and runtime tests (digits, a few seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = [f"digit{i}" for i in range(10)]


def digits_split() -> tuple[object, np.ndarray, np.ndarray]:
    """The embedded digits store and a stratified (train, test) index split."""
    import pyxfer
    from pyxfer.data import stratified_split

    store = pyxfer.load_dataset("digits")
    train, test = stratified_split(store.labels, (0.75, 0.25), seed=0)
    return store, train, test


def train_lenet(steps: int = 100, seed: int = 0, width: float = 0.25):
    """A LeNet (8 px, grey) trained for ``steps`` Adam steps on the digits training split."""
    import torch

    import pyxfer
    from pyxfer.ops import normalize

    store, train, _ = digits_split()
    torch.manual_seed(seed)
    model = pyxfer.create_backbone("lenet", in_chans=1, img_size=8, width=width, num_classes=10)
    spec = model.input_spec
    x = torch.from_numpy(normalize(np.ascontiguousarray(store.images[train]), spec.mean, spec.std))
    y = torch.from_numpy(store.labels[train])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is fastest on a shared machine
    try:
        for _ in range(steps):
            idx = torch.randint(0, len(x), (64,), generator=gen)
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def save_classifier(path: Path, model, width: float = 0.25) -> Path:
    from pyxfer.modelio import save_model

    kwargs = {"in_chans": 1, "img_size": 8, "width": width}
    return save_model(
        path,
        model,
        backbone_name="lenet",
        backbone_kwargs=kwargs,
        task="classifier",
        class_names=CLASSES,
        extra={"metrics": {"val_accuracy": 0.0}},
    )
