"""``pyxfer info``: version, compiler, SIMD level, threading, CUDA."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "info",
        help="show build and environment information",
        description="Show what pyxfer._C was compiled with (version, compiler, SIMD level, "
        "threading, CUDA compiled / devices present) and the Python environment.",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from pyxfer.info import environment

    env = environment()
    if args.json:
        print(json.dumps(env, indent=2))
        return 0
    b = env["pyxfer"]
    cuda = "not compiled"
    if b["cuda_compiled"]:
        cuda = f"compiled (CUDA {b['cuda_version']}), devices: {b['cuda_devices']}"
        if b["cuda_devices"] == 0 and b["cuda_error"]:
            cuda += f" ({b['cuda_error']})"
    rows = [
        ("pyxfer", b["version"]),
        ("compiler", b["compiler"]),
        (
            "SIMD",
            f"compiled {b['simd']}; run-time: feature kernels {b['simd_runtime']} "
            f"(available: {', '.join(b['simd_paths'])}), augmentation {b['augment_simd']}, "
            f"preprocessing {b['preprocess_simd']}",
        ),
        ("int8 path", _int8_path()),
        ("threading", f"{b['threading']}, {b['hardware_threads']} hardware threads"),
        ("CUDA", cuda),
        ("python", f"{env['python']} on {env['platform']}"),
    ]
    rows += [(k, v or "not installed") for k, v in env["packages"].items()]
    if "torch" in env:
        rows.append(("torch CUDA", "available" if env["torch"]["cuda_available"] else "no"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


def _int8_path() -> str:
    """The x86 int8 kernels onnxruntime uses here, and whether U8S8 with 8-bit weights holds."""
    from pyxfer.runtime.verification import int8_isa

    isa = int8_isa()
    notes = {
        "avx512-vnni": "VNNI: 32-bit int8 sums",
        "avx-vnni": "VNNI: 32-bit int8 sums",
        "avx512": "no VNNI: saturating 16-bit int8 sums, 7-bit weights needed",
        "avx2": "no VNNI: saturating 16-bit int8 sums, 7-bit weights needed",
    }
    return f"{isa} ({notes[isa]})" if isa in notes else isa
