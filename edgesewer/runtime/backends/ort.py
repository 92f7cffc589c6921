"""ONNX Runtime backend: CPU by default; CUDA and TensorRT execution providers when installed.

The same artifact (fp32, fp16, Q/DQ int8 or the CPU int8 variant) runs here on any machine, which
is how accuracy is measured without a GPU.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnxruntime as ort

from edgesewer.errors import BackendError
from edgesewer.runtime.artifact import Artifact
from edgesewer.runtime.backends.base import Backend

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
# Preference order for providers="auto": the fastest one present wins, CPU always last.
AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def resolve_providers(providers: str | Sequence[str], available: Sequence[str]) -> list[str]:
    """`"cpu"`, `"auto"` or a comma list such as `"cuda,cpu"` -> ONNX Runtime provider names.

    Raises BackendError naming the missing provider when one asked for by name is not installed.
    """
    if isinstance(providers, str):
        if providers == "auto":
            return [p for p in AUTO_ORDER if p in available]
        providers = [p.strip() for p in providers.split(",") if p.strip()]
    resolved = [PROVIDER_ALIASES.get(p.lower(), p) for p in providers]
    missing = [p for p in resolved if p not in available]
    if missing:
        raise BackendError(
            f"ONNX Runtime provider {missing[0]} is not available here (available: {', '.join(available)}); "
            "install onnxruntime-gpu or use --providers cpu"
        )
    return resolved


class OrtBackend(Backend):
    """One InferenceSession, created at start-up; `infer` feeds the batch by name."""

    name = "ort"

    def __init__(
        self, artifact: Artifact, *, providers: str | Sequence[str] = "cpu", threads: int | None = None
    ) -> None:
        super().__init__(artifact)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT's warnings would scroll the status line away
        if threads:
            options.intra_op_num_threads = threads
        self.providers = resolve_providers(providers, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(artifact.model_path), options, providers=self.providers)
        except Exception as exc:  # ORT raises several unrelated classes (Fail, InvalidGraph, NoSuchFile...)
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendError(f"{artifact.model_path}: ONNX Runtime cannot load it: {first_line}") from None
        self._check_matches_sidecar()
        session_input = self.session.get_inputs()[0]
        self._input_name = session_input.name
        self._input_dtype = _ORT_DTYPES.get(session_input.type, np.float32)

    def _check_matches_sidecar(self) -> None:
        a = self.artifact
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if a.input.name not in inputs:
            raise BackendError(f"{a.sidecar_path}: names input {a.input.name!r}, the model has {', '.join(inputs)}")
        model_shape = inputs[a.input.name].shape
        for axis, (want, have) in enumerate(zip(a.input.shape, model_shape)):
            if want >= 0 and isinstance(have, int) and want != have:
                raise BackendError(
                    f"{a.sidecar_path}: input axis {axis} is {want} in the sidecar but {have} in {a.model_path.name}"
                )
        for spec in a.outputs:
            if spec.name not in outputs:
                raise BackendError(
                    f"{a.sidecar_path}: names output {spec.name!r}, {a.model_path.name} has {', '.join(outputs)}"
                )
            have = outputs[spec.name].shape
            if spec.shape and isinstance(have[-1], int) and spec.shape[-1] >= 0 and have[-1] != spec.shape[-1]:
                raise BackendError(
                    f"{a.sidecar_path}: output {spec.name!r} has {spec.shape[-1]} columns in the sidecar, "
                    f"{have[-1]} in {a.model_path.name}"
                )

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        feed = {self._input_name: np.ascontiguousarray(batch, dtype=self._input_dtype)}
        names = [o.name for o in self.session.get_outputs()]
        results = self.session.run(names, feed)
        return {name: np.asarray(value, dtype=np.float32) for name, value in zip(names, results)}

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
