"""Inference backends behind one interface, picked by name or by the artifact's file type.

Backend modules are imported only when chosen, so a machine without TensorRT never imports it.
"""

from __future__ import annotations

import importlib

from edgesewer.errors import BackendError
from edgesewer.runtime.artifact import Artifact
from edgesewer.runtime.backends.base import Backend

# name -> "module:class"; the module is imported on first use.
BACKENDS: dict[str, str] = {
    "ort": "edgesewer.runtime.backends.ort:OrtBackend",
    "tensorrt": "edgesewer.runtime.backends.tensorrt:TensorRTBackend",
}
DEFAULT_FOR_FORMAT = {"onnx": "ort", "engine": "tensorrt"}


def load_backend(artifact: Artifact, backend: str | None = None, **options) -> Backend:
    """Open `artifact` with the named backend, or the natural one for its file type."""
    name = backend or DEFAULT_FOR_FORMAT[artifact.format]
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if (name == "ort") != (artifact.format == "onnx"):
        raise BackendError(
            f"{artifact.model_path.name}: the {name} backend cannot run a .{artifact.format} file "
            f"(ort runs .onnx, tensorrt runs .engine)"
        )
    module_name, cls_name = BACKENDS[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(artifact, **options)


__all__ = ["BACKENDS", "Backend", "load_backend"]
