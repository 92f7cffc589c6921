"""TensorRT builder decisions, checked against a recording stand-in for the `tensorrt` module.

The stand-in mimics the Python API surface of three generations (8.5 = JetPack 5, 10.3 = JetPack 6,
11.1 = strongly typed only) as the bindings define it; the builder must pick its flags by probing.
"""

from __future__ import annotations

import json
import types

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from onnx import TensorProto, helper

from edgesewer.errors import BackendError, ExportError
from edgesewer.export.metadata import build_sidecar, read_sidecar, write_sidecar
from edgesewer.export.profiles import BatchProfile
from edgesewer.export.tensorrt_build import (
    build_from_artifact,
    parser_errors,
    plan_build,
    probe_features,
    timing_cache_path,
)

VERSIONS = {"8.5": "8.5.2.2", "10.3": "10.3.0.30", "10.16": "10.16.0.72", "11.1": "11.1.0.106"}


def fake_tensorrt(generation: str, *, parse_errors: list[dict] | None = None, build_fails: bool = False):
    """A `tensorrt` look-alike for one generation that records every builder call in `module.calls`."""
    calls: list[tuple] = []
    trt = types.ModuleType("tensorrt")
    trt.__version__ = VERSIONS[generation]
    trt.calls = calls

    flag_values = {"8.5": {"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1},
                   "10.3": {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1},
                   "10.16": {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1},
                   "11.1": {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1}}[generation]
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(**flag_values)
    builder_flags = {"TF32": 0, "REFIT": 1, "DISABLE_TIMING_CACHE": 2}
    if generation != "11.1":
        builder_flags.update(FP16=10, INT8=11, OBEY_PRECISION_CONSTRAINTS=12)
    trt.BuilderFlag = types.SimpleNamespace(**builder_flags)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            calls.append(("Logger", severity))

    trt.init_libnvinfer_plugins = lambda logger, namespace: calls.append(("init_libnvinfer_plugins", namespace))

    class Tensor:
        def __init__(self, name):
            self.name = name

    class Network:
        num_inputs = 1

        def get_input(self, i):
            return Tensor("input")

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            calls.append(("set_shape", name, tuple(lo), tuple(opt), tuple(hi)))

    class TimingCache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return b"TIMING:" + self.data[-3:] + b"+1"

    class IBuilderConfig:
        def set_memory_pool_limit(self, pool, size):
            calls.append(("set_memory_pool_limit", pool, size))

        def set_flag(self, flag):
            calls.append(("set_flag", flag))

        def add_optimization_profile(self, profile):
            calls.append(("add_optimization_profile",))

        def create_timing_cache(self, data):
            calls.append(("create_timing_cache", bytes(data)))
            self._cache = TimingCache(bytes(data))
            return self._cache

        def set_timing_cache(self, cache, ignore_mismatch):
            calls.append(("set_timing_cache", ignore_mismatch))

        def get_timing_cache(self):
            return self._cache

    class Builder:
        def __init__(self, logger):
            calls.append(("Builder",))

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("build_serialized_network",))
            return None if build_fails else memoryview(b"ENGINE-" + trt.__version__.encode())

    if generation == "8.5":
        Builder.max_batch_size = property(lambda self: 1)  # implicit batch still exists before TRT 10

    class ParserError:
        def __init__(self, spec):
            self.spec = spec

        def node(self):
            return self.spec["node"]

        def desc(self):
            return self.spec["desc"]

    if generation != "8.5":  # TRT 10 parser errors also carry the node's name and operator
        ParserError.node_name = lambda self: self.spec.get("name", "")
        ParserError.node_operator = lambda self: self.spec.get("op", "")

    class OnnxParser:
        def __init__(self, network, logger):
            self.errors = [ParserError(e) for e in (parse_errors or [])]

        def parse_from_file(self, path):
            calls.append(("parse_from_file", path))
            return not self.errors

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

    trt.Logger, trt.Builder, trt.IBuilderConfig, trt.OnnxParser = Logger, Builder, IBuilderConfig, OnnxParser
    return trt


