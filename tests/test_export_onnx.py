"""ONNX export of vit-t: contract names, dynamic batch, parity with PyTorch on real images, lint, opset 16.

Also home of the small helpers the other export tests import (a tiny Sewer-ML folder, a vit-t).
"""

from __future__ import annotations

import csv
import dataclasses

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import edgesewer.models.vit  # noqa: F401  (registers vit-t until models/__init__ imports the families)
from edgesewer.errors import ExportError
from edgesewer.export.calibrate import LoadedBatches, input_preparer, iter_batches, select_images
from edgesewer.export.onnx_export import export_onnx, lint_for_tensorrt
from edgesewer.export.parity import compare_outputs, onnx_outputs, require_parity, torch_outputs
from edgesewer.export.simplify import simplify_onnx
from edgesewer.models import create_model
from edgesewer.taxonomy import SEWER_CODES, SEWER_CSV_HEADER

IMGSZ = 64


def make_sewerml(root, n_train=24, n_val=16, seed=0, size=48):
    """A Sewer-ML-format folder of textured random images with ~20% positive labels."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in (("Train", n_train), ("Val", n_val)):
        rows = []
        for i in range(count):
            name = f"{split[0]}{i:05d}.png"
            noise = rng.random((size // 4, size // 4, 3)) * 255
            image = cv2.resize(noise.astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(root / "images" / name), image)
            labels = (rng.random(len(SEWER_CODES)) < 0.2).astype(int)
            rows.append([name, 0, 0, *labels, 0, int(labels.any())])
        with open(root / f"SewerML_{split}.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(SEWER_CSV_HEADER)
            writer.writerows(rows)
    return root


def make_vit(imgsz=IMGSZ, seed=0):
    torch.manual_seed(seed)
    model = create_model("vit-t", img_size=imgsz).eval()
    return model, dataclasses.replace(model.cfg, input_size=imgsz)


def real_batch(data_dir, cfg, n=16):
    images = select_images(data_dir, cfg.task, n)
    return np.concatenate(list(iter_batches(images.paths, input_preparer(cfg), 8, LoadedBatches())))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    model, cfg = make_vit()
    path = root / "vit-t.fp32.onnx"
    info = export_onnx(model, cfg, path, opset=17)
    return model, cfg, path, info, make_sewerml(root / "data")


def test_contract_names_and_dynamic_batch(exported):
    _, cfg, path, info, _ = exported
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, IMGSZ, IMGSZ]
    assert [t.as_dict() for t in info.inputs] == [{"name": "input", "shape": [-1, 3, IMGSZ, IMGSZ], "dtype": "float32"}]
    assert [t.as_dict() for t in info.outputs] == [
        {"name": "logits", "shape": [-1, 17], "dtype": "float32", "kind": "logits"}]
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert '"input_size": 64' in meta["edgesewer.model_cfg"]


def test_fp32_parity_on_real_images_survives_simplification(exported):
    model, cfg, path, _, data = exported
    inputs = real_batch(data, cfg)
    before = compare_outputs(torch_outputs(model, cfg, inputs), onnx_outputs(path, inputs), "classify")
    result = simplify_onnx(path)
    assert result.applied and result.nodes_after < result.nodes_before
    after = compare_outputs(torch_outputs(model, cfg, inputs), onnx_outputs(path, inputs, batch=5), "classify")
    for parity in (before, after):
        assert parity.images == 16
        assert parity.max_abs_diff < 1e-4  # the gate is 1e-3; fp32 ONNX Runtime is much closer than that
        assert parity.decision_agreement == 1.0
    require_parity(after, "vit-t fp32")


def test_parity_measures_by_hand():
    ref = np.array([[0.5, -1.0], [2.0, 0.1]], dtype=np.float32)
    cand = np.array([[0.5, -1.0], [2.002, -0.1]], dtype=np.float32)
    result = compare_outputs(ref, cand, "classify")
    assert result.max_abs_diff == pytest.approx(0.2, abs=1e-6)
    assert result.decision_agreement == 0.75  # one of four (image, class) decisions flips
    with pytest.raises(ExportError, match=r"max abs diff 0.2 \(limit 0.001\), decision agreement 0.7500"):
        require_parity(result, "x")
    prob_ref = np.zeros((1, 1, 4, 4), dtype=np.float32)
    prob_ref[0, 0, :2, :2] = 0.9  # 4 crack pixels
    prob_cand = prob_ref.copy()
    prob_cand[0, 0, 0, 0] = 0.1  # one missed pixel, no extra
    seg = compare_outputs(prob_ref, prob_cand, "segment")
    assert seg.decision_agreement == pytest.approx(2 * 3 / 7)  # F1 = 2|A&B| / (|A| + |B|)
    assert seg.iou == pytest.approx(3 / 4)
    assert not seg.passes()
    # Pixels PyTorch puts within 0.02 of 0.5 are rounding either way: left out of both masks.
    prob_ref[0, 0, 3, :] = 0.505
    prob_cand[0, 0, 3, :] = 0.495
    assert compare_outputs(prob_ref, prob_cand, "segment").decision_agreement == pytest.approx(2 * 3 / 7)
    prob_cand[0, 0, 2, 0] = 0.6  # but a confident background pixel turned crack counts
    assert compare_outputs(prob_ref, prob_cand, "segment").decision_agreement == pytest.approx(2 * 3 / 8)

    # Few crack pixels: the F1 rests on 20 of them, so one flip costs it 2.6 points; a flip budget of 1e-4 of
    # the pixels (here 1 of 10,000) lets that pass, a second flip does not, and a graph that shifts every
    # probability by 0.01 fails on the mean however the masks look.
    few_ref = np.full((1, 1, 100, 100), 0.1, dtype=np.float32)
    few_ref[0, 0, 50, 40:60] = 0.9
    few_cand = few_ref.copy()
    few_cand[0, 0, 50, 40] = 0.1
    one = compare_outputs(few_ref, few_cand, "segment")
    assert one.decision_agreement == pytest.approx(2 * 19 / 39) and one.flipped == pytest.approx(1e-4)
    assert one.mean_abs_diff == pytest.approx(0.8 / 10_000) and one.passes()
    few_cand[0, 0, 50, 41] = 0.1
    assert not compare_outputs(few_ref, few_cand, "segment").passes()
    shifted = compare_outputs(few_ref, few_ref + 0.01, "segment")
    assert shifted.decision_agreement == 1.0 and shifted.mean_abs_diff == pytest.approx(0.01, rel=1e-3)
    with pytest.raises(ExportError, match=r"mean \|probability diff\| 0.01 \(limit 0.001\)"):
        require_parity(shifted, "scnet fp32")


def test_a_graph_onnx_runtime_cannot_run_is_a_one_line_export_error(tmp_path):
    """What a broken simplification looked like (Video Swin-B's zero-size ScatterND): a run-time failure."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 5])  # 3 values cannot become 5
    graph = helper.make_graph([helper.make_node("Reshape", ["input", "shape"], ["logits"])], "broken",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], [shape])
    path = tmp_path / "broken.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ExportError, match=r"^broken.onnx: ONNX Runtime cannot run the exported graph \(.*\); "
                                          r"if it was simplified, retry with --no-simplify$"):
        onnx_outputs(path, np.zeros((1, 3), np.float32))


