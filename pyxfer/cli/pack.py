"""``pyxfer pack``: any data set -> a fixed-size, memory-mapped store directory."""

from __future__ import annotations

import argparse

EPILOG = """\
The store is a directory with images.npy (uint8 N x S x S x C, memory-mapped when read),
labels.npy (int64, -1 = unlabelled) and meta.json (class names, shape, source). It is written
into a temporary sibling directory and renamed into place at the end, so an interrupted pack
leaves nothing behind. Read it back with the spec packed:DST. Images are decoded, written and
dropped a chunk at a time: memory stays bounded whatever the number of images.

With --shard-size N, DST is a directory of stores of N images each (shard-00000/, ...) with an
index (shards.json: counts, file sizes and SHA-256) and labels.npy; packed:DST reads it as one
store, and under torchrun each process reads only its shards (docs/distributed.md). It works
with either format: --format jpeg --shard-size N writes shards that are compressed stores.

With --format jpeg the store keeps each image's JPEG bytes instead (data.bin, index.npy with
offsets, sizes, original dimensions and checksums, labels.npy, names.json, meta.json): about
the size of the JPEG files, decoded by the fused loader at the scale each batch's crops need.
Other formats, rotated or CMYK JPEGs and images larger than --max-side are re-encoded at
--quality.

examples:
  pyxfer pack folder:photos/ photos64 --size 64 --skip-corrupt
  pyxfer pack folder:photos/ photos.px --format jpeg
  pyxfer pack tar:cifar10-test.tar.gz cifar32 --size 32
  pyxfer pack idx:../shared/data/mnist-test mnist32 --size 32 --channels 3
  pyxfer pack folder:imagenet/train in256 --size 256 --shard-size 10000
  pyxfer pack folder:imagenet/train in-jpeg --format jpeg --max-side 512 --shard-size 10000
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "pack",
        help="resize a data set to S x S and write it as a packed store",
        description="Read a data set (any spec `pyxfer data` accepts), resize every image to "
        "S x S with antialiasing, and write a packed store directory that loads instantly "
        "(memory-mapped) as packed:DST.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", metavar="SRC", help="data-set spec, e.g. folder:photos/ or idx:DIR")
    p.add_argument("dst", metavar="DST", help="store directory to create (must not exist)")
    p.add_argument(
        "--size", type=int, metavar="S", help="output size S x S (the raw format needs it)"
    )
    p.add_argument(
        "--format",
        choices=("raw", "jpeg"),
        default="raw",
        help="raw: decoded pixels at S x S (default); jpeg: the images' JPEG bytes at their "
        "own size, decoded when loaded",
    )
    p.add_argument(
        "--quality",
        type=int,
        default=90,
        metavar="Q",
        help="jpeg: quality of the images that are re-encoded (default 90)",
    )
    p.add_argument(
        "--max-side",
        type=int,
        default=2048,
        metavar="PX",
        help="jpeg: resize and re-encode images whose longer side is above PX (default 2048; "
        "0 keeps every size)",
    )
    p.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        help="convert to 1 (grey) or 3 (RGB) channels (default: keep the source's)",
    )
    p.add_argument(
        "--fit",
        choices=("crop", "stretch"),
        default="crop",
        help="crop: centre crop to a square, then resize (default); "
        "stretch: resize the whole image, ignoring its aspect ratio",
    )
    p.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="skip unreadable image files with a warning instead of stopping",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="decoding threads (default 0: one per CPU core)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DST if it is a packed store (any other directory is refused)",
    )
    p.add_argument(
        "--shard-size",
        type=int,
        metavar="N",
        help="write a sharded store: a directory of stores of at most N images each",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from pyxfer.data import load_dataset, pack

    if args.format == "jpeg":
        return _run_jpeg(args)
    if args.size is None:
        from pyxfer.cli import CLIError

        raise CLIError("--size S is required for the raw format (or give --format jpeg)")
    out = pack(
        args.src,
        args.dst,
        size=args.size,
        channels=args.channels,
        on_error="skip" if args.skip_corrupt else "raise",
        threads=args.threads,
        fit=args.fit,
        overwrite=args.overwrite,
        progress=False if args.no_progress else None,
        shard_size=args.shard_size,
    )
    store = load_dataset(f"packed:{out}")
    n, h, w, c = (len(store), *(store.image_shape or (0, 0, 0)))
    mib = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    skipped = int(store.info.get("skipped", 0) or 0)
    shards = f" as {store.info['shards']} shards" if "shards" in store.info else ""
    print(
        f"packed {n:,} images ({h}x{w}x{c}, {store.num_classes} classes) from {args.src} "
        f"into {out}{shards} ({mib:.1f} MiB)"
        + (f"; skipped {skipped} unreadable" if skipped else "")
    )
    return 0


def _run_jpeg(args: argparse.Namespace) -> int:
    from pyxfer.cli import CLIError
    from pyxfer.data import load_dataset, pack_jpeg
    from pyxfer.data.shards import storage_info, storage_text

    if args.size is not None or args.fit != "crop":
        raise CLIError("--size and --fit apply to the raw format only, not --format jpeg")
    out = pack_jpeg(
        args.src,
        args.dst,
        channels=args.channels or 3,
        quality=args.quality,
        max_side=args.max_side or None,
        on_error="skip" if args.skip_corrupt else "raise",
        threads=args.threads,
        overwrite=args.overwrite,
        progress=False if args.no_progress else None,
        shard_size=args.shard_size,
    )
    store = load_dataset(f"packed:{out}")
    skipped = int(store.info.get("skipped", 0) or 0)
    print(
        f"packed {len(store):,} images ({store.num_classes} classes) from {args.src} into {out}: "
        + storage_text(storage_info(store) or {})
        + (f"; skipped {skipped} unreadable" if skipped else "")
    )
    return 0
