"""The TensorRT backend's GPU-free logic, run against a recording stand-in for `tensorrt` and a CUDA
API whose "device memory" is host memory: dtype mapping, profile choice, buffer sizing, one-time
allocation and addresses, sidecar and device checks, and the data path through execute_async_v3.

The real-GPU test at the end is marked `gpu` and skipped where TensorRT or a GPU is missing.
"""

import hashlib
import json
import threading
import time
import types

import numpy as np
import pytest
from test_runtime_support import make_classifier_artifact

from edgesewer.errors import BackendError
from edgesewer.runtime.artifact import load_artifact, sidecar_path_for
from edgesewer.runtime.backends.tensorrt import (
    CudaApi,
    TensorRTBackend,
    choose_profile,
    numpy_dtype,
    plan_buffers,
)

CLASSES = 17


class DType:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"DataType.{self.name.upper()}"


def fake_trt(version="10.3.0", calls=None):
    """A stand-in `tensorrt` module: what the backend touches, recording every call in `calls`."""
    trt = types.SimpleNamespace(__version__=version, calls=calls if calls is not None else [])
    for name in ("float32", "float16", "int8", "int32", "bool", "bfloat16"):
        setattr(trt, name, DType(name))
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.init_libnvinfer_plugins = lambda logger, namespace: trt.calls.append(("init_libnvinfer_plugins", namespace))

    class Runtime:
        def __init__(self, logger):
            pass

        def __del__(self):
            trt.calls.append(("del", "runtime"))

        def deserialize_cuda_engine(self, data):
            trt.calls.append(("deserialize", len(data)))
            spec = json.loads(data)
            return None if spec.get("corrupt") else FakeEngine(trt, spec)

    trt.Runtime = Runtime
    return trt


class FakeEngine:
    """Engine from a JSON 'plan': tensors [(name, mode, dtype, shape)], profiles [[min, opt, max] batch]."""

    def __init__(self, trt, spec):
        self.trt, self.spec = trt, spec
        self.tensors = spec["tensors"]
        self.num_io_tensors = len(self.tensors)
        self.num_optimization_profiles = len(spec["profiles"])

    def _t(self, name):
        return next(t for t in self.tensors if t[0] == name)

    def get_tensor_name(self, i):
        return self.tensors[i][0]

    def get_tensor_mode(self, name):
        return getattr(self.trt.TensorIOMode, self._t(name)[1])

    def get_tensor_dtype(self, name):
        return getattr(self.trt, self._t(name)[2])

    def get_tensor_shape(self, name):
        return tuple(self._t(name)[3])

    def get_tensor_profile_shape(self, name, index):
        lo, opt, hi = self.spec["profiles"][index]
        rest = self._t(name)[3][1:]
        return [(b, *rest) for b in (lo, opt, hi)]

    def create_execution_context(self):
        self.trt.calls.append(("create_execution_context",))
        return FakeContext(self)

    def __del__(self):
        self.trt.calls.append(("del", "engine"))


class FakeContext:
    """Computes logits = 10 * mean(red) - 3 for class 0, 0 elsewhere, from 'device' memory."""

    def __init__(self, engine):
        self.engine, self.trt = engine, engine.trt
        self.shapes, self.addresses = {}, {}
        self.memory = None  # set by the test to the FakeCuda's memory
        self.profile = 0
        self.hold = None  # a threading.Event execute_async_v3 waits on (a batch in flight), when set by a test

    def __del__(self):
        self.trt.calls.append(("del", "context"))

    def set_optimization_profile_async(self, index, stream):
        self.trt.calls.append(("set_optimization_profile_async", index))
        self.profile = index

    def set_input_shape(self, name, shape):
        """Like TensorRT: False (and nothing changed) for a batch outside the active profile."""
        self.trt.calls.append(("set_input_shape", name, tuple(shape)))
        low, _opt, high = self.engine.spec["profiles"][self.profile]
        if not low <= shape[0] <= high:
            return False
        self.shapes[name] = tuple(shape)
        return True

    def infer_shapes(self):
        return []

    def get_tensor_shape(self, name):
        if name in self.shapes:
            return self.shapes[name]
        batch = self.shapes["input"][0]
        return (batch, *self.engine.get_tensor_shape(name)[1:])

    def set_tensor_address(self, name, address):
        self.trt.calls.append(("set_tensor_address", name))
        self.addresses[name] = address

    def execute_async_v3(self, stream_handle):
        self.trt.calls.append(("execute_async_v3", stream_handle))
        if self.hold is not None:
            self.hold.wait(10)
        shape = self.shapes["input"]
        x = self.memory[self.addresses["input"]][: int(np.prod(shape)) * 4].view(np.float32).reshape(shape)
        out_name = next(t[0] for t in self.engine.tensors if t[1] == "OUTPUT")
        out_dtype = np.dtype(self.engine.tensors[1][2])
        logits = np.zeros((shape[0], CLASSES), out_dtype)
        logits[:, 0] = 10.0 * x[:, 0].mean(axis=(1, 2)) - 3.0
        raw = logits.view(np.uint8).reshape(-1)
        self.memory[self.addresses[out_name]][: raw.size] = raw
        return True


