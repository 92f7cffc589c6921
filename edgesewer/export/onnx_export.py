"""PyTorch -> ONNX with the artifact contract's names: input "input", outputs "logits" / "prob" / "cam".

TorchScript-based exporter (`dynamo=False`): the dynamo exporter became torch's default in 2.9
and still has open accuracy bugs on attention models. Only the batch axis is dynamic; H and W stay
fixed so TensorRT picks simple kernels.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from edgesewer.errors import ExportError
from edgesewer.export.onnx_io import load_onnx, save_onnx
from edgesewer.modelcfg import ModelCfg

INPUT_NAME = "input"
# Ops TensorRT's ONNX parser rejects in every release we target (SPEC 5.3 / reference 4.6).
UNPARSEABLE_OPS = {"MaxUnpool": "MaxUnpool has no TensorRT importer; unpool with standard ops (models/unpool.py)"}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output as the sidecar lists it (-1 = dynamic batch)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    kind: str | None = None  # outputs: "logits" | "prob" | "cam"

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.kind:
            d["kind"] = self.kind
        return d


class ExportWrapper(nn.Module):
    """Normalise a model's forward output to the contract's ordered tuple of named outputs.

    Classifiers return a tensor of logits (or a dict/tuple whose first entry is the logits and
    an optional 4-D class-activation map); the segmenter returns probabilities in eval mode (a
    training-style dict with "fused" logits is turned into probabilities here).
    """

    def __init__(self, model: nn.Module, cfg: ModelCfg) -> None:
        super().__init__()
        self.model = model
        self.task = cfg.task
        # MA-Q2L returns its class-activation map only when asked (cfg.extra["outputs_cam"]).
        self.with_cam = bool(cfg.extra.get("outputs_cam"))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x, return_cam=True) if self.with_cam else self.model(x)
        if self.task == "segment":
            if isinstance(out, dict):
                out = out["prob"] if "prob" in out else torch.sigmoid(out["fused"])
            elif isinstance(out, (tuple, list)):
                out = out[0]
            return (out,)
        if isinstance(out, dict):
            main = out["logits"]
            return (main, out["cam"]) if "cam" in out else (main,)
        if isinstance(out, (tuple, list)):
            extra = [t for t in out[1:] if isinstance(t, torch.Tensor) and t.ndim == 4]
            return (out[0], extra[0]) if extra else (out[0],)
        return (out,)


def output_names(task: str, n_outputs: int) -> list[tuple[str, str]]:
    """(name, kind) of each output in the wrapper's order."""
    if task == "segment":
        return [("prob", "prob")]
    return [("logits", "logits"), ("cam", "cam")][:n_outputs]


def example_input(cfg: ModelCfg, batch: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *cfg.input_shape, generator=generator)


@dataclass
class OnnxExport:
    path: Path
    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    external_data: bool = False  # the tensors are in `<path>.data` (onnx_io)


def export_onnx(model: nn.Module, cfg: ModelCfg, path: str | Path, opset: int = 17, batch: int = 1,
                external_data: bool | None = None) -> OnnxExport:
    """Export `model` (eval mode) to `path`; check the graph and lint for ops TensorRT cannot parse.

    `external_data`: tensors in `<path>.data` (True), inline (False) or only when the graph passes
    protobuf's 2 GB limit (None), as NFNet-F6 and EfficientNet-L2 do.

    Raises:
        ExportError: the exporter failed, or the graph holds an op no target can parse.
    """
    path = Path(path)
    wrapper = ExportWrapper(model, cfg).eval()
    dummy = example_input(cfg, batch)
    with torch.no_grad():
        sample = wrapper(dummy)
    names = output_names(cfg.task, len(sample))
    dynamic = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name, _ in names}}
    # Over 2 GB torch writes one file per tensor beside its output: give it a folder of its own.
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.torch-", dir=path.parent))
    try:
        _torch_export(wrapper, dummy, scratch / "model.onnx", cfg, opset, names, dynamic)
        graph = load_onnx(scratch / "model.onnx")
        lint_for_tensorrt(graph, cfg.name)
        _embed_metadata(graph, cfg)
        external = save_onnx(graph, path, external_data)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    del graph
    onnx.checker.check_model(str(path))  # by path: the checker then reads external data too
    inputs = [TensorSpec(INPUT_NAME, (-1, *cfg.input_shape))]
    outputs = [TensorSpec(name, (-1, *t.shape[1:]), kind=kind) for (name, kind), t in zip(names, sample)]
    return OnnxExport(path=path, opset=opset, inputs=inputs, outputs=outputs, external_data=external)


def _torch_export(wrapper: nn.Module, dummy: torch.Tensor, path: Path, cfg: ModelCfg, opset: int,
                  names: list[tuple[str, str]], dynamic: dict[str, dict[int, str]]) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python branches
            torch.onnx.export(
                wrapper,
                (dummy,),
                str(path),
                dynamo=False,
                opset_version=opset,
                do_constant_folding=True,
                input_names=[INPUT_NAME],
                output_names=[name for name, _ in names],
                dynamic_axes=dynamic,
            )
    except Exception as exc:  # noqa: BLE001 - any exporter failure is reported as one line
        raise ExportError(f"ONNX export of {cfg.name} at opset {opset} failed: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def lint_for_tensorrt(graph: onnx.ModelProto, model_name: str) -> None:
    """Refuse graphs TensorRT cannot parse: MaxUnpool, and MaxPool that also returns indices."""
    for node in graph.graph.node:
        if node.op_type in UNPARSEABLE_OPS:
            raise ExportError(f"{model_name}: node {node.name} ({node.op_type}): {UNPARSEABLE_OPS[node.op_type]}")
        if node.op_type == "MaxPool" and len([o for o in node.output if o]) > 1:
            raise ExportError(f"{model_name}: node {node.name} is MaxPool with indices, which TensorRT cannot parse; "
                              "pool without return_indices and unpool with a switch mask")


def _embed_metadata(graph: onnx.ModelProto, cfg: ModelCfg) -> None:
    # The ONNX file stays self-describing even if it is separated from its sidecar.
    del graph.metadata_props[:]
    entry = graph.metadata_props.add()
    entry.key, entry.value = "edgesewer.model_cfg", json.dumps(cfg.to_dict(), sort_keys=True)
