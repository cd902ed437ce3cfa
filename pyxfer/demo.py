"""``pyxfer demo``: the whole mission on the embedded digits, in a few minutes on a laptop CPU.

On scikit-learn's 1,797 handwritten digits (8×8, bundled, no download), split once (seeded)
into a pool (80 %) and a held-out test set (20 %):

1. **self-supervised pretraining** of a LeNet on the pool's images *without labels*, with the
   fused augmentation and a registered objective (SimCLR); kNN accuracy of its features vs
   the same backbone at random initialisation;
2. **transfer with 5 labels per class**: linear probe and full fine-tune from the pretrained
   backbone vs the same backbone trained from scratch on the same 50 labels;
3. **zero-shot**: three digits (1, 4, 7) are held out; a backbone fine-tuned on the seen digits only
   recognises the held-out ones from a table of how digits are drawn (ESZSL): ZSL accuracy
   and GZSL seen / unseen / H;
4. **deployment**: the fine-tuned classifier exported to an ONNX bundle (fp32 and int8) that
   verifies itself against torch, then served by :mod:`pyxfer.runtime` in a process where
   torch cannot be imported: its accuracy and latency.

Everything lands in one directory (``--out``) with a results table (``results.json``), the
runs of each stage, the bundle, and ``report.html``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("pyxfer.demo")

# Digits held out for zero-shot. On 8×8 digits the result depends strongly on which digits
# are held out (2, 5 and 8 share most of their drawn attributes and stay near chance); the
# demo holds out 1, 4 and 7, whose descriptions differ from the seen digits'.
UNSEEN = (1, 4, 7)


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of each stage (``quick`` shrinks them to finish in under a minute)."""

    pretrain_steps: int
    pretrain_batch: int
    finetune_steps: int
    seen_steps: int
    labels_per_class: int = 5
    calibration: int = 256

    @classmethod
    def for_mode(cls, quick: bool) -> DemoPlan:
        if quick:
            return cls(pretrain_steps=60, pretrain_batch=128, finetune_steps=60, seen_steps=80)
        return cls(pretrain_steps=1000, pretrain_batch=256, finetune_steps=200, seen_steps=300)


@dataclass
class DemoResult:
    """The numbers of a demo run (fractions in [0, 1]; latency in milliseconds)."""

    out: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def value(self, key: str) -> float:
        for row in self.rows:
            if row["key"] == key:
                return float(row["value"])
        raise KeyError(key)


def _row(key: str, stage: str, what: str, value: float, unit: str, protocol: dict[str, Any]):
    return {
        "key": key,
        "stage": stage,
        "what": what,
        "value": float(value),
        "unit": unit,
        "protocol": protocol,
    }


