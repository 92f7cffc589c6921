"""Benchmark harness logic on hand-computed cases: timing loop and percentiles, Pareto front, option
parsing, machine description, eager ratios, report rows and the plot. Fast: no model is run here
(the tiny end-to-end sweep is in test_benchmark_sweep.py)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from edgesewer.benchmark.artifacts import data_for_task, find_video, parse_weights
from edgesewer.benchmark.machine import cpu_model, machine_lines, parse_nvpmodel
from edgesewer.benchmark.measure import BenchmarkRow, pipeline_frames
from edgesewer.benchmark.memory import PeakRss
from edgesewer.benchmark.plot import pareto_front, plot_accuracy_vs_fps
from edgesewer.benchmark.report import markdown, markdown_row, write_reports
from edgesewer.benchmark.sweep import BenchmarkOptions, BenchmarkResult, add_eager_ratios, parse_ints
from edgesewer.benchmark.timing import LatencyStats, TimingPlan, best_throughput, latency_percentiles_ms, measure
from edgesewer.errors import DataError, EdgesewerError


class FakeClock:
    """A clock that only moves when the timed function says so: every call takes a scripted time."""

    def __init__(self, durations_ms: list[float]) -> None:
        self.now = 0.0
        self.durations = list(durations_ms)
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    def work(self) -> None:
        self.now += self.durations[self.calls % len(self.durations)] / 1000.0
        self.calls += 1


# ----------------------------------------------------------------------------------------- timing
def test_percentiles_interpolate_linearly():
    p50, p90, p99 = latency_percentiles_ms([i / 1000 for i in range(1, 11)])  # 1..10 ms
    assert (p50, p90, p99) == pytest.approx((5.5, 9.1, 9.91))


def test_measure_warms_up_then_times_until_runs_and_duration_are_both_reached():
    clock = FakeClock([15.625])  # every call 1/64 s (binary-exact, so the counts below are exact)
    plan = TimingPlan(warmup_s=0.0625, min_s=0.25, min_iters=5, max_s=10.0)
    stats = measure(clock.work, plan, batch=1, clock=clock)
    # warm-up: calls until 62.5 ms have passed -> 4 calls; then 16 calls reach 250 ms (> 5 runs).
    assert stats.warmup_runs == 4 and stats.warmup_s == 0.0625
    assert stats.runs == 16 and stats.timed_s == 0.25
    assert stats.p50_ms == pytest.approx(15.625) and stats.p99_ms == pytest.approx(15.625)
    assert stats.throughput == pytest.approx(64.0)


def test_measure_min_iters_dominates_and_percentiles_are_ordered():
    clock = FakeClock([1.0, 2.0, 3.0, 4.0, 50.0])  # one slow call in five
    stats = measure(clock.work, TimingPlan(warmup_s=0.0, min_s=0.0, min_iters=10, max_s=10.0), batch=4, clock=clock)
    # warm-up: one call (1 ms); timed: 2,3,4,50,1,2,3,4,50,1 ms
    assert stats.warmup_runs == 1 and stats.runs == 10
    assert stats.p50_ms == pytest.approx(3.0) and stats.p90_ms == pytest.approx(50.0)
    assert stats.min_ms == pytest.approx(1.0) and stats.max_ms == pytest.approx(50.0)
    assert stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms
    assert stats.throughput == pytest.approx(4 * 10 / 0.120)  # 120 ms for 10 runs of batch 4


def test_measure_stops_at_max_s_below_min_iters():
    clock = FakeClock([500.0])
    stats = measure(clock.work, TimingPlan(warmup_s=0.0, min_s=1.0, min_iters=1000, max_s=2.0), clock=clock)
    assert stats.runs == 4 and stats.timed_s == 2.0


def test_timing_plan_rejects_nonsense_and_scales_runs_for_batches():
    with pytest.raises(EdgesewerError, match="--min-iters"):
        TimingPlan(min_iters=0)
    with pytest.raises(EdgesewerError, match="--max-s"):
        TimingPlan(min_s=5, max_s=1)
    assert TimingPlan(min_iters=50).for_batch(8).min_iters == 7  # ceil(50 / 8)
    assert TimingPlan(min_iters=50).for_batch(64).min_iters == 5


def test_best_throughput_picks_the_most_inferences_per_second():
    def stats(batch: int, runs: int, seconds: float) -> LatencyStats:
        return LatencyStats(batch, runs, 1, 0.1, seconds, 1, 1, 1, 1, 1, 1)

    best = best_throughput([stats(1, 100, 1.0), stats(4, 40, 1.0), stats(8, 15, 1.0)])
    assert best.batch == 4 and best.throughput == pytest.approx(160.0)


def test_peak_rss_sees_an_allocation():
    import numpy as np

    with PeakRss() as memory:
        block = np.ones(40 * 2**20 // 8)  # 40 MiB, touched
        del block
    if sys.platform.startswith("linux"):
        assert memory.exact  # /proc/self/clear_refs reset the high-water mark
    assert memory.delta_mb >= 35 if memory.exact else memory.delta_mb >= 0


# ------------------------------------------------------------------------------------------ pareto
def test_pareto_front_on_a_hand_case():
    #          (FPS, accuracy)
    points = [(10.0, 0.90),   # 0 front: most accurate
              (50.0, 0.80),   # 1 front
              (40.0, 0.70),   # 2 dominated by 1
              (100.0, 0.60),  # 3 front: fastest
              (100.0, 0.50),  # 4 dominated by 3 (same speed, less accurate)
              (10.0, 0.90)]   # 5 duplicate of 0: kept
    assert pareto_front(points) == [0, 5, 1, 3]
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 1.0)]) == [0]


def test_plot_scatter_and_speed_only(tmp_path):
    rows = []
    for precision, fps, f2 in (("fp32", 20.0, 0.6), ("fp16", 30.0, 0.6), ("int8", 45.0, 0.55)):
        row = BenchmarkRow("vit-t", "ort", precision, task="classify", fps_b1=fps)
        row.accuracy = {"F2_CIW": f2, "F1_Normal": 0.8, "mAP": 0.4}
        rows.append(row)
    seg = BenchmarkRow("scnet", "ort", "fp32", task="segment", fps_b1=12.0, accuracy={"ODS": 0.7, "OIS": 0.72})
    png = plot_accuracy_vs_fps([*rows, seg], tmp_path / "a.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    speed = plot_accuracy_vs_fps([BenchmarkRow("vit-t", "ort", "fp32", fps_b1=5.0)], tmp_path / "b.png")
    assert speed.stat().st_size > 1000


# ----------------------------------------------------------------------------------------- options
def test_parse_weights_forms():
    models = ["vit-t", "scnet"]
    assert parse_weights(None, models) == {"vit-t": None, "scnet": None}
    assert parse_weights(["random"], models) == {"vit-t": "random", "scnet": "random"}
    assert parse_weights(["a.pt", "b.pt"], models) == {"vit-t": "a.pt", "scnet": "b.pt"}
    assert parse_weights(["scnet=b.pt"], models) == {"vit-t": None, "scnet": "b.pt"}
    with pytest.raises(EdgesewerError, match="one per model"):
        parse_weights(["a.pt"], models)
    with pytest.raises(EdgesewerError, match="not in --models"):
        parse_weights(["vit-s=a.pt"], models)
    with pytest.raises(EdgesewerError, match="not a mix"):
        parse_weights(["vit-t=a.pt", "b.pt"], models)


def test_option_validation_is_one_line():
    with pytest.raises(EdgesewerError, match="--precisions: fp64"):
        BenchmarkOptions(models=["vit-t"], precisions=["fp64"]).validate()
    with pytest.raises(EdgesewerError, match="--backend"):
        BenchmarkOptions(backend="tflite").validate()
    with pytest.raises(EdgesewerError, match="1,2,4,8"):
        parse_ints("1,two", "--batch-sizes")
    assert parse_ints(" 1, 8 ,", "--batch-sizes") == [1, 8]


def test_pipeline_frames_budget():
    plan = TimingPlan(min_s=5.0)
    assert pipeline_frames(100.0, plan, 200) == 200  # 1000 frames would fit in 10 s: capped
    assert pipeline_frames(1.5, plan, 200) == 20  # 15 frames in 10 s: at least 20
    assert pipeline_frames(5.0, plan, 200) == 50
    assert pipeline_frames(None, plan, 10) == 10


def _synthetic_layout(root: Path) -> Path:
    (root / "sewerml").mkdir(parents=True)
    (root / "sewerml" / "SewerML_Val.csv").write_text("Filename\n")
    for sub in ("train_img", "train_lab"):
        (root / "crack" / sub).mkdir(parents=True)
    (root / "videos").mkdir()
    (root / "videos" / "b.mp4").write_bytes(b"")
    (root / "videos" / "a.mp4").write_bytes(b"")
    return root


def test_data_and_video_are_found_in_the_synthetic_layout(tmp_path):
    root = _synthetic_layout(tmp_path / "synth")
    assert data_for_task(root, "classify") == root / "sewerml"
    assert data_for_task(root / "sewerml", "classify") == root / "sewerml"
    assert data_for_task(root, "segment") == root / "crack"
    assert data_for_task(root / "sewerml", "segment") == root / "crack"  # beside the Sewer-ML folder
    assert find_video(root, None) == root / "videos" / "a.mp4"
    assert find_video(root / "sewerml", None) == root / "videos" / "a.mp4"
    with pytest.raises(DataError, match="not a Sewer-ML folder"):
        data_for_task(root / "crack", "classify")
    with pytest.raises(DataError, match="video file not found"):
        find_video(root, tmp_path / "missing.mp4")


# ----------------------------------------------------------------------------------------- machine
def test_machine_facts(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\n")
    assert cpu_model(cpuinfo) == "Example CPU @ 2.0GHz"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 62.50\nModel\t: NVIDIA Jetson Orin Nano\n")
    assert cpu_model(cpuinfo) == "NVIDIA Jetson Orin Nano"
    assert parse_nvpmodel("NV Power Mode: 15W\n0\n") == "15W (mode 0)"
    assert parse_nvpmodel("no such thing") is None
    info = {"cpu": "X", "arch": "aarch64", "cores": 6, "memory_gib": 7.4, "cpu_governor": "schedutil",
            "gpu": {"name": "Orin", "compute_capability": "8.7"}, "python": "3.10", "edgesewer": "0.1.0",
            "versions": {"tensorrt": "10.3.0", "torch": None}, "ort_providers": ["CPUExecutionProvider"],
            "jetson": {"module": "Jetson Orin Nano", "jetpack": "6.1", "l4t": "36.4"}, "power_mode": "15W (mode 0)",
            "load_average": [0.5, 0.25, 0.1], "os": "Linux 5.15", "host": "robot"}
    text = "\n".join(machine_lines(info))
    assert "GPU: Orin (sm 8.7)" in text and "tensorrt 10.3.0" in text and "torch" not in text
    assert "JetPack 6.1, L4T 36.4, power mode 15W (mode 0)" in text and "0.50 / 0.25 / 0.10" in text


# ----------------------------------------------------------------------------------------- reports
def _row(model, backend, precision, p50, **kw) -> BenchmarkRow:
    return BenchmarkRow(model, backend, precision, p50_ms=p50, p90_ms=p50 * 1.1, p99_ms=p50 * 1.2, runs=50,
                        fps_b1=1000.0 / p50, **kw)


def test_eager_ratio_is_eager_p50_over_row_p50():
    rows = [_row("vit-t", "torch-cpu", "fp32", 40.0), _row("vit-t", "ort", "fp32", 20.0),
            _row("vit-t", "ort", "int8-cpu", 16.0), _row("scnet", "ort", "fp32", 10.0),
            BenchmarkRow("scnet", "torch", "fp32").fail("unknown model")]
    add_eager_ratios(rows)
    assert [r.vs_eager for r in rows] == [pytest.approx(1.0), pytest.approx(2.0), pytest.approx(2.5), None, None]


def test_reports_hold_every_row_and_failed_rows_say_why(tmp_path):
    ok = _row("vit-t", "ort", "int8", 20.0, task="classify", size_mb=5.8, calibration="512 images (entropy)",
              calibration_images=512, accuracy={"F2_CIW": 0.5512, "F1_Normal": 0.9, "mAP": 0.41})
    ok.throughput, ok.best_batch, ok.fps_best = {1: 50.0, 4: 80.0}, 4, 80.0
    bad = BenchmarkRow("nope", "ort", "fp32").fail("unknown model 'nope' | see `edgesewer models`")
    machine = {"cpu": "X", "arch": "x86_64", "cores": 2, "python": "3.11", "edgesewer": "0.1.0", "versions": {},
               "os": "Linux", "host": "h"}
    settings = {"models": ["vit-t", "nope"], "precisions": ["int8"], "backend": "ort", "threads": 2,
                "weights": "random", "warmup_s": 2.0, "min_iters": 50, "min_s": 5.0, "max_s": 60.0,
                "batch_sizes": [1, 4], "video": None, "pipeline_frames": 200, "data": "d", "accuracy_images": 500}
    result = BenchmarkResult(machine, settings, [ok, bad], "t0", "t1")
    cells = markdown_row(ok)
    assert cells[5] == "F2_CIW 55.12 · F1_Normal 90.00 · mAP 41.00" and cells[6] == "512 images (entropy)"
    assert cells[7] == "20.00 / 22.00 / 24.00" and cells[10] == "80.0 (4)"
    assert markdown_row(bad)[3] == "failed: unknown model 'nope' \\| see `edgesewer models`"
    outputs = write_reports(result, tmp_path / "out")
    assert set(outputs) == {"csv", "json", "md", "png"}
    with open(outputs["csv"], newline="") as fh:
        records = list(csv.DictReader(fh))
    assert [r["status"] for r in records] == ["ok", bad.status]
    assert records[0]["fps_b4"] == "80.0" and records[0]["F2_CIW"] == "0.5512" and records[1]["p50_ms"] == ""
    data = json.loads(outputs["json"].read_text())
    assert data["rows"][0]["throughput"] == {"1": 50.0, "4": 80.0} and data["machine"]["cores"] == 2
    text = markdown(result)
    assert "median over the number of timed runs" in text and "warm-up >= 2 s" in text
    assert text.count("\n| vit-t |") == 1 and text.count("\n| nope |") == 1


# ---------------------------------------------------------------------------------- artifact cache
class FakeExporter:
    """Stands in for run_export: writes `<model>.<precision>.onnx` + a valid sidecar for what an export makes."""

    def __init__(self, folder: Path, fail: tuple[str, ...] = ()) -> None:
        self.folder, self.fail, self.calls = folder, fail, []

    def __call__(self, cache, precision: str, target: str = "ort-cpu"):
        from edgesewer.errors import ExportError
        from edgesewer.export.metadata import REQUIRED_KEYS

        self.calls.append(precision)
        if precision in self.fail:
            cache.failures[precision] = f"export failed: {precision} broke"
            raise ExportError(cache.failures[precision])
        made = {"int8": ("fp32", "int8", "int8-cpu")}.get(precision, ("fp32", precision))
        self.folder.mkdir(parents=True, exist_ok=True)
        for p in made:
            (self.folder / f"vit-t.{p}.onnx").write_bytes(b"onnx")
            sidecar = {k: None for k in REQUIRED_KEYS}
            sidecar.update(format_version=1, precision=p, weights="random", target=target,
                           model_cfg={"input_size": 64})
            (self.folder / f"vit-t.{p}.json").write_text(json.dumps(sidecar))


def _cache(tmp_path, monkeypatch, fail=()):
    from edgesewer.benchmark import artifacts

    folder = tmp_path / "artifacts" / "vit-t"
    exporter = FakeExporter(folder, fail)
    cache = artifacts.ArtifactCache(folder, "vit-t", "random", 64, 64, "ort", {}, lambda s: None)
    monkeypatch.setattr(cache, "_export", lambda precision, target="ort-cpu": exporter(cache, precision, target))
    return cache, exporter


def test_artifact_cache_exports_each_missing_precision_once(tmp_path, monkeypatch):
    cache, exporter = _cache(tmp_path, monkeypatch)
    wanted = ["fp32", "fp16", "int8"]
    assert cache.get("fp32", wanted).name == "vit-t.fp32.onnx"
    assert exporter.calls == ["int8"]  # the int8 export writes fp32 as well
    assert cache.get("fp16", wanted).name == "vit-t.fp16.onnx" and cache.get("int8", wanted).name == "vit-t.int8.onnx"
    assert exporter.calls == ["int8", "fp16"]


def test_artifact_cache_falls_back_and_remembers_failures(tmp_path, monkeypatch):
    from edgesewer.errors import ExportError

    cache, exporter = _cache(tmp_path, monkeypatch, fail=("int8",))
    assert cache.get("fp32", ["fp32", "int8"]).name == "vit-t.fp32.onnx"  # int8 export broke: fp32 on its own
    with pytest.raises(ExportError, match="int8 broke"):
        cache.get("int8", ["fp32", "int8"])
    assert exporter.calls == ["int8", "fp32"]  # the failed export is not retried


def test_markdown_names_the_set_really_scored():
    """The method line names each model's scored set (here a real crack set), not the --data folder."""
    seg = BenchmarkRow("scnet", "ort", "fp32", task="segment", accuracy={"ODS": 0.6},
                       accuracy_data="/data/CrackForest (test)")
    unscored = BenchmarkRow("scnet", "ort", "fp16", task="segment")
    settings = {"models": ["scnet"], "precisions": ["fp32"], "backend": "ort", "threads": 2, "weights": "x",
                "warmup_s": 2.0, "min_iters": 50, "min_s": 5.0, "max_s": 60.0, "batch_sizes": [1], "video": None,
                "pipeline_frames": 0, "data": "/home/u/.cache/edgesewer/synthetic", "accuracy_images": 500}
    machine = {"cpu": "X", "arch": "x86_64", "cores": 2, "python": "3.11", "edgesewer": "0.1.0", "versions": {},
               "os": "Linux", "host": "h"}
    text = markdown(BenchmarkResult(machine, settings, [seg, unscored], "t0", "t1"))
    assert "- Accuracy on scnet: /data/CrackForest (test) (" in text and "synthetic" not in text.split("## Results")[0]
    # nothing scored: the data folder given is all there is to name
    assert "- Accuracy on /home/u/.cache/edgesewer/synthetic (" in markdown(
        BenchmarkResult(machine, settings, [unscored], "t0", "t1"))


def test_timing_inputs_have_the_models_own_shape_frame_stacks_included():
    """A frame-stack model (Video Swin, [B, T, C, S, S]) is timed on T frames, every other model on one image."""
    from edgesewer.benchmark.measure import random_input, sample_shape
    from edgesewer.modelcfg import ModelCfg
    from edgesewer.precisions import PRECISIONS

    image = ModelCfg(name="scnet", task="segment", input_size=128, in_chans=4)
    stack = ModelCfg(name="video-swin3d-b", task="video", input_size=64,
                     extra={"input_layout": "BTCHW", "frames": 8})
    assert sample_shape(image) == (4, 128, 128)
    assert sample_shape(stack) == (8, 3, 64, 64)
    assert random_input(2, sample_shape(stack)).shape == (2, 8, 3, 64, 64)
    assert "int8-fp16" in PRECISIONS and BenchmarkOptions(precisions=["int8-fp16"]).validate() is None
