"""One benchmark row: latency, throughput per batch, memory, accuracy and pipeline FPS of an artifact,
or latency of the PyTorch eager model it was exported from.

Artifacts are timed through the runtime's own backends (`load_backend(...).infer`), the pipeline FPS
through `run_inspection` on a video, accuracy through `edgesewer.export.accuracy.score_onnx`; nothing
here re-implements inference.
"""

from __future__ import annotations

import io
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesewer.benchmark.timing import LatencyStats, TimingPlan, best_throughput, measure
from edgesewer.export.metadata import model_bytes

# The accuracy columns of the table per task (Sewer-ML metrics; crack ODS/OIS/AUPRC/IoU/region F1).
ACCURACY_KEYS = {"classify": ("F2_CIW", "F1_Normal", "mAP"), "segment": ("ODS", "OIS", "AUPRC", "IoU", "region_F1")}
ALL_ACCURACY_KEYS = ("F2_CIW", "F1_Normal", "mAP", "ODS", "OIS", "AUPRC", "IoU", "region_F1")


@dataclass
class BenchmarkRow:
    """One model x precision x backend (backend `torch` = the PyTorch eager reference)."""

    model: str
    backend: str
    precision: str
    status: str = "ok"  # "ok" or "failed: <why>"
    notes: list[str] = field(default_factory=list)  # what could not be measured in an otherwise ok row
    task: str | None = None
    input_size: int | None = None
    weights: str | None = None
    artifact: str | None = None
    size_mb: float | None = None
    accuracy: dict[str, float] | None = None  # ACCURACY_KEYS of the task, as fractions
    accuracy_images: int | None = None
    accuracy_via: str | None = None
    accuracy_data: str | None = None  # the labelled set really scored: "<folder> (<split>)"
    calibration: str | None = None  # "512 images (entropy)", "dynamic" or None
    calibration_images: int | None = None
    threads: int | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    runs: int | None = None
    warmup_runs: int | None = None
    warmup_s: float | None = None
    fps_b1: float | None = None
    best_batch: int | None = None
    fps_best: float | None = None
    throughput: dict[int, float] = field(default_factory=dict)  # batch -> inferences/s
    pipeline_fps: float | None = None
    pipeline_network_fps: float | None = None
    pipeline_frames: int | None = None
    peak_mem_mb: float | None = None
    vs_eager: float | None = None  # eager p50 / this p50: > 1 means faster than PyTorch eager

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def fail(self, why: str) -> "BenchmarkRow":
        self.status = "failed: " + " ".join(str(why).split())
        return self

    def set_latency(self, stats: LatencyStats) -> None:
        self.p50_ms, self.p90_ms, self.p99_ms, self.mean_ms = stats.p50_ms, stats.p90_ms, stats.p99_ms, stats.mean_ms
        self.runs, self.warmup_runs, self.warmup_s = stats.runs, stats.warmup_runs, stats.warmup_s
        self.fps_b1 = stats.throughput

    def set_throughput(self, stats: list[LatencyStats]) -> None:
        self.throughput = {s.batch: s.throughput for s in stats}
        best = best_throughput(stats)
        self.best_batch, self.fps_best = best.batch, best.throughput

    def headline(self) -> tuple[str, float] | None:
        """(metric name, value) plotted against FPS: F2_CIW for classifiers, ODS for the segmenter."""
        if not self.accuracy or self.task not in ACCURACY_KEYS:
            return None
        key = ACCURACY_KEYS[self.task][0]
        return (key, self.accuracy[key]) if key in self.accuracy else None


def sample_shape(cfg: Any) -> tuple[int, ...]:
    """One sample's input shape: (C, S, S), or (T, C, S, S) for a frame-stack video model (Video Swin)."""
    image = (cfg.in_chans, cfg.input_size, cfg.input_size)
    if cfg.extra.get("input_layout") == "BTCHW":
        return (int(cfg.extra["frames"]), *image)
    return image


def random_input(batch: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A fixed random float32 batch: speed does not depend on the pixel values (trtexec does the same)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *shape), dtype=np.float32)


def time_backend(backend: Any, shape: tuple[int, ...], plan: TimingPlan, batch_sizes: list[int],
                 row: BenchmarkRow) -> None:
    """Batch-1 latency plus throughput at every batch size the backend accepts (`shape`: one sample's)."""
    x1 = random_input(1, shape)
    latency = measure(lambda: backend.infer(x1), plan, batch=1)
    row.set_latency(latency)
    measured = [latency]
    limit = backend.max_batch
    for batch in sorted(set(batch_sizes) - {1}):
        if limit is not None and batch > limit:
            row.notes.append(f"batch {batch} > the engine's max batch {limit}: not measured")
            continue
        xb = random_input(batch, shape)
        measured.append(measure(lambda: backend.infer(xb), plan.for_batch(batch), batch=batch))
    row.set_throughput(measured)


