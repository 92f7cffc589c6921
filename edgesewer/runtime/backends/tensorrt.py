"""Native TensorRT backend: one engine, one execution context, one CUDA stream.

Written against the API that exists unchanged from TensorRT 8.5 (JetPack 5) to 11.x: name-based
I/O (`num_io_tensors`, `get_tensor_name`, `get_tensor_mode`), `set_input_shape`,
`set_tensor_address` and `execute_async_v3`. Buffers are sized once at start-up from the
optimisation profile's largest shapes: pinned host memory plus device memory per I/O tensor, with
`set_tensor_address` called once per buffer. Nothing is allocated per frame.

CUDA memory and streams come from cuda-python (`cuda.bindings.runtime`, or `cuda.cudart` before
12.x bindings) or pycuda, behind the small `CudaApi` below, never from torch: the runtime stays
torch-free. The GPU-free logic (sidecar and device checks, dtype mapping, profile choice, buffer
sizing) is tested with a stand-in `tensorrt` module and a host-memory `CudaApi`.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from edgesewer.errors import BackendError
from edgesewer.runtime.artifact import Artifact, check_engine_compatible, jetson_module, verified_engine_bytes
from edgesewer.runtime.backends.base import Backend

# TensorRT dtype attribute name -> numpy dtype. bfloat16/fp8/int4 have no numpy type and are refused.
TRT_TO_NUMPY: dict[str, Any] = {
    "float32": np.float32,
    "float16": np.float16,
    "int8": np.int8,
    "uint8": np.uint8,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}


def numpy_dtype(trt: Any, trt_dtype: Any) -> np.dtype:
    """The numpy dtype of a TensorRT tensor dtype; BackendError for types numpy lacks."""
    for name, np_type in TRT_TO_NUMPY.items():
        if hasattr(trt, name) and trt_dtype == getattr(trt, name):
            return np.dtype(np_type)
    raise BackendError(
        f"engine I/O tensor of type {trt_dtype} has no numpy equivalent; export with float32 inputs and outputs"
    )


@dataclass
class BufferPlan:
    """One I/O tensor: its largest shape under the chosen profile and the bytes that needs."""

    name: str
    is_input: bool
    dtype: np.dtype
    max_shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.max_shape)) * self.dtype.itemsize


def io_tensors(trt: Any, engine: Any) -> tuple[list[str], list[str]]:
    """Input and output tensor names, in engine order."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    return inputs, [n for n in names if n not in inputs]


def choose_profile(engine: Any, input_name: str, batch: int) -> int:
    """Index of the first optimisation profile whose batch range holds `batch`."""
    count = int(getattr(engine, "num_optimization_profiles", 1) or 1)
    ranges = []
    for index in range(count):
        low, _opt, high = (tuple(s) for s in engine.get_tensor_profile_shape(input_name, index))
        ranges.append(f"{low[0]}-{high[0]}")
        if low[0] <= batch <= high[0]:
            return index
    raise BackendError(f"no optimisation profile of the engine takes batch {batch} (profiles: {', '.join(ranges)})")


def plan_buffers(trt: Any, engine: Any, context: Any, profile: int, max_batch: int) -> list[BufferPlan]:
    """Set every input to its largest shape (batch = `max_batch`), then read the output shapes.

    The shapes TensorRT reports after `set_input_shape` are exact, so outputs are sized from them
    rather than guessed from the sidecar.
    """
    inputs, outputs = io_tensors(trt, engine)
    plans = []
    for name in inputs:
        shape = tuple(engine.get_tensor_shape(name))
        if any(s < 0 for s in shape):
            high = tuple(engine.get_tensor_profile_shape(name, profile)[2])
            shape = (min(max_batch, high[0]), *high[1:])
            set_input_shape(engine, context, name, shape, profile)
        plans.append(BufferPlan(name, True, numpy_dtype(trt, engine.get_tensor_dtype(name)), shape))
    if hasattr(context, "infer_shapes"):
        unresolved = context.infer_shapes()
        if unresolved:
            raise BackendError(f"TensorRT cannot infer the shapes of {', '.join(unresolved)}")
    for name in outputs:
        shape = tuple(context.get_tensor_shape(name))
        if any(s < 0 for s in shape):
            raise BackendError(f"engine output {name!r} has data-dependent shape {list(shape)}; not supported")
        plans.append(BufferPlan(name, False, numpy_dtype(trt, engine.get_tensor_dtype(name)), shape))
    return plans


