"""Benchmark: torch eager vs onnxruntime fp32 vs onnxruntime int8 (static QDQ), and end to end.

    python bench/inference.py                   # 2 threads, all sections
    python bench/inference.py --threads 4 --quick

Sections (every ratio is against a baseline measured in the same run, same thread count):

1. Latency (median ms) and throughput (images/s) of ResNet-18 at 224 px (ImageNet stem,
   1000 classes) and of a small-image ResNet-18 at 32 px (small stem, 10 classes), batch 1
   and 32: torch eager (``torch.inference_mode``) vs ORT fp32 vs ORT int8 (per-channel,
   calibrated on real CIFAR-10 images when ../shared/data has them), for each int8 scheme:
   U8S8 with 7-bit weights (the export default), U8S8 with 8-bit weights, U8U8. The table
   names the CPU's int8 path (``avx512-vnni``, ``avx-vnni``, ``avx512``, ``avx2``): the ratios
   hold for that path only. On an AVX-512 machine, ``bench/ort_isa.py`` makes a copy of
   onnxruntime that runs its AVX2 kernels (run this script with that copy on PYTHONPATH).
   Weights are random: latency does not depend on them.
2. int8 accuracy: a small ResNet-18 (width 0.25, 28 px, grey) fine-tuned for a few hundred
   steps on 8,000 MNIST test-split images, top-1 of ORT fp32 vs ORT int8 on the 2,000 held-out
   images (falls back to the embedded digits without ../shared/data).
3. End to end on JPEG files (~64 CIFAR-10 test images upsampled to 256 px, or random 500x375
   images): ``Predictor.predict(paths)`` (decode + resize 256 + crop 224 + normalise + ORT)
   vs Pillow decode/resize/crop + numpy normalise + torch eager ResNet-18.
4. ViT-Tiny: ORT fp32 vs dynamic int8 (``quantize_dynamic``, MatMul weights) vs static QDQ,
   to decide whether dynamic quantisation is worth offering for transformer backbones.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PYXFER_SHARED_DATA", ROOT.parent / "shared" / "data"))


def time_interleaved(fns: dict, repeats: int, warmup: int = 2) -> dict[str, tuple[float, float]]:
    """{name: (median s, min s)}; the functions alternate within each repetition, so a burst
    of load from other processes hits every engine alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def cifar_images(count: int, size: int | None = None) -> tuple[np.ndarray, bool]:
    """(count, H, W, 3) uint8 CIFAR-10 test images (upsampled to ``size``), or random ones."""
    from PIL import Image

    tar_path = SHARED / "cifar10-test" / "cifar10-test.tar.gz"
    rng = np.random.default_rng(0)
    if not tar_path.is_file():
        side = size or 32
        return rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8), False
    out = []
    with tarfile.open(tar_path) as tar:
        members = [m for m in tar if m.isfile() and m.name.endswith(".jpg")]
        pick = rng.choice(len(members), size=count, replace=False)
        for i in sorted(pick):
            img = Image.open(io.BytesIO(tar.extractfile(members[i]).read())).convert("RGB")
            if size:
                img = img.resize((size, size), Image.Resampling.BICUBIC)
            out.append(np.asarray(img))
    return np.stack(out), True


def export(model, out: Path, **kwargs) -> Path:
    from pyxfer.export import to_onnx

    # random weights or unlabelled calibration images: report the int8 change, never refuse
    kwargs.setdefault("int8_on_loss", "warn")
    return to_onnx(model.eval(), out, overwrite=True, **kwargs)


#: int8 schemes timed beside the export default (U8S8, 7-bit weights): name -> options
EXTRA_SCHEMES = {
    "u8s8 8-bit": dict(weight_type="int8", reduce_range=False),
    "u8u8": dict(weight_type="uint8", reduce_range=False),
}


def extra_schemes(bundle: Path, calib_x: np.ndarray) -> dict[str, Path]:
    """The bundle's fp32 model quantised with each of EXTRA_SCHEMES (same calibration)."""
    from pyxfer.export.quantize import quantize_int8

    out = {}
    for name, opts in EXTRA_SCHEMES.items():
        path = bundle.parent / f"{bundle.name}-{name.replace(' ', '_')}.onnx"
        quantize_int8(bundle / "model.onnx", path, input_name="images",
                      calibration_inputs=calib_x, **opts)  # fmt: skip
        out[name] = path
    return out


