"""onnxsim: fold constants and shape arithmetic so the graph TensorRT parses is small and static.

Simplification is an optimisation, not a requirement: when onnxsim fails or its own check fails,
the unsimplified graph is kept and the reason is reported (the parity check runs either way).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx


@dataclass
class SimplifyResult:
    applied: bool
    nodes_before: int
    nodes_after: int
    note: str = ""


def simplify_onnx(path: str | Path, enabled: bool = True) -> SimplifyResult:
    """Simplify the ONNX file at `path` in place (metadata kept); no-op when `enabled` is False."""
    path = Path(path)
    model = onnx.load(str(path))
    before = len(model.graph.node)
    if not enabled:
        return SimplifyResult(False, before, before, "disabled (--no-simplify)")
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
    except Exception as exc:  # noqa: BLE001 - onnxsim raises assorted C++ errors; keep the original graph
        return SimplifyResult(False, before, before, f"onnxsim failed ({type(exc).__name__}), kept the original")
    if not ok:
        return SimplifyResult(False, before, before, "onnxsim check failed, kept the original")
    # onnxsim rebuilds the ModelProto; carry our metadata (model cfg) across.
    del simplified.metadata_props[:]
    simplified.metadata_props.extend(model.metadata_props)
    onnx.save(simplified, str(path))
    return SimplifyResult(True, before, len(simplified.graph.node))