def run_demo(
    out: str | os.PathLike[str] = "pyxfer-demo",
    *,
    quick: bool = False,
    device: str = "auto",
    seed: int = 0,
    threads: int = 0,
) -> DemoResult:
    """Run the four stages (see the module docstring) and write ``out``."""
    import torch

    import pyxfer
    from pyxfer.data.splits import indices_of_classes, stratified_split
    from pyxfer.evaluate.features import extract_features
    from pyxfer.evaluate.knn import knn_accuracy
    from pyxfer.fileio import atomic_write_json
    from pyxfer.transfer.finetune import finetune
    from pyxfer.zeroshot.pipeline import fit_zeroshot

    t0 = time.perf_counter()

    def stage(text: str, *args: Any) -> None:  # one line per stage, with the time so far
        log.info(text + " [%.0f s]", *args, time.perf_counter() - t0)

    plan = DemoPlan.for_mode(quick)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    data = pyxfer.load_dataset("digits")
    labels = np.asarray(data.labels)
    pool_idx, test_idx = stratified_split(labels, (0.8, 0.2), seed=seed)
    pool, test = data.subset(pool_idx), data.subset(test_idx)
    bb_opts = {"img_size": 8}
    # the demo owns its directory: a second demo replaces the first one's runs
    common: dict[str, Any] = {
        "device": device,
        "threads": threads,
        "progress": False,
        "overwrite": True,
    }
    rows: list[dict[str, Any]] = []
    split = {"data": "digits", "pool": int(pool_idx.size), "test": int(test_idx.size), "seed": seed}

    # 1. self-supervised pretraining (no labels)
    stage("1/4 self-supervised pretraining (SimCLR, %d steps)", plan.pretrain_steps)
    from pyxfer.data import ImageStore
    from pyxfer.modelio import load_model

    unlabelled = ImageStore(np.asarray(pool.images), name="digits pool, labels removed")
    ssl = pyxfer.pretrain(
        unlabelled,
        backbone="lenet",
        backbone_opts=bb_opts,
        objective="simclr",
        objective_opts={"temperature": 0.2},
        max_steps=plan.pretrain_steps,
        batch_size=plan.pretrain_batch,
        lr=2e-3,
        warmup_steps=plan.pretrain_steps // 10,
        seed=seed,
        out=str(root / "pretrain"),
        checkpoint_every=0,
        **common,
    )
    ssl_dir = root / "pretrain"
    random_bb = pyxfer.create_backbone("lenet", **bb_opts)
    ssl_bb = load_model(ssl.model_dir).backbone
    for name, bb in (("random init", random_bb), ("SimCLR", ssl_bb)):
        f_pool = extract_features(bb, pool, progress=False, threads=threads)
        f_test = extract_features(bb, test, progress=False, threads=threads)
        knn = knn_accuracy(f_pool, pool.labels, f_test, test.labels, k=20, temperature=0.07)
        key = "knn_random" if name == "random init" else "knn_ssl"
        rows.append(
            _row(
                key,
                "1 pretrain",
                f"kNN top-1, {name}",
                knn.top1,
                "acc",
                {**split, "k": 20, "T": 0.07, "bank": "pool labels", "queries": "test"},
            )
        )

    # 2. transfer with few labels
    stage("2/4 transfer with %d labels per class", plan.labels_per_class)
    ft_common: dict[str, Any] = {
        "labels_per_class": plan.labels_per_class,
        "test_data": test,
        "max_steps": plan.finetune_steps,
        "batch_size": 64,
        "seed": seed,
        **common,
    }
    runs: dict[str, tuple[str, dict[str, Any]]] = {
        "linear_ssl": ("linear probe, SimCLR start", dict(source=str(ssl_dir), strategy="linear")),
        "full_ssl": ("fine-tune, SimCLR start", dict(source=str(ssl_dir), strategy="full")),
        "full_scratch": (
            "fine-tune, from scratch",
            dict(from_scratch=True, backbone="lenet", backbone_opts=bb_opts, strategy="full"),
        ),
    }
    results = {}
    for key, (what, kw) in runs.items():
        res = finetune(data=pool, out=str(root / "finetune" / key), **kw, **ft_common)
        results[key] = res
        rows.append(
            _row(
                key,
                "2 transfer",
                what,
                res.test["top1"],
                "acc",
                {
                    **split,
                    "labels_per_class": plan.labels_per_class,
                    "strategy": kw["strategy"],
                    "steps": plan.finetune_steps,
                    "selection": "validation split of the 50 labels",
                },
            )
        )

    # 3. zero-shot: a backbone that never saw labels of the unseen digits
    stage("3/4 zero-shot on digits %s", list(UNSEEN))
    seen = [c for c in range(10) if c not in UNSEEN]
    pool_seen = pool.subset(indices_of_classes(pool.labels, seen))
    seen_run = finetune(
        source=str(ssl_dir),
        data=pool_seen,
        strategy="full",
        test_fraction=0.0,
        max_steps=plan.seen_steps,
        batch_size=64,
        seed=seed,
        out=str(root / "seen"),
        **common,
    )
    zs = fit_zeroshot(
        seen_run.model_dir,
        data,
        "digits",
        unseen=list(UNSEEN),
        holdout=test_idx,
        seed=seed,
        out=root / "zeroshot",
        report=False,
    )
    zs_protocol = {
        **zs.protocol,
        "backbone": "SimCLR on the unlabelled pool, then fine-tuned "
        "on the seen digits' labels only",
    }
    for key, what, value in (
        ("zsl", "ZSL top-1 on unseen digits (chance 33.3 %)", zs.zsl),
        ("gzsl_u", "GZSL unseen accuracy u", zs.gzsl_u),
        ("gzsl_s", "GZSL seen accuracy s", zs.gzsl_s),
        ("gzsl_h", "GZSL harmonic mean H", zs.gzsl_h),
    ):
        rows.append(_row(key, "3 zero-shot", what, value, "acc", zs_protocol))

    # 4. export and torch-free prediction
    stage("4/4 export (fp32 + int8) and torch-free prediction")
    from pyxfer.export import to_onnx

    bundle = root / "bundle"
    to_onnx(
        results["full_ssl"].model_dir,
        bundle,
        input="uint8-nhwc",
        quantize="int8",
        calibration=pool.images[: plan.calibration],
        holdout=(test.images, test.labels),
        int8_on_loss="warn",  # a demo model from 5 labels per class: show the change, keep int8
        overwrite=True,
    )
    meta = json.loads((bundle / "pyxfer.json").read_text())
    np.save(root / "test_images.npy", np.asarray(test.images))
    np.save(root / "test_labels.npy", np.asarray(test.labels))
    serve = _serve_without_torch(bundle, root)
    parity = meta["parity"]
    rows.append(
        _row(
            "export_agree",
            "4 deploy",
            "ONNX fp32 vs torch top-1 agreement",
            parity["top1_agreement"],
            "acc",
            {"check": "onnxruntime vs torch on real images, two batch sizes"},
        )
    )
    for prec in ("fp32", "int8"):
        rows.append(
            _row(
                f"runtime_{prec}",
                "4 deploy",
                f"runtime {prec} top-1 (no torch)",
                serve[prec]["top1"],
                "acc",
                {**split, "images": "test", "model that ran": serve[prec]["model"]},
            )
        )
        rows.append(
            _row(
                f"latency_{prec}",
                "4 deploy",
                f"runtime {prec} latency, 1 image",
                serve[prec]["latency_ms"],
                "ms",
                {"threads": serve["threads"], "stat": "median of 50"},
            )
        )

    result = DemoResult(root, rows, time.perf_counter() - t0)
    atomic_write_json(
        root / "config.json",
        {
            "task": "demo",
            "data": "digits",
            "views": "simclr",
            "size": 8,
            "seed": seed,
            "quick": quick,
        },
    )
    _write_results(root, result)
    for name in ("metrics.jsonl",):
        src = ssl_dir / name
        if src.is_file():
            (root / name).write_bytes(src.read_bytes())
    for name in ("predictions.npz", "features.npz"):
        src = root / "finetune" / "full_ssl" / name
        if src.is_file():
            (root / name).write_bytes(src.read_bytes())
    try:
        from pyxfer.report import write_report

        write_report(root)
    except Exception as exc:  # the numbers stand without the report
        log.warning("report.html not written: %s", exc)
    return result


