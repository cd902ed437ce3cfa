"""The loader's share of a SimCLR training step: does the model ever wait for augmentation?

Runs the :class:`pyxfer.engine.Trainer` for a few steps of SimCLR (NT-Xent, Chen et al. 2020)
with the ``simclr`` augmentation preset fed by the fused loader
(:class:`pyxfer.engine.loader.FusedLoader`), and reports

- step time and images/s of the whole step (loader + forward + backward + optimiser);
- ``wait_time``: how long the training loop blocked on the loader's queue, and its share of
  the step time (the profile target is ~0), and ``starved``: how many batches were not
  ready when the loop asked for them (wall-clock waits also hold OS and GIL scheduling
  delays; ``starved`` does not);
- for comparison, the time the same batches take to augment synchronously (what the step
  would cost if augmentation were not overlapped).

The objective is the registered ``simclr`` when one is installed, else a minimal NT-Xent
defined here. Example::

    python bench/loader_profile.py --backbone lenet --backbone-opt img_size=8 --data digits \\
        --batch-size 256 --steps 30
    python bench/loader_profile.py --data random:32 --backbone lenet --backbone-opt img_size=32
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pyxfer.backbone import create_backbone
from pyxfer.engine import TrainConfig, Trainer
from pyxfer.objectives.base import Objective


class NTXent(Objective):
    """SimCLR: 2-layer MLP projector, NT-Xent over the 2N views (temperature 0.5)."""

    consumes = "views"
    augmentation = "simclr"
    num_views = 2

    def __init__(self, backbone: nn.Module, dim: int = 128, temperature: float = 0.5) -> None:
        super().__init__(backbone)
        d = backbone.num_features
        self.projector = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, dim))
        self.t = temperature

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        z = F.normalize(self.projector(self.backbone(torch.cat(views))), dim=1)  # (2N, dim)
        n = z.shape[0] // 2
        sim = z @ z.T / self.t  # (2N, 2N)
        sim.fill_diagonal_(float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        return {"loss": F.cross_entropy(sim, target)}


def _data(spec: str):
    from pyxfer.data import ImageStore, load_dataset

    if spec.startswith("random:"):
        side = int(spec.split(":", 1)[1])
        rng = np.random.default_rng(0)
        return ImageStore(rng.integers(0, 256, (4096, side, side, 1), dtype=np.uint8))
    return load_dataset(spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="digits")
    p.add_argument("--backbone", default="lenet")
    p.add_argument("--backbone-opt", action="append", default=[])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=1, help="augmentation threads")
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--prefetch", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.torch_threads)
    opts = {k: int(v) if v.isdigit() else v for k, v in (o.split("=") for o in args.backbone_opt)}
    data = _data(args.data)
    torch.manual_seed(0)
    backbone = create_backbone(args.backbone, **opts)
    try:
        from pyxfer.objectives.base import create_objective

        objective: Objective = create_objective("simclr", backbone)
        name = "simclr (registered)"
    except Exception:
        objective, name = NTXent(backbone), "NT-Xent (bench/loader_profile.py)"
    cfg = TrainConfig(
        max_steps=args.steps,
        batch_size=args.batch_size,
        lr=1e-3,
        threads=args.threads,
        prefetch=args.prefetch,
        device="cpu",
        progress=False,
        log_every=10**9,
    )
    step_times: list[float] = []
    waits: list[float] = []
    marks = {"t": time.perf_counter(), "w": 0.0}

    def timer(trainer: Trainer, step: int, out: dict) -> None:
        now = time.perf_counter()
        step_times.append(now - marks["t"])
        waits.append(trainer.loader.wait_time - marks["w"])
        marks["t"], marks["w"] = now, trainer.loader.wait_time

    trainer = Trainer(objective, data, cfg, callbacks=[timer])
    trainer.fit()
    skip = min(3, len(step_times) - 1)  # warm-up steps (first batch, allocator)
    st, wt = np.array(step_times[skip:]), np.array(waits[skip:])
    loader = trainer.loader
    idx = loader.epoch_indices(0)[: args.batch_size]
    t0 = time.perf_counter()
    for _ in range(5):
        loader.make_batch(idx, 0)
    aug = (time.perf_counter() - t0) / 5
    print(
        f"objective {name}, backbone {args.backbone} {opts}, data {args.data}, "
        f"batch {args.batch_size} x 2 views at {loader.size}px, aug threads {args.threads}, "
        f"torch threads {args.torch_threads}"
    )
    print(f"steps measured          {len(st)}")
    ips = args.batch_size / st.mean()
    print(f"step time               {1e3 * st.mean():.1f} ms  ({ips:.0f} img/s)")
    print(
        f"loader wait per step    {1e3 * wt.mean():.2f} ms mean, {1e3 * np.median(wt):.3f} ms "
        f"median, {1e3 * wt.max():.2f} ms max"
    )
    print(f"loader share of step    {100 * wt.sum() / st.sum():.2f} %")
    print(
        f"batches not ready when asked for  {loader.starved} of {len(step_times)} "
        "(other waits are thread and OS scheduling)"
    )
    print(
        f"synchronous augmentation of one batch  {1e3 * aug:.1f} ms "
        f"({100 * aug / st.mean():.1f} % of a step if not overlapped)"
    )


if __name__ == "__main__":
    main()
