"""torch -> ONNX: ``torch.export`` (non-strict) then the dynamo ONNX translator.

The program is captured with ``torch.export.export(strict=False)`` only: no fallback to other
capture modes that could bake a data-dependent result into a constant. A capture failure is
reported with the line of model code that caused it; a translation failure names the ATen or
custom op that has no ONNX translation.
"""

from __future__ import annotations

import contextlib
import logging
import re
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger("pyxfer.export")


class ExportError(RuntimeError):
    """The model cannot be exported to ONNX (the message names the op or line)."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress warnings (they are not about the user's model)."""
    noisy = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export")]
    levels = [lg.level for lg in noisy]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in noisy:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(noisy, levels, strict=True):
                lg.setLevel(level)


def _user_frame(exc: BaseException) -> str | None:
    """``file:line: code`` of the innermost traceback frame outside torch and the stdlib."""
    frames = traceback.extract_tb(exc.__traceback__)
    seen: set[int] = set()
    cause: BaseException | None = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        frames += traceback.extract_tb(cause.__traceback__)
        cause = cause.__cause__ or cause.__context__
    skip = ("/torch/", "/onnxscript/", "/onnx_ir/", "/pyxfer/export/", "contextlib.py")
    user = [f for f in frames if not any(s in f.filename.replace("\\", "/") for s in skip)]
    if not user:
        return None
    f = user[-1]
    return f"{f.filename}:{f.lineno} in {f.name}: {(f.line or '').strip()}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else ""


_OP_PATTERNS = (
    re.compile(r"No ONNX function found for <OpOverload\(op='([^']+)', overload='([^']+)'\)>"),
    re.compile(r"target=torch\.ops\.([\w.]+)\.(\w+)\]?"),
)


def _failed_op(text: str) -> str | None:
    for pat in _OP_PATTERNS:
        m = pat.search(text)
        if m:
            ns, _, name = m.group(1).rpartition(".")
            return f"{ns}::{name}.{m.group(2)}" if ns else f"{m.group(1)}.{m.group(2)}"
    return None


def export_program(
    module: nn.Module,
    example: torch.Tensor,
    dynamic: dict[int, str],
    *,
    where: str,
) -> torch.export.ExportedProgram:
    """Capture ``module`` with ``torch.export`` (non-strict) and the given dynamic axes.

    Args:
        module: the module to export (eval mode).
        example: an example input.
        dynamic: ``{axis: mode}`` axes of the input that stay symbolic: ``"required"`` (fails
            if the model specialises the axis) or ``"auto"`` (stays dynamic where the model
            allows it).
        where: what is exported, for error messages.

    Raises:
        ExportError: naming the line of model code (or the op) that cannot be captured.
    """
    from torch.export import Dim

    shapes = {"x": {ax: Dim.DYNAMIC if m == "required" else Dim.AUTO for ax, m in dynamic.items()}}
    try:
        with _quiet():
            return torch.export.export(module, (example,), dynamic_shapes=shapes, strict=False)
    except Exception as exc:
        frame = _user_frame(exc)
        op = _failed_op(str(exc))
        detail = f"op {op}" if op else (f"the call at {frame}" if frame else "an operation")
        raise ExportError(
            f"{where}: torch.export cannot capture {detail}: {type(exc).__name__}: "
            f"{_first_line(exc)}. Backbones must be "
            "traceable by torch.export (no .numpy()/.item() on activations, no Python-side "
            "data-dependent control flow); a backbone that calls a pyxfer custom kernel must "
            "define export_module() returning a pure-torch twin"
        ) from exc


def program_to_onnx(
    program: torch.export.ExportedProgram,
    *,
    opset: int,
    input_name: str,
    output_name: str,
    where: str,
) -> Any:
    """Translate a captured program to an ``onnx.ModelProto`` (graph optimisations on).

    Raises:
        ExportError: naming the op that has no ONNX translation.
    """
    try:
        with _quiet():
            onnx_program = torch.onnx.export(
                program,
                dynamo=True,
                opset_version=opset,
                input_names=[input_name],
                output_names=[output_name],
                optimize=True,
                verbose=False,
            )
    except Exception as exc:
        text = str(exc)
        op = _failed_op(text)
        detail = f"op {op} has no ONNX translation" if op else _first_line(exc)
        raise ExportError(
            f"{where}: ONNX translation failed: {detail}. A backbone that uses a pyxfer custom "
            "kernel must define export_module() returning a pure-torch twin, or register an "
            "ONNX translation for the op"
        ) from exc
    assert onnx_program is not None
    return onnx_program.model_proto


def rename_dims(proto: Any, input_names: dict[int, str]) -> dict[int, str]:
    """Rename the symbolic dims of the graph input (``s77`` -> ``batch``) everywhere.

    Returns:
        ``{axis: name}`` of the input axes that are symbolic.
    """
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    mapping = {
        d.dim_param: input_names.get(ax, f"dim{ax}") for ax, d in enumerate(dims) if d.dim_param
    }
    values = [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]
    for v in values:
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param in mapping:
                d.dim_param = mapping[d.dim_param]
    return {ax: d.dim_param for ax, d in enumerate(dims) if d.dim_param}


#: models up to this many bytes are one self-contained file (protobuf's limit is 2 GiB)
INLINE_LIMIT = 2**31 - 2**26


def save_proto(proto: Any, path: Path) -> list[str]:
    """Save an ONNX model as one file when under 2 GB, else with an external-data file.

    The external-data file is ``<model file>.data`` beside it (a plain name; the bundle lists
    and hashes it like every other file).

    Returns:
        the names of the files written (beside ``path``).
    """
    import onnx

    if proto.ByteSize() <= INLINE_LIMIT:
        onnx.save_model(proto, str(path))
        return [path.name]
    data = path.name + ".data"
    onnx.save_model(
        proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data
    )
    return [path.name, data]
