"""Artifacts: finding model and sidecar from either path, and each refusal as one line."""

import hashlib
import json

import numpy as np
import pytest
from test_runtime_support import make_classifier_artifact, make_segmenter_artifact

from edgesewer.errors import BackendError
from edgesewer.runtime.artifact import check_engine_compatible, load_artifact, sidecar_path_for
from edgesewer.runtime.backends import load_backend
from edgesewer.runtime.backends.ort import resolve_providers


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def edit_sidecar(onnx_path, **changes):
    sidecar = sidecar_path_for(onnx_path)
    data = json.loads(sidecar.read_text())
    data.update(changes)
    sidecar.write_text(json.dumps(data))
    return data


def test_either_path_finds_the_other(tmp_path):
    onnx_path = make_classifier_artifact(tmp_path)
    a = load_artifact(onnx_path)
    b = load_artifact(sidecar_path_for(onnx_path))
    assert (
        a.model_path == b.model_path == onnx_path and a.sidecar_path == b.sidecar_path == tmp_path / "toy-cls.fp32.json"
    )
    assert (a.format, a.name, a.input.shape) == ("onnx", "toy-cls", (-1, 3, 32, 32))
    assert sidecar_path_for(tmp_path / "m.fp16.engine").name == "m.fp16.engine.json"


def test_ort_backend_runs_the_artifact(tmp_path):
    artifact = load_artifact(make_classifier_artifact(tmp_path, cam=True))
    backend = load_backend(artifact)
    x = np.zeros((2, 3, 32, 32), np.float32)
    x[0, 0] = 1.0  # red: RB logit = 10 * (1 - 0) - 3 = 7
    out = backend.infer(x)
    assert out["logits"].shape == (2, 17) and out["cam"].shape == (2, 17, 32, 32)
    assert out["logits"][0, 0] == pytest.approx(7.0) and out["logits"][1, 0] == pytest.approx(-3.0)
    assert backend.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    "change, fragment",
    [
        ("missing_sidecar", "sidecar toy-cls.fp32.json not found next to it"),
        ("hash", "does not match its sidecar (sha256"),
        ("file", "describes other.fp32.onnx, not toy-cls.fp32.onnx"),
        ("json", "not valid JSON (line 1"),
        ("version", "format_version 2 is newer than this runtime reads (1)"),
        ("classes", "logits have 17 columns but model_cfg lists 3 classes"),
        ("field", "missing field 'model_cfg'"),
        ("size", "input shape [-1, 3, 32, 32] does not fit model_cfg"),
    ],
)
def test_sidecar_problems_are_one_line_errors(tmp_path, change, fragment):
    onnx_path = make_classifier_artifact(tmp_path)
    sidecar = sidecar_path_for(onnx_path)
    data = json.loads(sidecar.read_text())
    if change == "missing_sidecar":
        sidecar.unlink()
    elif change == "hash":
        onnx_path.write_bytes(onnx_path.read_bytes() + b"\0")
    elif change == "file":
        edit_sidecar(onnx_path, file="other.fp32.onnx")
    elif change == "json":
        sidecar.write_text("{not json")
    elif change == "version":
        edit_sidecar(onnx_path, format_version=2)
    elif change == "classes":
        edit_sidecar(onnx_path, model_cfg={**data["model_cfg"], "classes": ["RB", "OB", "FS"]})
    elif change == "field":
        del data["model_cfg"]
        sidecar.write_text(json.dumps(data))
    elif change == "size":
        edit_sidecar(onnx_path, model_cfg={**data["model_cfg"], "input_size": 224})
    with pytest.raises(BackendError) as info:
        load_artifact(onnx_path)
    assert fragment in one_line(info)


def test_sidecar_that_does_not_describe_the_model_is_caught_by_the_backend(tmp_path):
    onnx_path = make_classifier_artifact(tmp_path)
    data = edit_sidecar(onnx_path)
    data["outputs"] = [{"name": "probs", "shape": [-1, 17], "dtype": "float32", "kind": "logits"}, *data["outputs"]]
    sidecar_path_for(onnx_path).write_text(json.dumps(data))
    with pytest.raises(BackendError) as info:
        load_backend(load_artifact(onnx_path))
    assert "names output 'probs', toy-cls.fp32.onnx has logits" in one_line(info)


