"""Build a TensorRT engine from an exported ONNX artifact, on the device that will run it.

One code path for TensorRT 8.5 (JetPack 5), 10.x (JetPack 6, dGPU) and 11.x, chosen by probing
the API (`hasattr`) rather than comparing version strings (SPEC 6):

    EXPLICIT_BATCH network flag     only where implicit batch still exists (Builder.max_batch_size, TRT < 10)
    precision                       lives in the ONNX (FP16 graph / Q/DQ INT8 graph); on TRT <= 10.x
                                    weakly typed builds also set the matching FP16 / INT8 flags, or
                                    build strongly typed when the profile asks; from 10.12 (which
                                    deprecates those flags) Q/DQ networks build strongly typed; TRT 11
                                    has no precision flags and is always strongly typed
    plugins                         init_libnvinfer_plugins before the parser (8.5/8.6 turn
                                    InstanceNormalization into the InstanceNormalization_TRT plugin)
    workspace                       set_memory_pool_limit(WORKSPACE), or max_workspace_size (< 8.4)
    timing cache                    loaded from / saved to a file per (TensorRT version, GPU)
    optimisation profile            one, batch min/opt/max from the target profile

`tensorrt` is imported lazily and can be passed in, so every decision is unit-tested with a
recording stand-in; nothing here needs a GPU until `build_serialized_network` runs.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesewer.errors import BackendError, ExportError
from edgesewer.export.metadata import data_file_for, read_sidecar, sha256_file, sidecar_path_for, write_sidecar
from edgesewer.export.profiles import BatchProfile
from edgesewer.runtime.artifact import check_external_data

GIB = 1 << 30


def default_timing_cache_dir() -> Path:
    """Timing caches are per device, not per model: one folder shared by every build on this machine."""
    root = os.environ.get("EDGESEWER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edgesewer")
    return Path(root) / "tensorrt"


def import_tensorrt() -> Any:
    try:
        import tensorrt  # noqa: PLC0415 - optional, device-only dependency
    except ImportError:
        raise ExportError("TensorRT is not installed here: build engines on the device "
                          "(JetPack ships it; on a dGPU: pip install tensorrt)") from None
    return tensorrt


@dataclass(frozen=True)
class TrtFeatures:
    """What this TensorRT's Python API offers (probed, never inferred from the version string)."""

    version: str
    explicit_batch_flag: bool  # EXPLICIT_BATCH must be set (implicit batch still exists: TRT < 10)
    strongly_typed_flag: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED exists (9.x+)
    precision_flags: bool  # BuilderFlag.FP16 / INT8 exist (removed in TRT 11)
    memory_pool_limit: bool  # IBuilderConfig.set_memory_pool_limit (8.4+)
    timing_cache: bool  # IBuilderConfig.create_timing_cache
    parse_from_file: bool  # OnnxParser.parse_from_file (handles external weight files)


def probe_features(trt: Any) -> TrtFeatures:
    flags = trt.NetworkDefinitionCreationFlag
    return TrtFeatures(
        version=str(getattr(trt, "__version__", "unknown")),
        explicit_batch_flag=hasattr(flags, "EXPLICIT_BATCH") and hasattr(trt.Builder, "max_batch_size"),
        strongly_typed_flag=hasattr(flags, "STRONGLY_TYPED"),
        precision_flags=hasattr(trt.BuilderFlag, "FP16") and hasattr(trt.BuilderFlag, "INT8"),
        memory_pool_limit=hasattr(trt.IBuilderConfig, "set_memory_pool_limit"),
        timing_cache=hasattr(trt.IBuilderConfig, "create_timing_cache"),
        parse_from_file=hasattr(trt.OnnxParser, "parse_from_file"),
    )


@dataclass(frozen=True)
class BuildPlan:
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    strongly_typed: bool


_WEAK_FLAGS = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16"),  # int8: unquantised layers may use FP16
               "int8-fp16": ()}  # FP16 graph with Q/DQ: always strongly typed, its types say it all


# TensorRT 10.12 deprecates weak typing and the FP16/INT8 builder flags (not probe-able: they still exist).
QDQ_STRONGLY_TYPED_FROM = (10, 12)
QDQ_PRECISIONS = ("int8", "int8-fp16")  # ONNX graphs with QuantizeLinear/DequantizeLinear


