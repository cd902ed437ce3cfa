"""Benchmark: int8 accuracy of each quantisation scheme on both x86 int8 paths (VNNI and not).

    python bench/int8_cpus.py --run runs/ft --data digits:mnist
    python bench/int8_cpus.py --run runs/ft --data digits:mnist --schemes u8s8,u8s8-7bit

x86 CPUs with VNNI (AVX-512 VNNI, AVX-VNNI) add u8 x s8 products in 32-bit sums
(``vpdpbusd``); without it (AVX2, AVX-512 before VNNI: Zen 3, Haswell to Skylake) onnxruntime's
kernels add pairs in saturating 16-bit sums (``vpmaddubsw``). This script exports the model
once per scheme, calibrated on the same images, and measures top-1 on the held-out images:

- natively, on this CPU (whatever int8 path it has);
- under ``qemu-x86_64 -cpu EPYC-Milan`` (an emulated Zen 3: AVX2, no AVX-512, no VNNI), where
  onnxruntime's CPUID check selects its AVX2 kernels, when qemu-user is installed.

It also says whether each bundle's verification set passes on each path (what
``Predictor(int8=True)`` does before it runs int8). Times under qemu mean nothing and are not
reported; speed is ``bench/inference.py``'s job on a real CPU, and ``bench/int8_insn_counts.sh``
counts the instructions of an inference on the AVX2 path under qemu.

Schemes: ``u8s8`` (8-bit weights), ``u8s8-7bit`` (``reduce_range``, the default), ``u8u8``,
``s8s8``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCHEMES = {
    "u8s8": dict(activation_type="uint8", weight_type="int8", reduce_range=False),
    "u8s8-7bit": dict(activation_type="uint8", weight_type="int8", reduce_range=True),
    "u8u8": dict(activation_type="uint8", weight_type="uint8", reduce_range=False),
    "s8s8": dict(activation_type="int8", weight_type="int8", reduce_range=False),
}
QEMU_CPU = "EPYC-Milan"

# run in a fresh interpreter (natively or under qemu): top-1 of fp32 and int8 on the held-out
# images, and the verification result of Predictor(int8=True) on that CPU
EVAL = r"""
import json, sys
import numpy as np
from pyxfer.runtime import Predictor
from pyxfer.runtime.verification import int8_isa
root, x, y = sys.argv[1], np.load(sys.argv[2]), np.load(sys.argv[3])
out = {"isa": int8_isa()}
for name in sys.argv[4:]:
    p = Predictor(f"{root}/{name}", threads=1, int8=True, int8_check="warn")
    f = Predictor(f"{root}/{name}", threads=1)
    top = lambda pr: np.array([q.indices[0] for q in pr.predict(x, top_k=1)])
    out[name] = {"int8": float((top(p) == y).mean()), "fp32": float((top(f) == y).mean()),
                 "verification": p.verification["status"],
                 "rel_error": p.verification.get("measured", {}).get("rel_error")}
print("RESULT " + json.dumps(out))
"""


def evaluate(root: Path, x_path: Path, y_path: Path, names: list[str], qemu: str | None):
    script = root / "eval.py"
    script.write_text(EVAL)
    cmd = [sys.executable, str(script), str(root), str(x_path), str(y_path), *names]
    if qemu:
        cmd = [qemu, "-cpu", QEMU_CPU, *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {proc.stderr[-2000:]}")
    return json.loads(line[0][len("RESULT ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="model or run directory (a classifier)")
    ap.add_argument("--data", default="digits:mnist", help="labelled data-set spec")
    ap.add_argument("--schemes", default=",".join(SCHEMES), help="comma-separated subset")
    ap.add_argument("--calibration-count", type=int, default=256)
    ap.add_argument("--holdout-fraction", type=float, default=0.2)
    ap.add_argument("--no-qemu", action="store_true", help="only the native path")
    args = ap.parse_args()

    import pyxfer
    from pyxfer.data import stratified_split
    from pyxfer.export import to_onnx
    from pyxfer.runtime.verification import int8_isa

    store = pyxfer.load_dataset(args.data)
    f = args.holdout_fraction
    # the same split to_onnx makes by default: calibrate on one part, measure on the other
    _, held = stratified_split(store.labels, (1 - f, f), seed=0)
    names = args.schemes.split(",")
    qemu = None if args.no_qemu else shutil.which("qemu-x86_64")
    print(f"native int8 path: {int8_isa()}; qemu: {qemu or 'not installed'} "
          f"(-cpu {QEMU_CPU}); load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    export_metrics = {}
    with tempfile.TemporaryDirectory(prefix="pyxfer-int8-") as td:
        tmp = Path(td)
        for name in names:
            t0 = time.perf_counter()
            out = to_onnx(
                args.run, tmp / name, input="uint8-nhwc", quantize="int8", calibration=store,
                calibration_count=args.calibration_count, holdout_fraction=f,
                int8_on_loss="warn", **SCHEMES[name],
            )  # fmt: skip
            meta = json.loads((out / "pyxfer.json").read_text())
            export_metrics[name] = meta["metrics"]["int8"]
            print(f"exported {name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        np.save(tmp / "x.npy", np.ascontiguousarray(store.images[held]))
        np.save(tmp / "y.npy", store.labels[held])
        native = evaluate(tmp, tmp / "x.npy", tmp / "y.npy", names, None)
        emulated = evaluate(tmp, tmp / "x.npy", tmp / "y.npy", names, qemu) if qemu else None

    print(f"\n## int8 top-1 on {len(held)} held-out images of {args.data} "
          f"(calibration: {args.calibration_count} of the others)\n")  # fmt: skip
    cols = [f"native ({native['isa']})"] + ([f"qemu {QEMU_CPU} ({emulated['isa']})"]
                                           if emulated else [])  # fmt: skip
    print("| scheme | fp32 | " + " | ".join(f"int8 {c} | verification {c}" for c in cols) + " |")
    print("|---|---|" + "---|---|" * len(cols))
    for name in names:
        row = [f"{native[name]['fp32']:.2%}"]
        for res in [native] + ([emulated] if emulated else []):
            r = res[name]
            change = (r["int8"] - r["fp32"]) * 100
            row += [f"{r['int8']:.2%} ({change:+.2f})",
                    f"{r['verification']} (rel. error {r['rel_error']:.4f})"]  # fmt: skip
        print(f"| {name} | " + " | ".join(row) + " |")
    print("\nexport-time loss check (on the export CPU):")
    for name in names:
        m = export_metrics[name]
        print(f"  {name}: {m.get('accuracy_change_points', 'n/a'):+} points, {m['loss_check']}")


if __name__ == "__main__":
    main()
