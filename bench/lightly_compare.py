"""SimCLR in pyxfer against SimCLR in lightly 1.6, same images, network, optimiser and budget.

One invocation, one machine, one after the other:

1. **pyxfer**: ``pyxfer pretrain`` as a user types it (a subprocess with relative paths in a
   working directory): SimCLR, ResNet-18 with the small stem at width 0.25, 32 px views,
   ``--max-time`` seconds (default 300), seed 0, pyxfer's defaults otherwise (batch size,
   AdamW, learning rate, weight decay, the cosine over the time budget, the ``simclr`` views).
2. **lightly**: lightly's SimCLR recipe in another interpreter (``--lightly-python``, with
   lightly 1.6, torchvision and pyxfer installed): ``SimCLRTransform(input_size=32,
   gaussian_blur=0.0)`` (lightly's CIFAR-10 example), ``SimCLRProjectionHead(D, D, 128)``,
   ``NTXentLoss()`` and a torch ``DataLoader`` (``--workers`` processes, shuffled, whole
   batches), each view through the network on its own as in lightly's examples. Shared with
   run 1, from pyxfer: the backbone (``create_backbone``, the same random init), the training
   images, the normalisation (the backbone's ``input_spec``), and what pyxfer's run recorded in
   its ``config.json`` — batch size, optimiser, learning rate, weight decay (not on biases and
   norm parameters: ``default_param_groups``), warmup and the cosine, which follows the time
   budget through pyxfer's ``RunClock`` as in pyxfer's trainer; the same ``--max-time``, counted
   from the first batch requested (worker start-up included, as pyxfer's loader's start is).
3. kNN top-1 of the random-init network and of both trained backbones with one protocol: the
   queries are a stratified, seeded ``--knn-holdout`` of the images, never trained on (both
   runs train on the other images, the bank), k = 200, temperature 0.1 (the engine's
   ``knn_split`` and ``KNNMonitor``, through ``bench/pretrain_knn.py``).

Prints a markdown table: method, steps, images/s (steps x batch / budget), kNN top-1 and the
load average (``uptime``: 1, 5, 15 min) before and after each run. ``--limit N`` trains and
evaluates on a stratified, seeded N-image subset (a smoke run on a shared machine)::

    pyxfer pack tar:../shared/data/cifar10-test/cifar10-test.tar.gz cifar32 --size 32
    python bench/lightly_compare.py --data packed:cifar32 --lightly-python LIGHTLY/bin/python
    python bench/lightly_compare.py --data packed:cifar32 --lightly-python LIGHTLY/bin/python \\
        --max-time 10 --limit 1000                                               # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BACKBONE = "resnet18"
BACKBONE_OPTS: dict[str, Any] = {"stem": "small", "width": 0.25}
SIZE = 32
KNN_K, KNN_TEMPERATURE = 200, 0.1
PYXFER_RUN = "runs/pyxfer"
LIGHTLY_RUN = "runs/lightly"


def pyxfer_command(args: argparse.Namespace) -> list[str]:
    """The ``pyxfer pretrain`` command line of run 1 (relative paths, from the working dir)."""
    opts = [x for k, v in BACKBONE_OPTS.items() for x in ("--backbone-opt", f"{k}={v}")]
    return [
        "pyxfer", "pretrain", "--data", "packed:data",
        "--backbone", BACKBONE, *opts,
        "--objective", "simclr", "--size", str(SIZE),
        "--max-time", f"{args.max_time:g}",
        "--knn-holdout", f"{args.knn_holdout:g}",
        "--knn-k", str(KNN_K), "--knn-temperature", f"{KNN_TEMPERATURE:g}",
        "--seed", str(args.seed), "--out", PYXFER_RUN,
    ]  # fmt: skip


def lightly_command(args: argparse.Namespace) -> list[str]:
    """The command line of run 2 (from the working dir)."""
    return [args.lightly_python, str(HERE / "lightly_compare.py"), "--lightly-run", LIGHTLY_RUN]


def train_config(pyxfer_config: dict[str, Any]) -> Any:
    """The :class:`~pyxfer.engine.TrainConfig` of pyxfer's run from its ``config.json`` (the
    resolved settings; the ``run`` record and anything else that is not a setting dropped)."""
    import dataclasses

    from pyxfer.engine import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig.from_dict({k: v for k, v in pyxfer_config.items() if k in names})


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _run(cmd: list[str], work: Path, log: str) -> str:
    """Run ``cmd`` in ``work`` (``pyxfer`` found next to this interpreter first), its output to
    ``work/log``; the last line of it; exit with the log on failure."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    with open(work / log, "w") as f:
        done = subprocess.run(cmd, cwd=work, env=env, stdout=f, stderr=subprocess.STDOUT)
    text = (work / log).read_text()
    if done.returncode != 0:
        sys.stderr.write(text)
        raise SystemExit(f"{cmd[0]} ... failed ({done.returncode}); log: {work / log}")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# -- run 2, in the lightly interpreter -----------------------------------------------------------
