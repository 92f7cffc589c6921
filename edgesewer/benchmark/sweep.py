"""`edgesewer benchmark`: every model x precision (x backend), one row each, with a progress bar.

Per model: the PyTorch eager reference first (same weights, input size and threads), then each
precision's artifact (reused from `<out>/artifacts/<model>/` or exported there), timed through the
runtime backend, scored on the labelled set and run through the live pipeline on a video. A row
that fails says why in its status and the sweep goes on. Ratios to eager are taken within this run.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesewer.benchmark.artifacts import (
    RANDOM,
    ArtifactCache,
    cache_root,
    data_for_task,
    find_video,
    parse_weights,
    resolve_weights,
)
from edgesewer.benchmark.machine import describe_machine, usable_cores
from edgesewer.benchmark.measure import (
    BenchmarkRow,
    measure_artifact,
    measure_eager,
    measure_memory,
    measure_pipeline,
    pipeline_frames,
    score_accuracy,
)
from edgesewer.benchmark.timing import TimingPlan
from edgesewer.errors import EdgesewerError
from edgesewer.precisions import PRECISIONS

BACKENDS = ("ort", "tensorrt")
DEFAULT_MODELS = ("vit-t-dino", "ma-q2l-r101", "scnet")


@dataclass
class BenchmarkOptions:
    """Everything `edgesewer benchmark` accepts."""

    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    precisions: list[str] = field(default_factory=lambda: ["fp32", "fp16", "int8"])
    backend: str = "ort"
    data: Path | None = None  # Sewer-ML folder or a root with sewerml/ + crack/ (+ videos/); None = synthetic set
    crack_data: Path | None = None  # crack set for the segmenter (default: found next to / inside `data`)
    video: Path | None = None  # for pipeline FPS (default: the first video of the data's videos/)
    out: Path = Path("benchmarks/results")
    weights: list[str] | None = None  # see artifacts.parse_weights
    imgsz: int | None = None
    batch_sizes: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    timing: TimingPlan = field(default_factory=TimingPlan)
    threads: int | None = None  # None = every usable core (ORT and torch alike)
    calib_images: int | None = None  # None = the export profile's (512)
    accuracy_images: int | None = 500
    pipeline_frames: int = 200  # at most; fewer for slow models (see measure.pipeline_frames)
    eager: bool = True
    export_extra: dict[str, Any] = field(default_factory=dict)  # more ExportOptions for missing artifacts
    runs_dir: Path = Path("runs")
    progress: bool = True
    seed: int = 0

    def validate(self) -> None:
        if not self.models:
            raise EdgesewerError("--models: give at least one model name")
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if unknown or not self.precisions:
            given = ", ".join(unknown) or "none given"
            raise EdgesewerError(f"--precisions: {given}; choose from {', '.join(PRECISIONS)}")
        if self.backend not in BACKENDS:
            raise EdgesewerError(f"--backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise EdgesewerError(f"--batch-sizes must be positive integers, got {self.batch_sizes}")
        if self.threads is not None and self.threads < 1:
            raise EdgesewerError(f"--threads must be >= 1, got {self.threads}")
        if self.imgsz is not None and self.imgsz < 16:
            raise EdgesewerError(f"--imgsz must be >= 16, got {self.imgsz}")
        if self.pipeline_frames < 0:
            raise EdgesewerError(f"--pipeline-frames must be >= 0, got {self.pipeline_frames}")


@dataclass
class BenchmarkResult:
    machine: dict[str, Any]
    settings: dict[str, Any]
    rows: list[BenchmarkRow]
    started: str
    finished: str = ""
    outputs: dict[str, Path] = field(default_factory=dict)

    def rows_ok(self) -> list[BenchmarkRow]:
        return [r for r in self.rows if r.ok]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def parse_list(text: str, what: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise EdgesewerError(f"{what}: empty list")
    return items


def parse_ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in parse_list(text, what)]
    except ValueError:
        raise EdgesewerError(f"{what}: expected comma-separated integers such as 1,2,4,8, got {text!r}") from None


def default_data() -> Path:
    """The shared synthetic set (generated on first use), as `edgesewer export` uses without --calib-data."""
    from edgesewer.data.synth import default_synthetic_dir

    return Path(default_synthetic_dir())


def settings_of(opts: BenchmarkOptions, threads: int, data: Path, video: Path | None) -> dict[str, Any]:
    plan = opts.timing
    return {
        "models": opts.models, "precisions": opts.precisions, "backend": opts.backend, "data": str(data),
        "crack_data": str(opts.crack_data) if opts.crack_data else None, "video": str(video) if video else None,
        "weights": ", ".join(opts.weights) if opts.weights else "newest checkpoint per model", "imgsz": opts.imgsz,
        "batch_sizes": sorted(set(opts.batch_sizes)), "threads": threads, "warmup_s": plan.warmup_s,
        "min_s": plan.min_s, "min_iters": plan.min_iters, "max_s": plan.max_s, "calib_images": opts.calib_images,
        "accuracy_images": opts.accuracy_images, "pipeline_frames": opts.pipeline_frames, "input": "random normal",
        "method": f"per row: batch-1 latency, {plan.describe()}; p50 = median of the timed runs (column runs); "
                  "throughput = inferences / timed wall clock; ratios to PyTorch eager measured within this run",
    }


def run_benchmark(opts: BenchmarkOptions, log: Callable[[str], None] | None = None,
                  write: bool = True) -> BenchmarkResult:
    """Run the sweep; with `write`, also the Markdown/CSV/JSON table and the plot under `opts.out`."""
    opts.validate()
    threads = opts.threads or usable_cores()
    data = Path(opts.data) if opts.data else default_data()
    if not data.exists():
        raise EdgesewerError(f"--data {data}: folder not found")
    video = find_video(data, opts.video)
    weights = parse_weights(opts.weights, opts.models)
    result = BenchmarkResult(describe_machine(threads), settings_of(opts, threads, data, video), [], _now())
    with _SweepProgress(opts, log) as progress:
        for model in opts.models:
            bench = _ModelBench(opts, model, weights[model], data, video, threads, progress)
            result.rows.extend(bench.run())
    add_eager_ratios(result.rows)
    result.finished = _now()
    if write:
        from edgesewer.benchmark.report import write_reports

        result.outputs = write_reports(result, Path(opts.out))
    return result


def add_eager_ratios(rows: list[BenchmarkRow]) -> None:
    """vs_eager = eager p50 / row p50 for every timed row of a model whose eager row succeeded."""
    eager = {r.model: r for r in rows if r.backend.startswith("torch") and r.ok and r.p50_ms}
    for row in rows:
        ref = eager.get(row.model)
        if ref is not None and row.p50_ms:
            row.vs_eager = ref.p50_ms / row.p50_ms


class _SweepProgress:
    """One rich progress bar across the sweep (one step per row); a no-op when progress is off."""

    def __init__(self, opts: BenchmarkOptions, log: Callable[[str], None] | None) -> None:
        self.total = len(opts.models) * (len(opts.precisions) + int(opts.eager))
        self.enabled = opts.progress
        self._log = log
        self._bar = None

    def __enter__(self) -> "_SweepProgress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=Console(stderr=True))
            self._bar.__enter__()
            self._task = self._bar.add_task("benchmark", total=self.total)
        return self

    def step(self, what: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=what)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def log(self, line: str) -> None:
        if self._log is not None:
            self._log(line)
        elif self._bar is not None:
            self._bar.console.print(f"  {line}", highlight=False, markup=False, style="dim")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _why(exc: BaseException) -> str:
    """A row's failure reason: user errors as they are, anything else with its type (EDGESEWER_DEBUG re-raises)."""
    if os.environ.get("EDGESEWER_DEBUG"):
        raise exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, EdgesewerError) else f"{type(exc).__name__}: {text}"