def set_input_shape(engine: Any, context: Any, name: str, shape: tuple[int, ...], profile: int) -> None:
    """`context.set_input_shape`, whose False (a shape outside the profile) would otherwise run on stale shapes."""
    if context.set_input_shape(name, tuple(shape)):
        return
    low, _opt, high = (list(s) for s in engine.get_tensor_profile_shape(name, profile))
    raise BackendError(f"input {name!r} shape {list(shape)} is outside the engine's optimisation profile {profile} "
                       f"(min {low}, max {high})")


class CudaApi:
    """What the backend needs from CUDA: device info, a stream, pinned and device memory, async copies."""

    def device_info(self) -> tuple[str, str]:
        raise NotImplementedError

    def create_stream(self) -> Any:
        raise NotImplementedError

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        """Page-locked host memory as a uint8 numpy array (fast, truly asynchronous copies)."""
        raise NotImplementedError

    def alloc_device(self, nbytes: int) -> int:
        raise NotImplementedError

    def copy_to_device(self, device: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        raise NotImplementedError

    def copy_to_host(self, host: np.ndarray, device: int, nbytes: int, stream: Any) -> None:
        raise NotImplementedError

    def synchronize(self, stream: Any) -> None:
        raise NotImplementedError

    def free(self, pinned: list[np.ndarray], device: list[int], stream: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the CUDA context this API made (after every TensorRT object of it is gone)."""

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make the CUDA context current in the calling thread (pycuda needs it; the runtime API does not)."""
        yield


class CudaPythonApi(CudaApi):
    """cuda-python's runtime API (NVIDIA's samples since TensorRT 8.6)."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python, e.g. on JetPack 6.0
        self.rt = cudart
        self._pinned_ptrs: dict[int, int] = {}

    def _call(self, result: Any) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise BackendError(f"CUDA error: {err}")
        return values[0] if len(values) == 1 else values

    def device_info(self) -> tuple[str, str]:
        prop = self._call(self.rt.cudaGetDeviceProperties(0))
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        return name.strip("\x00 "), f"{prop.major}.{prop.minor}"

    def create_stream(self) -> Any:
        return self._call(self.rt.cudaStreamCreate())

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        ptr = int(self._call(self.rt.cudaMallocHost(nbytes)))
        array = np.frombuffer((ctypes.c_uint8 * nbytes).from_address(ptr), dtype=np.uint8)
        self._pinned_ptrs[id(array)] = ptr
        return array

    def alloc_device(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc(nbytes)))

    def copy_to_device(self, device: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(device, host.ctypes.data, nbytes, kind, stream))

    def copy_to_host(self, host: np.ndarray, device: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(host.ctypes.data, device, nbytes, kind, stream))

    def synchronize(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamSynchronize(stream))

    def free(self, pinned: list[np.ndarray], device: list[int], stream: Any) -> None:
        for ptr in device:
            self.rt.cudaFree(ptr)
        for array in pinned:
            self.rt.cudaFreeHost(self._pinned_ptrs.pop(id(array), array.ctypes.data))
        self.rt.cudaStreamDestroy(stream)


class PyCudaApi(CudaApi):
    """pycuda (NVIDIA's samples up to TensorRT 8.5; the usual choice on JetPack 5's Python 3.8)."""

    def __init__(self) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        self.device = cuda.Device(0)
        self.context = self.device.make_context()
        self.context.pop()  # pushed again around every call, from whichever thread infers
        self._allocations: dict[int, Any] = {}

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self.context.push()
        try:
            yield
        finally:
            self.context.pop()

    def device_info(self) -> tuple[str, str]:
        major, minor = self.device.compute_capability()
        return self.device.name(), f"{major}.{minor}"

    def create_stream(self) -> Any:
        return self.cuda.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        return self.cuda.pagelocked_empty(nbytes, np.uint8)

    def alloc_device(self, nbytes: int) -> int:
        allocation = self.cuda.mem_alloc(nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def copy_to_device(self, device: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        self.cuda.memcpy_htod_async(device, host[:nbytes], stream)

    def copy_to_host(self, host: np.ndarray, device: int, nbytes: int, stream: Any) -> None:
        self.cuda.memcpy_dtoh_async(host[:nbytes], device, stream)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def free(self, pinned: list[np.ndarray], device: list[int], stream: Any) -> None:
        for ptr in device:
            allocation = self._allocations.pop(ptr, None)
            if allocation is not None:
                allocation.free()
        for array in pinned:
            base = getattr(array, "base", None)  # pycuda's HostAllocation behind the page-locked array
            if hasattr(base, "free"):
                base.free()

    def close(self) -> None:
        if self.context is not None:
            self.context.detach()
            self.context = None


def load_cuda_api(prefer: str = "auto") -> CudaApi:
    """cuda-python first (current NVIDIA samples), then pycuda; `prefer` forces one of them."""
    order = {"auto": ("cuda-python", "pycuda"), "cuda-python": ("cuda-python",), "pycuda": ("pycuda",)}[prefer]
    for name in order:
        try:
            return CudaPythonApi() if name == "cuda-python" else PyCudaApi()
        except ImportError:
            continue
    raise BackendError("the tensorrt backend needs cuda-python (pip install cuda-python) or pycuda for its buffers")


class TensorRTBackend(Backend):
    """Deserialise an engine checked against its sidecar, allocate everything once, infer per batch."""

    name = "tensorrt"

    def __init__(
        self,
        artifact: Artifact,
        *,
        max_batch: int | None = None,
        cuda: str | CudaApi = "auto",
        trt_module: Any = None,
    ) -> None:
        super().__init__(artifact)
        engine_bytes = verified_engine_bytes(artifact)  # refused before TensorRT or CUDA sees a byte of it
        if trt_module is None:
            try:
                import tensorrt as trt_module
            except ImportError:
                raise BackendError(
                    "TensorRT is not installed (on a Jetson it comes with JetPack: python3-libnvinfer); "
                    "run the .onnx artifact with --backend ort instead"
                ) from None
        self.trt = trt = trt_module
        self._closed = True  # until everything below exists: close() then has nothing to free
        self._in_use = threading.Lock()  # held while a batch runs: close() waits for it, never frees under it
        self.cuda = cuda if isinstance(cuda, CudaApi) else load_cuda_api(cuda)
        try:
            gpu, capability = self.cuda.device_info()
            check_engine_compatible(artifact, str(trt.__version__), gpu, capability, jetson_module())
            self._load(artifact, engine_bytes, max_batch)
        except BaseException:
            self._release()
            raise
        self._closed = False

    def _load(self, artifact: Artifact, engine_bytes: bytes, max_batch: int | None) -> None:
        trt = self.trt
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, int] = {}
        with self.cuda.active():
            self.stream = self.cuda.create_stream()
            logger = trt.Logger(trt.Logger.WARNING)
            # Registers TensorRT's own plugins (e.g. InstanceNormalization_TRT, which the 8.5/8.6 ONNX
            # parser puts into scnet engines): without it such an engine does not deserialise.
            trt.init_libnvinfer_plugins(logger, "")
            self._runtime = trt.Runtime(logger)
            self.engine = self._runtime.deserialize_cuda_engine(engine_bytes)
            if self.engine is None:
                raise BackendError(f"{artifact.model_path}: TensorRT could not deserialise the engine (corrupt file?)")
            self._check_matches_sidecar()
            profile_max = int((artifact.tensorrt or {}).get("profile", {}).get("max", 1))
            self._max_batch = max_batch or profile_max
            self.context = self.engine.create_execution_context()
            self.profile = choose_profile(self.engine, "input", self._max_batch) if self._dynamic else 0
            if self.profile:
                self.context.set_optimization_profile_async(self.profile, self.cuda.stream_handle(self.stream))
                self.cuda.synchronize(self.stream)
            self.plans = plan_buffers(trt, self.engine, self.context, self.profile, self._max_batch)
            self._max_batch = self.plans[0].max_shape[0]
            self.host = {p.name: self.cuda.alloc_pinned(p.nbytes) for p in self.plans}
            self.device = {p.name: self.cuda.alloc_device(p.nbytes) for p in self.plans}
            for plan in self.plans:  # once: the addresses never change
                self.context.set_tensor_address(plan.name, self.device[plan.name])
        self._batch = self._max_batch  # plan_buffers left the input shape at the max batch

    @property
    def _dynamic(self) -> bool:
        return any(s < 0 for s in self.engine.get_tensor_shape("input"))

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def _check_matches_sidecar(self) -> None:
        inputs, outputs = io_tensors(self.trt, self.engine)
        a = self.artifact
        if inputs != ["input"]:
            raise BackendError(f"{a.model_path}: engine inputs are {inputs}, the sidecar expects ['input']")
        missing = [o.name for o in a.outputs if o.name not in outputs]
        if missing:
            raise BackendError(f"{a.sidecar_path}: names output {missing[0]!r}, the engine has {', '.join(outputs)}")

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if len(batch) > self._max_batch:  # larger batches run in profile-sized chunks
            parts = [self.infer(batch[i : i + self._max_batch]) for i in range(0, len(batch), self._max_batch)]
            return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        with self._in_use:
            if self._closed:
                raise BackendError(f"{self.artifact.model_path.name}: the TensorRT backend is closed")
            with self.cuda.active():
                return self._infer_chunk(batch)

    def _infer_chunk(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        n = len(batch)
        if n != self._batch:
            set_input_shape(self.engine, self.context, "input", tuple(batch.shape), self.profile)
            self._batch = n
        results: dict[str, np.ndarray] = {}
        for plan in self.plans:
            if plan.is_input:
                data = np.ascontiguousarray(batch, dtype=plan.dtype)
                self.host[plan.name][: data.nbytes] = data.view(np.uint8).reshape(-1)
                self.cuda.copy_to_device(self.device[plan.name], self.host[plan.name], data.nbytes, self.stream)
        if not self.context.execute_async_v3(self.cuda.stream_handle(self.stream)):
            raise BackendError(f"{self.artifact.model_path.name}: TensorRT execute_async_v3 failed")
        shapes = {}
        for plan in self.plans:
            if not plan.is_input:
                shapes[plan.name] = tuple(self.context.get_tensor_shape(plan.name))
                nbytes = int(np.prod(shapes[plan.name])) * plan.dtype.itemsize
                self.cuda.copy_to_host(self.host[plan.name], self.device[plan.name], nbytes, self.stream)
        self.cuda.synchronize(self.stream)
        for plan in self.plans:
            if not plan.is_input:
                nbytes = int(np.prod(shapes[plan.name])) * plan.dtype.itemsize
                view = self.host[plan.name][:nbytes].view(plan.dtype).reshape(shapes[plan.name])
                results[plan.name] = view.astype(np.float32)  # a copy: the pinned buffer is reused
        return results

    def close(self, wait_s: float = 10.0) -> None:
        """Free buffers and TensorRT objects once no batch is running (waits up to `wait_s` for one).

        A second Ctrl-C can end the run while the inference thread is inside `execute_async_v3`;
        freeing its buffers then would crash the process, so a batch that does not finish in
        time leaves the memory to the process exit instead.
        """
        if not self._in_use.acquire(timeout=wait_s):
            return  # a batch is still running on these buffers: better leaked than freed under it
        try:
            if self._closed:
                return
            self._closed = True
            self._release()
        finally:
            self._in_use.release()

    def _release(self) -> None:
        """Teardown in dependency order: buffers, then context, engine, runtime, and only then the CUDA context."""
        with self.cuda.active():
            if hasattr(self, "stream"):
                self.cuda.free(list(getattr(self, "host", {}).values()), list(getattr(self, "device", {}).values()),
                               self.stream)
            self.host, self.device = {}, {}
            for name in ("context", "engine", "_runtime"):  # TensorRT destructors need the CUDA context current
                if hasattr(self, name):
                    delattr(self, name)
        self.cuda.close()
