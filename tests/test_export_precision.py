"""FP16 and INT8 graphs of vit-t, inspected node by node, and the calibration cache.

What TensorRT and the SPEC require of the graphs: FP16 keeps FP32 I/O and runs LayerNorm,
Softmax and the head in FP32; the INT8 Q/DQ graph has int8 (not uint8) Q/DQ with zero points 0,
per-channel weights, no int32 bias dequantisation, and leaves LayerNorm, Softmax and the head
unquantised.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgesewer.errors import DataError
from edgesewer.export.calibrate import calibrate, calibration_key, select_images
from edgesewer.export.fp16 import activation_peaks, convert_fp16, overflow_nodes, unshare_initializers
from edgesewer.export.graph import head_nodes, producers, tensor_elem_types
from edgesewer.export.metadata import sha256_file
from edgesewer.export.onnx_export import export_onnx
from edgesewer.export.parity import compare_outputs, onnx_outputs, torch_outputs
from edgesewer.export.quantize import QDQ_FP16_OPSET, quantize_cpu, quantize_qdq, quantize_qdq_fp16
from edgesewer.export.simplify import simplify_onnx
from test_export_onnx import make_sewerml, make_vit, real_batch

FLOAT, FLOAT16, INT8, UINT8, INT32 = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT8, TensorProto.UINT8,
                                      TensorProto.INT32)


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    model, cfg = make_vit()
    path = root / "vit-t.fp32.onnx"
    export_onnx(model, cfg, path)
    simplify_onnx(path)  # onnxsim merges identical constants: the FP16 pass must cope with shared initializers
    data = make_sewerml(root / "data", n_train=24)
    calibration = calibrate(path, select_images(data, "classify", 16), cfg, "minmax", cache_dir=root / "cache",
                            progress=False)
    return model, cfg, path, data, calibration, root


def sensitive(model):
    return [n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax")]


def test_fp16_keeps_io_norms_softmax_and_head_fp32(vit):
    model, cfg, path, data, _, root = vit
    result = convert_fp16(path, root / "vit-t.fp16.onnx")
    fp16 = onnx.load(str(result.path))
    onnx.checker.check_model(fp16, full_check=True)  # topologically sorted, types consistent
    made_by = producers(fp16.graph)
    round_trips = [n for n in fp16.graph.node if n.op_type == "Cast" and n.input[0] in made_by
                   and made_by[n.input[0]].op_type == "Cast"]
    assert round_trips == []  # no FP32 -> FP16 -> FP32 detours between FP32 nodes
    assert [i.type.tensor_type.elem_type for i in fp16.graph.input] == [FLOAT]
    assert [o.type.tensor_type.elem_type for o in fp16.graph.output] == [FLOAT]
    types = tensor_elem_types(fp16)
    checked = sensitive(fp16) + [n for n in fp16.graph.node if n.name in result.fp32_nodes]
    assert len(sensitive(fp16)) == 25 + 12 and result.fp32_nodes == ["/model/head/Gemm"]
    for node in checked:
        assert [types[i] for i in node.input if i] == [FLOAT] * len([i for i in node.input if i]), node.name
    # ... while the bulk of the weights really is half precision.
    matmul_weights = [types[n.input[1]] for n in fp16.graph.node if n.op_type in ("MatMul", "Gemm")
                      and n.name not in result.fp32_nodes and n.input[1] in {i.name for i in fp16.graph.initializer}]
    assert matmul_weights and set(matmul_weights) == {FLOAT16}
    inputs = real_batch(data, cfg)
    parity = compare_outputs(torch_outputs(model, cfg, inputs), onnx_outputs(result.path, inputs), "classify")
    assert parity.max_abs_diff < 0.05 and parity.decision_agreement >= 0.99


def test_fp16_keeps_out_of_range_activations_fp32(tmp_path):
    """x * 1e5 overflows FP16 (max 65504): measured peaks keep the Mul and its consumer in FP32."""
    nodes = [helper.make_node("Mul", ["input", "big"], ["scaled"], name="scale"),
             helper.make_node("Add", ["scaled", "one"], ["shifted"], name="shift"),
             helper.make_node("Mul", ["shifted", "tiny"], ["logits"], name="head_scale"),
             helper.make_node("Relu", ["input"], ["side"], name="small_path")]
    inits = [helper.make_tensor("big", FLOAT, [], [1e5]), helper.make_tensor("one", FLOAT, [], [1.0]),
             helper.make_tensor("tiny", FLOAT, [], [1e-5])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("logits", FLOAT, ["n", 4]),
                               helper.make_tensor_value_info("side", FLOAT, ["n", 4])], inits)
    src = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(src))
    x = np.array([[0.5, -1.0, 2.0, 0.25]], dtype=np.float32)
    peaks = activation_peaks(src, [x, 0.5 * x])
    assert peaks["scaled"] == pytest.approx(2e5) and peaks["side"] == pytest.approx(2.0)
    assert overflow_nodes(onnx.load(str(src)), peaks) == ["scale", "shift", "head_scale"]
    expected = x * 1e5 * 1e-5 + 1e-5
    naive = onnx_outputs(convert_fp16(src, tmp_path / "naive.onnx").path, x)
    # Without the measurement the constant 1e5 is clipped to FP16's 65504 (and on a GPU, 2.0 * 65504 is inf;
    # ONNX Runtime's CPU provider runs FP16 Mul/Add in FP32, so here only the clipping shows).
    np.testing.assert_allclose(naive, expected * 0.65504, rtol=1e-3)
    result = convert_fp16(src, tmp_path / "safe.onnx", peaks)
    assert result.range_nodes == ["scale", "shift", "head_scale"]
    np.testing.assert_allclose(onnx_outputs(result.path, x), expected, rtol=1e-5)


def test_unshare_gives_private_copies_to_fp32_nodes():
    scale = helper.make_tensor("ones", FLOAT, [4], [1.0] * 4)
    nodes = [helper.make_node("LayerNormalization", ["x", "ones"], ["a"], name="ln1"),
             helper.make_node("LayerNormalization", ["a", "ones"], ["b"], name="ln2"),
             helper.make_node("Mul", ["b", "ones"], ["y"], name="mul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", FLOAT, [2, 4])], [scale])
    model = helper.make_model(graph)
    assert unshare_initializers(model, {"ln1", "ln2"}) == 2
    assert [list(n.input) for n in model.graph.node] == [["x", "ones__ln1"], ["a", "ones__ln2"], ["b", "ones"]]
    assert sorted(i.name for i in model.graph.initializer) == ["ones", "ones__ln1", "ones__ln2"]


def test_int8_qdq_graph_is_what_tensorrt_needs(vit):
    model, cfg, path, data, calibration, root = vit
    result = quantize_qdq(path, root / "vit-t.int8.onnx", calibration)
    q = onnx.load(str(result.path))
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    init_types = {i.name: i.data_type for i in q.graph.initializer}
    qdq = [n for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 100
    for node in qdq:
        zero_point = inits[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name  # int8, symmetric
    dq_inputs = [init_types.get(n.input[0]) for n in qdq if n.op_type == "DequantizeLinear"]
    assert INT32 not in dq_inputs and UINT8 not in dq_inputs  # no int32 bias DQ, no uint8 anywhere
    made_by = producers(q.graph)
    # LayerNorm, Softmax and the head read float tensors straight from float ops.
    float_nodes = sensitive(q) + [n for n in q.graph.node if n.name in head_nodes(q)]
    assert any(n.op_type == "Gemm" and n.name == "/model/head/Gemm" for n in float_nodes)
    for node in float_nodes:
        for name in node.input:
            assert name not in made_by or made_by[name].op_type != "DequantizeLinear", node.name
    # Matmul weights are int8 initialisers, per output channel (one scale per column of the weight).
    quantized_gemms = [n for n in q.graph.node if n.op_type in ("Gemm", "MatMul")
                       and n.input[1] in made_by and made_by[n.input[1]].op_type == "DequantizeLinear"]
    assert len(quantized_gemms) >= 48  # qkv, proj, fc1, fc2 in 12 blocks (+ the attention matmuls)
    weight_dq = [made_by[n.input[1]] for n in quantized_gemms if made_by[n.input[1]].input[0] in inits]
    assert weight_dq and all(init_types[d.input[0]] == INT8 and inits[d.input[1]].size > 1 for d in weight_dq)
    inputs = real_batch(data, cfg)
    parity = compare_outputs(torch_outputs(model, cfg, inputs), onnx_outputs(result.path, inputs), "classify")
    assert parity.decision_agreement >= 0.95  # random weights, 16 calibration images: a sanity bound only


def test_int8_fp16_is_the_qdq_graph_with_fp16_unquantised_layers(vit):
    """For TensorRT 11 (strongly typed): INT8 where quantised, FP16 elsewhere, FP32 I/O, norms, softmax, head."""
    model, cfg, path, data, calibration, root = vit
    result = quantize_qdq_fp16(path, root / "vit-t.int8-fp16.onnx", calibration)
    q = onnx.load(str(result.path))
    onnx.checker.check_model(q, full_check=True)
    assert [o.version for o in q.opset_import if o.domain in ("", "ai.onnx")] == [QDQ_FP16_OPSET]
    inits = {i.name: i for i in q.graph.initializer}
    types = tensor_elem_types(q)
    qdq = [n for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    plain = quantize_qdq(path, root / "plain.int8.onnx", calibration)
    assert len(qdq) == len([n for n in onnx.load(str(plain.path)).graph.node
                            if n.op_type in ("QuantizeLinear", "DequantizeLinear")])  # same Q/DQ placement
    assert {inits[n.input[1]].data_type for n in qdq} == {FLOAT16}  # FP16 scales: DQ outputs FP16
    assert all(inits[n.input[2]].data_type == INT8 for n in qdq)
    made_by = producers(q.graph)
    quantized = [n for n in q.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")
                 and n.input[0] in made_by and made_by[n.input[0]].op_type == "DequantizeLinear"]
    assert len(quantized) >= 48 and {types[n.output[0]] for n in quantized} == {FLOAT16}
    unquantised = [n for n in q.graph.node if n.op_type in ("Add", "Mul", "Gelu", "Erf", "Div")]
    assert unquantised and sum(types[n.output[0]] == FLOAT16 for n in unquantised) > 0.9 * len(unquantised)
    assert {types[i] for n in sensitive(q) for i in n.input if i} == {FLOAT}  # LayerNorm and Softmax stay FP32
    assert [i.type.tensor_type.elem_type for i in q.graph.input] == [FLOAT]
    assert [o.type.tensor_type.elem_type for o in q.graph.output] == [FLOAT]
    inputs = real_batch(data, cfg)
    reference = onnx_outputs(plain.path, inputs)
    parity = compare_outputs(reference, onnx_outputs(result.path, inputs), "classify")  # ONNX Runtime, FP16 Q/DQ
    # measured 0.036 / 0.982 (random weights: logits sit near the thresholds, FP16 rounding moves some int8 steps)
    assert parity.max_abs_diff < 0.1 and parity.decision_agreement >= 0.97
    to_torch = compare_outputs(torch_outputs(model, cfg, inputs), onnx_outputs(result.path, inputs), "classify")
    assert to_torch.decision_agreement >= 0.95  # the same sanity bound as the int8 graph


def test_int8_weight_qdq_pairs_for_tensorrt_85(vit):
    _, _, path, _, calibration, root = vit
    q = onnx.load(str(quantize_qdq(path, root / "pairs.onnx", calibration, weight_qdq_pair=True).path))
    float_weights = {i.name for i in q.graph.initializer if i.data_type == FLOAT}
    weight_q = [n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in float_weights]
    assert len(weight_q) >= 48  # float weights enter through their own QuantizeLinear


def test_int8_cpu_variants(vit):
    _, _, path, _, calibration, root = vit
    dynamic = onnx.load(str(quantize_cpu(path, root / "dyn.onnx", calibration, "dynamic").path))
    ops = {n.op_type for n in dynamic.graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    static = onnx.load(str(quantize_cpu(path, root / "static.onnx", calibration, "static").path))
    assert "QLinearMatMul" in {n.op_type for n in static.graph.node}
    u8 = [i for i in static.graph.initializer if i.name.endswith("zero_point") and i.data_type == UINT8]
    assert u8  # uint8 activations: ORT's fast x86 path
    auto = quantize_cpu(path, root / "auto.onnx", calibration, "auto", timing_runs=3)
    assert auto.mode in ("dynamic", "static") and set(auto.timings_ms) == {"dynamic", "static", "fp32"}
    assert auto.timings_ms[auto.mode] == min(auto.timings_ms["dynamic"], auto.timings_ms["static"])
    assert auto.speedup == pytest.approx(auto.timings_ms["fp32"] / auto.timings_ms[auto.mode])


def test_calibration_cache_hit_and_key(vit, tmp_path):
    _, cfg, path, _, _, _ = vit
    data = make_sewerml(tmp_path / "data", n_train=12)
    images = select_images(data, "classify", 12)
    first = calibrate(path, images, cfg, "minmax", cache_dir=tmp_path / "cache", progress=False)
    assert (first.images, first.skipped, first.cache_hit) == (12, 0, False)
    for image in images.paths:  # the cache must not need the images again
        image.unlink()
    second = calibrate(path, images, cfg, "minmax", cache_dir=tmp_path / "cache", progress=False)
    assert second.cache_hit and second.cache_path == first.cache_path and second.images == 12
    # The key is the model hash + image list + input size (+ method and op types).
    key = calibration_key(sha256_file(path), images.paths, 64, "minmax", ("Conv", "Gemm", "MatMul", "ConvTranspose"))
    assert first.cache_path.name == f"{key[:24]}.json"
    ops = ("Conv", "Gemm", "MatMul", "ConvTranspose")
    assert calibration_key(sha256_file(path), images.paths[:-1], 64, "minmax", ops) != key
    assert calibration_key(sha256_file(path), images.paths, 96, "minmax", ops) != key
    assert calibration_key("0" * 64, images.paths, 64, "minmax", ops) != key
    assert calibration_key(sha256_file(path), images.paths, 64, "entropy", ops) != key


def test_corrupt_calibration_image_is_skipped_and_counted(vit, tmp_path):
    _, cfg, path, _, _, _ = vit
    data = make_sewerml(tmp_path / "data", n_train=10)
    images = select_images(data, "classify", 10)
    images.paths[3].write_bytes(b"this is not a png")
    result = calibrate(path, images, cfg, "minmax", cache_dir=tmp_path / "cache", progress=False)
    assert (result.images, result.skipped) == (9, 1)
    assert result.skipped_files == [str(images.paths[3])]
    assert result.as_dict() == {"images": 9, "method": "minmax", "data": str(data), "skipped": 1}
    for p in images.paths:
        p.write_bytes(b"")
    with pytest.raises(DataError, match="none of the 10 calibration images could be read"):
        calibrate(path, images, cfg, "entropy", cache_dir=tmp_path / "cache", progress=False)


def test_empty_calibration_folder_is_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        select_images(tmp_path / "empty", "classify", 8)
    assert "\n" not in str(info.value) and "SewerML_Val.csv" in str(info.value)


def test_topological_sort_respects_subgraph_reads():
    from edgesewer.export.graph import topological_sort

    then_branch = helper.make_graph([helper.make_node("Identity", ["late"], ["t"], name="then_id")], "then", [],
                                    [helper.make_tensor_value_info("t", FLOAT, [1])])
    else_branch = helper.make_graph([helper.make_node("Identity", ["x"], ["e"], name="else_id")], "else", [],
                                    [helper.make_tensor_value_info("e", FLOAT, [1])])
    nodes = [helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_branch, else_branch=else_branch),
             helper.make_node("Neg", ["x"], ["late"], name="producer")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", FLOAT, [1]),
                                           helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    topological_sort(model)
    assert [n.name for n in model.graph.node] == ["producer", "if"]  # the If body reads "late"
    onnx.checker.check_model(model, full_check=True)
