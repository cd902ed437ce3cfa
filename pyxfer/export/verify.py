"""Self-verification of an exported graph: structure, dynamic axes and numerical parity.

Thresholds (fp32): max relative difference ``max|ort - torch| / max|torch|`` (over every
output value of a batch) <= 1e-4, top-1 agreement 100 % (heads with classes), row-wise cosine
similarity >= 0.9999. A failed check raises :class:`VerificationError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

MAX_REL_DIFF = 1e-4
MIN_TOP1_AGREEMENT = 1.0
MIN_COSINE = 0.9999


class VerificationError(RuntimeError):
    """The exported graph failed a self-check; the export leaves no bundle."""


def check_graph(
    path: Path,
    *,
    input_name: str,
    input_dtype: str,
    rank: int,
    required_dynamic: Sequence[int],
) -> dict[str, Any]:
    """Full ``onnx.checker`` check, one real graph input of the right type, dynamic axes.

    Returns:
        ``{"checker": "full", "input_shape": [...], "dynamic_axes": {axis: name}}``.
    """
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise VerificationError(f"{path.name}: onnx.checker full check failed: {exc}") from exc
    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in initializers]
    if [i.name for i in real] != [input_name]:
        raise VerificationError(
            f"{path.name}: expected one graph input {input_name!r}, received "
            f"{[i.name for i in real]} (initializers are not inputs)"
        )
    tensor_type = real[0].type.tensor_type
    want = onnx.TensorProto.UINT8 if input_dtype == "uint8" else onnx.TensorProto.FLOAT
    if tensor_type.elem_type != want:
        got = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise VerificationError(
            f"{path.name}: input {input_name!r} has type {got}, expected {want}"
        )
    dims = tensor_type.shape.dim
    shape = [d.dim_param or d.dim_value for d in dims]
    if len(dims) != rank:
        raise VerificationError(f"{path.name}: input has rank {len(dims)}, expected {rank}")
    dynamic = {ax: d.dim_param for ax, d in enumerate(dims) if d.dim_param}
    lost = [ax for ax in required_dynamic if ax not in dynamic]
    if lost:
        raise VerificationError(
            f"{path.name}: input axes {lost} were requested dynamic but are fixed in the graph "
            f"(input shape {shape})"
        )
    return {"checker": "full", "input_shape": shape, "dynamic_axes": dynamic}


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (1 where both are 0)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    num = (a64 * b64).sum(1)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return np.where(den > 0, num / np.maximum(den, 1e-300), 1.0)


def parity(
    module: nn.Module,
    run_onnx: Callable[[np.ndarray], np.ndarray],
    inputs: np.ndarray,
    *,
    batch_sizes: Sequence[int],
    scores: Callable[[np.ndarray], np.ndarray] | None,
) -> dict[str, Any]:
    """Compare onnxruntime with torch on real inputs at each batch size.

    Args:
        module: the exported torch module (eval mode).
        run_onnx: runs the ONNX graph on a batch of model inputs.
        inputs: model inputs (N, ...) built from real images.
        batch_sizes: batch sizes to run (the N inputs are processed in chunks of each).
        scores: maps outputs (N, ...) to class scores (N, K) for the top-1 check; None when
            the head has no classes (features).

    Returns:
        the parity report (per batch size and overall); raises :class:`VerificationError`
        when a threshold is missed.
    """
    report: dict[str, Any] = {
        "images": len(inputs),
        "thresholds": {
            "max_rel_diff": MAX_REL_DIFF,
            "top1_agreement": MIN_TOP1_AGREEMENT,
            "min_cosine": MIN_COSINE,
        },
        "rel_diff_definition": "max|onnxruntime - torch| / max|torch| over a batch",
        "batches": {},
    }
    failures: list[str] = []
    for bs in batch_sizes:
        diffs, refs, cosines, agree = 0.0, 0.0, [], []
        for start in range(0, len(inputs), bs):
            x = inputs[start : start + bs]
            with torch.no_grad():
                want = module(torch.from_numpy(np.ascontiguousarray(x))).numpy()
            got = run_onnx(x)
            if got.shape != want.shape:
                raise VerificationError(
                    f"batch size {bs}: onnxruntime output shape {got.shape} != torch {want.shape}"
                )
            diffs = max(diffs, float(np.abs(got.astype(np.float64) - want).max()))
            refs = max(refs, float(np.abs(want).max()))
            cosines.append(cosine_rows(got, want))
            if scores is not None:
                agree.append(scores(got).argmax(1) == scores(want).argmax(1))
        rel = diffs / refs if refs > 0 else diffs
        entry: dict[str, Any] = {
            "max_abs_diff": diffs,
            "max_rel_diff": rel,
            "min_cosine": float(np.concatenate(cosines).min()),
        }
        if agree:
            entry["top1_agreement"] = float(np.concatenate(agree).mean())
        report["batches"][str(bs)] = entry
        if not rel <= MAX_REL_DIFF:
            failures.append(f"batch {bs}: max relative difference {rel:.3g} > {MAX_REL_DIFF}")
        if not entry["min_cosine"] >= MIN_COSINE:
            failures.append(f"batch {bs}: cosine {entry['min_cosine']:.6f} < {MIN_COSINE}")
        if agree and entry["top1_agreement"] < MIN_TOP1_AGREEMENT:
            failures.append(f"batch {bs}: top-1 agreement {entry['top1_agreement']:.2%} < 100 %")
    batches = report["batches"].values()
    report["max_rel_diff"] = max(b["max_rel_diff"] for b in batches)
    report["min_cosine"] = min(b["min_cosine"] for b in batches)
    if scores is not None:
        report["top1_agreement"] = min(b["top1_agreement"] for b in batches)
    report["passed"] = not failures
    if failures:
        raise VerificationError("onnxruntime vs torch parity failed: " + "; ".join(failures))
    return report
