"""FP16 ONNX: weights and most activations in half precision, FP32 where FP16 breaks.

TensorRT 11 dropped the FP16 builder flag, so the precision must live in the graph (SPEC 6).
Inputs and outputs stay FP32 (the runtime feeds float32 and reads float32), and LayerNorm,
Softmax, instance norm, the final head and its Sigmoid run in FP32 behind Cast nodes. So does
every node whose activations, measured on real images, come near FP16's range (as NVIDIA's
AutoCast does with its `data_max`): FP16 overflows at 65504, and unnormalised activations (a
ResNet with untrained batch norm reaches 2.7e5) would otherwise turn into inf. Conversion uses
ONNX Runtime's `float16` tool (the same converter onnxconverter-common ships).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx.external_data_helper import load_external_data_for_model

from edgesewer.errors import ExportError
from edgesewer.export.onnx_io import refers_to_external_data, save_onnx
from edgesewer.export.graph import (
    DECOMPOSED_NORM_OPS,
    SENSITIVE_OPS,
    drop_duplicate_nodes,
    head_nodes,
    nodes_of_type,
    producers,
    tensor_elem_types,
    topological_sort,
)

# Sigmoid saturates within FP16 resolution near 0/1; keep every one (heads, attention gates) FP32.
FP32_OPS = (*SENSITIVE_OPS, "Sigmoid")
# Largest |activation| a node may see to run in FP16: 1/16 of FP16's maximum (65504), headroom
# for images brighter or stranger than the ones measured.
FP16_SAFE_PEAK = 4096.0


@dataclass
class Fp16Result:
    path: Path
    fp32_ops: list[str]
    fp32_nodes: list[str]  # the heads
    range_nodes: list[str] = field(default_factory=list)  # kept FP32 for their activation range


def activation_peaks(onnx_path: str | Path, batches: Iterable[np.ndarray]) -> dict[str, float]:
    """Largest |value| of every float activation of the graph over `batches`.

    The graph gets one ReduceMax(Abs(t)) output per activation and runs in ONNX Runtime, so only
    scalars come back. (ORT's MinMax calibrator does the same, but its graph augmentation is quadratic
    in the number of tensors: more than ten minutes for NFNet-F6's graph before a single image.)
    """
    import onnxruntime as ort

    onnx_path = Path(onnx_path)
    model = onnx.load(str(onnx_path), load_external_data=False)  # weights stay in their file, if external
    types = tensor_elem_types(model)
    initializers = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    names += [o for node in model.graph.node for o in node.output if o and o not in initializers]
    names = [n for n in dict.fromkeys(names) if types.get(n) == onnx.TensorProto.FLOAT]
    graph = model.graph
    for k, name in enumerate(names):
        graph.node.extend([
            onnx.helper.make_node("Abs", [name], [f"__peak{k}_abs"], name=f"__peak{k}_abs"),
            onnx.helper.make_node("ReduceMax", [f"__peak{k}_abs"], [f"__peak{k}"], name=f"__peak{k}", keepdims=0)])
        graph.output.append(onnx.helper.make_tensor_value_info(f"__peak{k}", onnx.TensorProto.FLOAT, []))
    # Beside the source, so that an external-data location in the graph still resolves.
    fd, augmented = tempfile.mkstemp(prefix=f".{onnx_path.stem}.peaks-", suffix=".onnx", dir=onnx_path.parent)
    os.close(fd)
    try:
        onnx.save(model, augmented)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(augmented, options, providers=["CPUExecutionProvider"])
        wanted = [f"__peak{k}" for k in range(len(names))]
        peaks = np.zeros(len(names))
        for batch in batches:
            peaks = np.maximum(peaks, np.asarray(session.run(wanted, {"input": batch}), dtype=np.float64))
    finally:
        Path(augmented).unlink(missing_ok=True)
    return {name: float(peak) for name, peak in zip(names, peaks)}


def overflow_nodes(model: onnx.ModelProto, peaks: dict[str, float], limit: float = FP16_SAFE_PEAK) -> list[str]:
    """Nodes that read or write a tensor whose measured peak exceeds `limit`."""
    return [node.name for node in model.graph.node
            if node.name and any(peaks.get(t, 0.0) > limit for t in (*node.input, *node.output) if t)]


def convert_fp16(src: str | Path, dst: str | Path, peaks: dict[str, float] | None = None,
                 limit: float = FP16_SAFE_PEAK) -> Fp16Result:
    """Write an FP16 copy of the FP32 ONNX `src` to `dst` (FP32 I/O, sensitive and out-of-range nodes).

    `peaks` (from `activation_peaks` on real images) keeps nodes with activations above `limit` in FP32.
    """
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    # Shape inference on the graph alone (it needs no weights), then the weights: in-memory inference
    # cannot serialise a model over 2 GB, so the converter's own inference is switched off below.
    graph_only = onnx.load(str(src), load_external_data=False)
    model = onnx.shape_inference.infer_shapes(graph_only)
    load_external_data_for_model(model, str(Path(src).parent))
    ops = list(FP32_OPS)
    if not nodes_of_type(model, ["LayerNormalization"]):
        ops += DECOMPOSED_NORM_OPS  # opset 16: LayerNorm arrives as primitives
    heads = head_nodes(model)
    by_range = overflow_nodes(model, peaks, limit) if peaks else []
    blocked = {n.name for n in nodes_of_type(model, ops)} | set(heads) | set(by_range)
    unshare_initializers(model, blocked)
    try:
        converted = convert_float_to_float16(
            model,
            keep_io_types=True,
            disable_shape_infer=True,
            op_block_list=list(DEFAULT_OP_BLOCK_LIST) + ops,
            node_block_list=list(dict.fromkeys([*heads, *by_range])),
        )
    except Exception as exc:  # noqa: BLE001 - the converter raises bare assertions on odd graphs
        raise ExportError(f"{src}: FP16 conversion failed ({type(exc).__name__}: {exc})") from None
    fold_cast_roundtrips(converted)
    drop_duplicate_nodes(converted)  # the converter emits one identical Cast per blocked consumer
    topological_sort(converted)
    del converted.metadata_props[:]
    converted.metadata_props.extend(graph_only.metadata_props)  # shape inference drops them
    # A source with external data gives a variant with external data (one layout per export).
    save_onnx(converted, dst, True if refers_to_external_data(graph_only) else None)
    onnx.checker.check_model(str(dst))  # by path: an in-memory check cannot hold a model over 2 GB
    return Fp16Result(Path(dst), ops, heads, by_range)


def unshare_initializers(model: onnx.ModelProto, node_names: set[str]) -> int:
    """Give every named node private copies of initializers it shares with other nodes.

    onnxsim merges identical constants (all-zero biases, all-one LayerNorm scales), and the FP16
    converter then emits one identically named Cast per consumer, which is an invalid graph;
    a private FP32 copy also keeps the FP32 nodes' parameters at full precision. Returns the
    number of copies made.
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            if name in inits:
                uses[name] = uses.get(name, 0) + 1
    copies = 0
    for node in graph.node:
        if node.name not in node_names:
            continue
        for k, name in enumerate(node.input):
            if name in inits and uses[name] > 1:
                private = onnx.TensorProto()
                private.CopyFrom(inits[name])
                private.name = f"{name}__{node.name}"
                graph.initializer.append(private)
                node.input[k] = private.name
                uses[name] -= 1
                copies += 1
    return copies


def _cast_to(node: onnx.NodeProto) -> int | None:
    if node.op_type != "Cast":
        return None
    return next((a.i for a in node.attribute if a.name == "to"), None)


def fold_cast_roundtrips(model: onnx.ModelProto) -> int:
    """Remove FP32 -> FP16 -> FP32 Cast chains between two FP32 nodes; returns how many were folded.

    The converter casts every FP32 node's output to FP16 and back for the next FP32 node, which
    loses precision and, for the large activations kept FP32 on purpose, overflows to inf.
    Consumers of the round trip read the original FP32 tensor instead.
    """
    graph = model.graph
    made_by = producers(graph)
    types = tensor_elem_types(model)
    outputs = {o.name for o in graph.output}
    folded = 0
    replace: dict[str, str] = {}
    for node in graph.node:
        if _cast_to(node) != onnx.TensorProto.FLOAT:
            continue
        to_half = made_by.get(node.input[0])
        if to_half is None or _cast_to(to_half) != onnx.TensorProto.FLOAT16 \
                or types.get(to_half.input[0]) != onnx.TensorProto.FLOAT:
            continue
        if node.output[0] in outputs:  # a graph output keeps its name: pass the FP32 tensor through
            node.op_type = "Identity"
            del node.attribute[:]
            node.input[0] = to_half.input[0]
        else:
            replace[node.output[0]] = to_half.input[0]
        folded += 1
    if not folded:
        return 0
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in replace:
                node.input[k] = replace[name]
    read = {name for n in graph.node for name in n.input} | outputs
    keep = [n for n in graph.node if not (n.op_type == "Cast" and n.output[0] not in read)]
    copies = []
    for node in keep:  # protobuf repeated fields cannot hold the same message twice: copy, then refill
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copies.append(copy)
    del graph.node[:]
    graph.node.extend(copies)
    return folded
