"""Export target profiles: `export/<target>.yaml` says what a deployment device can parse and run.

A profile fixes the opset range the device's ONNX parser accepts, the TensorRT generation it
ships, the optimisation-profile batch sizes, the workspace limit and the INT8 recipe. Profiles
are looked up by name (`jetson-orin-nano`) or by path (`export/jetson-orin-nano.yaml`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgesewer.errors import DataError, ExportError
from edgesewer.export.metadata import PRECISIONS

# Per-channel QuantizeLinear/DequantizeLinear (axis attribute) exist from opset 13.
MIN_OPSET = 13
REPO_PROFILE_DIR = Path(__file__).resolve().parents[2] / "export"
_KNOWN_KEYS = {
    "name", "description", "target", "tensorrt", "opset", "max_opset", "precision", "batch",
    "workspace_gib", "strongly_typed", "int8", "jetson", "cpu_int8",
}
_INT8_KEYS = {"method", "images", "weight_qdq_pair"}
_CALIB_METHODS = ("entropy", "percentile", "minmax")


@dataclass(frozen=True)
class BatchProfile:
    """TensorRT optimisation profile along the batch axis (min <= opt <= max)."""

    min: int = 1
    opt: int = 1
    max: int = 8

    def as_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}


@dataclass(frozen=True)
class Int8Recipe:
    method: str = "entropy"
    images: int = 512
    weight_qdq_pair: bool = False  # float weights + Q/DQ pair (TensorRT 8.x) instead of int8 weights + DQ


@dataclass(frozen=True)
class TargetProfile:
    """One deployment target; see the YAML files in `export/` for commented examples."""

    name: str
    target: str  # "tensorrt" | "ort-cpu"
    opset: int = 17
    max_opset: int = 20
    description: str = ""
    tensorrt: str | None = None  # TensorRT generation the device ships, e.g. "8.5", "10.3"
    precision: str = "fp32"
    batch: BatchProfile = field(default_factory=BatchProfile)
    workspace_gib: float = 2.0
    strongly_typed: str = "auto"  # "auto" | "true" | "false"
    int8: Int8Recipe = field(default_factory=Int8Recipe)
    cpu_int8: str = "auto"  # "auto" | "dynamic" | "static"
    jetson: dict[str, str] | None = None
    source: str = ""  # file the profile came from

    def check_opset(self, opset: int) -> int:
        """Return `opset` if this target can parse it; ExportError naming the limit otherwise."""
        if opset < MIN_OPSET:
            raise ExportError(f"opset {opset} is too old: per-channel INT8 Q/DQ needs opset >= {MIN_OPSET}")
        if opset > self.max_opset:
            trt = f" (TensorRT {self.tensorrt})" if self.tensorrt else ""
            raise ExportError(
                f"opset {opset} cannot be parsed by target profile {self.name}{trt}: it accepts opset "
                f"{MIN_OPSET}-{self.max_opset}; use --opset {self.max_opset} or leave --opset out ({self.source})"
            )
        return opset


def profile_dirs() -> list[Path]:
    """Where named profiles live: the installed `edgesewer.profiles` package, then the repo's export/."""
    dirs: list[Path] = []
    try:
        from importlib.resources import files

        dirs.append(Path(str(files("edgesewer.profiles"))))
    except (ModuleNotFoundError, TypeError):
        pass  # running from a source checkout without an install
    dirs.append(REPO_PROFILE_DIR)
    return dirs


def available_profiles() -> list[str]:
    names = {p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def resolve_profile_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.parent != Path("."):
        if not path.is_file():
            raise DataError(f"{path}: target profile not found (known: {', '.join(available_profiles())})")
        return path
    for d in profile_dirs():
        candidate = d / f"{path.name}.yaml"
        if candidate.is_file():
            return candidate
    raise DataError(f"unknown target profile {str(name_or_path)!r} (known: {', '.join(available_profiles())})")


def load_profile(name_or_path: str | Path) -> TargetProfile:
    """Load and validate a profile; DataError names the file and the offending key."""
    path = resolve_profile_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: cannot read target profile ({' '.join(str(exc).split())})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: a target profile is a YAML mapping")
    return _profile_from_dict(raw, path)


def _profile_from_dict(raw: dict[str, Any], path: Path) -> TargetProfile:
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        raise DataError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KNOWN_KEYS))})")
    target = raw.get("target")
    if target not in ("tensorrt", "ort-cpu"):
        raise DataError(f"{path}: target must be tensorrt or ort-cpu, got {target!r}")
    opset, max_opset = int(raw.get("opset", 17)), int(raw.get("max_opset", 20))
    if not MIN_OPSET <= opset <= max_opset:
        raise DataError(f"{path}: opset {opset} outside {MIN_OPSET}..max_opset {max_opset}")
    batch_raw = raw.get("batch") or {}
    batch = BatchProfile(**{k: int(batch_raw[k]) for k in ("min", "opt", "max") if k in batch_raw})
    if not 1 <= batch.min <= batch.opt <= batch.max:
        raise DataError(f"{path}: batch needs 1 <= min <= opt <= max, got {batch.as_dict()}")
    int8_raw = raw.get("int8") or {}
    if set(int8_raw) - _INT8_KEYS:
        raise DataError(f"{path}: unknown int8 key {sorted(set(int8_raw) - _INT8_KEYS)[0]!r}")
    int8 = Int8Recipe(
        method=str(int8_raw.get("method", "entropy")),
        images=int(int8_raw.get("images", 512)),
        weight_qdq_pair=bool(int8_raw.get("weight_qdq_pair", False)),
    )
    if int8.method not in _CALIB_METHODS:
        raise DataError(f"{path}: int8.method must be one of {', '.join(_CALIB_METHODS)}, got {int8.method!r}")
    strongly = str(raw.get("strongly_typed", "auto")).lower()
    if strongly not in ("auto", "true", "false"):
        raise DataError(f"{path}: strongly_typed must be auto, true or false")
    cpu_int8 = str(raw.get("cpu_int8", "auto"))
    if cpu_int8 not in ("auto", "dynamic", "static"):
        raise DataError(f"{path}: cpu_int8 must be auto, dynamic or static")
    precision = str(raw.get("precision", "fp32"))
    if precision not in PRECISIONS:
        raise DataError(f"{path}: precision must be one of {', '.join(PRECISIONS)}")
    return TargetProfile(
        name=str(raw.get("name", path.stem)),
        target=target,
        opset=opset,
        max_opset=max_opset,
        description=str(raw.get("description", "")),
        tensorrt=None if raw.get("tensorrt") is None else str(raw["tensorrt"]),
        precision=precision,
        batch=batch,
        workspace_gib=float(raw.get("workspace_gib", 2.0)),
        strongly_typed=strongly,
        int8=int8,
        cpu_int8=cpu_int8,
        jetson={k: str(v) for k, v in raw["jetson"].items()} if raw.get("jetson") else None,
        source=str(path),
    )


def default_profile_name(target: str) -> str:
    """Profile used when only --target is given."""
    return {"tensorrt": "dgpu", "ort-cpu": "ort-cpu"}[target]