def test_backend_must_fit_the_file_type(tmp_path):
    artifact = load_artifact(make_segmenter_artifact(tmp_path))
    with pytest.raises(BackendError, match="the tensorrt backend cannot run a .onnx file"):
        load_backend(artifact, "tensorrt")
    with pytest.raises(BackendError, match="unknown backend 'openvino'"):
        load_backend(artifact, "openvino")


def test_provider_resolution():
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers("auto", available) == available
    assert resolve_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert resolve_providers("cuda,cpu", available) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(BackendError, match="CUDAExecutionProvider is not available here"):
        resolve_providers("cuda", ["CPUExecutionProvider"])


def engine_artifact(tmp_path, version="10.3.0", gpu="Orin", cc="8.7"):
    onnx_path = make_classifier_artifact(tmp_path)
    engine = tmp_path / "toy-cls.fp32.engine"
    engine.write_bytes(b"plan")
    data = json.loads(sidecar_path_for(onnx_path).read_text())
    data.update(
        file=engine.name,
        file_sha256=hashlib.sha256(b"plan").hexdigest(),
        target="tensorrt",
        tensorrt={"version": version, "gpu": gpu, "compute_capability": cc, "profile": {"min": 1, "opt": 1, "max": 4}},
    )
    sidecar_path_for(engine).write_text(json.dumps(data))
    return load_artifact(engine)


def test_engines_of_another_tensorrt_or_gpu_are_refused(tmp_path):
    artifact = engine_artifact(tmp_path)
    assert artifact.format == "engine"
    check_engine_compatible(artifact, "10.3.0.30", "Orin", "8.7")  # same release, build number differs: fine
    with pytest.raises(BackendError) as info:
        check_engine_compatible(artifact, "8.6.2", "Orin", "8.7")
    assert "built with TensorRT 10.3.0, this device has TensorRT 8.6.2" in one_line(info)
    with pytest.raises(BackendError) as info:
        check_engine_compatible(artifact, "10.3.0", "NVIDIA H100 80GB HBM3", "9.0")
    assert "built for Orin (sm 8.7), this device is NVIDIA H100 80GB HBM3 (sm 9.0)" in one_line(info)


def test_engine_sidecar_without_tensorrt_facts_is_refused(tmp_path):
    onnx_path = make_classifier_artifact(tmp_path)
    engine = tmp_path / "toy-cls.fp32.engine"
    engine.write_bytes(b"plan")
    data = json.loads(sidecar_path_for(onnx_path).read_text())
    data.update(file=engine.name, file_sha256=hashlib.sha256(b"plan").hexdigest())
    sidecar_path_for(engine).write_text(json.dumps(data))
    with pytest.raises(BackendError, match="must say which TensorRT version and GPU built it"):
        load_artifact(engine)


def test_a_classifier_at_chance_level_is_named_as_such(tmp_path):
    from edgesewer.runtime.report import render_html

    onnx_path = make_classifier_artifact(tmp_path)
    assert load_artifact(onnx_path).learning_warning() is None  # no validation record: nothing to say
    sidecar = json.loads(sidecar_path_for(onnx_path).read_text())
    cfg = sidecar["model_cfg"]
    for got, warned in ((0.061, True), (0.09, True), (0.091, False), (0.4, False)):
        cfg["extra"] = {"validation": {"split": "val", "images": 500, "mAP": got, "chance_mAP": 0.06}}
        edit_sidecar(onnx_path, model_cfg=cfg)
        warning = load_artifact(onnx_path).learning_warning()
        assert (warning is not None) == warned, (got, warning)  # chance level: within 1.5x of 0.06
    cfg["extra"]["validation"]["mAP"] = 0.061
    edit_sidecar(onnx_path, model_cfg=cfg)
    warning = load_artifact(onnx_path).learning_warning()
    assert warning == ("toy-cls.fp32.onnx has not learned: validation mAP 0.061 against 0.060 for a constant "
                       "predictor (500 val images); its detections are noise")
    page = render_html({"run": {"source": "v.mp4", "warnings": [warning]}, "segments": [],
                        "summary": {"segments": 0, "by_code": {}, "max_severity": 0.0}})
    assert '<p class="warning">toy-cls.fp32.onnx has not learned' in page