def plan_build(features: TrtFeatures, precision: str, strongly_typed: str = "auto") -> BuildPlan:
    """Network and builder flags for an artifact of `precision` on this TensorRT.

    `strongly_typed`: "auto" (weak typing + flags where the flags exist and are not deprecated for
    the graph, strongly typed otherwise), "true" (strongly typed; TensorRT 9+), "false" (weak typing;
    needs TRT <= 10.x).
    """
    if precision == "int8-cpu":
        raise ExportError("int8-cpu artifacts are for ONNX Runtime on a CPU; build the int8 (Q/DQ) artifact instead")
    if precision not in _WEAK_FLAGS:
        raise ExportError(f"unknown precision {precision!r}")
    if precision == "int8-fp16" and strongly_typed == "false":
        raise ExportError("an int8-fp16 artifact carries its FP16 layers in its types: build it strongly typed "
                          "(strongly_typed: auto or true)")
    network = ("EXPLICIT_BATCH",) if features.explicit_batch_flag else ()
    if not features.precision_flags:
        if strongly_typed == "false":
            raise ExportError(f"TensorRT {features.version} builds strongly typed networks only; "
                              "set strongly_typed: auto in the target profile")
        # TRT 11: always strongly typed; the flag is deprecated and ignored, so it is not passed.
        return BuildPlan(network, (), True)
    qdq_typed = (precision in QDQ_PRECISIONS and strongly_typed == "auto" and features.strongly_typed_flag
                 and _version_tuple(features.version)[:2] >= QDQ_STRONGLY_TYPED_FROM)
    if strongly_typed == "true" or qdq_typed or precision == "int8-fp16":
        if not features.strongly_typed_flag:
            raise ExportError(f"TensorRT {features.version} cannot build strongly typed networks (needs 9.0+); "
                              "set strongly_typed: false or auto in the target profile")
        # Strongly typed networks refuse precision flags: the ONNX types decide everything.
        return BuildPlan((*network, "STRONGLY_TYPED"), (), True)
    return BuildPlan(network, _WEAK_FLAGS[precision], False)


@dataclass
class EngineBuild:
    engine_path: Path
    sidecar_path: Path
    plan: BuildPlan
    timing_cache: Path | None
    tensorrt: dict[str, Any]
    notes: list[str]


def check_parseable(features: TrtFeatures, onnx_path: Path, sidecar: dict[str, Any]) -> None:
    """Refuse, before parsing, an artifact exported for a newer TensorRT than this one.

    TensorRT < 8.6 has no LayerNormalization importer (opset 17 ViT graphs), the usual
    JetPack 5 mistake; the message names the profile to re-export with.
    """
    major_minor = _version_tuple(features.version)[:2]
    if major_minor >= (8, 6) or major_minor == (0, 0):
        return
    try:
        import onnx

        ops = {n.op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node}
    except ImportError:
        return  # the parser will report it, with node names
    if "LayerNormalization" in ops:
        exported_for = (sidecar.get("build") or {}).get("profile", "?")
        raise ExportError(
            f"{onnx_path.name} was exported at opset {sidecar.get('opset')} for profile {exported_for} and holds "
            f"LayerNormalization nodes, which TensorRT {features.version} cannot parse; re-export with "
            "--profile jetson-xavier-jp5 (opset 16)"
        )


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0, 0])


def parser_errors(parser: Any, onnx_path: Path, version: str, limit: int = 3) -> str:
    """One line naming the failing ONNX nodes, from the parser's error list."""
    node_names = _onnx_node_names(onnx_path)
    parts = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        index = int(err.node()) if hasattr(err, "node") else -1
        name = err.node_name() if hasattr(err, "node_name") else ""
        if not name and 0 <= index < len(node_names):
            name = node_names[index]
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        where = f"node {name or f'#{index}'}" + (f" ({op})" if op else "")
        parts.append(f"{where}: {' '.join(str(err.desc()).split())}")
    more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
    detail = "; ".join(parts[:limit]) if parts else "no error detail"
    return f"TensorRT {version} cannot parse {onnx_path.name}: {detail}{more}"


def _onnx_node_names(path: Path) -> list[str]:
    # The 8.5 parser reports a node index only; map it to a name when onnx is installed.
    try:
        import onnx

        return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node]
    except Exception:  # noqa: BLE001 - onnx missing on the device, or an unreadable file: fall back to indices
        return []


def timing_cache_path(cache_dir: Path, trt_version: str, gpu: str, compute_capability: str) -> Path:
    """One timing cache per TensorRT version and GPU (tactic timings do not transfer)."""
    tag = "".join(ch if ch.isalnum() or ch in ".-" else "-" for ch in f"{trt_version}-{gpu}-sm{compute_capability}")
    return cache_dir / f"timing-{tag}.cache"