class FakeCuda(CudaApi):
    """Device memory = numpy byte arrays keyed by fake addresses; copies are immediate."""

    def __init__(self, gpu="Orin", capability="8.7", events=None):
        self.gpu, self.capability = gpu, capability
        self.memory, self.allocations, self.freed, self.syncs = {}, [], False, 0
        self.events = events if events is not None else []  # teardown order, shared with the trt stand-in

    def device_info(self):
        return self.gpu, self.capability

    def create_stream(self):
        return 7

    def alloc_pinned(self, nbytes):
        self.allocations.append(("pinned", nbytes))
        return np.zeros(nbytes, np.uint8)

    def alloc_device(self, nbytes):
        address = 0x1000 * (len(self.memory) + 1)
        self.memory[address] = np.zeros(nbytes, np.uint8)
        self.allocations.append(("device", nbytes))
        return address

    def copy_to_device(self, device, host, nbytes, stream):
        self.memory[device][:nbytes] = host[:nbytes]

    def copy_to_host(self, host, device, nbytes, stream):
        host[:nbytes] = self.memory[device][:nbytes]

    def synchronize(self, stream):
        self.syncs += 1

    def free(self, pinned, device, stream):
        self.freed = True
        self.events.append(("free buffers",))

    def close(self):
        self.events.append(("detach CUDA context",))


def engine_files(
    tmp_path, out_dtype="float32", profiles=((1, 1, 4),), outputs=("logits",), trt_version="10.3.0", corrupt=False,
    sha256="match",
):
    """A classifier artifact whose .engine file is the fake plan, with a matching sidecar.

    `sha256`: "match" (the engine's hash), None (no hash in the sidecar) or a literal digest.
    """
    onnx_path = make_classifier_artifact(tmp_path, size=8)
    tensors = [["input", "INPUT", "float32", [-1, 3, 8, 8]]] + [
        [o, "OUTPUT", out_dtype, [-1, CLASSES]] for o in outputs
    ]
    engine = tmp_path / "toy-cls.fp32.engine"
    engine.write_text(json.dumps({"tensors": tensors, "profiles": [list(p) for p in profiles], "corrupt": corrupt}))
    data = json.loads(sidecar_path_for(onnx_path).read_text())
    data.update(
        file=engine.name,
        file_sha256=hashlib.sha256(engine.read_bytes()).hexdigest() if sha256 == "match" else sha256,
        target="tensorrt",
        tensorrt={
            "version": trt_version,
            "gpu": "Orin",
            "compute_capability": "8.7",
            "profile": {"min": 1, "opt": 1, "max": 4},
        },
    )
    sidecar_path_for(engine).write_text(json.dumps(data))
    return load_artifact(engine, check_hash=sha256 == "match")


def open_backend(artifact, trt=None, cuda=None, **kw):
    trt = trt or fake_trt()
    cuda = cuda or FakeCuda()
    original = FakeEngine.create_execution_context

    def create(engine):  # hand the context the fake device memory
        context = original(engine)
        context.memory = cuda.memory
        return context

    FakeEngine.create_execution_context = create
    try:
        return TensorRTBackend(artifact, trt_module=trt, cuda=cuda, **kw), trt, cuda
    finally:
        FakeEngine.create_execution_context = original


