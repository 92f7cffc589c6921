"""Small read-only queries on ONNX graphs shared by the FP16 and INT8 passes and their tests."""

from __future__ import annotations

from collections.abc import Iterable

import onnx

# Numerically sensitive ops kept in FP32 and out of INT8 (SPEC 6): normalisations and softmax.
SENSITIVE_OPS = ("LayerNormalization", "Softmax", "InstanceNormalization", "GroupNormalization")
# Opset < 17 exports LayerNorm as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div; x**2 and the
# variance overflow FP16 first, so these primitives stay FP32 when there is no LayerNormalization node.
DECOMPOSED_NORM_OPS = ("ReduceMean", "Pow", "Sqrt")
# Ops a head's output passes through unchanged in meaning on its way to the graph output.
_PASSTHROUGH = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Sigmoid", "Add", "Cast"}
# Where a head starts: the last learned projection before the output.
_HEAD_COMPUTE = {"Gemm", "MatMul", "Conv", "ConvTranspose", "ReduceSum", "Einsum"}


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output if out}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                found.setdefault(name, []).append(node)
    return found


def head_nodes(model: onnx.ModelProto, outputs: Iterable[str] | None = None, max_depth: int = 6) -> list[str]:
    """Names of the nodes that form each output's head: the last projection and what follows it.

    Walks back from every graph output (or the ones named) through pass-through ops (reshape,
    bias add, sigmoid, ...) and stops at, and includes, the first Gemm/MatMul/Conv.
    """
    graph = model.graph
    made_by = producers(graph)
    wanted = set(outputs) if outputs is not None else {o.name for o in graph.output}
    names: list[str] = []
    for output in wanted:
        tensor, depth = output, 0
        while tensor in made_by and depth < max_depth:
            node = made_by[tensor]
            names.append(node.name)
            if node.op_type in _HEAD_COMPUTE or node.op_type not in _PASSTHROUGH:
                break
            # Follow the activation input (the one not held in an initializer).
            inits = {i.name for i in graph.initializer}
            tensor = next((i for i in node.input if i and i not in inits and i in made_by), "")
            depth += 1
    return list(dict.fromkeys(names))


def nodes_of_type(model: onnx.ModelProto, op_types: Iterable[str]) -> list[onnx.NodeProto]:
    wanted = set(op_types)
    return [n for n in model.graph.node if n.op_type in wanted]


def sensitive_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of normalisation/softmax nodes (including a decomposed LayerNorm's primitives)."""
    ops = list(SENSITIVE_OPS)
    if not nodes_of_type(model, ["LayerNormalization"]):
        ops += DECOMPOSED_NORM_OPS
    return [n.name for n in nodes_of_type(model, ops)]


def tensor_elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor whose type is known after shape inference."""
    from edgesewer.export.onnx_io import tensor_bytes_set_aside

    with tensor_bytes_set_aside(model):  # inference serialises the model; without the bytes any size fits
        inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types: dict[str, int] = {}
    for vi in [*graph.input, *graph.output, *graph.value_info]:
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    return types


def topological_sort(model: onnx.ModelProto) -> None:
    """Reorder nodes so every node comes after the producers of its inputs (ONNX requires it; the
    FP16 converter appends its Cast nodes at the end). Stable: keeps the original order otherwise."""
    graph = model.graph
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        remaining = []
        for node in pending:
            if all(name in available for name in (*node.input, *_outer_scope_inputs(node))):
                ordered.append(node)
                available.update(node.output)
            else:
                remaining.append(node)
        if len(remaining) == len(pending):
            missing = sorted({i for n in remaining for i in n.input if i not in available})[:3]
            raise ValueError(f"graph has a cycle or undefined inputs: {', '.join(missing)}")
        pending = remaining
    copies = [onnx.NodeProto() for _ in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def _outer_scope_inputs(node: onnx.NodeProto) -> set[str]:
    """Tensors an If/Loop/Scan body reads from the enclosing graph (they must exist before the node)."""
    names: set[str] = set()
    for attribute in node.attribute:
        for body in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
            local = {i.name for i in body.input} | {i.name for i in body.initializer}
            local |= {o for n in body.node for o in n.output}
            for inner in body.node:
                names |= {i for i in inner.input if i and i not in local}
                names |= _outer_scope_inputs(inner) - local
    return names


def drop_duplicate_nodes(model: onnx.ModelProto) -> int:
    """Remove nodes identical to an earlier one (same op, inputs, outputs, attributes); returns how many."""
    seen: set[bytes] = set()
    keep = []
    for node in model.graph.node:
        probe = onnx.NodeProto()
        probe.CopyFrom(node)
        probe.name = ""
        key = probe.SerializeToString(deterministic=True)
        if key not in seen:
            seen.add(key)
            keep.append(node)
    dropped = len(model.graph.node) - len(keep)
    if dropped:
        copies = []
        for node in keep:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copies.append(copy)
        del model.graph.node[:]
        model.graph.node.extend(copies)
    return dropped
