"""ONNX with external data (the layout of models over 2 GB), forced on vit-t at 64 px so it runs in seconds.

NFNet-F6 and EfficientNet-L2 pass protobuf's 2 GB limit and are exported this way automatically
(their full-size test is in test_superimage_report_models.py); `--external-data` gives any model
the same layout, so every step (simplify, parity, fp16, Q/DQ int8, int8-cpu, publish, runtime
checks) is exercised here on a small graph.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from edgesewer.errors import BackendError
from edgesewer.export.metadata import data_file_for, read_sidecar, sha256_file, sha256_model
from edgesewer.export.onnx_io import has_external_data, load_onnx, needs_external_data, save_onnx, tensor_bytes
from edgesewer.export.parity import onnx_outputs
from edgesewer.export.pipeline import ExportOptions, run_export
from edgesewer.runtime.artifact import load_artifact
from test_export_onnx import make_sewerml
from test_export_pipeline import _private_cache, cpu_dynamic_profile  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_sewerml(tmp_path_factory.mktemp("extdata") / "sewerml", n_train=16, n_val=8)


def _export(tmp_path, data, out, precision="int8", external=True):
    torch.manual_seed(0)  # the same random weights in every export, so layouts can be compared
    profile = cpu_dynamic_profile(tmp_path)
    return run_export(ExportOptions(model="vit-t", weights="random", precision=precision, profile=str(profile),
                                    imgsz=64, calib_data=data, calib_images=8, out=out, progress=False,
                                    external_data=True if external else None, seed=0), log=lambda s: None)


def _inputs(n=4):
    return np.random.default_rng(0).standard_normal((n, 3, 64, 64)).astype(np.float32)


def test_external_data_export_runs_every_step_and_matches_the_inline_export(tmp_path, data):
    out = tmp_path / "ext"
    result = _export(tmp_path, data, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"vit-t.{p}.{ext}" for p in ("fp32", "int8", "int8-cpu") for ext in ("json", "onnx", "onnx.data"))
    for precision, path in result.artifacts.items():
        assert has_external_data(path), precision
        assert path.stat().st_size < 0.1 * data_file_for(path).stat().st_size  # the weights left the graph
        assert data_file_for(path).stat().st_mode == path.stat().st_mode  # readable by whoever reads the model
        sidecar = read_sidecar(path)
        assert sidecar["external_data"] == {"file": f"vit-t.{precision}.onnx.data",
                                            "sha256": sha256_file(data_file_for(path))}
        assert sidecar["onnx_sha256"] == sha256_model(result.artifacts["fp32"])  # graph and weights
        load_artifact(path)  # both hashes check out
    fp32 = read_sidecar(result.artifacts["fp32"])
    assert fp32["simplified"] is True  # a small model with external data is still simplified
    assert fp32["parity"]["max_abs_diff"] < 1e-3 and fp32["parity"]["decision_agreement"] == 1.0

    inline = _export(tmp_path, data, tmp_path / "inline", external=False)
    assert not data_file_for(inline.artifacts["fp32"]).exists()
    x = _inputs()
    for precision in ("fp32", "int8", "int8-cpu"):
        got = onnx_outputs(result.artifacts[precision], x)[0]
        want = onnx_outputs(inline.artifacts[precision], x)[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=precision)  # the same model either way


def test_fp16_with_external_data(tmp_path, data):
    result = _export(tmp_path, data, tmp_path / "out", precision="fp16")
    fp16 = result.artifacts["fp16"]
    assert has_external_data(fp16)
    assert onnx.load(str(fp16), load_external_data=False).metadata_props[0].key == "edgesewer.model_cfg"
    x = _inputs()
    diff = np.abs(onnx_outputs(fp16, x)[0] - onnx_outputs(result.artifacts["fp32"], x)[0]).max()
    assert diff < 0.05, diff  # the fp16 variant of the same weights, not garbage


def test_runtime_refuses_a_changed_or_missing_weights_file(tmp_path, data):
    out = tmp_path / "out"
    path = _export(tmp_path, data, out, precision="fp32").artifacts["fp32"]
    weights = data_file_for(path)
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(blob))
    with pytest.raises(BackendError, match=r"vit-t\.fp32\.onnx\.data: does not match the sidecar"):
        load_artifact(path)
    weights.unlink()
    with pytest.raises(BackendError, match=r"tensors file vit-t\.fp32\.onnx\.data is missing"):
        load_artifact(path)


def test_reexport_inline_removes_the_stale_weights_file(tmp_path, data):
    out = tmp_path / "out"
    _export(tmp_path, data, out, precision="fp32")
    assert data_file_for(out / "vit-t.fp32.onnx").is_file()
    path = _export(tmp_path, data, out, precision="fp32", external=False).artifacts["fp32"]
    assert not data_file_for(path).exists() and read_sidecar(path)["external_data"] is None
    load_artifact(path)


def test_save_onnx_chooses_the_layout_by_size_and_never_appends(tmp_path, data):
    path = _export(tmp_path, data, tmp_path / "out", precision="fp32").artifacts["fp32"]
    model = load_onnx(path)
    size = tensor_bytes(model)
    assert 20e6 < size < 30e6 and not needs_external_data(model)  # vit-t: 5.5M float parameters
    copy = tmp_path / "copy.onnx"
    assert save_onnx(load_onnx(path), copy, external=True)
    assert save_onnx(load_onnx(path), copy, external=True)  # saved twice: the data file is rewritten
    assert abs(data_file_for(copy).stat().st_size - size) < 0.01 * size
    assert not save_onnx(load_onnx(path), copy)  # auto: under 2 GB it is inline, the stale data file goes
    assert not data_file_for(copy).exists() and not has_external_data(copy)


def test_int8_fp16_with_external_data(tmp_path, data):
    """The opset-19 move and FP16 conversion of the Q/DQ graph read the weights from the data file."""
    torch.manual_seed(0)
    result = run_export(ExportOptions(model="vit-t", weights="random", precision="int8-fp16", profile="dgpu",
                                      trt=None, imgsz=64, calib_data=data, calib_images=8, out=tmp_path / "out",
                                      progress=False, external_data=True), log=lambda s: None)
    path = result.artifacts["int8-fp16"]
    assert has_external_data(path) and read_sidecar(path)["opset"] == 19
    x = _inputs()
    diff = np.abs(onnx_outputs(path, x)[0] - onnx_outputs(result.artifacts["fp32"], x)[0]).max()
    assert diff < 0.1, diff  # measured 0.023 (logits within +-0.7): int8 of random weights, close, not equal


def test_shape_inference_sets_the_weights_aside(tmp_path, data):
    """The fp16 step infers the tensor types of an in-memory graph that may be over 2 GB: without its bytes."""
    from edgesewer.export.graph import tensor_elem_types

    path = _export(tmp_path, data, tmp_path / "out", precision="fp32", external=False).artifacts["fp32"]
    model = load_onnx(path)
    types = tensor_elem_types(model)
    inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    assert len(inferred.graph.value_info) > 100
    assert all(types[vi.name] == vi.type.tensor_type.elem_type for vi in inferred.graph.value_info)
    again = tmp_path / "again.onnx"
    save_onnx(model, again)  # every byte is back: the same outputs
    x = _inputs(2)
    np.testing.assert_array_equal(onnx_outputs(again, x)[0], onnx_outputs(path, x)[0])
