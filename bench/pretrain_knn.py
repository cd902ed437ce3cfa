"""kNN top-1 of a backbone at random init or of a pretrained model, under exactly the protocol
of ``pyxfer pretrain --knn-holdout F``.

The split and the vote are the engine's own (:func:`pyxfer.engine.pretraining.knn_split` and
:class:`pyxfer.engine.knn.KNNMonitor` with the :class:`~pyxfer.engine.TrainConfig` defaults):
a stratified, seeded fraction ``F`` of the labelled data is held out as the queries; the bank
is the rest (the images the run pretrained on, with their labels); images are
eval-preprocessed (resize, centre crop, normalise with the backbone's ``input_spec``);
features are the backbone's pooled features, L2-normalised; the prediction is a
similarity-weighted vote of the ``k = 20`` nearest bank images (weights ``exp(s / 0.07)``,
Wu et al. 2018; ``--knn-k`` and ``--knn-temperature`` as for ``pretrain``). The random-init
backbone is built as ``pretrain`` builds it (``torch.manual_seed(seed)`` then
``create_backbone``), so it is the very network a run with the same seed starts from.

Examples::

    python bench/pretrain_knn.py --data packed:/tmp/cifar32 --knn-holdout 0.1 \\
        --backbone resnet18 -o stem=small -o width=0.25              # random init
    python bench/pretrain_knn.py --data packed:/tmp/cifar32 --knn-holdout 0.1 \\
        --model runs/simclr/model                                     # a pretrained backbone
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from pyxfer.backbone import create_backbone
from pyxfer.cli.options import parse_opts
from pyxfer.data import load_dataset
from pyxfer.data.splits import stratified_split
from pyxfer.engine import TrainConfig
from pyxfer.engine.knn import KNNMonitor
from pyxfer.engine.pretraining import knn_split


def limit_store(store: Any, limit: int, seed: int) -> Any:
    """A stratified, seeded ``limit``-image subset of ``store`` (all of it for 0 or more)."""
    if not limit or limit >= len(store):
        return store
    frac = limit / len(store)
    keep, _ = stratified_split(store.labels, (frac, 1 - frac), seed=seed)
    return store.subset(keep)


def random_init(name: str, opts: dict[str, Any], seed: int) -> torch.nn.Module:
    """The backbone ``pretrain`` builds with ``seed`` before training: ``torch.manual_seed(seed)``,
    then :func:`~pyxfer.backbone.create_backbone`."""
    torch.manual_seed(seed)
    return create_backbone(name, **opts)


def knn_top1(backbone: torch.nn.Module, bank: object, queries: object, cfg: TrainConfig) -> float:
    """kNN top-1 of ``backbone`` with the engine's monitor and ``cfg``'s kNN settings."""
    monitor = KNNMonitor(
        bank,
        queries,
        k=cfg.knn_k,
        temperature=cfg.knn_temperature,
        max_bank=cfg.knn_max_bank,
        threads=cfg.threads,
        seed=cfg.seed,
    )
    return float(monitor.evaluate(backbone))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="labelled data-set spec")
    ap.add_argument("--knn-holdout", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0, help="split seed and init seed (as pretrain)")
    ap.add_argument("--backbone", help="registered backbone (random init)")
    ap.add_argument("-o", "--backbone-opt", action="append", default=[], metavar="K=V")
    ap.add_argument("--model", help="a pyxfer run or model directory instead")
    ap.add_argument("--knn-k", type=int, default=TrainConfig.knn_k)
    ap.add_argument("--knn-temperature", type=float, default=TrainConfig.knn_temperature)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if bool(args.backbone) == bool(args.model):
        ap.error("give one of --backbone (random init) or --model")

    cfg = TrainConfig(
        knn_holdout=args.knn_holdout,
        knn_k=args.knn_k,
        knn_temperature=args.knn_temperature,
        seed=args.seed,
        threads=args.threads,
    )
    store = load_dataset(args.data)
    _, (bank, queries) = knn_split(store, cfg)
    if args.model:
        from pyxfer.modelio import load_model, locate_model

        backbone = load_model(locate_model(args.model, argument="--model").path).backbone
        what = args.model
    else:
        opts = parse_opts(args.backbone_opt, "--backbone-opt")
        backbone = random_init(args.backbone, opts, args.seed)
        what = f"{args.backbone} {opts} at random init (seed {args.seed})"
    t0 = time.perf_counter()
    top1 = knn_top1(backbone, bank, queries, cfg)
    result = {
        "model": what,
        "data": args.data,
        "bank": min(len(bank), cfg.knn_max_bank),
        "queries": len(queries),
        "k": cfg.knn_k,
        "temperature": cfg.knn_temperature,
        "knn_top1": top1,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