def test_dtype_mapping():
    trt = fake_trt()
    assert [numpy_dtype(trt, getattr(trt, n)) for n in ("float32", "float16", "int8", "int32", "bool")] == [
        np.float32,
        np.float16,
        np.int8,
        np.int32,
        np.bool_,
    ]
    with pytest.raises(BackendError, match="DataType.BFLOAT16 has no numpy equivalent"):
        numpy_dtype(trt, trt.bfloat16)


def test_profile_choice():
    engine = FakeEngine(
        fake_trt(), {"tensors": [["input", "INPUT", "float32", [-1, 3, 8, 8]]], "profiles": [[1, 1, 4], [5, 8, 16]]}
    )
    assert choose_profile(engine, "input", 1) == 0
    assert choose_profile(engine, "input", 8) == 1
    with pytest.raises(BackendError, match=r"takes batch 32 \(profiles: 1-4, 5-16\)"):
        choose_profile(engine, "input", 32)


def test_buffers_are_sized_from_profile_max_shapes():
    trt = fake_trt()
    spec = {
        "tensors": [["input", "INPUT", "float32", [-1, 3, 8, 8]], ["logits", "OUTPUT", "float16", [-1, CLASSES]]],
        "profiles": [[1, 2, 8]],
    }
    engine = FakeEngine(trt, spec)
    plans = plan_buffers(trt, engine, engine.create_execution_context(), 0, max_batch=8)
    assert [(p.name, p.is_input, p.max_shape, p.nbytes) for p in plans] == [
        ("input", True, (8, 3, 8, 8), 8 * 3 * 8 * 8 * 4),
        ("logits", False, (8, CLASSES), 8 * CLASSES * 2),
    ]
    # a max batch below the profile's max allocates only what is needed
    plans = plan_buffers(trt, engine, engine.create_execution_context(), 0, max_batch=2)
    assert plans[0].max_shape == (2, 3, 8, 8)


def test_backend_allocates_once_and_runs_through_execute_async_v3(tmp_path):
    backend, trt, cuda = open_backend(engine_files(tmp_path, out_dtype="float16"))
    assert backend.max_batch == 4  # from the sidecar profile
    assert cuda.allocations == [
        ("pinned", 4 * 3 * 64 * 4),
        ("pinned", 4 * CLASSES * 2),
        ("device", 4 * 3 * 64 * 4),
        ("device", 4 * CLASSES * 2),
    ]
    assert [c for c in trt.calls if c[0] == "set_tensor_address"] == [
        ("set_tensor_address", "input"),
        ("set_tensor_address", "logits"),
    ]
    x = np.zeros((3, 3, 8, 8), np.float32)
    x[0, 0] = 1.0
    x[1, 0] = 0.5
    trt.calls.clear()
    out = backend.infer(x)
    assert out["logits"].dtype == np.float32 and out["logits"].shape == (3, CLASSES)
    np.testing.assert_allclose(out["logits"][:, 0], [7.0, 2.0, -3.0])
    backend.infer(x[:3])  # same batch: no new shape
    backend.infer(x[:2])
    assert [c for c in trt.calls if c[0] == "set_input_shape"] == [
        ("set_input_shape", "input", (3, 3, 8, 8)),
        ("set_input_shape", "input", (2, 3, 8, 8)),
    ]
    assert [c[0] for c in trt.calls].count("execute_async_v3") == 3
    assert not [c for c in trt.calls if c[0] == "set_tensor_address"]  # addresses never change
    assert len(cuda.allocations) == 4  # nothing allocated per frame
    big = np.repeat(x[:1], 10, axis=0)  # above the profile max: run in chunks of 4
    np.testing.assert_allclose(backend.infer(big)["logits"][:, 0], [7.0] * 10)
    backend.close()
    backend.close()
    assert cuda.freed


def test_second_profile_is_selected_for_a_large_batch(tmp_path):
    backend, trt, _ = open_backend(engine_files(tmp_path, profiles=((1, 1, 4), (5, 8, 16))), max_batch=16)
    assert backend.profile == 1 and ("set_optimization_profile_async", 1) in trt.calls
    assert backend.plans[0].max_shape == (16, 3, 8, 8)


