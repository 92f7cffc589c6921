"""A tiny real sweep: vit-t, random weights, 64 px, fp32 + int8 (+ an unknown model), short timings, on a
synthetic set made here. Checks the outputs, the row columns, the failed-row path, the artifact
cache, accuracy scoring and the CLI's one-line errors. Structure and logic, never speed.
"""

from __future__ import annotations

import csv
import json

import pytest
import typer
from typer.testing import CliRunner

from edgesewer.benchmark import BenchmarkOptions, TimingPlan, run_benchmark
from edgesewer.benchmark.artifacts import cached_artifact
from edgesewer.benchmark.measure import BenchmarkRow, score_accuracy
from edgesewer.cli.benchmark import benchmark_command

app = typer.Typer()
app.command("benchmark")(benchmark_command)
runner = CliRunner()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from edgesewer.data.synth import generate

    root = tmp_path_factory.mktemp("bench") / "synth"
    generate(root, images=60, videos=1, crack_images=8, seed=0, size=(160, 128), crack_size=(64, 64),
             video_seconds=2.0, progress=False)
    return root


@pytest.fixture(scope="module")
def sweep(synth, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGESEWER_CACHE", str(tmp_path_factory.mktemp("cache")))
    out = synth.parent / "results"
    opts = BenchmarkOptions(models=["vit-t", "no-such-model"], precisions=["fp32", "int8"], data=synth, out=out,
                            weights=["random"], imgsz=64, batch_sizes=[1, 2], threads=1,
                            timing=TimingPlan(warmup_s=0.1, min_s=0.3, min_iters=5, max_s=3.0), calib_images=8,
                            pipeline_frames=20, progress=False, export_extra={"parity_images": 8})
    try:
        yield opts, run_benchmark(opts)
    finally:
        mp.undo()


@pytest.mark.slow
def test_sweep_writes_table_csv_json_and_plot(sweep):
    opts, result = sweep
    out = opts.out
    assert {k: p.name for k, p in result.outputs.items()} == {
        "csv": "benchmark.csv", "json": "benchmark.json", "png": "accuracy_vs_fps.png", "md": "benchmark.md"}
    assert (out / "accuracy_vs_fps.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "benchmark.md").read_text()
    assert "## Machine" in md and "usable cores" in md and "onnxruntime" in md
    assert "warm-up >= 0.1 s, then timed until >= 5 runs and >= 0.3 s" in md
    with open(out / "benchmark.csv", newline="") as fh:
        records = list(csv.DictReader(fh))
    assert [(r["model"], r["backend"], r["precision"]) for r in records] == [
        ("vit-t", "torch-cpu", "fp32"), ("vit-t", "ort", "fp32"), ("vit-t", "ort", "int8"),
        ("no-such-model", "torch", "fp32"), ("no-such-model", "ort", "fp32"), ("no-such-model", "ort", "int8")]
    for column in ("size_mb", "p50_ms", "p90_ms", "p99_ms", "runs", "fps_b1", "fps_b2", "best_batch",
                   "pipeline_fps", "peak_mem_mb", "vs_eager", "calibration_images", "F2_CIW", "status"):
        assert column in records[0], column
    data = json.loads((out / "benchmark.json").read_text())
    assert data["format"] == "edgesewer-benchmark/1" and data["settings"]["threads"] == 1
    assert data["machine"]["cores"] >= 1 and len(data["rows"]) == 6


@pytest.mark.slow
def test_rows_are_measured_and_the_unknown_model_fails_in_its_rows(sweep):
    _, result = sweep
    eager, fp32, int8, *unknown = result.rows
    assert [r.status for r in (eager, fp32, int8)] == ["ok", "ok", "ok"], [r.status for r in result.rows]
    for row in (eager, fp32, int8):
        assert 0 < row.p50_ms <= row.p90_ms <= row.p99_ms
        assert row.runs >= 5 and row.warmup_runs >= 1 and row.input_size == 64 and row.threads == 1
        assert row.peak_mem_mb is not None and row.peak_mem_mb > 0
    assert eager.vs_eager == pytest.approx(1.0)
    assert fp32.vs_eager == pytest.approx(eager.p50_ms / fp32.p50_ms)
    assert set(fp32.throughput) == {1, 2} and fp32.fps_best == max(fp32.throughput.values())
    assert fp32.fps_b1 == fp32.throughput[1]
    assert fp32.size_mb > 3 * int8.size_mb  # int8 weights are a quarter of fp32
    assert int8.calibration_images == 8 and int8.calibration == "8 images (entropy)" and fp32.calibration is None
    assert fp32.accuracy is None and fp32.accuracy_via == "n/a (random weights)"
    assert fp32.pipeline_frames == 20 and fp32.pipeline_fps > 0 and int8.pipeline_fps > 0
    assert len(unknown) == 3
    for row in unknown:
        assert row.status.startswith("failed: unknown model 'no-such-model'") and row.p50_ms is None


@pytest.mark.slow
def test_artifacts_are_cached_under_the_out_dir_and_reused_only_when_they_fit(sweep):
    opts, result = sweep
    folder = opts.out / "artifacts" / "vit-t"
    assert cached_artifact(folder, "vit-t", "fp32", "random", 64, "ort") == folder / "vit-t.fp32.onnx"
    assert cached_artifact(folder, "vit-t", "int8", "random", None, "ort") == folder / "vit-t.int8.onnx"
    assert cached_artifact(folder, "vit-t", "fp32", "random", 96, "ort") is None  # other --imgsz
    assert cached_artifact(folder, "vit-t", "fp16", "random", 64, "ort") is None  # never exported
    assert cached_artifact(folder, "vit-t", "fp32", "random", 64, "tensorrt") is None  # no engine here
    assert result.rows[1].artifact == str(folder / "vit-t.fp32.onnx")
    assert (opts.out / "artifacts" / ".gitignore").read_text().splitlines()[-1] == "*"


@pytest.mark.slow
def test_accuracy_of_an_artifact_on_the_labelled_set(sweep, synth):
    from edgesewer.export.accuracy import evaluation_set
    from edgesewer.runtime.artifact import load_artifact

    opts, _ = sweep
    artifact = load_artifact(opts.out / "artifacts" / "vit-t" / "vit-t.fp32.onnx")
    images = evaluation_set(synth / "sewerml", "classify")
    row = BenchmarkRow("vit-t", "ort", "fp32")
    score_accuracy(artifact, images, 1, row)
    assert set(row.accuracy) == {"F2_CIW", "F1_Normal", "mAP"} and row.accuracy_images == 12  # the Val split
    assert all(0.0 <= v <= 1.0 for v in row.accuracy.values()) and row.accuracy_via == "ort-cpu"


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: "), result.output
    return lines[-1]


def test_cli_bad_precision_is_one_line(tmp_path):
    result = runner.invoke(app, ["--models", "vit-t", "--precisions", "fp32,fp64", "--data", str(tmp_path)])
    assert one_line_error(result) == ("error: --precisions: fp64; choose from fp32, fp16, int8, int8-fp16, int8-cpu")


def test_cli_all_rows_failed_writes_the_table_and_exits_1(tmp_path):
    (tmp_path / "data").mkdir()
    out = tmp_path / "out"
    result = runner.invoke(app, ["--models", "vit-q", "--precisions", "fp32", "--data", str(tmp_path / "data"),
                                 "--out", str(out), "--no-eager", "--weights", "random"])
    line = one_line_error(result)
    assert line.startswith("error: every row failed (first: vit-q fp32: failed: unknown model 'vit-q'; did you mean")
    assert "| vit-q | ort | fp32 | failed: unknown model" in (out / "benchmark.md").read_text()


def test_tensorrt_rows_fail_with_a_reason_where_tensorrt_is_missing(synth, tmp_path):
    from edgesewer.export.pipeline import tensorrt_available

    if tensorrt_available():
        pytest.skip("TensorRT is installed here")
    opts = BenchmarkOptions(models=["vit-t"], precisions=["fp16", "int8"], backend="tensorrt", data=synth,
                            out=tmp_path / "out", weights=["random"], imgsz=64, eager=False, progress=False,
                            pipeline_frames=0)
    result = run_benchmark(opts)
    assert [r.precision for r in result.rows] == ["fp16", "int8"]
    for row in result.rows:
        assert row.backend == "tensorrt" and row.status.startswith("failed: TensorRT is not installed here")
    assert not list((tmp_path / "out" / "artifacts").glob("*/*.onnx"))  # nothing exported in vain
    assert (tmp_path / "out" / "benchmark.md").is_file()
