"""The sidecar JSON that travels with every deployable artifact.

`<stem>.onnx` + `<stem>.json`, or `<stem>.engine` + `<stem>.engine.json`. Export writes it, the
runtime (`edgesewer.runtime.artifact`) reads it; both sides are torch-free, so this module imports
only the standard library.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edgesewer import __version__
from edgesewer.errors import DataError
from edgesewer.precisions import PRECISIONS  # noqa: F401  (re-exported: part of the sidecar contract)

FORMAT_VERSION = 1
TARGETS = ("ort-cpu", "tensorrt")
# Keys every sidecar carries; readers may rely on them being present (null where not applicable).
REQUIRED_KEYS = (
    "format_version", "edgesewer_version", "created", "model", "task", "precision", "target", "file",
    "file_sha256", "onnx_sha256", "opset", "model_cfg", "inputs", "outputs", "weights", "random_weights",
    "calibration", "parity", "accuracy", "tensorrt",
)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (engines and ONNX files can be hundreds of MB)."""
    digest = hashlib.sha256()
    _digest_file(digest, path, chunk)
    return digest.hexdigest()


def _digest_file(digest, path: str | Path, chunk: int = 1 << 20) -> None:
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)


def data_file_for(model_file: str | Path) -> Path:
    """`x.onnx` -> `x.onnx.data`: where a model over 2 GB keeps its tensors (ONNX external data)."""
    path = Path(model_file)
    return path.with_name(path.name + ".data")


def model_bytes(model_file: str | Path) -> int:
    """Size of a model on disk, its external-data file included."""
    data = data_file_for(model_file)
    return Path(model_file).stat().st_size + (data.stat().st_size if data.is_file() else 0)


def sha256_model(model_file: str | Path) -> str:
    """SHA-256 of an ONNX model and, when it has one, its external-data file: what the model computes."""
    digest = hashlib.sha256()
    _digest_file(digest, model_file)
    if data_file_for(model_file).is_file():
        _digest_file(digest, data_file_for(model_file))
    return digest.hexdigest()


def external_data_entry(model_file: str | Path) -> dict[str, str] | None:
    """The sidecar's record of the external-data file (name and hash), None when the model has none."""
    data = data_file_for(model_file)
    return {"file": data.name, "sha256": sha256_file(data)} if data.is_file() else None


def artifact_stem(model: str, precision: str) -> str:
    """`vit-t` + `int8` -> `vit-t.int8` (the shared stem of model file and sidecar)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    return f"{model}.{precision}"


def sidecar_path_for(model_file: str | Path) -> Path:
    """`x.onnx` -> `x.json`; `x.engine` -> `x.engine.json` (engines keep their suffix so both can coexist)."""
    path = Path(model_file)
    if path.suffix == ".engine":
        return path.with_name(path.name + ".json")
    return path.with_suffix(".json")


def model_file_for(sidecar: str | Path) -> Path:
    """Inverse of `sidecar_path_for`."""
    path = Path(sidecar)
    if path.name.endswith(".engine.json"):
        return path.with_name(path.name[: -len(".json")])
    return path.with_suffix(".onnx")


def build_sidecar(
    *,
    model: str,
    task: str,
    precision: str,
    target: str,
    model_file: str | Path,
    onnx_sha256: str,
    opset: int,
    model_cfg: dict[str, Any],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    weights: str,
    calibration: dict[str, Any] | None = None,
    parity: dict[str, Any] | None = None,
    accuracy: dict[str, Any] | None = None,
    tensorrt: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the sidecar dict for `model_file` (which must exist: its hash goes in)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}")
    model_file = Path(model_file)
    sidecar: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "edgesewer_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "task": task,
        "precision": precision,
        "target": target,
        "file": model_file.name,
        "file_sha256": sha256_file(model_file),
        "external_data": external_data_entry(model_file) if model_file.suffix == ".onnx" else None,
        "onnx_sha256": onnx_sha256,
        "opset": int(opset),
        "model_cfg": model_cfg,
        "inputs": inputs,
        "outputs": outputs,
        "weights": str(weights),
        "random_weights": str(weights) == "random",
        "calibration": calibration,
        "parity": parity,
        "accuracy": accuracy,
        "tensorrt": tensorrt,
    }
    if extra:
        sidecar.update({k: v for k, v in extra.items() if k not in sidecar})
    return sidecar


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> Path:
    """Write JSON through a temp file + rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; sidecars are copied to devices and read by services
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_sidecar(model_file: str | Path, sidecar: dict[str, Any]) -> Path:
    """Write `sidecar` next to `model_file`; returns the sidecar path."""
    missing = [k for k in REQUIRED_KEYS if k not in sidecar]
    if missing:
        raise ValueError(f"sidecar lacks {missing}")
    return write_json_atomic(sidecar_path_for(model_file), sidecar)


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Read a sidecar given either the model file or the sidecar itself; DataError when unusable."""
    path = Path(path)
    sidecar = path if path.suffix == ".json" else sidecar_path_for(path)
    if not sidecar.is_file():
        raise DataError(f"{sidecar}: sidecar JSON not found (re-run `edgesewer export`)")
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{sidecar}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{sidecar}: expected a JSON object")
    if data.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{sidecar}: format_version {data.get('format_version')!r}, this edgesewer reads {FORMAT_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise DataError(f"{sidecar}: missing keys {', '.join(missing)}")
    return data
