"""INT8 from the cached calibration: a TensorRT-style Q/DQ graph and a CPU-fast ONNX Runtime graph.

`int8` (TensorRT, explicit quantisation; SPEC 6): QuantizeLinear/DequantizeLinear pairs on the
inputs of Conv/ConvTranspose/Gemm/MatMul with int8 activations and weights, symmetric (zero point
0, which TensorRT's parser requires), per-channel weights, float biases (no int32 bias
DequantizeLinear), one dedicated pair per consumer; LayerNorm, Softmax, instance norm and the
final head stay unquantised.

`int8-fp16` (TensorRT 10.12+/11, strongly typed): the same Q/DQ placement in an FP16 graph (Q/DQ
scales in FP16, opset 19; ModelOpt's `high_precision_dtype=fp16`). A strongly typed build runs
every layer in the type the ONNX gives it, so the unquantised layers of the plain `int8` graph
would run in FP32 there and INT8 would lose to FP16; here they are FP16, as in the `fp16` artifact.

`int8-cpu` (ONNX Runtime on x86): the symmetric Q/DQ graph runs *slower* than FP32 on the CPU
(ORT cannot fuse int8-activation Q/DQ around transformer MatMuls), so the CPU artifact is
either dynamic quantisation (int8 weights, activations quantised per call) or static QOperator
with uint8 activations from the same calibration; `auto` times both and keeps the faster.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx.external_data_helper import load_external_data_for_model

from edgesewer.errors import ExportError
from edgesewer.export.calibrate import QUANT_OP_TYPES, Calibration, ort_method
from edgesewer.export.graph import head_nodes, sensitive_nodes
from edgesewer.export.onnx_io import copy_metadata, has_external_data, load_onnx, refers_to_external_data, save_onnx

CPU_MODES = ("auto", "dynamic", "static")
# Dynamic ConvInteger is slower than FP32 Conv in ORT; dynamic quantisation covers the matmuls.
_DYNAMIC_OPS = ("MatMul", "Gemm")


@dataclass
class QuantResult:
    path: Path
    excluded_nodes: list[str]
    mode: str = "qdq"
    timings_ms: dict[str, float] = field(default_factory=dict)  # int8-cpu auto: batch-1 latency per candidate

    @property
    def speedup(self) -> float | None:
        """fp32 / chosen int8 batch-1 latency, when both were timed."""
        if self.mode in self.timings_ms and "fp32" in self.timings_ms:
            return self.timings_ms["fp32"] / self.timings_ms[self.mode]
        return None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mode": self.mode, "excluded_nodes": len(self.excluded_nodes)}
        if self.timings_ms:
            d["timings_ms"] = {k: round(v, 3) for k, v in self.timings_ms.items()}
        return d


def float_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes that must not be quantised: normalisations, softmax and the output heads."""
    return list(dict.fromkeys([*sensitive_nodes(model), *head_nodes(model)]))


