"""Static int8 quantisation (QDQ, per-channel weights) calibrated on real images.

``onnxruntime.quantization``: the fp32 graph is first prepared by ``quant_pre_process``
(symbolic shape inference + graph optimisation), then ``quantize_static`` inserts
QuantizeLinear/DequantizeLinear pairs with per-channel weights and activations of the
selected types. Activation ranges come from a ``CalibrationDataReader`` over real images in the
model's input format.

Schemes (activations x weights):

- ``U8S8`` with ``reduce_range`` (the default): uint8 activations, int8 weights limited to 7
  bits ([-64, 63]). x86 CPUs without VNNI multiply U8S8 with ``vpmaddubsw``, which adds two
  u8 x s8 products into a *saturating* 16-bit sum: 255 x 127 x 2 overflows it, 255 x 64 x 2
  does not. With 7-bit weights the AVX2 / AVX-512 (no VNNI) kernels compute exactly what the
  VNNI kernels (``vpdpbusd``, 32-bit sums) compute, at the same speed.
- ``U8S8`` without ``reduce_range``: one more bit of weight precision, exact only where VNNI
  exists (and on ARM); on AVX2 it can lose points of accuracy (measured in ``docs/deploy.md``).
- ``U8U8``: uint8 weights; exact everywhere, slower on VNNI CPUs (no ``vpdpbusd`` path).
- ``S8S8``: int8 activations, for ARM and GPU runtimes.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("pyxfer.export")

ACTIVATION_TYPES = ("uint8", "int8")
WEIGHT_TYPES = ("int8", "uint8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def _reader(input_name: str, inputs: np.ndarray, batch_size: int) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class ImageReader(CalibrationDataReader):
        """Yields ``{input_name: batch}`` over the calibration inputs, then None."""

        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = (
                np.ascontiguousarray(inputs[i : i + batch_size])
                for i in range(0, len(inputs), batch_size)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    return ImageReader()


def quantize_int8(
    fp32_path: Path,
    out_path: Path,
    *,
    input_name: str,
    calibration_inputs: np.ndarray,
    activation_type: str = "uint8",
    weight_type: str = "int8",
    reduce_range: bool = True,
    calibrate_method: str = "minmax",
    batch_size: int = 16,
) -> dict[str, Any]:
    """Write the static QDQ int8 version of ``fp32_path`` to ``out_path``.

    Args:
        fp32_path: the verified fp32 model.
        out_path: where to write the int8 model (one file).
        input_name: the graph input fed by the calibration reader.
        calibration_inputs: model inputs (N, ...) built from real training images.
        activation_type: ``"uint8"`` or ``"int8"`` activations.
        weight_type: ``"int8"`` or ``"uint8"`` weights.
        reduce_range: 7-bit weights, exact on x86 CPUs without VNNI (see the module doc).
        calibrate_method: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
        batch_size: calibration batch size.

    Returns:
        the quantisation settings, for the bundle metadata.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if activation_type not in ACTIVATION_TYPES:
        raise ValueError(
            f"activation_type: expected one of {ACTIVATION_TYPES}, received {activation_type!r}"
        )
    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"weight_type: expected one of {WEIGHT_TYPES}, received {weight_type!r}")
    if not isinstance(reduce_range, bool):
        raise ValueError(f"reduce_range: expected True or False, received {reduce_range!r}")
    if calibrate_method not in CALIBRATION_METHODS:
        raise ValueError(
            f"calibrate_method: expected one of {CALIBRATION_METHODS}, received "
            f"{calibrate_method!r}"
        )
    if len(calibration_inputs) == 0:
        raise ValueError("calibration: expected at least one calibration image, received none")
    # equal batches: the histogram calibrators (entropy, percentile) cannot merge ragged ones
    batch_size = min(batch_size, len(calibration_inputs))
    calibration_inputs = calibration_inputs[: len(calibration_inputs) // batch_size * batch_size]
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[calibrate_method]
    act = QuantType.QUInt8 if activation_type == "uint8" else QuantType.QInt8
    weights = QuantType.QUInt8 if weight_type == "uint8" else QuantType.QInt8
    with tempfile.TemporaryDirectory(prefix="pyxfer-quant-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(fp32_path), str(prepared))
        except Exception as exc:  # symbolic shape inference does not know every op
            log.info("quant_pre_process with symbolic shapes failed (%s); retrying without", exc)
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            _reader(input_name, calibration_inputs, batch_size),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=act,
            weight_type=weights,
            reduce_range=reduce_range,
            calibrate_method=method,
            extra_options={"CalibTensorRangeSymmetric": False, "WeightSymmetric": True},
        )
    return {
        "method": "static",
        "format": "QDQ",
        "per_channel": True,
        "weight_type": weight_type,
        "activation_type": activation_type,
        "scheme": scheme_name(activation_type, weight_type),
        "reduce_range": reduce_range,
        "weight_bits": 7 if reduce_range else 8,
        "calibrate_method": calibrate_method,
        "calibration_images": len(calibration_inputs),
        "pre_process": "onnxruntime.quantization.shape_inference.quant_pre_process",
    }


def scheme_name(activation_type: str, weight_type: str) -> str:
    """``"U8S8"``, ``"U8U8"``, ``"S8S8"`` or ``"S8U8"`` (activations, then weights)."""
    letter = {"uint8": "U8", "int8": "S8"}
    return letter[activation_type] + letter[weight_type]


def ort_tool_available() -> bool:
    """True when ``onnxruntime.tools.convert_onnx_models_to_ort`` can be imported."""
    try:
        import onnxruntime.tools.convert_onnx_models_to_ort  # noqa: F401
    except Exception:
        return False
    return True


def convert_to_ort(onnx_path: Path, out_dir: Path) -> Path:
    """Convert a model to the ORT format (for mobile/minimal runtimes) in ``out_dir``."""
    with tempfile.TemporaryDirectory(prefix="pyxfer-ort-") as tmp:
        src = Path(tmp) / onnx_path.name
        src.write_bytes(onnx_path.read_bytes())
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "onnxruntime.tools.convert_onnx_models_to_ort",
                "--optimization_style",
                "Fixed",
                "--output_dir",
                str(Path(tmp) / "out"),
                str(src),
            ],
            capture_output=True,
            text=True,
        )
        produced = sorted((Path(tmp) / "out").glob("*.ort"))
        if proc.returncode != 0 or not produced:
            raise RuntimeError(
                f"ORT format conversion failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-800:]}"
            )
        dest = out_dir / (onnx_path.stem + ".ort")
        dest.write_bytes(produced[0].read_bytes())
    return dest
