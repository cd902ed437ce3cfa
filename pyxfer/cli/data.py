"""``pyxfer data``: describe a data set and draw a grid of samples."""

from __future__ import annotations

import argparse
import json

EPILOG = """\
specs:
  digits                       scikit-learn's 8x8 digits (embedded)
  folder:DIR                   DIR/<class>/<image files>, or a flat folder (unlabelled)
  tar:ARCHIVE.tar.gz           a class-per-folder tree inside an archive
  idx:DIR                      MNIST-style IDX files (raw or .gz)
  packed:DIR                   a store written by `pyxfer pack` (also --shard-size)
  a bare existing path         its kind is guessed

examples:
  pyxfer data digits --grid digits.png
  pyxfer data idx:../shared/data/mnist-test --json
  pyxfer data tar:cifar10-test.tar.gz --grid cifar.png --per-class 10
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "data",
        help="describe a data set and draw sample images",
        description="Load a data set from a spec and describe it: image count, classes with "
        "their counts, image size(s) and channels, dense or ragged, and where it came from. "
        "Optionally write a PNG grid of samples, one labelled row per class.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", metavar="SPEC", help="data-set spec, e.g. digits or folder:photos/")
    p.add_argument("--grid", metavar="OUT.png", help="write a PNG grid of samples here")
    p.add_argument(
        "--per-class",
        type=int,
        default=8,
        metavar="K",
        help="samples per class in the grid (default 8)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for picking samples (default 0)")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    return p


def _size_text(d: dict) -> str:
    if d["dense"]:
        h, w, c = d["image_shape"]
        return f"dense, {h}x{w}x{c}"
    if "size_min" not in d:
        return f"ragged, C={d['channels']}"
    (h0, w0), (h1, w1) = d["size_min"], d["size_max"]
    common = ", ".join(f"{h}x{w} ({n})" for h, w, n in d["common_sizes"][:3])
    return (
        f"ragged, C={d['channels']}, heights {h0}-{h1}, widths {w0}-{w1}; most common HxW {common}"
    )


def run(args: argparse.Namespace) -> int:
    from pyxfer.data import load_dataset
    from pyxfer.data.shards import storage_info, storage_text

    store = load_dataset(args.spec)
    d = store.describe()
    if "storage" not in d and (where := storage_info(store)) is not None:
        d.update(where)  # a raw packed store: its size on disk
    if args.grid:
        from pyxfer.data.grid import sample_grid

        sample_grid(store, per_class=args.per_class, seed=args.seed).save(args.grid)
        d["grid"] = args.grid
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    rows = [
        ("name", d["name"]),
        ("source", d["source"]),
        ("images", f"{d['count']:,} ({_size_text(d)})"),
        (
            "labels",
            f"{d['labelled']:,} labelled, {d['unlabelled']:,} unlabelled, "
            f"{d['num_classes']} classes",
        ),
    ]
    if "packed_path" in store.info:
        rows.append(("packed", f"{store.info['packed_path']} (memory-mapped)"))
    if "sharded_path" in store.info:
        rows.append(("sharded", store.info["sharded_path"]))
    if d.get("storage") is not None:
        from pyxfer.data.shards import storage_text

        rows.append(("storage", storage_text(d)))
    if args.grid:
        rows.append(("grid", args.grid))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if d["classes"]:
        print("classes:")
        items = list(d["classes"].items())
        name_w = max(len(c) for c, _ in items[:50])
        for c, n in items[:50]:
            print(f"  {c:<{name_w}}  {n:,}")
        if len(items) > 50:
            print(f"  ... and {len(items) - 50} more")
    return 0