def quantize_qdq(src: str | Path, dst: str | Path, calibration: Calibration, weight_qdq_pair: bool = False) -> QuantResult:
    """The TensorRT-ready Q/DQ INT8 ONNX (see module docstring)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    model = _graph_only(src)
    exclude = float_nodes(model)
    _run_quietly(
        quantize_static, str(src), str(dst), calibration_data_reader=None,
        use_external_data_format=refers_to_external_data(model),
        quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANT_OP_TYPES), per_channel=True,
        reduce_range=False, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude, calibrate_method=ort_method(calibration.method),
        calibration_cache_path=str(calibration.cache_path),
        extra_options={
            "ActivationSymmetric": True, "WeightSymmetric": True,
            "QuantizeBias": False,  # TensorRT wants float biases; ORT would write int32 bias DQ nodes
            "DedicatedQDQPair": True, "AddQDQPairToWeight": weight_qdq_pair,
            # Q/DQ on the inputs of the weighted ops only (TensorRT's recommended placement): a
            # quantised MatMul output would feed Softmax an int8 tensor, and TensorRT's fused INT8
            # attention wants Q/DQ before the first matmul and after the softmax, not between.
            "OpTypesToExcludeOutputQuantization": list(QUANT_OP_TYPES),
        },
    )
    copy_metadata(model, dst)
    return QuantResult(Path(dst), exclude, "qdq")


QDQ_FP16_OPSET = 19  # the first opset whose QuantizeLinear/DequantizeLinear take FP16 inputs and scales


def quantize_qdq_fp16(src: str | Path, dst: str | Path, calibration: Calibration,
                      weight_qdq_pair: bool = False) -> QuantResult:
    """`int8-fp16`: the `int8` Q/DQ graph with FP16 unquantised layers (see module docstring).

    The FP32 graph is moved to opset 19 (onnx's version converter), quantised exactly like `int8`
    from the same calibration, then converted to FP16 by the `fp16` converter, which keeps I/O,
    norms, softmax and the head in FP32 and turns the Q/DQ scales into FP16.
    """
    from onnx import version_converter

    from edgesewer.export.fp16 import convert_fp16

    # The converter serialises the model it is given: convert the graph alone, then fetch its weights.
    model = _graph_only(src)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    with tempfile.TemporaryDirectory(prefix="edgesewer-int8fp16-") as tmp:
        upgraded, qdq = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        try:
            moved = version_converter.convert_version(model, QDQ_FP16_OPSET) if opset < QDQ_FP16_OPSET else model
        except Exception as exc:  # noqa: BLE001 - the converter raises bare errors on ops it cannot adapt
            raise ExportError(f"{src}: cannot move the graph from opset {opset} to {QDQ_FP16_OPSET} for int8-fp16 "
                              f"({type(exc).__name__}: {exc})") from None
        load_external_data_for_model(moved, str(Path(src).parent))
        save_onnx(moved, upgraded, refers_to_external_data(model))
        quantized = quantize_qdq(upgraded, qdq, calibration, weight_qdq_pair)
        convert_fp16(qdq, dst)
    return QuantResult(Path(dst), quantized.excluded_nodes, "qdq-fp16")


def quantize_cpu(
    src: str | Path, dst: str | Path, calibration: Calibration | None, mode: str = "auto", timing_runs: int = 20,
) -> QuantResult:
    """The ONNX Runtime CPU INT8 ONNX: dynamic, static QOperator/u8, or whichever is faster (auto)."""
    if mode not in CPU_MODES:
        raise ExportError(f"unknown int8-cpu mode {mode!r}; choose from {', '.join(CPU_MODES)}")
    if mode in ("static", "auto") and calibration is None:
        if mode == "static":
            raise ExportError("static int8-cpu quantisation needs calibration data")
        mode = "dynamic"
    model = _graph_only(src)
    exclude = float_nodes(model)
    if mode != "auto":
        _quantize_cpu_variant(mode, src, dst, calibration, exclude)
        copy_metadata(model, dst)
        return QuantResult(Path(dst), exclude, mode)
    with tempfile.TemporaryDirectory(prefix="edgesewer-int8cpu-") as tmp:
        timings: dict[str, float] = {}
        for candidate in ("dynamic", "static"):
            path = Path(tmp) / f"{candidate}.onnx"
            _quantize_cpu_variant(candidate, src, path, calibration, exclude)
            timings[candidate] = batch1_latency_ms(path, runs=timing_runs)
        best = min(timings, key=timings.get)
        chosen = load_onnx(Path(tmp) / f"{best}.onnx")
        del chosen.metadata_props[:]
        chosen.metadata_props.extend(model.metadata_props)
        # Saved again rather than copied: an external-data file is named after its model.
        save_onnx(chosen, dst, has_external_data(Path(tmp) / f"{best}.onnx"))
        timings["fp32"] = batch1_latency_ms(src, runs=timing_runs)  # reported, so a slower int8 is visible
    return QuantResult(Path(dst), exclude, best, timings)


def _quantize_cpu_variant(mode: str, src: str | Path, dst: str | Path, calibration: Calibration | None,
                          exclude: Sequence[str]) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    if mode == "dynamic":
        _run_quietly(quantize_dynamic, str(src), str(dst), use_external_data_format=has_external_data(src),
                     op_types_to_quantize=list(_DYNAMIC_OPS),
                     per_channel=False, reduce_range=False, weight_type=QuantType.QInt8,
                     nodes_to_exclude=list(exclude))
        return
    assert calibration is not None
    # u8 activations x s8 weights is the VNNI/AVX2 fast path of ORT's QLinear kernels.
    _run_quietly(quantize_static, str(src), str(dst), calibration_data_reader=None,
                 use_external_data_format=has_external_data(src), quant_format=QuantFormat.QOperator,
                 op_types_to_quantize=list(QUANT_OP_TYPES),
                 per_channel=True, reduce_range=False, activation_type=QuantType.QUInt8,
                 weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude),
                 calibrate_method=ort_method(calibration.method),
                 calibration_cache_path=str(calibration.cache_path))


def batch1_latency_ms(path: str | Path, runs: int = 20, warmup: int = 3, threads: int = 0) -> float:
    """Median batch-1 latency of an ONNX file in ONNX Runtime on the CPU (random input)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in spec.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(warmup):
        session.run(None, {spec.name: x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {spec.name: x})
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def _run_quietly(fn, *args, **kwargs) -> None:
    # ORT's quantiser logs "consider pre-processing" warnings at WARNING level on every call.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        fn(*args, **kwargs)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ExportError(f"quantisation of {args[0]} failed: {type(exc).__name__}: {exc}") from None
    finally:
        root.setLevel(level)


def _graph_only(path: str | Path) -> onnx.ModelProto:
    """The graph without its weights: enough to choose the nodes to exclude, and small for any model."""
    return onnx.load(str(path), load_external_data=False)