def tiny_onnx(path, with_layernorm=False, opset=17):
    """input [N,3,8,8] -> (LayerNormalization) -> Flatten -> logits [N,192]."""
    nodes, inits = [], []
    src = "input"
    if with_layernorm:
        inits += [helper.make_tensor("ln_scale", TensorProto.FLOAT, [8], [1.0] * 8),
                  helper.make_tensor("ln_bias", TensorProto.FLOAT, [8], [0.0] * 8)]
        nodes.append(helper.make_node("LayerNormalization", ["input", "ln_scale", "ln_bias"], ["ln"], name="/norm/LN"))
        src = "ln"
    nodes.append(helper.make_node("Flatten", [src], ["logits"], name="/head/Flatten"))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 192])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def onnx_artifact(tmp_path, precision="int8", with_layernorm=False, build=None):
    model_file = tiny_onnx(tmp_path / f"tiny.{precision}.onnx", with_layernorm)
    sidecar = build_sidecar(
        model="tiny", task="classify", precision=precision, target="tensorrt", model_file=model_file,
        onnx_sha256="0" * 64, opset=17,
        model_cfg={"name": "tiny", "task": "classify", "input_size": 8, "in_chans": 3, "mean": [0.5] * 3,
                   "std": [0.5] * 3, "classes": [f"c{i}" for i in range(192)], "thresholds": None,
                   "interpolation": "bilinear", "paper": "", "extra": {}},
        inputs=[{"name": "input", "shape": [-1, 3, 8, 8], "dtype": "float32"}],
        outputs=[{"name": "logits", "shape": [-1, 192], "dtype": "float32", "kind": "logits"}],
        weights="random",
        extra={"build": build or {"profile": "jetson-orin-nano", "tensorrt": "10.3",
                                   "batch": {"min": 1, "opt": 2, "max": 4}, "workspace_gib": 1,
                                   "strongly_typed": "auto", "jetson": {"compute_capability": "8.7"}}},
    )
    write_sidecar(model_file, sidecar)
    return model_file


JETSON = {"jetpack": "6.1", "l4t": "36.4.0", "module": "NVIDIA Jetson Orin Nano Developer Kit"}
ORIN = ("Orin", "8.7")


@pytest.mark.parametrize(
    ("generation", "precision", "strongly", "network_flags", "builder_flags", "typed"),
    [
        ("8.5", "fp32", "auto", ("EXPLICIT_BATCH",), (), False),
        ("8.5", "fp16", "auto", ("EXPLICIT_BATCH",), ("FP16",), False),
        ("8.5", "int8", "auto", ("EXPLICIT_BATCH",), ("INT8", "FP16"), False),
        ("10.3", "fp16", "auto", (), ("FP16",), False),  # implicit batch is gone: no EXPLICIT_BATCH
        ("10.3", "int8", "true", ("STRONGLY_TYPED",), (), True),  # strongly typed refuses precision flags
        ("11.1", "int8", "auto", (), (), True),  # no FP16/INT8 flags exist: precision is in the ONNX
        ("10.16", "int8", "auto", ("STRONGLY_TYPED",), (), True),  # flags deprecated from 10.12: none for Q/DQ
        ("10.16", "fp16", "auto", (), ("FP16",), False),  # not a Q/DQ network: unchanged
        ("10.16", "int8", "false", (), ("INT8", "FP16"), False),  # an explicit profile choice still wins
        ("10.3", "int8-fp16", "auto", ("STRONGLY_TYPED",), (), True),  # FP16 graph with Q/DQ: its types decide
        ("11.1", "int8-fp16", "auto", (), (), True),
        ("11.1", "fp16", "true", (), (), True),
    ],
)
def test_flags_per_tensorrt_generation(generation, precision, strongly, network_flags, builder_flags, typed):
    plan = plan_build(probe_features(fake_tensorrt(generation)), precision, strongly)
    assert plan.network_flags == network_flags
    assert plan.builder_flags == builder_flags
    assert plan.strongly_typed is typed


def test_impossible_plans_are_refused():
    with pytest.raises(ExportError, match="cannot build strongly typed"):
        plan_build(probe_features(fake_tensorrt("8.5")), "fp16", "true")
    with pytest.raises(ExportError, match="strongly typed networks only"):
        plan_build(probe_features(fake_tensorrt("11.1")), "fp16", "false")
    with pytest.raises(ExportError, match="int8-cpu"):
        plan_build(probe_features(fake_tensorrt("10.3")), "int8-cpu")
    with pytest.raises(ExportError, match="int8-fp16 artifact carries its FP16 layers in its types"):
        plan_build(probe_features(fake_tensorrt("10.3")), "int8-fp16", "false")


def test_strongly_typed_int8_build_points_to_the_fp16_qdq_artifact(tmp_path):
    built = build_from_artifact(onnx_artifact(tmp_path), trt=fake_tensorrt("10.16"), gpu=ORIN, jetson=JETSON,
                                cache_dir=tmp_path / "cache")
    assert not [c for c in built.plan.builder_flags]
    assert built.notes == ["tiny.int8.onnx: strongly typed, its unquantised layers run in FP32 (slower than the fp16 "
                           "engine); export --precision int8-fp16 for an INT8 engine whose other layers are FP16"]