def test_refusals(tmp_path):
    with pytest.raises(BackendError, match="built with TensorRT 8.6.2, this device has TensorRT 10.3.0"):
        open_backend(engine_files(tmp_path / "a", trt_version="8.6.2"))
    with pytest.raises(BackendError, match=r"built for Orin \(sm 8.7\), this device is Tesla T4 \(sm 7.5\)"):
        open_backend(engine_files(tmp_path / "b"), cuda=FakeCuda("Tesla T4", "7.5"))
    with pytest.raises(BackendError, match="names output 'logits', the engine has prob"):
        open_backend(engine_files(tmp_path / "c", outputs=("prob",)))
    with pytest.raises(BackendError, match="could not deserialise the engine"):
        open_backend(engine_files(tmp_path / "d", corrupt=True))


def test_an_engine_without_its_hash_is_never_deserialised(tmp_path):
    trt = fake_trt()
    hashless = engine_files(tmp_path / "a", sha256=None)
    with pytest.raises(BackendError, match=r"toy-cls.fp32.engine.json: has no file_sha256 for toy-cls.fp32.engine"):
        open_backend(hashless, trt=trt)
    with pytest.raises(BackendError, match="has no file_sha256"):
        load_artifact(hashless.model_path)  # the CLI's first step refuses it too
    wrong = engine_files(tmp_path / "b", sha256="0" * 64)
    with pytest.raises(BackendError, match=r"toy-cls.fp32.engine: does not match its sidecar \(sha256 \w{12} != 000000000000\)"):
        open_backend(wrong, trt=trt)
    with pytest.raises(BackendError, match="does not match its sidecar"):
        load_artifact(wrong.model_path)
    swapped = engine_files(tmp_path / "c")  # checked at load, then replaced before the backend opens it
    swapped.model_path.write_text(swapped.model_path.read_text().replace('"corrupt": false', '"corrupt": 0'))
    with pytest.raises(BackendError, match="does not match its sidecar"):
        open_backend(swapped, trt=trt)
    assert not [c for c in trt.calls if c[0] == "deserialize"]
    open_backend(engine_files(tmp_path / "d"), trt=trt)  # the same stand-in does deserialise a matching engine
    assert [c[0] for c in trt.calls].count("deserialize") == 1


def test_plugins_are_registered_before_the_engine_is_deserialised(tmp_path):
    backend, trt, _ = open_backend(engine_files(tmp_path))
    names = [c[0] for c in trt.calls]
    assert ("init_libnvinfer_plugins", "") in trt.calls
    assert names.index("init_libnvinfer_plugins") < names.index("deserialize")


def test_a_batch_outside_the_profile_is_an_error_naming_shape_and_profile(tmp_path):
    backend, trt, _ = open_backend(engine_files(tmp_path, profiles=((2, 2, 4),)))
    x = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(BackendError, match=r"input 'input' shape \[1, 3, 8, 8\] is outside the engine's optimisation "
                                           r"profile 0 \(min \[2, 3, 8, 8\], max \[4, 3, 8, 8\]\)"):
        backend.infer(x)
    assert "execute_async_v3" not in [c[0] for c in trt.calls]  # never run on the previous shape
    assert backend.infer(np.zeros((2, 3, 8, 8), np.float32))["logits"].shape == (2, CLASSES)


def test_teardown_frees_tensorrt_objects_before_the_cuda_context(tmp_path):
    trt = fake_trt()
    cuda = FakeCuda(events=trt.calls)
    backend, _, _ = open_backend(engine_files(tmp_path), trt=trt, cuda=cuda)
    trt.calls.clear()
    backend.close()
    assert trt.calls == [("free buffers",), ("del", "context"), ("del", "engine"), ("del", "runtime"),
                         ("detach CUDA context",)]
    backend.close()
    assert len(trt.calls) == 5  # twice is harmless