def build_engine(
    onnx_path: str | Path,
    *,
    input_shape: tuple[int, ...],
    precision: str,
    batch: BatchProfile,
    workspace_gib: float = 2.0,
    strongly_typed: str = "auto",
    cache_dir: str | Path | None = None,
    gpu: tuple[str, str] | None = None,
    trt: Any = None,
) -> tuple[bytes, BuildPlan, dict[str, Any], Path | None]:
    """Parse, configure and build; returns (serialized engine, plan, tensorrt info, timing-cache path).

    `gpu` is (name, compute capability) of the build GPU; `trt` the tensorrt module (tests pass a stand-in).
    """
    trt = trt or import_tensorrt()
    onnx_path = Path(onnx_path)
    features = probe_features(trt)
    plan = plan_build(features, precision, strongly_typed)
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")  # before parsing: the parser may emit TensorRT's own plugins
    builder = trt.Builder(logger)
    flag_bits = 0
    for name in plan.network_flags:
        flag_bits |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flag_bits)
    parser = trt.OnnxParser(network, logger)
    if not features.parse_from_file and data_file_for(onnx_path).is_file():
        raise ExportError(f"{onnx_path}: its weights are in {data_file_for(onnx_path).name}, which TensorRT "
                          f"{features.version} can read only through OnnxParser.parse_from_file; it has none")
    parsed = parser.parse_from_file(str(onnx_path)) if features.parse_from_file else parser.parse(onnx_path.read_bytes())
    if not parsed:
        raise ExportError(parser_errors(parser, onnx_path, features.version))

    config = builder.create_builder_config()
    workspace = int(workspace_gib * GIB)
    if features.memory_pool_limit:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:
        config.max_workspace_size = workspace
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))

    if network.num_inputs != 1:
        raise ExportError(f"{onnx_path.name}: expected one input, the network has {network.num_inputs}")
    input_name = network.get_input(0).name
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (batch.min, *input_shape), (batch.opt, *input_shape), (batch.max, *input_shape))
    config.add_optimization_profile(profile)

    gpu_name, capability = gpu or ("unknown", "unknown")
    cache_file = None
    cache = None
    if features.timing_cache and cache_dir is not None:
        cache_file = timing_cache_path(Path(cache_dir), features.version, gpu_name, capability)
        cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
        config.set_timing_cache(cache, False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT {features.version} failed to build {onnx_path.name} "
                          f"(see the TensorRT log above; try a larger --workspace than {workspace_gib:g} GiB)")
    if cache is not None and cache_file is not None:
        _write_bytes_atomic(cache_file, bytes(memoryview(config.get_timing_cache().serialize())))
    info = {
        "version": features.version,
        "gpu": gpu_name,
        "compute_capability": capability,
        "strongly_typed": plan.strongly_typed,
        "builder_flags": list(plan.builder_flags),
        "workspace_gib": workspace_gib,
        "profile": batch.as_dict(),
    }
    return bytes(memoryview(serialized)), plan, info, cache_file