def test_build_records_profile_workspace_cache_and_sidecar(tmp_path):
    artifact = onnx_artifact(tmp_path)
    trt = fake_tensorrt("10.3")
    built = build_from_artifact(artifact, trt=trt, gpu=ORIN, jetson=JETSON, cache_dir=tmp_path / "cache")

    assert ("create_network", 0) in trt.calls
    names = [c[0] for c in trt.calls]  # TensorRT's plugins registered before the parser can emit one
    assert ("init_libnvinfer_plugins", "") in trt.calls and names.index("init_libnvinfer_plugins") < names.index("Builder")
    assert ("set_memory_pool_limit", "WORKSPACE", 1 << 30) in trt.calls
    assert ("set_shape", "input", (1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8)) in trt.calls
    assert [c for c in trt.calls if c[0] == "set_flag"] == [("set_flag", 11), ("set_flag", 10)]  # INT8, FP16
    assert ("create_timing_cache", b"") in trt.calls and ("set_timing_cache", False) in trt.calls

    assert built.engine_path == tmp_path / "tiny.int8.engine"
    assert built.engine_path.read_bytes() == b"ENGINE-10.3.0.30"
    sidecar = json.loads((tmp_path / "tiny.int8.engine.json").read_text())
    assert sidecar["file"] == "tiny.int8.engine" and sidecar["target"] == "tensorrt"
    assert sidecar["source_onnx"] == "tiny.int8.onnx"
    assert sidecar["tensorrt"] == {
        "version": "10.3.0.30", "gpu": "Orin", "compute_capability": "8.7", "strongly_typed": False,
        "builder_flags": ["INT8", "FP16"], "workspace_gib": 1.0, "profile": {"min": 1, "opt": 2, "max": 4},
        "jetpack": "6.1", "l4t": "36.4.0", "module": "NVIDIA Jetson Orin Nano Developer Kit",
    }
    assert built.notes == []

    # The timing cache persists per (TensorRT version, GPU) and is fed back into the next build.
    cache = timing_cache_path(tmp_path / "cache", "10.3.0.30", "Orin", "8.7")
    assert cache.read_bytes() == b"TIMING:+1"
    trt2 = fake_tensorrt("10.3")
    build_from_artifact(artifact, trt=trt2, gpu=ORIN, jetson=JETSON, cache_dir=tmp_path / "cache")
    assert ("create_timing_cache", b"TIMING:+1") in trt2.calls


def test_overrides_and_profile_mismatch_notes(tmp_path):
    artifact = onnx_artifact(tmp_path, precision="fp16")
    trt = fake_tensorrt("8.5")
    built = build_from_artifact(artifact, trt=trt, gpu=("Xavier", "7.2"), jetson=None, workspace_gib=0.5,
                                max_batch=16, cache_dir=tmp_path / "cache")
    assert ("create_network", 1 << 0) in trt.calls  # EXPLICIT_BATCH on TRT 8.5
    assert ("set_memory_pool_limit", "WORKSPACE", 1 << 29) in trt.calls
    assert ("set_shape", "input", (1, 3, 8, 8), (2, 3, 8, 8), (16, 3, 8, 8)) in trt.calls
    assert built.tensorrt["jetpack"] is None and built.tensorrt["l4t"] is None
    assert built.notes == ["profile jetson-orin-nano expects TensorRT 10.3, this device has 8.5.2.2",
                           "profile jetson-orin-nano is for sm 8.7, this GPU (Xavier) is sm 7.2"]
    with pytest.raises(ExportError, match="--max-batch 1 is below the live batch 2"):
        build_from_artifact(artifact, trt=trt, gpu=ORIN, jetson=None, max_batch=1, cache_dir=tmp_path / "c")


def test_parser_errors_name_the_nodes(tmp_path):
    # TRT 8.5 reports only the node index: the builder maps it to the ONNX node name.
    (tmp_path / "a").mkdir()
    artifact = onnx_artifact(tmp_path / "a")
    trt85 = fake_tensorrt("8.5", parse_errors=[{"node": 0, "desc": "Assertion failed: weights"}])
    assert str(_build_error(artifact, trt85, tmp_path)) == (
        "TensorRT 8.5.2.2 cannot parse tiny.int8.onnx: node /head/Flatten: Assertion failed: weights")
    # TRT 10 has node_name() and node_operator(); multi-line descriptions become one line.
    (tmp_path / "b").mkdir()
    artifact = onnx_artifact(tmp_path / "b", with_layernorm=True)
    trt10 = fake_tensorrt("10.3", parse_errors=[
        {"node": 0, "name": "/norm/LN", "op": "LayerNormalization", "desc": "unsupported\nattribute"},
        {"node": 1, "name": "/head/Flatten", "op": "Flatten", "desc": "bad"}])
    assert str(_build_error(artifact, trt10, tmp_path)) == (
        "TensorRT 10.3.0.30 cannot parse tiny.int8.onnx: node /norm/LN (LayerNormalization): "
        "unsupported attribute; node /head/Flatten (Flatten): bad")
    assert not list(tmp_path.rglob("*.engine"))