def test_close_waits_for_the_batch_in_flight(tmp_path):
    trt = fake_trt()
    cuda = FakeCuda(events=trt.calls)
    backend, _, _ = open_backend(engine_files(tmp_path), trt=trt, cuda=cuda)
    backend.context.hold = threading.Event()
    x = np.zeros((2, 3, 8, 8), np.float32)
    x[:, 0] = 1.0
    results = {}
    worker = threading.Thread(target=lambda: results.update(backend.infer(x)))
    worker.start()
    while "execute_async_v3" not in [c[0] for c in trt.calls]:
        time.sleep(0.005)
    closer = threading.Thread(target=backend.close)  # e.g. the second Ctrl-C's cleanup
    closer.start()
    time.sleep(0.2)
    assert not cuda.freed and closer.is_alive()  # nothing freed under the running batch
    backend.context.hold.set()
    worker.join(5)
    closer.join(5)
    np.testing.assert_allclose(results["logits"][:, 0], [7.0, 7.0])  # the batch read intact buffers
    assert cuda.freed and ("detach CUDA context",) in trt.calls
    with pytest.raises(BackendError, match="backend is closed"):
        backend.infer(x)


def test_an_engine_of_another_jetson_module_is_refused(tmp_path, monkeypatch):
    artifact = engine_files(tmp_path)
    artifact.meta["tensorrt"]["module"] = "NVIDIA Jetson AGX Orin Developer Kit"
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00")
    monkeypatch.setattr("edgesewer.runtime.artifact.DEVICE_TREE_MODEL", model)
    trt = fake_trt()
    with pytest.raises(BackendError, match=r"built on NVIDIA Jetson AGX Orin Developer Kit, this device is NVIDIA "
                                           r"Jetson Orin Nano Engineering Reference Developer Kit Super \(same sm 8.7"):
        open_backend(artifact, trt=trt)
    assert "deserialize" not in [c[0] for c in trt.calls]
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    open_backend(artifact, trt=trt)  # the module it was built on
    del artifact.meta["tensorrt"]["module"]
    open_backend(artifact, trt=trt)  # an engine sidecar from before modules were recorded still loads


def test_device_info_detaches_the_context_it_made(monkeypatch):
    from edgesewer.export import device_info

    made = []

    class Api(FakeCuda):
        def __init__(self):
            super().__init__("Orin", "8.7")
            made.append(self)

    monkeypatch.setattr("edgesewer.runtime.backends.tensorrt.load_cuda_api", lambda prefer="auto": Api())
    assert device_info.gpu_info() == ("Orin", "8.7")
    assert device_info.gpu_info() == ("Orin", "8.7")
    assert [api.events for api in made] == [[("detach CUDA context",)]] * 2


def _gpu_available() -> bool:
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime as cudart

        err, count = cudart.cudaGetDeviceCount()
        return int(err) == 0 and count > 0
    except Exception:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_available(), reason="needs TensorRT and an NVIDIA GPU")
def test_real_engine_matches_onnx_runtime(tmp_path):
    import tensorrt as trt

    from edgesewer.runtime.backends import load_backend
    from edgesewer.runtime.backends.tensorrt import CudaPythonApi

    onnx_path = make_classifier_artifact(tmp_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes())
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, 32, 32), (1, 3, 32, 32), (4, 3, 32, 32))
    config.add_optimization_profile(profile)
    engine_path = tmp_path / "toy-cls.fp32.engine"
    engine_path.write_bytes(bytes(builder.build_serialized_network(network, config)))
    gpu, capability = CudaPythonApi().device_info()
    data = json.loads(sidecar_path_for(onnx_path).read_text())
    data.update(
        file=engine_path.name,
        file_sha256=hashlib.sha256(engine_path.read_bytes()).hexdigest(),
        target="tensorrt",
        tensorrt={
            "version": trt.__version__,
            "gpu": gpu,
            "compute_capability": capability,
            "profile": {"min": 1, "opt": 1, "max": 4},
        },
    )
    sidecar_path_for(engine_path).write_text(json.dumps(data))
    x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    expected = load_backend(load_artifact(onnx_path)).infer(x)["logits"]
    backend = load_backend(load_artifact(engine_path))
    np.testing.assert_allclose(backend.infer(x)["logits"], expected, atol=1e-4)
    backend.close()
