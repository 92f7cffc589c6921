"""The accuracy report on hand-built segmenters whose crack metrics are known exactly.

The toy "segmenter" outputs prob = red channel / 255 (from the [-1, 1] input), and the crack images
are red exactly where the mask says crack: a perfect model (ODS = IoU = 1). Its inverse predicts
crack everywhere else (ODS = 0). Both go through the same report the export writes into sidecars.
"""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgesewer.errors import ExportError
from edgesewer.export.accuracy import accuracy_report, evaluation_set, report_table, score_onnx
from edgesewer.export.metadata import build_sidecar, write_sidecar
from edgesewer.modelcfg import ModelCfg

SIZE = 32
CFG = ModelCfg(name="toy", task="segment", input_size=SIZE, in_chans=4, mean=(0.5,) * 3, std=(0.5,) * 3,
               classes=("crack",), extra={"edge": "canny"})


def crack_set(root, n=4, seed=0):
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        (root / f"{split}_img").mkdir(parents=True)
        (root / f"{split}_lab").mkdir(parents=True)
        for i in range(n):
            mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
            row = rng.integers(4, SIZE - 4)
            mask[row:row + 2, 3:SIZE - 3] = 255  # a horizontal crack two pixels thick
            image = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
            image[..., 1] = rng.integers(0, 255, (SIZE, SIZE))  # green noise: irrelevant to the toy model
            image[..., 0] = mask  # red = crack
            cv2.imwrite(str(root / f"{split}_img" / f"{i:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / f"{split}_lab" / f"{i:03d}.png"), mask)
    return root


def toy_segmenter(path, inverted=False):
    """prob = (x[:, 0:1] + 1) / 2, or 1 minus that."""
    nodes = [helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["red"], name="red"),
             helper.make_node("Add", ["red", "one"], ["shifted"], name="shift"),
             helper.make_node("Mul", ["shifted", "half"], ["p"], name="scale")]
    if inverted:
        nodes.append(helper.make_node("Sub", ["one_f", "p"], ["prob"], name="invert"))
    else:
        nodes.append(helper.make_node("Identity", ["p"], ["prob"], name="out"))
    inits = [helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
             helper.make_tensor("ends", TensorProto.INT64, [1], [1]),
             helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
             helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
             helper.make_tensor("one_f", TensorProto.FLOAT, [], [1.0]),
             helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])]
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                           ["n", 4, SIZE, SIZE])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["n", 1, SIZE, SIZE])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def artifact(path, precision, random_weights=False):
    sidecar = build_sidecar(
        model="toy", task="segment", precision=precision, target="ort-cpu", model_file=path, onnx_sha256="0" * 64,
        opset=17, model_cfg=CFG.to_dict(), inputs=[{"name": "input", "shape": [-1, 4, SIZE, SIZE], "dtype": "float32"}],
        outputs=[{"name": "prob", "shape": [-1, 1, SIZE, SIZE], "dtype": "float32", "kind": "prob"}],
        weights="random" if random_weights else "toy.pt",
        calibration={"images": 64, "method": "minmax", "data": "x", "skipped": 0} if precision == "int8" else None)
    write_sidecar(path, sidecar)
    return path


def test_perfect_and_inverted_segmenters(tmp_path):
    data = crack_set(tmp_path / "cracks")
    images = evaluation_set(data, "segment")
    assert images.split == "test" and len(images) == 4 and images.masks is not None
    perfect, skipped = score_onnx(toy_segmenter(tmp_path / "p.onnx"), CFG, images, progress=False)
    assert skipped == 0 and perfect["images"] == 4
    assert perfect["ODS"] == pytest.approx(1.0) and perfect["IoU"] == pytest.approx(1.0)
    assert perfect["protocol"].startswith("full resolution: edge channel on the whole image, 32x32 tiles")
    inverted, _ = score_onnx(toy_segmenter(tmp_path / "i.onnx", inverted=True), CFG, images, progress=False)
    assert inverted["ODS"] == pytest.approx(0.0) and inverted["IoU"] == pytest.approx(0.0)


def test_report_rows_deltas_and_calibration_count(tmp_path):
    data = crack_set(tmp_path / "cracks")
    fp32 = artifact(toy_segmenter(tmp_path / "toy.fp32.onnx"), "fp32")
    int8 = artifact(toy_segmenter(tmp_path / "toy.int8.onnx", inverted=True), "int8")
    report = accuracy_report([int8, fp32], data, progress=False)
    assert [r.precision for r in report.rows] == ["fp32", "int8"]  # fp32 first, whatever the order given
    assert report.rows[1].calibration_images == 64 and report.rows[0].calibration_images is None
    assert report.rows[1].deltas["ODS"] == pytest.approx(-100.0) and report.rows[0].deltas["ODS"] == 0.0
    assert report_table(report).row_count == 2
    (tmp_path / "toy.fp32.onnx").unlink()
    random_one = artifact(toy_segmenter(tmp_path / "toy.fp32.onnx"), "fp32", random_weights=True)
    with pytest.raises(ExportError, match="exported with --weights random"):
        accuracy_report([random_one], data, progress=False)


def test_unreadable_evaluation_image_is_skipped(tmp_path):
    data = crack_set(tmp_path / "cracks")
    (data / "test_img" / "002.png").write_bytes(b"broken")
    metrics, skipped = score_onnx(toy_segmenter(tmp_path / "p.onnx"), CFG, evaluation_set(data, "segment"),
                                  progress=False)
    assert skipped == 1 and metrics["images"] == 3 and metrics["ODS"] == pytest.approx(1.0)