def test_opset16_decomposes_layernorm(tmp_path):
    model, cfg = make_vit(imgsz=32)
    export_onnx(model, cfg, tmp_path / "v16.onnx", opset=16)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "v16.onnx")).graph.node}
    assert "LayerNormalization" not in ops and {"ReduceMean", "Sqrt"} <= ops
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert compare_outputs(torch_outputs(model, cfg, x), onnx_outputs(tmp_path / "v16.onnx", x), "classify").passes()


def test_lint_refuses_what_tensorrt_cannot_parse():
    def graph_with(node):
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        return helper.make_model(g)

    unpool = helper.make_node("MaxUnpool", ["x", "i"], ["y"], name="/dec/unpool", kernel_shape=[2, 2])
    with pytest.raises(ExportError, match="node /dec/unpool \\(MaxUnpool\\): MaxUnpool has no TensorRT importer"):
        lint_for_tensorrt(graph_with(unpool), "segnet")
    pool = helper.make_node("MaxPool", ["x"], ["y", "idx"], name="/enc/pool", kernel_shape=[2, 2])
    with pytest.raises(ExportError, match="/enc/pool is MaxPool with indices"):
        lint_for_tensorrt(graph_with(pool), "segnet")
    lint_for_tensorrt(graph_with(helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2])), "ok")