def _build_error(artifact, trt, tmp_path):
    with pytest.raises(ExportError) as info:
        build_from_artifact(artifact, trt=trt, gpu=ORIN, jetson=None, cache_dir=tmp_path / "cache")
    return info.value


def test_parser_error_index_maps_to_node_name(tmp_path):
    path = tiny_onnx(tmp_path / "t.onnx", with_layernorm=True)
    parser = types.SimpleNamespace(num_errors=1, get_error=lambda i: types.SimpleNamespace(
        node=lambda: 1, desc=lambda: "Assertion failed"))
    assert parser_errors(parser, path, "8.5.2.2") == "TensorRT 8.5.2.2 cannot parse t.onnx: node /head/Flatten: Assertion failed"


def test_layernorm_graph_refused_on_tensorrt_85_before_parsing(tmp_path):
    artifact = onnx_artifact(tmp_path, with_layernorm=True)
    trt = fake_tensorrt("8.5")
    with pytest.raises(ExportError, match="LayerNormalization nodes, which TensorRT 8.5.2.2 cannot parse; re-export "
                                          "with --profile jetson-xavier-jp5"):
        build_from_artifact(artifact, trt=trt, gpu=ORIN, jetson=None, cache_dir=tmp_path / "cache")
    assert not any(c[0] == "parse_from_file" for c in trt.calls)