class _ModelBench:
    """The rows of one model: eager reference + one per precision."""

    def __init__(self, opts: BenchmarkOptions, model: str, weights: str | None, data: Path, video: Path | None,
                 threads: int, progress: _SweepProgress) -> None:
        self.opts, self.model, self.requested_weights = opts, model, weights
        self.data, self.video, self.threads, self.progress = data, video, threads, progress
        self._images: Any = None

    def run(self) -> list[BenchmarkRow]:
        try:
            self.prepare()
        except Exception as exc:  # noqa: BLE001 - an unknown model or missing checkpoint fails its rows only
            why = _why(exc)
            rows = ([BenchmarkRow(self.model, "torch", "fp32")] if self.opts.eager else [])
            rows += [BenchmarkRow(self.model, self.opts.backend, p) for p in self.opts.precisions]
            for row in rows:
                row.fail(why)
                self.progress.advance()
            return rows
        rows = []
        if self.opts.eager:
            rows.append(self._row(BenchmarkRow(self.model, "torch", "fp32"), self.eager))
        for precision in self.opts.precisions:
            rows.append(self._row(BenchmarkRow(self.model, self.opts.backend, precision), self.artifact_row))
        return rows

    def prepare(self) -> None:
        from edgesewer.models import get_entry

        entry = get_entry(self.model)  # ModelNotFound with "did you mean"
        self.task = entry.cfg.task
        self.weights = resolve_weights(self.model, self.requested_weights, Path(self.opts.runs_dir))
        self.random = self.weights == RANDOM
        expected = self.opts.imgsz or (entry.cfg.input_size if self.random else None)
        self.task_data = data_for_task(self.data, self.task, self.opts.crack_data)
        export_kwargs: dict[str, Any] = {"calib_data": self.task_data, "calib_images": self.opts.calib_images,
                                         "runs_dir": self.opts.runs_dir, "seed": self.opts.seed,
                                         **self.opts.export_extra}
        if self.opts.backend == "tensorrt":
            export_kwargs["batch"] = max(self.opts.batch_sizes)
        folder = cache_root(Path(self.opts.out)) / self.model
        self.cache = ArtifactCache(folder, self.model, self.weights, self.opts.imgsz, expected, self.opts.backend,
                                   export_kwargs, self.progress.log)

    def _row(self, row: BenchmarkRow, fill: Callable[[BenchmarkRow], None]) -> BenchmarkRow:
        row.threads = self.threads
        self.progress.step(f"{self.model} {row.precision} ({row.backend})")
        try:
            fill(row)
        except Exception as exc:  # noqa: BLE001 - the sweep goes on; the row says why
            row.fail(_why(exc))
        self.progress.advance()
        return row

    def eager(self, row: BenchmarkRow) -> None:
        self.progress.step(f"{self.model} PyTorch eager: latency")
        measure_eager(self.model, self.weights, self.opts.imgsz, Path(self.opts.runs_dir), row, self.opts.timing,
                      self.threads, cuda=self.opts.backend == "tensorrt")
        self._memory(row)

    def artifact_row(self, row: BenchmarkRow) -> None:
        label = f"{self.model} {row.precision}"
        if self.opts.backend == "tensorrt":
            from edgesewer.export.pipeline import tensorrt_available

            if not tensorrt_available():
                raise EdgesewerError("TensorRT is not installed here: run `--backend tensorrt` on the device "
                                     "(or `--backend ort` on this machine)")
        self.progress.step(f"{label}: artifact")
        path = self.cache.get(row.precision, self.opts.precisions)
        self.progress.step(f"{label}: latency and throughput")
        artifact = measure_artifact(path, row, self.opts.backend, self.opts.timing, self.opts.batch_sizes,
                                    self.threads)
        self._memory(row)
        self.progress.step(f"{label}: accuracy")
        self._accuracy(artifact, row)
        self.progress.step(f"{label}: pipeline FPS")
        self._pipeline(artifact, row)

    def _memory(self, row: BenchmarkRow) -> None:
        self.progress.step(f"{self.model} {row.precision} ({row.backend}): peak memory")
        try:
            measure_memory(row, self.threads, Path(self.opts.runs_dir), self.opts.imgsz)
        except Exception as exc:  # noqa: BLE001
            row.notes.append(f"peak memory n/a: {_why(exc)}")

    def _accuracy(self, artifact: Any, row: BenchmarkRow) -> None:
        if self.random:
            row.accuracy_via = "n/a (random weights)"
            return
        try:
            if self._images is None:
                from edgesewer.export.accuracy import evaluation_set

                self._images = evaluation_set(self.task_data, self.task, self.opts.accuracy_images, self.opts.seed)
            score_accuracy(artifact, self._images, self.threads, row)
        except Exception as exc:  # noqa: BLE001 - speed numbers stand without accuracy
            row.notes.append(f"accuracy n/a: {_why(exc)}")

    def _pipeline(self, artifact: Any, row: BenchmarkRow) -> None:
        if self.opts.pipeline_frames == 0:
            return  # switched off
        if self.video is None:
            row.notes.append("pipeline FPS n/a: no video (pass --video FILE)")
            return
        if artifact.task not in ("classify", "segment", "zeroshot"):
            row.notes.append(f"pipeline FPS n/a: the frame runtime does not run {artifact.task} models")
            return
        try:
            frames = pipeline_frames(row.fps_b1, self.opts.timing, self.opts.pipeline_frames)
            measure_pipeline(artifact, self.video, self.opts.backend, self.threads, frames, row)
        except Exception as exc:  # noqa: BLE001
            row.notes.append(f"pipeline FPS n/a: {_why(exc)}")
