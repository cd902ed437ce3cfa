"""Static int8 quantisation (QDQ, per-channel weights) calibrated on real images.

``onnxruntime.quantization``: the fp32 graph is first prepared by ``quant_pre_process``
(symbolic shape inference + graph optimisation), then ``quantize_static`` inserts
QuantizeLinear/DequantizeLinear pairs with per-channel int8 weights and activations of the
selected type (``"uint8"``: U8S8, the fast path on x86 CPUs; ``"int8"``: S8S8, for ARM and
GPU runtimes). Activation ranges come from a ``CalibrationDataReader``
over real images in the model's input format.
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
    calibrate_method: str = "minmax",
    batch_size: int = 16,
) -> dict[str, Any]:
    """Write the static QDQ int8 version of ``fp32_path`` to ``out_path``.

    Args:
        fp32_path: the verified fp32 model.
        out_path: where to write the int8 model (one file).
        input_name: the graph input fed by the calibration reader.
        calibration_inputs: model inputs (N, ...) built from real training images.
        activation_type: ``"uint8"`` (U8S8) or ``"int8"`` (S8S8).
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
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            extra_options={"CalibTensorRangeSymmetric": False, "WeightSymmetric": True},
        )
    return {
        "method": "static",
        "format": "QDQ",
        "per_channel": True,
        "weight_type": "int8",
        "activation_type": activation_type,
        "scheme": "U8S8" if activation_type == "uint8" else "S8S8",
        "calibrate_method": calibrate_method,
        "calibration_images": len(calibration_inputs),
        "pre_process": "onnxruntime.quantization.shape_inference.quant_pre_process",
    }


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