def test_failed_build_leaves_no_engine(tmp_path):
    artifact = onnx_artifact(tmp_path)
    with pytest.raises(ExportError, match="failed to build tiny.int8.onnx"):
        build_from_artifact(artifact, trt=fake_tensorrt("11.1", build_fails=True), gpu=ORIN, jetson=None,
                            cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["tiny.int8.json", "tiny.int8.onnx"]


def test_tampered_onnx_is_refused(tmp_path):
    artifact = onnx_artifact(tmp_path)
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    with pytest.raises(BackendError, match="does not match its sidecar"):
        build_from_artifact(artifact, trt=fake_tensorrt("10.3"), gpu=ORIN, jetson=None, cache_dir=tmp_path / "c")


def test_engine_sidecar_is_what_the_runtime_checks(tmp_path):
    """Contract with edgesewer.runtime.artifact: it loads our engine sidecar and refuses another TRT/GPU."""
    artifact_mod = pytest.importorskip("edgesewer.runtime.artifact")
    built = build_from_artifact(onnx_artifact(tmp_path), trt=fake_tensorrt("11.1"), gpu=ORIN, jetson=JETSON,
                                cache_dir=tmp_path / "cache")
    loaded = artifact_mod.load_artifact(built.engine_path)
    assert read_sidecar(built.engine_path)["tensorrt"]["strongly_typed"] is True
    artifact_mod.check_engine_compatible(loaded, "11.1.0.106", "Orin", "8.7")
    with pytest.raises(BackendError, match="built with TensorRT 11.1.0.106"):
        artifact_mod.check_engine_compatible(loaded, "10.3.0.30", "Orin", "8.7")
    with pytest.raises(BackendError, match="built for Orin"):
        artifact_mod.check_engine_compatible(loaded, "11.1.0.106", "NVIDIA GeForce RTX 4090", "8.9")


def test_rebuild_from_an_engine_uses_its_source_onnx(tmp_path):
    built = build_from_artifact(onnx_artifact(tmp_path), trt=fake_tensorrt("10.3"), gpu=ORIN, jetson=None,
                                cache_dir=tmp_path / "cache")
    trt11 = fake_tensorrt("11.1")
    rebuilt = build_from_artifact(built.sidecar_path, trt=trt11, gpu=ORIN, jetson=None, cache_dir=tmp_path / "cache")
    assert rebuilt.engine_path == built.engine_path
    assert ("parse_from_file", str(tmp_path / "tiny.int8.onnx")) in trt11.calls
    assert read_sidecar(rebuilt.engine_path)["tensorrt"]["version"] == "11.1.0.106"


def test_batch_profile_shapes_come_from_the_sidecar_defaults(tmp_path):
    artifact = onnx_artifact(tmp_path, build={"profile": "dgpu"})  # no batch recorded: 1/1/8
    trt = fake_tensorrt("11.1")
    build_from_artifact(artifact, trt=trt, gpu=("NVIDIA H100", "9.0"), jetson=None, cache_dir=tmp_path / "c")
    assert ("set_shape", "input", (1, 3, 8, 8), (1, 3, 8, 8), (8, 3, 8, 8)) in trt.calls
    assert BatchProfile().as_dict() == {"min": 1, "opt": 1, "max": 8}


@pytest.mark.gpu
def test_real_tensorrt_builds_a_tiny_engine(tmp_path):
    trt = pytest.importorskip("tensorrt")
    from edgesewer.export import device_info

    gpu = device_info.gpu_info()
    if gpu is None:
        pytest.skip("no NVIDIA GPU")
    onnx_path = onnx_artifact(tmp_path, precision="fp32", with_layernorm=True)
    built = build_from_artifact(onnx_path, trt=trt, gpu=gpu, cache_dir=tmp_path / "cache")
    assert built.engine_path.stat().st_size > 0
    # The engine runs through the runtime's TensorRT backend (sidecar hash checked on load) and gives
    # what ONNX Runtime gives for the same graph and input.
    import onnxruntime as ort

    from edgesewer.runtime.artifact import load_artifact
    from edgesewer.runtime.backends import load_backend

    batch = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    backend = load_backend(load_artifact(built.engine_path), "tensorrt")
    try:
        engine_out = backend.infer(batch)["logits"]
    finally:
        backend.close()
    reference = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": batch})[0]
    assert engine_out.shape == reference.shape == (3, 192)
    np.testing.assert_allclose(engine_out, reference, rtol=1e-3, atol=1e-3)
    assert np.abs(reference).max() > 0.5  # layer-normalised values, not zeros that would match anything


def test_frame_stack_profile_keeps_the_time_axis(tmp_path):
    """A frame-stack video model (Video Swin, input [B, T, 3, S, S]): the profile's shapes keep all five axes."""
    artifact = onnx_artifact(tmp_path)
    sidecar = read_sidecar(artifact)
    sidecar["inputs"][0]["shape"] = [-1, 4, 3, 8, 8]
    write_sidecar(artifact, sidecar)
    trt = fake_tensorrt("10.3")
    build_from_artifact(artifact, trt=trt, gpu=ORIN, jetson=JETSON, cache_dir=tmp_path / "cache")
    assert ("set_shape", "input", (1, 4, 3, 8, 8), (2, 4, 3, 8, 8), (4, 4, 3, 8, 8)) in trt.calls


def test_external_data_artifact_builds_from_the_file_and_checks_its_weights(tmp_path):
    """A graph over 2 GB keeps its weights in `.onnx.data`: the builder hashes them and parses by path."""
    from edgesewer.export.metadata import data_file_for, sidecar_path_for
    from edgesewer.export.onnx_io import load_onnx, save_onnx

    artifact = onnx_artifact(tmp_path)
    model = load_onnx(artifact)  # the tiny graph with a 192 x 192 weight before its output, then moved out
    weight = np.random.default_rng(0).standard_normal((192, 192)).astype(np.float32)
    model.graph.initializer.append(onnx.numpy_helper.from_array(weight, "head_w"))
    model.graph.node[-1].output[0] = "flat"
    model.graph.node.append(helper.make_node("MatMul", ["flat", "head_w"], ["logits"], name="/head/MatMul"))
    assert save_onnx(model, artifact, external=True)
    sidecar = read_sidecar(artifact)
    rewritten = build_sidecar(**{k: sidecar[k] for k in ("model", "task", "precision", "target", "onnx_sha256",
                                                          "opset", "model_cfg", "inputs", "outputs", "weights")},
                              model_file=artifact, extra={"build": sidecar["build"]})
    write_sidecar(artifact, rewritten)
    assert rewritten["external_data"]["file"] == "tiny.int8.onnx.data"
    trt = fake_tensorrt("10.3")
    built = build_from_artifact(artifact, trt=trt, gpu=ORIN, jetson=None, cache_dir=tmp_path / "cache")
    assert ("parse_from_file", str(artifact)) in trt.calls  # TensorRT finds the data file beside the model
    assert read_sidecar(built.engine_path)["external_data"] is None  # the engine holds its weights

    weights = data_file_for(artifact)
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(BackendError, match=r"tiny\.int8\.onnx\.data: does not match the sidecar"):
        build_from_artifact(artifact, trt=fake_tensorrt("10.3"), gpu=ORIN, jetson=None, cache_dir=tmp_path / "c")
    assert sidecar_path_for(artifact).is_file()