class _Images:
    """The training images as PIL images through ``transform``, with their labels."""

    def __init__(self, store: Any, transform: Any) -> None:
        self.store, self.transform = store, transform

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        img = self.store.image(int(i))
        pil = Image.fromarray(img[..., 0] if img.shape[2] == 1 else img).convert("RGB")
        return self.transform(pil), int(self.store.labels[i])


def lightly_run(run: Path) -> None:
    """Train with lightly's recipe as ``run/job.json`` says; write ``run/backbone.pt`` (the
    backbone's state dict, tensors only) and ``run/result.json``."""
    import torch
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    from pyxfer.backbone import create_backbone
    from pyxfer.data import load_dataset
    from pyxfer.engine.clock import RunClock
    from pyxfer.engine.optim import default_param_groups, lr_factor, optimizer_from_config, set_lr
    from pyxfer.engine.pretraining import knn_split

    job = json.loads((run / "job.json").read_text())
    cfg = train_config(job["config"])
    train, _ = knn_split(load_dataset(cfg.data), cfg)  # the images pyxfer's run trained on
    torch.manual_seed(cfg.seed)
    backbone = create_backbone(cfg.backbone, **cfg.backbone_opts)  # pyxfer's random init
    nf = int(backbone.num_features)
    model = torch.nn.Sequential(backbone, SimCLRProjectionHead(nf, nf, 128))
    optimizer = optimizer_from_config(default_param_groups(model, cfg.weight_decay), cfg)
    criterion = NTXentLoss()
    spec = backbone.input_spec
    transform = SimCLRTransform(
        input_size=cfg.size,
        gaussian_blur=0.0,
        normalize={"mean": list(spec.mean), "std": list(spec.std)},
    )
    workers = int(job["workers"])
    loader = torch.utils.data.DataLoader(
        _Images(train, transform),
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    if len(loader) == 0:
        raise ValueError(f"batch_size: {cfg.batch_size} is more than the {len(train)} images")
    clock = RunClock(cfg.step_limit(len(loader)), cfg.max_time)
    step, loss, last_line = 0, float("nan"), time.perf_counter()
    model.train()
    clock.start()
    while clock.binding(step) is None:
        for (x0, x1), _ in loader:
            factor = lr_factor(
                step, clock.horizon(step), cfg.warmup_steps, cfg.min_lr_ratio, cfg.lr_schedule
            )
            set_lr(optimizer, cfg.lr * factor)
            z0, z1 = model(x0), model(x1)
            out = criterion(z0, z1)
            optimizer.zero_grad(set_to_none=True)
            out.backward()
            optimizer.step()
            step, loss = step + 1, float(out.detach())
            if time.perf_counter() - last_line >= 10:
                last_line = time.perf_counter()
                print(f"step {step}, loss {loss:.4g}, {clock.elapsed():.0f} s", flush=True)
            if clock.binding(step) is not None:
                break
    elapsed = clock.elapsed()
    torch.save({k: v.detach().clone() for k, v in backbone.state_dict().items()},
               run / "backbone.pt")  # fmt: skip
    import lightly

    result = {
        "steps": step,
        "loss": loss,
        "time": elapsed,
        "images": len(train),
        "lightly": lightly.__version__,
        "torch": torch.__version__,
    }
    (run / "result.json").write_text(json.dumps(result))
    print(f"stopped at step {step}, loss {loss:.4g}, {elapsed:.1f} s", flush=True)


# -- the comparison -------------------------------------------------------------------------------
def table(rows: list[dict[str, Any]], batch_size: int, budget: float) -> str:
    """The markdown table of ``rows`` (``method``, ``steps`` or None, ``knn_top1``, ``load``)."""
    lines = [
        "| method | steps | images/s | kNN top-1 | load before → after (1, 5, 15 min) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        steps = r.get("steps")
        speed = "–" if steps is None else f"{steps * batch_size / budget:.1f}"
        load = "–" if r.get("load") is None else f"{r['load'][0]} → {r['load'][1]}"
        lines.append(
            f"| {r['method']} | {'–' if steps is None else steps} | {speed} | "
            f"{100 * r['knn_top1']:.1f} % | {load} |"
        )
    return "\n".join(lines)


def compare(args: argparse.Namespace, work: Path) -> None:
    import torch

    from pyxfer.data import load_dataset
    from pyxfer.engine import TrainConfig
    from pyxfer.engine.pretraining import knn_split
    from pyxfer.modelio import load_model, locate_model

    sys.path.insert(0, str(HERE))
    from pretrain_knn import knn_top1, limit_store, random_init

    if (work / "runs").exists():
        raise SystemExit(f"--work: {work} holds the runs of an earlier comparison; give another")
    store = limit_store(load_dataset(args.data), args.limit, args.seed)
    store.save(work / "data", overwrite=True)

    rows: list[dict[str, Any]] = []
    before = _load()
    pyxfer_line = _run(pyxfer_command(args), work, "pyxfer.log")
    rows.append({"method": "pyxfer", "load": (before, _load())})
    pyxfer_config = json.loads((work / PYXFER_RUN / "config.json").read_text())
    cfg = train_config(pyxfer_config)

    run = work / LIGHTLY_RUN
    run.mkdir(parents=True, exist_ok=True)
    job = {"config": {**cfg.to_dict(), "data": "packed:data"}, "workers": args.workers}
    (run / "job.json").write_text(json.dumps(job, indent=1))
    before = _load()
    lightly_line = _run(lightly_command(args), work, "lightly.log")
    rows.append({"method": "lightly 1.6", "load": (before, _load())})
    lightly_result = json.loads((run / "result.json").read_text())

    knn_cfg = TrainConfig(
        knn_holdout=args.knn_holdout,
        knn_k=KNN_K,
        knn_temperature=KNN_TEMPERATURE,
        seed=args.seed,
        threads=args.threads,
    )
    _, (bank, queries) = knn_split(load_dataset(f"packed:{work / 'data'}"), knn_cfg)
    pyxfer_model = load_model(locate_model(str(work / PYXFER_RUN)).path)
    rows[0].update(steps=int(pyxfer_model.extra["steps"]))
    rows[0]["knn_top1"] = knn_top1(pyxfer_model.backbone, bank, queries, knn_cfg)
    lightly_bb = random_init(cfg.backbone, cfg.backbone_opts, args.seed)
    lightly_bb.load_state_dict(torch.load(run / "backbone.pt", weights_only=True))
    rows[1].update(steps=int(lightly_result["steps"]))
    rows[1]["knn_top1"] = knn_top1(lightly_bb, bank, queries, knn_cfg)
    init = random_init(cfg.backbone, cfg.backbone_opts, args.seed)
    rows.append({"method": "random init", "knn_top1": knn_top1(init, bank, queries, knn_cfg)})

    opts = ", ".join(f"{k}={v}" for k, v in cfg.backbone_opts.items())
    print(
        f"\n{len(store)} images ({args.data}): both runs train on {len(bank)}, kNN queries "
        f"{len(queries)} (held out, seed {args.seed}), k {KNN_K}, temperature {KNN_TEMPERATURE}\n"
        f"{cfg.backbone} ({opts}), {cfg.size} px, budget {args.max_time:g} s, seed {cfg.seed}; "
        f"pyxfer's settings, used by both: batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr:g}"
        f" betas {cfg.betas} weight decay {cfg.weight_decay:g}, warmup {cfg.warmup_steps}, "
        f"{cfg.lr_schedule} to {cfg.min_lr_ratio:g} over the budget; pyxfer views "
        f"{pyxfer_config.get('views')!r}, threads {cfg.threads}; lightly DataLoader "
        f"{args.workers} workers; torch {torch.__version__}\n"
        f"pyxfer: {pyxfer_line}\nlightly: {lightly_line}\n"
    )
    print(table(rows, cfg.batch_size, args.max_time))
    if args.json:
        doc = {"rows": rows, "pyxfer_config": pyxfer_config, "lightly": lightly_result}
        Path(args.json).write_text(json.dumps(doc, indent=1))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="labelled data-set spec at 32 px (packed:cifar32)")
    ap.add_argument("--lightly-python", help="interpreter with lightly 1.6 and pyxfer")
    ap.add_argument("--max-time", type=float, default=300.0, help="seconds per run")
    ap.add_argument("--limit", type=int, default=0, help="stratified subset of N images (0: all)")
    ap.add_argument("--knn-holdout", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="lightly's DataLoader processes")
    ap.add_argument("--threads", type=int, default=0, help="kNN preprocessing threads")
    ap.add_argument("--work", help="working directory to keep (default: a temporary one)")
    ap.add_argument("--json", help="also write the rows and settings to this file")
    ap.add_argument("--lightly-run", help=argparse.SUPPRESS)  # run 2, in the lightly interpreter
    args = ap.parse_args(argv)
    if args.lightly_run:
        lightly_run(Path(args.lightly_run))
        return
    if not args.data or not args.lightly_python:
        ap.error("--data and --lightly-python: both required")
    with tempfile.TemporaryDirectory(prefix="lightly-compare-") as tmp:
        work = Path(args.work).resolve() if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        compare(args, work)


if __name__ == "__main__":
    main()
