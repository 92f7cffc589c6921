"""Read and write ONNX files whose weights may live outside the protobuf (models over 2 GB).

Protobuf cannot serialise a message of 2 GiB or more, so NFNet-F6 (435M parameters, 2.9 GB of
tensors) and EfficientNet-L2 (475M) keep their tensors in one file beside the graph,
`<name>.onnx.data` (ONNX's external-data format; ONNX Runtime and TensorRT's `parse_from_file`
read it from the model's folder). Every step of the export reads and writes through here, so a
variant keeps the layout its source had, and an inline file never leaves a stale data file beside it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx
from onnx.external_data_helper import uses_external_data

from edgesewer.export.metadata import data_file_for

# Protobuf's hard limit, less room for the graph's nodes and metadata beside the tensors.
PROTOBUF_LIMIT = (2 << 30) - 1
GRAPH_HEADROOM = 64 << 20


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Initializers and attribute tensors (Constant nodes), subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def has_external_data(path: str | Path) -> bool:
    """Whether the ONNX file at `path` keeps any tensor outside the protobuf (reads the graph only)."""
    return refers_to_external_data(onnx.load(str(path), load_external_data=False))


def refers_to_external_data(model: onnx.ModelProto) -> bool:
    """Whether any tensor of `model`, as loaded without its external data, lives in another file."""
    return any(uses_external_data(t) for t in _tensors(model.graph))


def tensor_bytes(model: onnx.ModelProto) -> int:
    """Serialised size of the model's tensors (what decides whether it fits one protobuf)."""
    return sum(t.ByteSize() for t in _tensors(model.graph))


def needs_external_data(model: onnx.ModelProto) -> bool:
    return tensor_bytes(model) + GRAPH_HEADROOM > PROTOBUF_LIMIT


@contextmanager
def tensor_bytes_set_aside(model: onnx.ModelProto) -> Iterator[None]:
    """Take the tensors' bytes out of `model` for a while, and put them back.

    Shape inference and the checker serialise the model they are given, which fails over 2 GB;
    they need the tensors' types and dimensions only, which stay.
    """
    kept = [(t, t.raw_data) for t in _tensors(model.graph) if t.HasField("raw_data")]
    for tensor, _ in kept:
        tensor.ClearField("raw_data")
    try:
        yield
    finally:
        for tensor, data in kept:
            tensor.raw_data = data


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """The whole model, external tensors read into memory (so it can be saved elsewhere)."""
    return onnx.load(str(path), load_external_data=True)


def save_onnx(model: onnx.ModelProto, path: str | Path, external: bool | None = None) -> bool:
    """Write `model` to `path`, its tensors in `<path>.data` when `external` (None: only when over 2 GB).

    The model must be fully in memory (`load_onnx`); after an external save its tensors point at the
    data file instead (onnx moves them out). Returns whether the data file was written.
    """
    path = Path(path)
    data = data_file_for(path)
    if external is None:
        external = needs_external_data(model)
    # onnx appends tensors to an existing data file: start from nothing, and leave no stale one behind.
    data.unlink(missing_ok=True)
    if not external:
        onnx.save_model(model, str(path))
        return False
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024, convert_attribute=True)
    # onnx creates the data file owner-only; a service user on the robot must read it like the model.
    os.chmod(data, path.stat().st_mode & 0o777)
    return True


def copy_metadata(source: onnx.ModelProto, dst: str | Path) -> None:
    """Give the ONNX file at `dst` the metadata of `source` (tools such as ORT's quantiser drop it)."""
    model = load_onnx(dst)
    del model.metadata_props[:]
    model.metadata_props.extend(source.metadata_props)
    save_onnx(model, dst, external=has_external_data(dst))
