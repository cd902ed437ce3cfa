"""DINO against SimCLR (or other objectives) at one step or time budget, per backbone, by kNN.

For each backbone: the kNN top-1 of the random-init network, then of each objective's run
(``pyxfer.pretrain`` with the same data, seed, batch size, step limit, optimiser and
learning-rate schedule), all under the protocol of ``pyxfer pretrain --knn-holdout F`` (see
``bench/pretrain_knn.py``). "Same budget" means the same optimiser steps on the same number of
images per step (``--max-steps``), or the same wall-clock seconds per run (``--max-time``:
each objective trains until its time is up, its schedules following the clock); the
objectives' compute per step differs (DINO's student also sees the local crops and its teacher
runs a forward pass), so the table says what each step contains.

``--limit N`` trains and evaluates on a stratified, seeded N-image subset of the data (a short
run on a shared machine). A backbone is ``NAME[:K=V,K=V]`` (``-b resnet18:stem=small,width=0.25``);
objective options are ``--opt OBJECTIVE:K=V`` (repeatable).

Example (the run in ``bench/pretrain_results.md``)::

    python bench/ssl_compare.py --data packed:/tmp/cifar32 --limit 5000 --max-steps 100 \\
        --batch-size 64 -b resnet18:stem=small,width=0.25 -b vit_tiny:patch_size=8 \\
        --objectives simclr,dino --opt dino:n_local=4 --opt dino:momentum_base=0.99
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from pyxfer.cli.options import parse_opts
from pyxfer.data import load_dataset
from pyxfer.engine import TrainConfig
from pyxfer.engine.pretraining import knn_split, pretrain

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_knn import knn_top1, limit_store, random_init


def _backbone(spec: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = spec.partition(":")
    return name, parse_opts([kv for kv in rest.split(",") if kv], "--backbone")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="labelled data-set spec")
    ap.add_argument("--limit", type=int, default=0, help="stratified subset of N images (0: all)")
    ap.add_argument("--knn-holdout", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument(
        "--max-time", type=float, default=None,
        help="seconds per run: a time budget instead of the step limit (every schedule follows it)",
    )  # fmt: skip
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--size", type=int, default=None, help="side of the (global) views")
    ap.add_argument("-b", "--backbone", action="append", required=True, metavar="NAME[:K=V,..]")
    ap.add_argument("--objectives", default="simclr,dino")
    ap.add_argument("--opt", action="append", default=[], metavar="OBJECTIVE:K=V")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=None, help="keep the runs here (default: a temporary dir)")
    ap.add_argument("--no-random-init", action="store_true", help="skip the random-init rows")
    args = ap.parse_args()

    store = limit_store(load_dataset(args.data), args.limit, args.seed)
    objectives = [o for o in args.objectives.split(",") if o]
    obj_opts: dict[str, list[str]] = {o: [] for o in objectives}
    for item in args.opt:
        name, _, kv = item.partition(":")
        if name not in obj_opts:
            ap.error(f"--opt {item!r}: {name!r} is not one of --objectives {objectives}")
        obj_opts[name].append(kv)
    cfg = TrainConfig(knn_holdout=args.knn_holdout, seed=args.seed, threads=args.threads)
    _, (bank, queries) = knn_split(store, cfg)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ssl_compare_"))
    rows = []
    for spec in args.backbone:
        name, bopts = _backbone(spec)
        if not args.no_random_init:
            # the network every run below starts from
            top1 = knn_top1(random_init(name, bopts, args.seed), bank, queries, cfg)
            rows.append(dict(backbone=spec, objective="random init", knn_top1=top1))
            print(json.dumps(rows[-1]), flush=True)
        for objective in objectives:
            oopts = parse_opts(obj_opts[objective], "--opt")
            result = pretrain(
                store,
                backbone=name,
                backbone_opts=bopts,
                objective=objective,
                objective_opts=oopts,
                max_steps=None if args.max_time else args.max_steps,
                max_time=args.max_time,
                batch_size=args.batch_size,
                lr=args.lr,
                size=args.size,
                knn_holdout=args.knn_holdout,
                seed=args.seed,
                threads=args.threads,
                out=str(out / f"{name}_{objective}"),
                overwrite=True,
            )
            rows.append(
                dict(
                    backbone=spec,
                    objective=objective,
                    options=oopts,
                    steps=result.step,
                    seconds=args.max_time,
                    final_loss=result.last_metrics.get("loss"),
                    knn_top1=result.knn_top1,
                )
            )
            print(json.dumps(rows[-1]), flush=True)
    print(
        f"\n{len(store)} images ({args.data}), bank {len(bank)}, queries {len(queries)}, "
        f"batch {args.batch_size}, "
        + (f"{args.max_time:g} s per run" if args.max_time else f"{args.max_steps} steps")
        + f", lr {args.lr}, seed {args.seed}"
    )
    print("\n| backbone | objective | options | steps | kNN top-1 |\n|---|---|---|---|---|")
    for r in rows:
        top1 = r["knn_top1"]
        cell = "–" if top1 is None else f"{100 * top1:.1f} %"
        print(
            f"| {r['backbone']} | {r['objective']} | {r.get('options', '')} | "
            f"{r.get('steps', '–')} | {cell} |"
        )


if __name__ == "__main__":
    main()