def build_from_artifact(
    artifact: str | Path,
    *,
    workspace_gib: float | None = None,
    max_batch: int | None = None,
    cache_dir: str | Path | None = None,
    out: str | Path | None = None,
    trt: Any = None,
    gpu: tuple[str, str] | None = None,
    jetson: dict[str, str] | None = None,
) -> EngineBuild:
    """`edgesewer build`: turn an exported ONNX artifact into `<stem>.engine` + `<stem>.engine.json`.

    `artifact` is the ONNX file or its sidecar (or an existing engine, rebuilt from the ONNX it
    came from, e.g. after a TensorRT upgrade). Batch profile and workspace come from the export
    target profile recorded in the sidecar unless overridden. Engine, then sidecar, are written
    atomically, so a failed build leaves no engine the runtime could pick up.
    """
    from edgesewer.export import device_info

    onnx_path, sidecar = _source_onnx(Path(artifact))
    trt = trt or import_tensorrt()
    features = probe_features(trt)
    check_parseable(features, onnx_path, sidecar)
    build_cfg = sidecar.get("build") or {}
    profile = BatchProfile(**build_cfg.get("batch", {"min": 1, "opt": 1, "max": 8}))
    if max_batch is not None:
        if max_batch < profile.opt:
            raise ExportError(f"--max-batch {max_batch} is below the live batch {profile.opt}")
        profile = BatchProfile(min(profile.min, max_batch), profile.opt, max_batch)
    workspace = workspace_gib if workspace_gib is not None else float(build_cfg.get("workspace_gib", 2.0))
    if workspace <= 0:
        raise ExportError(f"--workspace must be positive, got {workspace:g} GiB")
    input_shape = tuple(int(s) for s in sidecar["inputs"][0]["shape"][1:])  # (C, H, W); a frame stack (T, C, H, W)
    gpu = gpu or device_info.gpu_info()
    if gpu is None:
        raise ExportError("no NVIDIA GPU found (neither CUDA Python bindings nor nvidia-smi answered); "
                          "build the engine on the device that will run it")
    notes = _profile_notes(build_cfg, features.version, gpu)
    out_dir = Path(out) if out else onnx_path.parent
    engine_path = out_dir / f"{onnx_path.stem}.engine"
    plan_bytes, plan, info, cache_file = build_engine(
        onnx_path, input_shape=input_shape, precision=sidecar["precision"],
        batch=profile, workspace_gib=workspace, strongly_typed=str(build_cfg.get("strongly_typed", "auto")),
        cache_dir=Path(cache_dir) if cache_dir else default_timing_cache_dir(), gpu=gpu, trt=trt,
    )
    if plan.strongly_typed and sidecar["precision"] == "int8":
        notes.append(f"{onnx_path.name}: strongly typed, its unquantised layers run in FP32 (slower than the fp16 "
                     "engine); export --precision int8-fp16 for an INT8 engine whose other layers are FP16")
    jetson = jetson if jetson is not None else device_info.jetson_info()
    info["jetpack"] = jetson.get("jetpack") if jetson else None
    info["l4t"] = jetson.get("l4t") if jetson else None
    info["module"] = jetson.get("module") if jetson else None  # AGX Orin and Orin Nano share sm 8.7
    engine_sidecar = dict(sidecar)
    engine_sidecar.update({
        "target": "tensorrt",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "file": engine_path.name,
        "source_onnx": onnx_path.name,
        "source_onnx_sha256": sidecar["file_sha256"],
        "external_data": None,  # the engine holds its weights
        "tensorrt": info,
    })
    _write_bytes_atomic(engine_path, plan_bytes)
    try:
        engine_sidecar["file_sha256"] = sha256_file(engine_path)
        sidecar_path = write_sidecar(engine_path, engine_sidecar)
    except BaseException:
        engine_path.unlink(missing_ok=True)  # an engine without its sidecar must not be left behind
        raise
    return EngineBuild(engine_path, sidecar_path, plan, cache_file, info, notes)


def _source_onnx(artifact: Path) -> tuple[Path, dict[str, Any]]:
    """The ONNX file to build from and its sidecar, checked against each other."""
    sidecar = read_sidecar(artifact)
    folder = artifact.parent
    name = sidecar.get("source_onnx") if str(sidecar["file"]).endswith(".engine") else sidecar["file"]
    if not name:
        raise BackendError(f"{artifact}: engine sidecar does not name its source ONNX; build from the .onnx artifact")
    onnx_path = folder / str(name)
    if not onnx_path.is_file():
        raise BackendError(f"{onnx_path}: ONNX file named by the sidecar is missing")
    onnx_sidecar = read_sidecar(onnx_path)
    if sha256_file(onnx_path) != onnx_sidecar["file_sha256"]:
        raise BackendError(f"{onnx_path}: does not match its sidecar (re-export, or copy both files together)")
    check_external_data(onnx_path, sidecar_path_for(onnx_path), onnx_sidecar)
    return onnx_path, onnx_sidecar


def _profile_notes(build_cfg: dict[str, Any], version: str, gpu: tuple[str, str]) -> list[str]:
    """Warnings when the device differs from the one the export profile was written for."""
    notes = []
    expected = build_cfg.get("tensorrt")
    if expected and str(expected).split(".")[0] != version.split(".")[0]:
        notes.append(f"profile {build_cfg.get('profile')} expects TensorRT {expected}, this device has {version}")
    expected_cc = (build_cfg.get("jetson") or {}).get("compute_capability")
    if expected_cc and expected_cc != gpu[1]:
        notes.append(f"profile {build_cfg.get('profile')} is for sm {expected_cc}, this GPU ({gpu[0]}) is sm {gpu[1]}")
    return notes


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
