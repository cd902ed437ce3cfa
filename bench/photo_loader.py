"""Real-size photos: images/s end to end (read + decode + augment) of SimCLR views at 224.

Builds ``--count`` JPEG photos at least 400 px on the short side (default: mosaics of the
CIFAR-10 test JPEGs — 32 px tiles, 13-20 by 16-20 of them, i.e. 416-640 px — re-encoded at
quality 90; without the shared data, synthetic photo-like images), then measures:

(a) the fused loader on the compressed store (``pyxfer pack --format jpeg``: the JPEG bytes,
    decoded in the loader with DCT scaling to the crops' scale);
(b) torchvision ``ImageFolder`` + a ``transforms.v2`` SimCLR pipeline (random resized crop,
    flip, colour jitter p 0.8, grayscale p 0.2, blur p 0.5, normalize) in a ``DataLoader`` with
    ``--workers`` workers, batch ``--batch-size`` (run in the interpreter of ``--tv-python``,
    default ``$PYXFER_TV_PYTHON``, so pyxfer never needs torchvision);
(c) the fused loader on a raw-pixel store of the same photos at ``--raw-size`` (256: centre
    cropped at pack time, so its random crops never see the sides);
(a-256) the like-for-like case (c) implies: the fused loader on a compressed store packed with
    a resolution cap (``pack --format jpeg --max-side S``, as FFCV's ``max_resolution``), S
    chosen so that a photo keeps about the raw store's pixel count (``--capped-side``; default
    ``--raw-size`` x sqrt(median aspect ratio): 290 px for the default photos, 1.00x the raw
    store's pixels per image on average). It keeps the photos' sides (the raw store does not)
    and re-encodes them at quality 90.

``--stages`` also prints where (a)'s, (a-256)'s and (c)'s CPU time goes, in one thread:
sampling the views, reading + decoding (split by cProfile into libjpeg, Pillow's packing of
the pixels into the array, ``Image.open`` and the rest), and the fused kernel.

Each row is images/s over ``--batches`` batches after one warm-up batch (two views per image),
with the loader's own threads at ``--threads``, and for (a) and (c) the process CPU time per
image (all threads; meaningful when the machine is shared). Store sizes are printed, and, with
``--model-steps N``, the loader's share of N ResNet-18 SimCLR steps at 224 on this CPU
(time the training loop waited for a batch / step time; batches are prefetched while the
model runs). The load averages are printed: on a shared machine the numbers are pessimistic.

    python bench/photo_loader.py --tv-python /path/to/venv-with-torchvision/bin/python
    python bench/photo_loader.py --count 200 --batches 3 --model-steps 2   # a quick check
    python bench/photo_loader.py --count 60 --batches 2 --batch-size 16 --stages  # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

SHARED = (
    Path(os.environ["PYXFER_SHARED_DATA"])
    if os.environ.get("PYXFER_SHARED_DATA")
    else Path(__file__).resolve().parents[2] / "shared" / "data"
)
CIFAR = SHARED / "cifar10-test" / "cifar10-test.tar.gz"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_averages() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# ---- the photos --------------------------------------------------------------------------------
def _cifar_tiles(limit: int = 10000) -> tuple[list[np.ndarray], list[int]] | None:
    if not CIFAR.is_file():
        return None
    from PIL import Image

    tiles, labels, classes = [], [], {}
    with tarfile.open(CIFAR) as tf:
        for m in tf:
            if not m.isfile() or not m.name.lower().endswith((".jpg", ".png")):
                continue
            cls = Path(m.name).parent.name
            fh = tf.extractfile(m)
            if fh is None:
                continue
            with Image.open(fh) as im:
                tiles.append(np.asarray(im.convert("RGB")))
            labels.append(classes.setdefault(cls, len(classes)))
            if len(tiles) >= limit:
                break
    return tiles, labels


def _synthetic(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [
            128 + 90 * np.sin(x / rng.uniform(20, 90) + rng.uniform(0, 6)),
            128 + 90 * np.cos(y / rng.uniform(20, 90) + rng.uniform(0, 6)),
            128 + 60 * np.sin((x + y) / rng.uniform(20, 90)),
        ],
        axis=2,
    )
    for _ in range(12):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(10, 120)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_photos(root: Path, count: int, seed: int = 0) -> Path:
    """``root/<class>/<k>.jpg``: ``count`` photos >= 400 px on the short side, quality 90."""
    from PIL import Image

    marker = root / f".complete-{count}-{seed}"
    if marker.exists():
        return root
    rng = np.random.default_rng(seed)
    cifar = _cifar_tiles()
    for k in range(count):
        th, tw = int(rng.integers(13, 16)), int(rng.integers(16, 21))  # 416-480 x 512-640
        if rng.random() < 0.5:
            th, tw = tw, th  # portrait
        if cifar is not None:
            tiles, labels = cifar
            pick = rng.integers(0, len(tiles), th * tw)
            grid = np.stack([tiles[i] for i in pick]).reshape(th, tw, 32, 32, 3)
            img = grid.transpose(0, 2, 1, 3, 4).reshape(th * 32, tw * 32, 3)
            label = labels[int(pick[0])]
        else:
            img = _synthetic(rng, th * 32, tw * 32)
            label = k % 10
        path = root / f"class{label}" / f"{k:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path, quality=90)
    marker.touch()
    return root


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# ---- (a) and (c): the fused loader -------------------------------------------------------------
def fused_rate(store, batch_size: int, batches: int, threads: int) -> tuple[float, float]:
    """(images/s wall clock, CPU ms per image of this process, all threads)."""
    from pyxfer.engine.loader import FusedLoader

    with FusedLoader(
        store, batch_size=batch_size, views="simclr", size=224, seed=0, threads=threads, prefetch=2
    ) as loader:
        it = iter(loader)
        next(it)  # warm-up (thread pools, first pages of the store)
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(batches):
            next(it)
        n = batches * batch_size
        return n / (time.perf_counter() - t0), (time.process_time() - c0) * 1e3 / n


def capped_side(sizes: np.ndarray, raw_size: int) -> int:
    """The longer-side cap at which a photo of the median aspect ratio keeps ``raw_size``²
    pixels (the mean over the photos comes out close to it; the bench prints it)."""
    aspect = sizes.max(axis=1) / sizes.min(axis=1)
    return round(raw_size * float(np.sqrt(np.median(aspect))))


def stage_profile(store, batch_size: int, batches: int) -> dict[str, float]:
    """CPU ms per image of each stage of the fused loader's batch on ``store``, one thread."""
    import cProfile
    import pstats

    from pyxfer.data.jpegstore import SCALES
    from pyxfer.engine.loader import FusedLoader
    from pyxfer.ops.augment import apply, sample_params

    specs = FusedLoader(store, batch_size, "simclr", size=224, threads=1).specs
    sizes = [spec.size for spec in specs]
    clock = time.process_time
    out: dict[str, float] = defaultdict(float)
    decodes: list[tuple[int, int]] = []
    n = batches * batch_size
    for b in range(batches):
        idx = np.arange(b * batch_size, (b + 1) * batch_size) % len(store)
        t = clock()
        compressed = hasattr(store, "decode_views")
        hw = store.original_sizes(idx) if compressed else store.image_sizes()[idx]
        params = sample_params(specs, hw, idx, seed=0, threads=1)
        out["sample the views"] += clock() - t
        t = clock()
        if compressed:
            images, params, kept = store.decode_views(idx, params, sizes, threads=1)
            for k, im in zip(kept, images, strict=True):
                w = int(hw[k][1])
                scale = next(s for s in SCALES if -(-w // s) == im.shape[1])
                decodes.append((int(idx[k]), scale))
        else:
            images = store.batch(idx)
        out["read + decode" if compressed else "read"] += clock() - t
        for v in range(len(specs)):
            t = clock()
            apply(images, np.ascontiguousarray(params[v :: len(specs)]), size=sizes[v], threads=1)
            out["fused kernel (all views)"] += clock() - t
    if decodes:  # split the decode by running the same decodes again under cProfile
        prof = cProfile.Profile()
        prof.enable()
        for i, scale in decodes:
            store._decode_row(int(store._rows[i]), scale)
        prof.disable()
        stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
        parts: dict[str, float] = defaultdict(float)
        total = 0.0
        for (file, _, name), (_, _, tt, ct, _) in stats.items():
            if name == "_decode_row":
                total += ct
            elif "ImagingDecoder" in name:
                parts["libjpeg decode"] += tt
            elif "ImagingEncoder" in name:
                parts["Pillow packs the pixels into the array"] += tt
            elif name == "open" and file.endswith("Image.py"):
                parts["Image.open (header parse) + draft"] += ct
            elif "crc32" in name or "tobytes" in name:
                parts["bytes from the memory map + CRC-32"] += tt
        whole = out.pop("read + decode")
        parts["other Python (checks, pool, box mapping)"] = max(0.0, total - sum(parts.values()))
        for k, v in parts.items():
            out[f"  {k}"] = whole * v / total
    return {k: v * 1e3 / n for k, v in out.items()}


def print_stages(title: str, stages: dict[str, float]) -> None:
    total = sum(stages.values())
    print(f"{title}: {total:.2f} ms CPU/image in one thread")
    for k, v in stages.items():
        print(f"    {k:46s} {v:6.3f} ms {v / total:6.1%}")


# ---- (b): torchvision, run in the torchvision interpreter --------------------------------------
def torchvision_child(folder: str, batch_size: int, batches: int, workers: int) -> None:
    import torch
    from torchvision import datasets
    from torchvision.transforms import v2

    torch.set_num_threads(1)
    view = v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomResizedCrop(224, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )

    def two(img):
        return view(img), view(img)

    data = datasets.ImageFolder(folder, transform=two)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    print(json.dumps({"rate": batches * batch_size / (time.perf_counter() - t0)}))


def torchvision_rate(args, folder: Path) -> float | None:
    if not args.tv_python or not Path(args.tv_python).exists():
        print(
            "(b) skipped: no torchvision interpreter (--tv-python or PYXFER_TV_PYTHON)",
            file=sys.stderr,
        )
        return None
    res = subprocess.run(
        [
            args.tv_python,
            __file__,
            "--torchvision-child",
            str(folder),
            str(args.batch_size),
            str(args.batches),
            str(args.workers),
        ],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        print(f"(b) failed:\n{res.stderr[-2000:]}", file=sys.stderr)
        return None
    return float(json.loads(res.stdout.strip().splitlines()[-1])["rate"])


# ---- the loader's share of a ResNet-18 step ----------------------------------------------------
def model_share(store, batch_size: int, steps: int, threads: int) -> tuple[float, float, int]:
    """(step seconds, share of it spent waiting for the loader, batches not ready)."""
    import torch
    import torch.nn.functional as F

    from pyxfer.backbone import create_backbone
    from pyxfer.engine.loader import FusedLoader

    model = create_backbone("resnet18")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with FusedLoader(
        store, batch_size=batch_size, views="simclr", size=224, seed=0, threads=threads, prefetch=2
    ) as loader:
        it = iter(loader)
        batch = next(it)  # warm-up
        loader.wait_time, loader.starved = 0.0, 0
        t0 = time.perf_counter()
        for _ in range(steps):
            z = F.normalize(model(torch.cat(batch.views)), dim=1)
            n = z.shape[0] // 2
            sim = (z @ z.T / 0.5).fill_diagonal_(float("-inf"))
            loss = F.cross_entropy(sim, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            batch = next(it)
        total = time.perf_counter() - t0
        return total / steps, loader.wait_time / total, loader.starved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000, help="photos (default 2000)")
    ap.add_argument("--workdir", default="", help="keep the photos and stores here (reused)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=20, help="timed batches per row")
    ap.add_argument("--threads", type=int, default=2, help="fused loader threads")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of (b)")
    ap.add_argument("--raw-size", type=int, default=256)
    ap.add_argument(
        "--capped-side",
        type=int,
        default=None,
        metavar="PX",
        help="max side of the (a-256) JPEG store (default: the raw store's mean pixel count; "
        "0 skips the row)",
    )
    ap.add_argument(
        "--stages", action="store_true", help="also print where the CPU time goes (one thread)"
    )
    ap.add_argument("--model-steps", type=int, default=0, help="ResNet-18 steps (0: skip)")
    ap.add_argument("--model-batch", type=int, default=32)
    ap.add_argument("--tv-python", default=os.environ.get("PYXFER_TV_PYTHON", ""))
    ap.add_argument("--torchvision-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torchvision_child:
        folder, bs, nb, workers = args.torchvision_child
        torchvision_child(folder, int(bs), int(nb), int(workers))
        return

    import pyxfer
    from pyxfer.data import load_dataset, pack, pack_jpeg

    tmp = None
    if args.workdir:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory()
        work = Path(tmp.name)
    photos = make_photos(work / f"photos-{args.count}", args.count)
    jpeg_dir, raw_dir = work / f"jpeg-{args.count}.px", work / f"raw{args.raw_size}-{args.count}"
    if not (jpeg_dir / "meta.json").exists():
        pack_jpeg(f"folder:{photos}", jpeg_dir, progress=False)
    if not (raw_dir / "meta.json").exists():
        pack(f"folder:{photos}", raw_dir, size=args.raw_size, progress=False)
    jpeg_store, raw_store = load_dataset(f"packed:{jpeg_dir}"), load_dataset(f"packed:{raw_dir}")
    sizes = jpeg_store.image_sizes()
    side = capped_side(sizes, args.raw_size) if args.capped_side is None else args.capped_side
    capped_store, capped_dir = None, work / f"jpeg-max{side}-{args.count}.px"
    if side:
        if not (capped_dir / "meta.json").exists():
            pack_jpeg(f"folder:{photos}", capped_dir, max_side=side, progress=False)
        capped_store = load_dataset(f"packed:{capped_dir}")
    src_bytes = sum(f.stat().st_size for f in photos.rglob("*.jpg"))
    print(
        f"pyxfer photo loader bench: {len(jpeg_store)} photos, short side "
        f"{sizes.min(axis=1).min()}-{sizes.min(axis=1).max()} px, SimCLR 2 views at 224, "
        f"batch {args.batch_size}, {args.threads} loader threads, {os.cpu_count()} CPUs, "
        f"SIMD {pyxfer.build_info().get('augment_simd')}, load averages {load_averages()}"
    )
    print(
        f"store sizes: JPEG files {src_bytes / 2**20:,.1f} MiB; compressed store "
        f"{dir_bytes(jpeg_dir) / 2**20:,.1f} MiB ({dir_bytes(jpeg_dir) / src_bytes:.3f}x); "
        f"raw {args.raw_size} px store {dir_bytes(raw_dir) / 2**20:,.1f} MiB"
        + (
            f"; (a-{args.raw_size}) JPEG store at max side {side} px "
            f"{dir_bytes(capped_dir) / 2**20:,.1f} MiB, "
            f"{capped_store.image_sizes().prod(axis=1).mean() / args.raw_size**2:.2f}x the raw "
            f"store's pixels per image"
            if capped_store is not None
            else ""
        )
    )
    a, a_cpu = fused_rate(jpeg_store, args.batch_size, args.batches, args.threads)
    b = torchvision_rate(args, photos)
    c, c_cpu = fused_rate(raw_store, args.batch_size, args.batches, args.threads)
    cap_row = f"(a-{args.raw_size}) fused loader, JPEG store at max side {side} px"
    if capped_store is not None:
        a2, a2_cpu = fused_rate(capped_store, args.batch_size, args.batches, args.threads)
    tv_row = f"(b) torchvision ImageFolder + v2, DataLoader {args.workers} workers"
    print(f"{'row':58s} {'images/s':>9s} {'cpu ms/img':>10s}")
    print(f"{'(a) fused loader, compressed (JPEG) store':58s} {a:9.1f} {a_cpu:10.2f}")
    if capped_store is not None:
        print(f"{cap_row:58s} {a2:9.1f} {a2_cpu:10.2f}")
    if b is not None:
        print(f"{tv_row:58s} {b:9.1f} {'(workers)':>10s}")
    print(f"{f'(c) fused loader, raw {args.raw_size} px store':58s} {c:9.1f} {c_cpu:10.2f}")
    print(f"(a)/(b) {a / b:.2f}x (target >= 3)" if b else "(a)/(b) n/a", end="; ")
    print(f"(c)/(a) {c / a:.2f}x (target <= 2)", end="; ")
    if capped_store is not None:
        print(f"(c)/(a-{args.raw_size}) {c / a2:.2f}x (target <= 2)", end="; ")
    print(f"load averages {load_averages()} (end)")
    if args.stages:
        print_stages("(a) JPEG store", stage_profile(jpeg_store, args.batch_size, args.batches))
        if capped_store is not None:
            print_stages(
                f"(a-{args.raw_size}) JPEG store at max side {side} px",
                stage_profile(capped_store, args.batch_size, args.batches),
            )
        print_stages(
            f"(c) raw {args.raw_size} px store",
            stage_profile(raw_store, args.batch_size, args.batches),
        )
    if args.model_steps:
        step, share, starved = model_share(
            jpeg_store, args.model_batch, args.model_steps, args.threads
        )
        print(
            f"ResNet-18 SimCLR step at 224, batch {args.model_batch} (2 views), CPU: "
            f"{step:.2f} s/step, {args.model_batch / step:.1f} images/s; loader wait "
            f"{share:.1%} of step time, {starved} of {args.model_steps} batches not ready"
        )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
