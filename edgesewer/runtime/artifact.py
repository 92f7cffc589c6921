"""Load and check a deployable artifact: a model file plus its sidecar JSON.

`<out>/<model>.<precision>.onnx` + `<model>.<precision>.json`, or `<model>.<precision>.engine` +
`<model>.<precision>.engine.json`. Either path may be given; the other is found next to it. The
sidecar is the only thing the runtime needs besides the model file: classes, thresholds, input
size and normalisation, and for engines the TensorRT version and GPU they were built for.
Everything here is plain JSON + hashlib, so it loads on a torch-free Jetson.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesewer.errors import BackendError
from edgesewer.modelcfg import ModelCfg
from edgesewer.precisions import PRECISIONS

SIDECAR_FORMAT_VERSION = 1
TASKS = ("classify", "segment", "video", "zeroshot")
REQUIRED_FIELDS = ("format_version", "model", "task", "precision", "file", "model_cfg", "inputs", "outputs")
# Which output a task must have, by the name the export contract gives it.
TASK_OUTPUT = {"classify": "logits", "video": "logits", "zeroshot": "logits", "segment": "prob"}


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (-1 for a dynamic axis), dtype and, for outputs, what the values mean."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    kind: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        shape = tuple(int(s) if isinstance(s, int) or str(s).lstrip("-").isdigit() else -1 for s in d["shape"])
        return cls(str(d["name"]), shape, str(d.get("dtype", "float32")), str(d.get("kind", "")))


@dataclass
class Artifact:
    """A loaded, validated artifact (model file path + parsed sidecar)."""

    model_path: Path
    sidecar_path: Path
    format: str  # "onnx" | "engine"
    meta: dict[str, Any]
    cfg: ModelCfg
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @property
    def name(self) -> str:
        return str(self.meta["model"])

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def precision(self) -> str:
        return str(self.meta["precision"])

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.cfg.classes)

    @property
    def thresholds(self) -> np.ndarray:
        """Per-class decision thresholds tuned at export time (0.5 where none were tuned)."""
        if self.cfg.thresholds is None:
            return np.full(len(self.classes), 0.5, dtype=np.float32)
        return np.asarray(self.cfg.thresholds, dtype=np.float32)

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    def output(self, name: str) -> TensorSpec | None:
        return next((o for o in self.outputs if o.name == name), None)

    @property
    def tensorrt(self) -> dict[str, Any] | None:
        return self.meta.get("tensorrt")

    def learning_warning(self) -> str | None:
        """A warning when the training run's validation says this classifier has not learned.

        The checkpoint records val mAP beside the mAP of a constant predictor (the class prevalence);
        within 1.5x of it, the scores carry no information and every detection is noise.
        """
        if self.meta.get("random_weights"):
            return f"{self.model_path.name}: random weights; its detections are noise"
        record = self.cfg.extra.get("validation") or {}
        got, chance = record.get("mAP"), record.get("chance_mAP")
        if got is None or not chance or got > CHANCE_FACTOR * chance:
            return None
        return (f"{self.model_path.name} has not learned: validation mAP {got:.3f} against {chance:.3f} for a "
                f"constant predictor ({record.get('images')} {record.get('split', 'val')} images); "
                "its detections are noise")

    def describe(self) -> str:
        """One line for the console: what is about to run."""
        weights = " (RANDOM WEIGHTS: numbers are meaningless)" if self.meta.get("random_weights") else ""
        return f"{self.name} {self.task} {self.precision} [{self.model_path.name}]{weights}"


# Within this factor of a constant predictor's mAP a classifier is at chance level.
CHANCE_FACTOR = 1.5


def sidecar_path_for(model_path: Path) -> Path:
    """`x.onnx` -> `x.json`; `x.engine` -> `x.engine.json`."""
    if model_path.suffix == ".engine":
        return model_path.with_name(model_path.name + ".json")
    return model_path.with_suffix(".json")


def _paths_from(path: Path) -> tuple[Path, Path]:
    if path.suffix == ".json":
        sidecar = path
        stem = path.name[: -len(".json")]
        model = path.with_name(stem if stem.endswith(".engine") else stem + ".onnx")
        return model, sidecar
    if path.suffix in (".onnx", ".engine"):
        return path, sidecar_path_for(path)
    raise BackendError(
        f"{path}: not an artifact; give the .onnx or .engine file (or its .json sidecar) from `edgesewer export`"
    )


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_sidecar(sidecar: Path) -> dict[str, Any]:
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BackendError(f"{sidecar}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(meta, dict):
        raise BackendError(f"{sidecar}: expected a JSON object")
    for key in REQUIRED_FIELDS:
        if key not in meta:
            raise BackendError(f"{sidecar}: missing field {key!r}; re-export the model")
    version = meta["format_version"]
    if not isinstance(version, int) or version > SIDECAR_FORMAT_VERSION:
        raise BackendError(
            f"{sidecar}: sidecar format_version {version!r} is newer than this runtime reads "
            f"({SIDECAR_FORMAT_VERSION}); upgrade edgesewer on this device"
        )
    return meta


def load_artifact(path: str | Path, *, check_hash: bool = True) -> Artifact:
    """Find the model/sidecar pair, parse the sidecar and check that the two belong together."""
    model_path, sidecar = _paths_from(Path(path))
    if not Path(path).exists():
        raise BackendError(f"{path}: no such artifact (export one with `edgesewer export`)")
    if not sidecar.exists():
        raise BackendError(
            f"{model_path}: sidecar {sidecar.name} not found next to it; the runtime needs it "
            "(classes, thresholds, preprocessing): copy it along or re-export"
        )
    meta = _read_sidecar(sidecar)
    if meta["file"] != model_path.name:
        # The sidecar names its model; trust it over our guess when only the sidecar was given.
        named = sidecar.with_name(str(meta["file"]))
        if Path(path) == sidecar and named.exists():
            model_path = named
        else:
            raise BackendError(f"{sidecar}: describes {meta['file']}, not {model_path.name}; the files were mixed up")
    if not model_path.exists():
        raise BackendError(f"{sidecar}: its model file {model_path.name} is missing")
    fmt = "engine" if model_path.suffix == ".engine" else "onnx"
    if check_hash and fmt == "engine":
        _check_engine_hash(model_path, sidecar, meta, file_sha256(model_path))
    elif check_hash and meta.get("file_sha256"):
        _check_hash(model_path, meta, file_sha256(model_path))
        check_external_data(model_path, sidecar, meta)
    try:
        cfg = ModelCfg.from_dict(meta["model_cfg"])
        inputs = [TensorSpec.from_dict(d) for d in meta["inputs"]]
        outputs = [TensorSpec.from_dict(d) for d in meta["outputs"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendError(f"{sidecar}: malformed model_cfg/inputs/outputs ({exc})") from None
    artifact = Artifact(model_path, sidecar, fmt, meta, cfg, inputs, outputs)
    _check_consistent(artifact)
    return artifact


def _check_hash(model_path: Path, meta: dict[str, Any], actual: str) -> None:
    if actual != meta["file_sha256"]:
        raise BackendError(
            f"{model_path}: does not match its sidecar (sha256 {actual[:12]} != {str(meta['file_sha256'])[:12]}); "
            "the model was replaced or re-exported without its sidecar"
        )


def check_external_data(model_path: Path, sidecar: Path, meta: dict[str, Any]) -> None:
    """A model over 2 GB keeps its tensors in one file beside it: it must be there and be the exported one.

    ONNX Runtime and TensorRT read that file by the name inside the (hashed) .onnx, so checking the
    name the sidecar gives and its hash covers every byte the model computes with.
    """
    entry = meta.get("external_data")
    if not entry:
        return
    name = str(entry.get("file") or "") if isinstance(entry, dict) else ""
    if not name or Path(name).name != name:
        raise BackendError(f"{sidecar}: external_data names {name!r}, not a file beside {model_path.name}")
    data = model_path.with_name(name)
    if not data.is_file():
        raise BackendError(f"{model_path}: its tensors file {name} is missing; copy it along with the model "
                           "(models over 2 GB keep their weights there)")
    actual = file_sha256(data)
    if actual != entry.get("sha256"):
        expected = str(entry.get("sha256"))[:12]
        raise BackendError(f"{data}: does not match the sidecar (sha256 {actual[:12]} != {expected}); "
                           "the weights were replaced or come from another export")


def _check_engine_hash(model_path: Path, sidecar: Path, meta: dict[str, Any], actual: str) -> None:
    # An engine is native code that TensorRT runs as it finds it: only the exact file the sidecar describes loads.
    if not meta.get("file_sha256"):
        raise BackendError(
            f"{sidecar}: has no file_sha256 for {model_path.name}; an engine loads only with the hash of the file "
            "that was built: rebuild it on this device (edgesewer build)"
        )
    _check_hash(model_path, meta, actual)


def verified_engine_bytes(artifact: Artifact) -> bytes:
    """The engine file's bytes, checked against the sidecar's sha256: what the backend deserialises.

    Hashing the very bytes that are handed to TensorRT leaves no window for the file to change between
    the check and the load.
    """
    data = artifact.model_path.read_bytes()
    _check_engine_hash(artifact.model_path, artifact.sidecar_path, artifact.meta, hashlib.sha256(data).hexdigest())
    return data


def _check_consistent(a: Artifact) -> None:
    where = a.sidecar_path
    if a.task not in TASKS:
        raise BackendError(f"{where}: unknown task {a.task!r}; expected one of {', '.join(TASKS)}")
    if a.precision not in PRECISIONS:
        raise BackendError(f"{where}: unknown precision {a.precision!r}; expected one of {', '.join(PRECISIONS)}")
    if a.format == "engine" and not a.tensorrt:
        raise BackendError(f"{where}: an engine sidecar must say which TensorRT version and GPU built it")
    if not a.inputs or a.inputs[0].name != "input":
        raise BackendError(f"{where}: the first input must be named 'input'")
    shape = a.inputs[0].shape
    # Frame-stack video models (Video Swin) take [B, T, C, S, S]; every other model [B, C, S, S].
    stack = a.cfg.extra.get("input_layout") == "BTCHW"
    t = 1 if stack else 0  # the time axis shifts the others by one
    if (
        len(shape) != 4 + t
        or (stack and shape[1] not in (-1, int(a.cfg.extra.get("frames") or -1)))
        or shape[1 + t] not in (-1, a.cfg.in_chans)
        or any(s not in (-1, a.cfg.input_size) for s in shape[2 + t:])
    ):
        layout = f"frames {a.cfg.extra.get('frames')}, " if stack else ""
        raise BackendError(
            f"{where}: input shape {list(shape)} does not fit model_cfg "
            f"({layout}in_chans {a.cfg.in_chans}, input_size {a.cfg.input_size})"
        )
    wanted = TASK_OUTPUT[a.task]
    out = a.output(wanted)
    if out is None:
        raise BackendError(f"{where}: a {a.task} model must have an output named {wanted!r}")
    if wanted == "logits":
        if out.shape[-1] not in (-1, len(a.classes)):
            raise BackendError(
                f"{where}: logits have {out.shape[-1]} columns but model_cfg lists {len(a.classes)} classes"
            )
        if a.cfg.thresholds is not None and len(a.cfg.thresholds) != len(a.classes):
            raise BackendError(f"{where}: {len(a.cfg.thresholds)} thresholds for {len(a.classes)} classes")


def _version_key(version: str | None) -> tuple[int, ...]:
    # "10.3.0.30" and "10.3.0" are one release; engines are tied to major.minor.patch.
    parts = []
    for piece in str(version or "").split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else -1)
    return tuple(parts)


DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


def jetson_module(model_file: Path | None = None) -> str | None:
    """The Jetson module this runs on ("NVIDIA Jetson AGX Orin Developer Kit"), None off a Jetson.

    AGX Orin and Orin Nano both report sm 8.7 with the same GPU name, but have different SM counts
    and memory, so the module is what tells their engines apart.
    """
    try:
        text = (model_file or DEVICE_TREE_MODEL).read_text(errors="replace")
    except OSError:
        return None
    return text.strip("\x00 \n") or None


def check_engine_compatible(
    artifact: Artifact, trt_version: str, gpu_name: str, compute_capability: str, module: str | None = None
) -> None:
    """Refuse an engine built by another TensorRT release, on another GPU or another Jetson module, in one line."""
    info = artifact.tensorrt or {}
    built_version = str(info.get("version", "?"))
    built_gpu = str(info.get("gpu", "?"))
    built_cc = str(info.get("compute_capability", "?"))
    rebuild = "rebuild it on this device from the ONNX (edgesewer build)"
    if _version_key(built_version) != _version_key(trt_version):
        raise BackendError(
            f"{artifact.model_path}: built with TensorRT {built_version}, this device has TensorRT {trt_version}; "
            f"engines only load in the release that built them: {rebuild}"
        )
    if built_cc != str(compute_capability) or " ".join(built_gpu.lower().split()) != " ".join(gpu_name.lower().split()):
        raise BackendError(
            f"{artifact.model_path}: built for {built_gpu} (sm {built_cc}), this device is {gpu_name} "
            f"(sm {compute_capability}); engines are tuned per GPU: {rebuild}"
        )
    built_module = info.get("module")
    if built_module and module and " ".join(str(built_module).split()) != " ".join(module.split()):
        raise BackendError(
            f"{artifact.model_path}: built on {built_module}, this device is {module} (same sm {built_cc}, "
            f"other SM count and memory); engines are tuned per module: {rebuild}"
        )
