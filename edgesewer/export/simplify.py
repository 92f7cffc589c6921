"""onnxsim: fold constants and shape arithmetic so the graph TensorRT parses is small and static.

Simplification is an optimisation, not a requirement: when onnxsim fails or its own check fails,
the unsimplified graph is kept and the reason is reported (the parity check runs either way).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from edgesewer.export.onnx_io import (GRAPH_HEADROOM, PROTOBUF_LIMIT, data_file_for, load_onnx, refers_to_external_data,
                                      save_onnx)


@dataclass
class SimplifyResult:
    applied: bool
    nodes_before: int
    nodes_after: int
    note: str = ""


def simplify_onnx(path: str | Path, enabled: bool = True) -> SimplifyResult:
    """Simplify the ONNX file at `path` in place (metadata kept); no-op when `enabled` is False."""
    path = Path(path)
    graph_only = onnx.load(str(path), load_external_data=False)
    before = len(graph_only.graph.node)
    if not enabled:
        return SimplifyResult(False, before, before, "disabled (--no-simplify)")
    external = refers_to_external_data(graph_only)
    if external and data_file_for(path).stat().st_size + GRAPH_HEADROOM > PROTOBUF_LIMIT:
        # onnxsim serialises the model into one protobuf, which cannot hold 2 GB or more.
        return SimplifyResult(False, before, before, "skipped: the graph is over protobuf's 2 GB limit")
    model = load_onnx(path)
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
    save_onnx(simplified, path, external)
    return SimplifyResult(True, before, len(simplified.graph.node))