def section_latency(args, tmp: Path) -> list[tuple]:
    import torch

    import pyxfer
    from pyxfer.ops import normalize

    rows = []
    configs = [
        ("resnet18 224px", dict(num_classes=1000), 224),
        ("resnet18 32px small", dict(stem="small", num_classes=10), 32),
    ]
    for name, kwargs, size in configs:
        torch.manual_seed(0)
        model = pyxfer.create_backbone("resnet18", **kwargs).eval()
        calib, real = cifar_images(64 if not args.quick else 16, size)
        t0 = time.perf_counter()
        bundle = export(
            model, tmp / name.replace(" ", "_"), quantize="int8", calibration=calib,
            calibration_count=len(calib), dynamic_size=False,
        )  # fmt: skip
        log(f"{name}: exported fp32 + int8 in {time.perf_counter() - t0:.0f} s "
            f"(calibration: {'CIFAR-10' if real else 'random'} images)")  # fmt: skip
        spec = model.input_spec
        calib_x = normalize(np.ascontiguousarray(calib), spec.mean, spec.std)
        extra = extra_schemes(bundle, calib_x)
        fp32 = ort_session(bundle / "model.onnx", args.threads)
        int8 = ort_session(bundle / "model.int8.onnx", args.threads)
        others = {k: ort_session(p, args.threads) for k, p in extra.items()}
        for batch in (1, 32):
            x = np.random.default_rng(1).standard_normal((batch, 3, size, size), np.float32)
            xt = torch.from_numpy(x)
            reps = args.repeats if batch == 1 else max(3, args.repeats // 10)

            def run_torch(xt=xt, model=model):
                with torch.inference_mode():
                    model(xt)

            t = time_interleaved(
                {
                    "torch": run_torch,
                    "fp32": lambda x=x, s=fp32: s.run(None, {"images": x}),
                    "int8": lambda x=x, s=int8: s.run(None, {"images": x}),
                    **{k: (lambda x=x, s=s: s.run(None, {"images": x})) for k, s in others.items()},
                },
                reps,
                warmup=2 if batch == 1 else 1,
            )
            rows.append((name, batch, t["torch"], t["fp32"], t["int8"],
                         {k: t[k] for k in others}))  # fmt: skip
            log(f"  batch {batch}: " + ", ".join(f"{k} {v[0] * 1e3:.1f} ms" for k, v in t.items()))
    return rows


def section_accuracy(args, tmp: Path) -> dict:
    import torch

    import pyxfer
    from pyxfer.data import stratified_split
    from pyxfer.ops import normalize

    mnist = SHARED / "mnist-test"
    if mnist.is_dir():
        store, source, size = pyxfer.load_dataset(f"idx:{mnist}"), "MNIST test split", 28
    else:
        store, source, size = pyxfer.load_dataset("digits"), "digits", 8
    train, held = stratified_split(store.labels, (0.8, 0.2), seed=0)
    torch.manual_seed(0)
    model = pyxfer.create_backbone("resnet18", stem="small", width=0.25, in_chans=1, num_classes=10)
    spec = model.input_spec
    x = torch.from_numpy(normalize(np.ascontiguousarray(store.images[train]), spec.mean, spec.std))
    y = torch.from_numpy(store.labels[train])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = args.train_steps
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(0)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    log(f"accuracy model: {steps} steps on {len(train)} {source} images in "
        f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    bundle = export(
        model, tmp / "mnist", input="uint8-nhwc", image_size=size, quantize="int8",
        calibration=store.images[train], calibration_count=512,
        holdout=(store.images[held], store.labels[held]), dynamic_size=False,
    )  # fmt: skip
    import json

    m = json.loads((bundle / "pyxfer.json").read_text())["metrics"]["int8"]
    m["source"] = source
    return m


def section_end_to_end(args, tmp: Path) -> dict:
    import torch
    from PIL import Image

    import pyxfer
    from pyxfer.runtime import Predictor

    count = args.jpegs
    images, real = cifar_images(count, 256)
    if not real:
        images = np.random.default_rng(2).integers(0, 256, (count, 375, 500, 3), np.uint8)
    paths = []
    jpg_dir = tmp / "jpegs"
    jpg_dir.mkdir()
    for i, img in enumerate(images):
        p = jpg_dir / f"{i:03d}.jpg"
        Image.fromarray(img).save(p, quality=90)
        paths.append(str(p))
    torch.manual_seed(0)
    model = pyxfer.create_backbone("resnet18", num_classes=1000).eval()
    calib = images[:32]
    bundle = export(
        model, tmp / "e2e", input="uint8-nhwc", resize=256, image_size=224, quantize="int8",
        calibration=calib, calibration_count=len(calib), dynamic_size=False,
    )  # fmt: skip
    spec = model.input_spec
    mean, std = np.array(spec.mean, np.float32), np.array(spec.std, np.float32)

    def torch_pipeline() -> np.ndarray:
        batch = []
        for p in paths:
            img = Image.open(p).convert("RGB")
            w, h = img.size
            s = 256 / min(w, h)
            img = img.resize((round(w * s), round(h * s)), Image.Resampling.BILINEAR)
            w, h = img.size
            left, top = round((w - 224) / 2), round((h - 224) / 2)
            img = img.crop((left, top, left + 224, top + 224))
            batch.append((np.asarray(img, np.float32) / 255 - mean) / std)
        x = torch.from_numpy(np.stack(batch).transpose(0, 3, 1, 2).copy())
        with torch.inference_mode():
            return model(x).argmax(1).numpy()

    fp32 = Predictor(bundle, threads=args.threads, batch_size=32)
    int8 = Predictor(bundle, threads=args.threads, batch_size=32, int8=True)
    reps = 3
    t = time_interleaved(
        {
            "torch": torch_pipeline,
            "fp32": lambda: fp32.predict(paths, top_k=1),
            "int8": lambda: int8.predict(paths, top_k=1),
        },
        reps,
        warmup=1,
    )
    t_torch, t_fp32, t_int8 = (t[k][0] for k in ("torch", "fp32", "int8"))
    agree = np.mean(
        [p.indices[0] == t for p, t in zip(fp32.predict(paths, top_k=1), torch_pipeline(),
                                            strict=True)]
    )  # fmt: skip
    return {
        "images": count,
        "source": "CIFAR-10 test JPEGs upsampled to 256 px" if real else "random 500x375",
        "torch": t_torch,
        "fp32": t_fp32,
        "int8": t_int8,
        "top1_agreement_torch_vs_predictor": float(agree),
    }


def section_vit(args, tmp: Path) -> list[tuple]:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import pyxfer

    torch.manual_seed(0)
    model = pyxfer.create_backbone("vit_tiny", num_classes=10).eval()
    calib, _ = cifar_images(32, 32)
    bundle = export(model, tmp / "vit", quantize="int8", calibration=calib, dynamic_size=False)
    dyn = tmp / "vit_dynamic.onnx"
    quantize_dynamic(str(bundle / "model.onnx"), str(dyn), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm"])  # fmt: skip
    sessions = {
        "fp32": ort_session(bundle / "model.onnx", args.threads),
        "dynamic int8": ort_session(dyn, args.threads),
        "static QDQ int8": ort_session(bundle / "model.int8.onnx", args.threads),
    }
    rows = []
    for batch in (1, 32):
        x = np.random.default_rng(1).standard_normal((batch, 3, 32, 32), np.float32)
        timed = time_interleaved(
            {k: (lambda s=s, x=x: s.run(None, {"images": x})) for k, s in sessions.items()},
            args.repeats,
        )
        times = {k: v[0] for k, v in timed.items()}
        rows.append((batch, times))
    return rows


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30, help="timed runs at batch 1")
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--jpegs", type=int, default=64, help="JPEG files end to end")
    ap.add_argument("--quick", action="store_true", help="fewer images and repeats")
    ap.add_argument("--sections", default="latency,accuracy,e2e,vit", help="comma-separated subset")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.train_steps = min(args.repeats, 10), min(args.train_steps, 60)
        args.jpegs = min(args.jpegs, 32)
    import onnxruntime
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    sections = set(args.sections.split(","))
    from pyxfer import _C

    simd = _C.build_info()["preprocess_simd"]  # the preprocessing kernel's path
    print(f"threads={args.threads}  torch {torch.__version__}  onnxruntime "
          f"{onnxruntime.__version__}  cpu count {os.cpu_count()}  pyxfer preprocess {simd}  "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="pyxfer-bench-") as td:
        tmp = Path(td)
        if "latency" in sections:
            from pyxfer.runtime.verification import int8_isa

            rows = section_latency(args, tmp)
            extra = list(EXTRA_SCHEMES)
            isa = int8_isa()
            marker = Path(onnxruntime.__file__).parent / "MLAS_ISA"  # bench/ort_isa.py's copy
            if marker.exists():
                isa = f"avx2 (a patched onnxruntime copy on an {isa} CPU: {marker})"
            print(f"\n## Latency (median ms) and throughput (img/s); int8 path of this CPU: "
                  f"{isa}")  # fmt: skip
            print("| model | batch | torch eager ms | ORT fp32 ms | ORT int8 ms (u8s8 7-bit) | "
                  "fp32/torch | int8/fp32 | "
                  + " | ".join(f"{k} /fp32" for k in extra) + " |")  # fmt: skip
            print("|---|---|---|---|---|---|---|" + "---|" * len(extra))
            for name, batch, tt, tf, ti, te in rows:
                print(
                    f"| {name} | {batch} | {tt[0] * 1e3:.2f} ({batch / tt[0]:.0f}/s) | "
                    f"{tf[0] * 1e3:.2f} ({batch / tf[0]:.0f}/s) | {ti[0] * 1e3:.2f} "
                    f"({batch / ti[0]:.0f}/s) | {tt[0] / tf[0]:.2f}x | {tf[0] / ti[0]:.2f}x | "
                    + " | ".join(f"{tf[0] / te[k][0]:.2f}x" for k in extra)
                    + " |"
                )
            print("\nminimum over the repetitions (least disturbed by other processes), ms:")
            print("| model | batch | torch eager | ORT fp32 | ORT int8 | fp32/torch | int8/fp32 | "
                  + " | ".join(f"{k} /fp32" for k in extra) + " |")  # fmt: skip
            print("|---|---|---|---|---|---|---|" + "---|" * len(extra))
            for name, batch, tt, tf, ti, te in rows:
                print(
                    f"| {name} | {batch} | {tt[1] * 1e3:.2f} | {tf[1] * 1e3:.2f} | "
                    f"{ti[1] * 1e3:.2f} | {tt[1] / tf[1]:.2f}x | {tf[1] / ti[1]:.2f}x | "
                    + " | ".join(f"{tf[1] / te[k][1]:.2f}x" for k in extra)
                    + " |"
                )
        if "accuracy" in sections:
            m = section_accuracy(args, tmp)
            print(f"\n## int8 accuracy ({m['source']}, {m['holdout_images']} held-out images)")
            print(f"fp32 top-1 {m['holdout_accuracy_fp32']:.2%}, int8 top-1 "
                  f"{m['holdout_accuracy_int8']:.2%}, change "
                  f"{m['accuracy_change_points']:+.2f} points, top-1 agreement "
                  f"{m['top1_agreement']:.2%}")  # fmt: skip
        if "e2e" in sections:
            e = section_end_to_end(args, tmp)
            n = e["images"]
            print(f"\n## End to end: {n} JPEG files ({e['source']}), ResNet-18 224 px")
            print("| pipeline | total ms | img/s | vs torch |")
            print("|---|---|---|---|")
            for label, key in (("torch + Pillow", "torch"), ("Predictor fp32", "fp32"),
                               ("Predictor int8", "int8")):  # fmt: skip
                t = e[key]
                print(f"| {label} | {t * 1e3:.0f} | {n / t:.1f} | {e['torch'] / t:.2f}x |")
            print(f"top-1 agreement Predictor fp32 vs torch pipeline: "
                  f"{e['top1_agreement_torch_vs_predictor']:.2%}")  # fmt: skip
        if "vit" in sections:
            rows = section_vit(args, tmp)
            print("\n## ViT-Tiny (32 px): dynamic vs static int8 (median ms)")
            print("| batch | ORT fp32 | dynamic int8 | static QDQ int8 |")
            print("|---|---|---|---|")
            for batch, t in rows:
                f = t["fp32"]
                print(
                    f"| {batch} | {f * 1e3:.2f} | {t['dynamic int8'] * 1e3:.2f} "
                    f"({f / t['dynamic int8']:.2f}x) | {t['static QDQ int8'] * 1e3:.2f} "
                    f"({f / t['static QDQ int8']:.2f}x) |"
                )


if __name__ == "__main__":
    main()
