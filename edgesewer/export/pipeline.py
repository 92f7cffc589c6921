"""`edgesewer export` end to end: ONNX -> simplify -> parity -> precision variants -> (engine) -> sidecars.

Everything is written into a staging folder next to the output folder and moved into place only
when every step succeeded (model files first, sidecars last), so a failed export never leaves an
artifact the runtime could pick up. Then a summary table and the exact follow-up commands.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgesewer.errors import DataError, ExportError, ModelNotFound
from edgesewer.export.metadata import (artifact_stem, build_sidecar, data_file_for, sha256_model, sidecar_path_for,
                                       write_sidecar)
from edgesewer.export.profiles import BatchProfile, TargetProfile, default_profile_name, load_profile
from edgesewer.export.summary import followup_commands
from edgesewer.modelcfg import ModelCfg
from edgesewer.precisions import PRECISIONS
from edgesewer.taxonomy import SEWER_CODES

if TYPE_CHECKING:
    from edgesewer.export.calibrate import Calibration, ImageSet
    from edgesewer.export.weights import LoadedModel

VIDEO_ACCURACY = ("a video (super-image) model is not measured on Sewer-ML stills; score the checkpoint on "
                  "labelled clips with `edgesewer video predict` and `edgesewer video eval`")


def model_calib_method(cfg) -> str | None:
    """The calibration method a model family registers (cfg.extra["calib_method"]), if any.

    Looked up in the registry too, so checkpoints saved before a family named one still get it.
    """
    from edgesewer.models import get_entry

    method = cfg.extra.get("calib_method")
    if method is None:
        try:
            method = get_entry(cfg.name).cfg.extra.get("calib_method")
        except ModelNotFound:  # an unregistered name simply has no preference
            method = None
    return method


@dataclass
class ExportOptions:
    """Everything `edgesewer export` accepts; None means "from the target profile"."""

    model: str
    precision: str | None = None
    weights: str | None = None  # checkpoint path, "random", or None = newest under runs/<model>/
    target: str | None = None  # "tensorrt" | "ort-cpu"; None = tensorrt when it imports
    profile: str | None = None  # name or path of export/<target>.yaml
    calib_data: str | Path | None = None  # Sewer-ML-format folder (crack set for scnet); None = synthetic
    calib_images: int | None = None
    calib_method: str | None = None
    batch: int | None = None  # max batch of the TensorRT optimisation profile (the benchmark batch)
    imgsz: int | None = None
    frames: int | None = None  # frame-stack video models (video-swin3d-b): frames per input; None = the weights'
    opset: int | None = None
    out: str | Path | None = None  # default runs/export/<model>/
    simplify: bool = True
    external_data: bool | None = None  # weights in <file>.onnx.data: True always, None only over 2 GB (onnx_io)
    accuracy: bool | None = None  # None = when the weights are trained and the data has labels
    accuracy_images: int | None = 500
    max_fp16_loss: float = 0.3  # points of the main metric (F2_CIW, ODS, mAP) fp16 may lose against fp32
    max_int8_loss: float = 1.5  # the same for int8 and int8-cpu
    accept_accuracy_loss: bool = False  # write artifacts over those limits anyway (the sidecar records the loss)
    parity_images: int = 32
    runs_dir: str | Path = "runs"
    cache_dir: str | Path | None = None
    progress: bool = True
    seed: int = 0
    trt: Any = None  # a tensorrt module (tests pass a stand-in); None = import it if installed
    gpu: tuple[str, str] | None = None  # (name, compute capability); None = ask CUDA
    classes: str | Path | None = None  # zero-shot models: class text file to bake in (default: trained classes)


@dataclass
class ExportResult:
    out_dir: Path
    artifacts: dict[str, Path]  # precision -> .onnx
    engine: Path | None
    sidecars: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    followups: list[str] = field(default_factory=list)


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def resolve_profile(opts: ExportOptions) -> TargetProfile:
    """The target profile from --profile / --target (tensorrt when it imports, else ort-cpu)."""
    if opts.target is not None and opts.target not in ("tensorrt", "ort-cpu"):
        raise ExportError(f"--target must be tensorrt or ort-cpu, not {opts.target!r}")
    if opts.profile is not None:
        profile = load_profile(opts.profile)
        if opts.target is not None and opts.target != profile.target:
            raise ExportError(f"--target {opts.target} contradicts profile {profile.name} (target {profile.target})")
        return profile
    target = opts.target or ("tensorrt" if (opts.trt is not None or tensorrt_available()) else "ort-cpu")
    return load_profile(default_profile_name(target))


def artifact_precisions(precision: str, target: str) -> list[str]:
    """Which artifacts an export writes: fp32 always (the source and the accuracy baseline)."""
    if precision not in PRECISIONS:
        raise ExportError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "int8-cpu" and target != "ort-cpu":
        raise ExportError("int8-cpu is the ONNX Runtime CPU variant; use --target ort-cpu (or --precision int8)")
    wanted = ["fp32", precision]
    if precision == "int8" and target == "ort-cpu":
        wanted.append("int8-cpu")  # the Q/DQ graph is slow on a CPU; also write the CPU-fast one
    return list(dict.fromkeys(wanted))


def default_data_dir(task: str) -> Path:
    """The synthetic set, generated on first use (see `edgesewer data synth`)."""
    try:
        from edgesewer.data.synth import default_synthetic_dir  # type: ignore[attr-defined]
    except ImportError:
        raise DataError("no --calib-data given and no synthetic set available: generate one with "
                        "`edgesewer data synth --out DIR` and pass --calib-data DIR/sewerml") from None
    root = Path(default_synthetic_dir())
    for sub in (("cracks", "crack", "deepcrack") if task == "segment" else ("sewerml",)):
        if (root / sub).is_dir():
            return root / sub
    return root


def run_export(opts: ExportOptions, log: Callable[[str], None] = print) -> ExportResult:
    """Run the export stage; raises EdgesewerError subclasses for anything the user can fix."""
    from edgesewer.export.weights import check_input_size, load_for_export

    profile = resolve_profile(opts)
    precision = opts.precision or profile.precision
    wanted = artifact_precisions(precision, profile.target)
    opset = profile.check_opset(opts.opset or profile.opset)
    batch = profile.batch
    if opts.batch is not None:
        if opts.batch < 1:
            raise ExportError(f"--batch must be >= 1, got {opts.batch}")
        batch = BatchProfile(1, min(batch.opt, opts.batch), opts.batch)
    loaded = load_for_export(opts.model, opts.weights, opts.imgsz, opts.runs_dir, opts.frames)
    if loaded.cfg.task == "zeroshot":
        # The text side runs here, once: the class embeddings and the class graph are baked into the image model.
        from edgesewer.models.sfrnet.edge import for_export
        loaded = for_export(loaded, opts.classes)
    elif opts.classes is not None:
        raise ExportError("--classes applies to zero-shot models (sfr-net) only")
    cfg = loaded.cfg
    check_input_size(cfg, cfg.input_size)
    if opts.accuracy and loaded.random_weights:
        raise ExportError("--accuracy with --weights random: accuracy of untrained weights is meaningless")
    if opts.accuracy and cfg.task == "video":
        raise ExportError(f"--accuracy: {VIDEO_ACCURACY}")
    data_dir = Path(opts.calib_data) if opts.calib_data else default_data_dir(cfg.task)
    # Check the data before any slow step: a wrong folder should fail in a second, not after the export.
    from edgesewer.export.calibrate import select_images

    parity_images = select_images(data_dir, cfg.task, opts.parity_images, opts.seed)
    out_dir = Path(opts.out) if opts.out else Path(opts.runs_dir) / "export" / opts.model
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    log(f"exporting {opts.model} ({'random weights' if loaded.random_weights else loaded.weights}) "
        f"for {profile.name}: {', '.join(wanted)}, opset {opset}, input {'x'.join(map(str, cfg.input_shape))}")
    try:
        stage = _Stage(opts, profile, cfg, loaded, data_dir, staging, opset, batch, log)
        stage.parity_images = parity_images
        stage.run(wanted, precision)
        result = _publish(stage, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    result.followups = followup_commands(result, opts.model, profile.target, data_dir, loaded.random_weights)
    return result


class _Stage:
    """The steps of one export, writing into the staging folder."""

    def __init__(self, opts: ExportOptions, profile: TargetProfile, cfg: ModelCfg, loaded: LoadedModel, data_dir: Path,
                 staging: Path, opset: int, batch: BatchProfile, log: Callable[[str], None]) -> None:
        self.opts, self.profile, self.cfg, self.loaded = opts, profile, cfg, loaded
        self.data_dir, self.dir, self.opset, self.batch, self.log = data_dir, staging, opset, batch, log
        self.files: dict[str, Path] = {}
        self.extras: dict[str, dict[str, Any]] = {}
        self.parity: dict[str, dict[str, Any]] = {}
        self.accuracy: dict[str, dict[str, Any]] = {}
        self.calibration: Calibration | None = None
        self.parity_images: ImageSet | None = None
        self.engine: Path | None = None
        self.notes: list[str] = []
        self.outputs: list[Any] = []
        self.inputs: list[Any] = []

    def timed(self, what: str):
        return _Timed(what, self.log)

    def path(self, precision: str) -> Path:
        return self.dir / f"{artifact_stem(self.opts.model, precision)}.onnx"

    def run(self, wanted: list[str], precision: str) -> None:
        from edgesewer.export.onnx_export import export_onnx
        from edgesewer.export.simplify import simplify_onnx

        fp32 = self.path("fp32")
        with self.timed(f"ONNX export (opset {self.opset}, dynamic batch)") as step:
            exported = export_onnx(self.loaded.model, self.cfg, fp32, self.opset, external_data=self.opts.external_data)
            if exported.external_data:
                data = data_file_for(fp32)
                step.detail = f"weights in {data.name} ({data.stat().st_size / 1e9:.2f} GB)"
        self.inputs, self.outputs = exported.inputs, exported.outputs
        with self.timed("simplify (onnxsim)") as step:
            simplified = simplify_onnx(fp32, self.opts.simplify)
            step.detail = (f"{simplified.nodes_before} -> {simplified.nodes_after} nodes" if simplified.applied
                           else simplified.note)
        self.files["fp32"] = fp32
        self.extras["fp32"] = {"simplified": simplified.applied}
        self.check_parity()
        if "fp16" in wanted:
            self.make_fp16()
        if {"int8", "int8-fp16", "int8-cpu"} & set(wanted):
            self.make_int8(wanted)
        self.score_parity(wanted)
        if self.want_accuracy():
            self.score_accuracy(wanted)
        self.write_sidecars(wanted)
        if self.profile.target == "tensorrt":
            self.maybe_build(precision)

    # ------------------------------------------------------------------------------------ steps
    def check_parity(self) -> None:
        from edgesewer.export.calibrate import LoadedBatches, input_preparer, iter_batches
        from edgesewer.export.parity import compare_outputs, onnx_outputs, require_parity, torch_outputs

        with self.timed("parity check vs PyTorch") as step:
            stats = LoadedBatches()
            arrays = list(iter_batches(self.parity_images.paths, input_preparer(self.cfg), 8, stats))
            if not arrays:
                raise DataError(f"{self.data_dir}: no readable images for the parity check")
            self.parity_inputs = np.concatenate(arrays)
            self.reference = torch_outputs(self.loaded.model, self.cfg, self.parity_inputs)
            result = compare_outputs(self.reference, onnx_outputs(self.files["fp32"], self.parity_inputs), self.cfg.task)
            require_parity(result, f"{self.opts.model} fp32")
            self.parity["fp32"] = result.as_dict()
            mean = "" if result.mean_abs_diff is None else f"mean {result.mean_abs_diff:.1e}, "
            step.detail = (f"max |diff| {result.max_abs_diff:.2e}, {mean}agreement {result.decision_agreement:.4f} "
                           f"on {result.images} images")

    def make_fp16(self) -> None:
        from edgesewer.export.fp16 import FP16_SAFE_PEAK, activation_peaks, convert_fp16

        with self.timed("FP16 conversion (I/O, norms, softmax, head kept FP32)") as step:
            batches = (self.parity_inputs[i:i + 2] for i in range(0, len(self.parity_inputs), 2))
            peaks = activation_peaks(self.files["fp32"], batches)
            converted = convert_fp16(self.files["fp32"], self.path("fp16"), peaks)
            step.detail = (f"head nodes kept FP32: {', '.join(converted.fp32_nodes) or 'none found'}; "
                           f"{len(converted.range_nodes)} nodes kept FP32 for activations > {FP16_SAFE_PEAK:g}")
        self.files["fp16"] = converted.path
        self.extras["fp16"] = {"fp32_ops": converted.fp32_ops, "fp32_nodes": converted.fp32_nodes,
                               "fp32_nodes_for_range": len(converted.range_nodes)}

    def make_int8(self, wanted: list[str]) -> None:
        from edgesewer.export.calibrate import calibrate, select_images
        from edgesewer.export.quantize import quantize_cpu, quantize_qdq, quantize_qdq_fp16

        needs_calibration = "int8" in wanted or "int8-fp16" in wanted or self.profile.cpu_int8 != "dynamic"
        if needs_calibration:
            n = self.opts.calib_images or self.profile.int8.images
            method = self.opts.calib_method or model_calib_method(self.cfg) or self.profile.int8.method
            if n < 1:
                raise ExportError(f"--calib-images must be >= 1, got {n}")
            with self.timed(f"calibration ({method})") as step:
                images = select_images(self.data_dir, self.cfg.task, n, self.opts.seed)
                self.calibration = calibrate(self.files["fp32"], images, self.cfg, method, self.opts.cache_dir,
                                             progress=self.opts.progress)
                cal = self.calibration
                step.detail = (f"{cal.images} images from {images.source} ({images.split}), {cal.skipped} skipped"
                               + (", from cache" if cal.cache_hit else ""))
            if self.calibration.skipped:
                self.notes.append(f"calibration skipped {self.calibration.skipped} unreadable image(s), e.g. "
                                  f"{self.calibration.skipped_files[0]}")
        if "int8" in wanted:
            with self.timed("INT8 Q/DQ (symmetric, per-channel; norms, softmax, head unquantised)"):
                result = quantize_qdq(self.files["fp32"], self.path("int8"), self.calibration,
                                      self.profile.int8.weight_qdq_pair)
            self.files["int8"] = result.path
            self.extras["int8"] = {"quantization": result.as_dict()}
        if "int8-fp16" in wanted:
            with self.timed("INT8 Q/DQ in an FP16 graph (opset 19; norms, softmax, head FP32)"):
                result = quantize_qdq_fp16(self.files["fp32"], self.path("int8-fp16"), self.calibration,
                                           self.profile.int8.weight_qdq_pair)
            self.files["int8-fp16"] = result.path
            self.extras["int8-fp16"] = {"quantization": result.as_dict(), "high_precision_dtype": "fp16"}
        if "int8-cpu" in wanted:
            with self.timed(f"INT8 for the CPU ({self.profile.cpu_int8})") as step:
                result = quantize_cpu(self.files["fp32"], self.path("int8-cpu"), self.calibration, self.profile.cpu_int8)
                timings = ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items())
                step.detail = f"mode {result.mode}" + (f" (batch-1 latency: {timings})" if timings else "")
            self.files["int8-cpu"] = result.path
            self.extras["int8-cpu"] = {"quantization": result.as_dict()}
            if result.speedup is not None and result.speedup < 1.0:
                self.notes.append(f"int8-cpu ({result.mode}) ran {1 / result.speedup:.2f}x slower than fp32 at batch 1 "
                                  "on this CPU: prefer the fp32 artifact here")

    def score_parity(self, wanted: list[str]) -> None:
        from edgesewer.export.parity import compare_outputs, onnx_outputs

        for precision in wanted:
            if precision == "fp32":
                continue
            result = compare_outputs(self.reference, onnx_outputs(self.files[precision], self.parity_inputs),
                                     self.cfg.task)
            if result.max_abs_diff == float("inf"):
                message = f"{precision} graph gives non-finite outputs on the parity images (overflow)"
                if not self.loaded.random_weights:
                    raise ExportError(f"{message}; it would be useless on a device")
                self.notes.append(f"{message}; expected with untrained weights, usable for speed only")
            self.parity[precision] = result.as_dict()

    def want_accuracy(self) -> bool:
        if self.cfg.task == "zeroshot" and tuple(self.cfg.classes) != SEWER_CODES:
            return False  # new classes have no labels in a Sewer-ML folder
        return self.opts.accuracy is not False and not self.loaded.random_weights

    def score_accuracy(self, wanted: list[str]) -> None:
        from edgesewer.export.accuracy import AccuracyRow, add_deltas, evaluation_set, score_onnx

        if self.cfg.task == "video":
            self.notes.append(f"accuracy report skipped: {VIDEO_ACCURACY}")
            return
        try:
            images = evaluation_set(self.data_dir, self.cfg.task, self.opts.accuracy_images, self.opts.seed)
        except DataError as exc:
            if self.opts.accuracy:
                raise
            self.notes.append(f"accuracy report skipped: {exc}")
            return
        rows = []
        for precision in wanted:
            with self.timed(f"accuracy {precision} on {len(images)} images") as step:
                metrics, _ = score_onnx(self.files[precision], self.cfg, images, progress=self.opts.progress)
                step.detail = ", ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items() if isinstance(v, float)
                                        and k not in ("threshold",))
            calib = self.calibration_entry(precision)
            rows.append(AccuracyRow(precision, self.files[precision].name, metrics, calib and calib["images"]))
        add_deltas(rows, self.cfg.task)
        for row in rows:
            self.accuracy[row.precision] = {**row.metrics, "delta_to_fp32_points": row.deltas,
                                            "data": str(images.source), "split": images.split}
        self.gate_accuracy(rows, f"{images.source} ({images.split})")

    def gate_accuracy(self, rows, data: str) -> None:
        """Refuse a variant that loses more of the main metric than its limit, unless told to accept it.

        The verdict (loss, limit, passed, accepted) goes into every sidecar either way."""
        from edgesewer.export.accuracy import gate_verdicts

        opts = self.opts
        verdicts = gate_verdicts(rows, self.cfg.task, opts.max_fp16_loss, opts.max_int8_loss)
        for verdict in verdicts:
            self.accuracy[verdict.precision]["gate"] = verdict.as_dict(opts.accept_accuracy_loss)
        failed = [v for v in verdicts if not v.passed]
        if failed and not opts.accept_accuracy_loss:
            raise ExportError(failed[0].message(data))
        for verdict in failed:
            self.notes.append(f"--accept-accuracy-loss: {verdict.precision} written although it loses "
                              f"{verdict.loss_points:.2f} points of {verdict.metric} (limit {verdict.limit_points:g}); "
                              "the loss is recorded in its sidecar")

    def calibration_entry(self, precision: str) -> dict[str, Any] | None:
        if self.calibration is None or precision not in ("int8", "int8-fp16", "int8-cpu"):
            return None
        if precision == "int8-cpu" and self.extras["int8-cpu"]["quantization"]["mode"] == "dynamic":
            return None  # dynamic quantisation measures activations at run time
        return self.calibration.as_dict()

    def write_sidecars(self, wanted: list[str]) -> None:
        from edgesewer.export.quantize import QDQ_FP16_OPSET

        onnx_sha = sha256_model(self.files["fp32"])
        build = {"profile": self.profile.name, "tensorrt": self.profile.tensorrt, "batch": self.batch.as_dict(),
                 "workspace_gib": self.profile.workspace_gib, "strongly_typed": self.profile.strongly_typed,
                 "jetson": self.profile.jetson}
        self.sidecars: dict[str, dict[str, Any]] = {}
        for precision in wanted:
            sidecar = build_sidecar(
                model=self.opts.model, task=self.cfg.task, precision=precision,
                target="ort-cpu" if precision == "int8-cpu" else self.profile.target,
                model_file=self.files[precision], onnx_sha256=onnx_sha,
                opset=QDQ_FP16_OPSET if precision == "int8-fp16" else self.opset,
                model_cfg=self.cfg.to_dict(), inputs=[t.as_dict() for t in self.inputs],
                outputs=[t.as_dict() for t in self.outputs], weights=self.loaded.weights,
                calibration=self.calibration_entry(precision), parity=self.parity.get(precision),
                accuracy=self.accuracy.get(precision), extra={"build": build, **self.extras.get(precision, {})},
            )
            write_sidecar(self.files[precision], sidecar)
            self.sidecars[precision] = sidecar

    def maybe_build(self, precision: str) -> None:
        from edgesewer.export import device_info
        from edgesewer.export.tensorrt_build import build_from_artifact

        trt = self.opts.trt
        if trt is None and not tensorrt_available():
            self.notes.append("TensorRT is not installed here: wrote the TensorRT-ready ONNX + sidecar; build the "
                              "engine on the device with the `edgesewer build` command below")
            return
        gpu = self.opts.gpu or device_info.gpu_info()
        if gpu is None:
            self.notes.append("TensorRT imports but no GPU answered: build the engine on the device")
            return
        with self.timed(f"TensorRT engine ({precision})") as step:
            built = build_from_artifact(self.files[precision], trt=trt, gpu=gpu)
            step.detail = (f"TensorRT {built.tensorrt['version']} on {built.tensorrt['gpu']}, "
                           f"{'strongly typed' if built.plan.strongly_typed else 'flags ' + ','.join(built.plan.builder_flags)}")
        self.notes.extend(built.notes)
        self.engine = built.engine_path


class _Timed:
    """Logs one step with its duration and an optional detail line."""

    def __init__(self, what: str, log: Callable[[str], None]) -> None:
        self.what, self.log, self.detail = what, log, ""

    def __enter__(self) -> "_Timed":
        self.start = time.perf_counter()
        return self

    def __exit__(self, exc_type, *_: object) -> None:
        if exc_type is None:
            detail = f": {self.detail}" if self.detail else ""
            self.log(f"  ok  {self.what} ({time.perf_counter() - self.start:.1f} s){detail}")


def _publish(stage: _Stage, out_dir: Path) -> ExportResult:
    """Move staged files into `out_dir`: model files first, sidecars last; drop stale engines."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staged_models = [*stage.files.values(), *([stage.engine] if stage.engine else [])]
    for path in staged_models:
        # A model over 2 GB keeps its tensors in <name>.data: it travels with the model, and one left
        # from an earlier export of an inline model is stale (ONNX Runtime would never read it).
        data, old_data = data_file_for(path), data_file_for(out_dir / path.name)
        if data.is_file():
            os.replace(data, old_data)
        elif path.suffix == ".onnx":
            old_data.unlink(missing_ok=True)
        os.replace(path, out_dir / path.name)
    for path in staged_models:
        os.replace(sidecar_path_for(path), sidecar_path_for(out_dir / path.name))
    notes = list(stage.notes)
    for precision in stage.files:
        stale = out_dir / f"{artifact_stem(stage.opts.model, precision)}.engine"
        if stage.engine is not None and stale.name == stage.engine.name:
            continue
        if stale.exists():
            stale.unlink()
            sidecar_path_for(stale).unlink(missing_ok=True)
            notes.append(f"removed {stale.name}: it was built from the previous ONNX")
    artifacts = {p: out_dir / f.name for p, f in stage.files.items()}
    engine = out_dir / stage.engine.name if stage.engine else None
    return ExportResult(out_dir, artifacts, engine, stage.sidecars, notes)