def measure_artifact(path: Path, row: BenchmarkRow, backend_name: str, plan: TimingPlan, batch_sizes: list[int],
                     threads: int | None) -> Any:
    """Size, calibration facts, latency and throughput; returns the loaded Artifact."""
    from edgesewer.runtime.artifact import load_artifact
    from edgesewer.runtime.backends import load_backend

    row.artifact, row.size_mb = str(path), model_bytes(path) / 1e6
    artifact = load_artifact(path)
    row.task, row.input_size, row.weights = artifact.task, artifact.cfg.input_size, str(artifact.meta.get("weights"))
    calibration = artifact.meta.get("calibration")
    if calibration:
        row.calibration_images = int(calibration["images"])
        row.calibration = f"{calibration['images']} images ({calibration.get('method', '?')})"
    elif artifact.precision == "int8-cpu":
        row.calibration = "dynamic"  # activations quantised at run time: nothing calibrated
    options = {"threads": threads} if backend_name == "ort" else {}
    backend = load_backend(artifact, backend_name, **options)
    try:
        time_backend(backend, sample_shape(artifact.cfg), plan, batch_sizes, row)
    finally:
        backend.close()
    return artifact


def measure_eager(model: str, weights: str, imgsz: int | None, runs_dir: Path, row: BenchmarkRow, plan: TimingPlan,
                  threads: int | None, cuda: bool) -> None:
    """Batch-1 latency of the PyTorch model in eval mode: same weights, input size and thread count."""
    import torch

    from edgesewer.export.weights import load_for_export

    if threads:
        torch.set_num_threads(threads)
    device = "cuda" if cuda and torch.cuda.is_available() else "cpu"
    loaded = load_for_export(model, weights, imgsz, runs_dir)
    cfg = loaded.cfg
    net = loaded.model.to(device)
    x = torch.from_numpy(random_input(1, sample_shape(cfg))).to(device)

    def step() -> None:
        with torch.inference_mode():
            net(x)
        if device == "cuda":
            torch.cuda.synchronize()

    latency = measure(step, plan, batch=1)
    row.set_latency(latency)
    row.set_throughput([latency])  # eager is the batch-1 reference only
    row.task, row.input_size, row.weights = cfg.task, cfg.input_size, loaded.weights
    row.backend = f"torch-{device}"


def measure_memory(row: BenchmarkRow, threads: int | None, runs_dir: Path, imgsz: int | None) -> None:
    """Peak RSS above the baseline of a fresh process that loads this row's model and runs it at batch 1."""
    from edgesewer.benchmark.memory import probe_peak_memory

    if row.backend.startswith("torch"):
        if row.backend != "torch-cpu":
            return  # GPU memory is not host RSS
        probe = probe_peak_memory("eager", row.model, threads=threads, weights=row.weights or "random",
                                  imgsz=imgsz, runs_dir=runs_dir)
    else:
        probe = probe_peak_memory("artifact", row.artifact or "", backend=row.backend, threads=threads)
    row.peak_mem_mb = float(probe["delta_mb"])
    if not probe.get("exact"):
        row.notes.append("peak memory is a lower bound (the RSS peak cannot be reset on this OS)")


def score_accuracy(artifact: Any, images: Any, threads: int | None, row: BenchmarkRow) -> None:
    """Sewer-ML or crack metrics of the artifact's ONNX in ONNX Runtime (an engine: the ONNX it was built from)."""
    from edgesewer.export.accuracy import score_onnx

    onnx = artifact.model_path
    row.accuracy_via = "ort-cpu"
    if artifact.format == "engine":
        onnx = artifact.model_path.with_suffix(".onnx")
        row.accuracy_via = "ort-cpu on the engine's source ONNX"
    metrics, skipped = score_onnx(onnx, artifact.cfg, images, threads=threads or 0, progress=False)
    row.accuracy = {k: float(metrics[k]) for k in ACCURACY_KEYS.get(artifact.task, ()) if k in metrics}
    row.accuracy_images = int(metrics.get("images", len(images)))
    row.accuracy_data = f"{images.source} ({images.split})"
    if skipped:
        row.notes.append(f"accuracy skipped {skipped} unreadable image(s)")


def pipeline_frames(fps_b1: float | None, plan: TimingPlan, cap: int) -> int:
    """Frames for the pipeline run: about twice the minimum timing duration at the network's speed, 20..cap."""
    budget = math.ceil((fps_b1 or 0.0) * max(2.0 * plan.min_s, 1.0))
    return max(1, min(cap, max(20, budget)))


def measure_pipeline(artifact: Any, video: Path, backend_name: str, threads: int | None, frames: int,
                     row: BenchmarkRow) -> None:
    """Pipeline FPS of the live runtime on a video (decode .. sinks, headless, JSONL events and report on)."""
    from rich.console import Console

    from edgesewer.runtime.pipeline import RunOptions
    from edgesewer.runtime.runner import run_inspection
    from edgesewer.runtime.stats import LiveStatus, PipelineStats

    quiet = LiveStatus(PipelineStats(), console=Console(file=io.StringIO()), enabled=False)
    role = {"seg": artifact.model_path} if artifact.task == "segment" else {"model": artifact.model_path}
    with tempfile.TemporaryDirectory(prefix="edgesewer-bench-pipeline-") as work:
        options = RunOptions(output="none", headless=True, live_status=False, max_frames=frames,
                             events=Path(work) / "events.jsonl", report=Path(work) / "report")
        summary = run_inspection(str(video), **role, backend=backend_name, threads=threads, options=options,
                                 status=quiet)
    if summary.error is not None or summary.ended_by not in ("end of stream", "max frames"):
        row.notes.append(f"pipeline ended early ({summary.ended_by}): {summary.message}")
    if summary.frames:
        row.pipeline_fps = float(summary.stats["pipeline_fps"])
        row.pipeline_network_fps = float(summary.stats["network_fps"])
        row.pipeline_frames = int(summary.frames)