_SERVE = r"""
import json, sys, time
sys.modules["torch"] = None  # the runtime must work where torch cannot be imported
import numpy as np
from pyxfer.runtime import Predictor
bundle, root, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
x = np.load(f"{root}/test_images.npy"); y = np.load(f"{root}/test_labels.npy")
out = {"threads": threads}
for prec in ("fp32", "int8"):
    p = Predictor(bundle, int8=(prec == "int8"), threads=threads)
    pred = np.argmax(p.scores(x), axis=1)
    times = []
    for i in range(55):
        t = time.perf_counter()
        p.scores(x[i % len(x)][None])
        times.append(time.perf_counter() - t)
    out[prec] = {"top1": float((pred == y).mean()), "latency_ms": 1e3 * float(np.median(times[5:])),
                 "model": p.model}  # int8 falls back to fp32 where it does not hold on this CPU
print(json.dumps(out))
"""


def _serve_without_torch(bundle: Path, root: Path, threads: int = 1) -> dict[str, Any]:
    # Absolute paths: the child runs in ``root``, so a relative ``--out`` given to the demo
    # would otherwise be resolved twice (``pyxfer-demo/pyxfer-demo/...``).
    bundle, root = Path(bundle).resolve(), Path(root).resolve()
    proc = subprocess.run(
        [sys.executable, "-c", _SERVE, str(bundle), str(root), str(threads)],
        capture_output=True,
        text=True,
        cwd=root,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"torch-free prediction failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _write_results(root: Path, result: DemoResult) -> None:
    from pyxfer.evaluate.results import Result, save_results

    save_results(
        root / "results.json",
        [
            Result(r["key"], r["value"], {"what": r["what"], "unit": r["unit"], **r["protocol"]})
            for r in result.rows
        ],
        meta={"seconds": result.seconds},
    )


def format_table(result: DemoResult) -> str:
    """The demo's results as a plain-text table."""
    lines = [f"{'stage':<12} {'':<48} {'value':>9}", "-" * 71]
    for r in result.rows:
        v = f"{100 * r['value']:.1f} %" if r["unit"] == "acc" else f"{r['value']:.2f} ms"
        lines.append(f"{r['stage']:<12} {r['what']:<48} {v:>9}")
    lines.append("-" * 71)
    lines.append(f"{'':<12} {'total time':<48} {result.seconds:>7.0f} s")
    return "\n".join(lines)
