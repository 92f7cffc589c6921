"""`edgesewer export --model sfr-net --classes FILE`: a new class list without retraining, from the command line."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from edgesewer.cli import app
from edgesewer.data.synth import generate

pytest.importorskip("open_clip")

CLASSES = (
    "RB.name: crack\nRB.text: a thin dark crack running along the concrete wall of a sewer pipe.\n"
    "PB.name: drilled connection\nPB.text: a clean round drilled hole for a side connection in a sewer pipe.\n"
    "XX.name: rag\nXX.text: a piece of cloth caught in the flow of a sewer pipe.\n"
)


def test_export_cli_bakes_a_new_class_list(tmp_path):
    generate(tmp_path / "synth", images=24, videos=0, crack_images=0, seed=0, progress=False)
    classes = tmp_path / "classes.txt"
    classes.write_text(CLASSES, encoding="utf-8")
    out = tmp_path / "export"
    result = CliRunner().invoke(app, [
        "export", "--model", "sfr-net-tiny", "--weights", "random", "--classes", str(classes), "--precision", "fp32",
        "--target", "ort-cpu", "--calib-data", str(tmp_path / "synth" / "sewerml"), "--out", str(out), "--no-simplify"])
    assert result.exit_code == 0, result.output
    sidecar = json.loads((out / "sfr-net-tiny.fp32.json").read_text())
    assert sidecar["model_cfg"]["classes"] == ["RB", "PB", "XX"]
    session = ort.InferenceSession(str(out / "sfr-net-tiny.fp32.onnx"), providers=["CPUExecutionProvider"])
    size = sidecar["model_cfg"]["input_size"]
    (logits,) = session.run(None, {"input": np.zeros((2, 3, size, size), np.float32)})
    assert logits.shape == (2, 3)


def test_classes_option_refused_for_a_closed_set_model(tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text(CLASSES, encoding="utf-8")
    result = CliRunner().invoke(app, ["export", "--model", "vit-t", "--weights", "random", "--classes", str(classes),
                                      "--target", "ort-cpu", "--imgsz", "32"])
    assert result.exit_code == 1
    assert "--classes applies to zero-shot models" in result.output
