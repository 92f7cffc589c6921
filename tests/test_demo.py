"""`edgesewer demo --quick` as a user runs it: the console script in a subprocess, on a fresh folder, with
no data and no network. It must finish and end with the FPS / accuracy table, every step must leave
its files behind (benchmark table/CSV/JSON/plot, annotated video, events, report), and the live run must
say when its classifier is at chance level (the run warns exactly when the validation mAP says so), with
distinct snapshots and the report's path printed last."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

pytest.importorskip("torch")

MODELS = ("vit-t-dino", "scnet")
PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    exe = Path(sys.executable).with_name("edgesewer")
    command = [str(exe)] if exe.is_file() else [sys.executable, "-m", "edgesewer.cli"]
    done = subprocess.run(command + ["demo", "--quick", "--out", str(out)], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "NO_COLOR": "1"})
    print(done.stdout[-6000:])
    assert done.returncode == 0, done.stderr[-3000:]
    return out, " ".join(done.stdout.split())  # Rich wraps long lines; compare words, not layout


@pytest.mark.slow
def test_demo_quick_ends_with_the_trade_off_table(demo):
    out, stdout = demo
    table_at = stdout.rindex("edgesewer benchmark:")  # the table's title line
    tail = stdout[table_at:]
    for model in MODELS:
        assert model in tail
    for word in ("precision", "FPS", "int8", "fp16", "demo finished in", "steps: data"):
        assert word in tail, word
    n_frames = json.loads((out / "data" / "videos" / "inspection_000.json").read_text())["n_frames"]
    assert f"runtime: {n_frames} frames" in stdout and "defect segments vs the test video's ground truth" in stdout


@pytest.mark.slow
def test_demo_quick_reports_only_what_its_classifier_can_back(demo):
    out, stdout = demo
    result = json.loads((out / "demo.json").read_text())
    segments, validation = result["segments"], result["classifier_validation"]
    assert segments["truth"] > 0 and 0 <= segments["matched"] <= segments["predicted"]
    assert validation["images"] > 0 and 0 < validation["chance_mAP"] < 1
    report = json.loads((out / "inspection" / "report.json").read_text())
    at_chance = validation["mAP"] <= 1.5 * validation["chance_mAP"]
    # the run says so exactly when the training run's validation put the classifier at chance level
    assert at_chance == any("has not learned" in w for w in report["run"].get("warnings", []))
    snapshots = [s["snapshot"] for s in report["segments"] if s.get("snapshot")]
    contents = {(out / "inspection" / name).read_bytes() for name in snapshots}
    assert len(contents) == len(snapshots)  # distinct pictures, not one frame repeated
    # what a user opens first is printed last, beside the segment score
    assert stdout.rstrip().endswith("report.html") and "defect segments vs the test video's ground truth" in stdout


@pytest.mark.slow
def test_demo_quick_models_beat_a_constant_predictor(demo):
    """Both models learned something: vit-t-dino's val mAP against the mAP of a constant score (each class's
    prevalence), scnet's test ODS against the F1 of calling every pixel crack (2p / (1 + p)).
    Measured: mAP 0.118, 0.094 and 0.121 against 0.052 (three runs); scnet, with its 6 whole epochs
    (DemoPlan.scnet_min_epochs), ODS 0.490 against 0.038 with the [0, 90] degree rotation and 0.646 with the
    recipe's quarter turns (one run each; the clock alone had given it 2 epochs and ODS 0.068 / 0.091). Whether the
    live run then finds the test video's defect segments is issue 15's bound, not yet met (recall 0 of 4)."""
    import numpy as np

    from edgesewer.data.crack import CrackFolder

    out, _ = demo
    validation = json.loads((out / "demo.json").read_text())["classifier_validation"]
    assert validation["mAP"] > 1.3 * validation["chance_mAP"], validation
    crack, pixels = 0, 0
    for _, gt in CrackFolder(out / "data" / "crack", "test"):
        crack, pixels = crack + int(np.count_nonzero(gt)), pixels + gt.size
    flag_all_f1 = 2 * (crack / pixels) / (1 + crack / pixels)
    rows = list(csv.DictReader((out / "benchmark" / "benchmark.csv").open()))
    ods = next(float(r["ODS"]) for r in rows if (r["model"], r["backend"], r["precision"]) == ("scnet", "ort", "fp32"))
    assert ods > 6 * flag_all_f1, (ods, flag_all_f1)


@pytest.mark.slow
def test_demo_quick_benchmarks_every_model_and_precision(demo):
    out, _ = demo
    bench = out / "benchmark"
    for name in ("benchmark.md", "benchmark.csv", "benchmark.json", "accuracy_vs_fps.png"):
        assert (bench / name).stat().st_size > 0, name
    rows = list(csv.DictReader((bench / "benchmark.csv").open()))
    measured = {(r["model"], r["precision"]): r for r in rows if r["backend"] == "ort"}
    for model in MODELS:
        for precision in PRECISIONS:
            row = measured[(model, precision)]
            assert row["status"] == "ok", (model, precision, row["status"])
            assert float(row["fps_b1"]) > 0 and float(row["p50_ms"]) > 0
            metric = row["F2_CIW"] if model != "scnet" else row["ODS"]
            assert 0.0 <= float(metric) <= 1.0
    # int8 rows say how many images calibrated them; eager PyTorch rows are the 1.00x reference
    assert measured[("vit-t-dino", "int8")]["calibration_images"] not in ("", "0")
    eager = [r for r in rows if r["backend"] == "torch-cpu"]
    assert {r["model"] for r in eager} == set(MODELS)


@pytest.mark.slow
def test_demo_quick_runs_the_live_runtime_on_the_inspection_video(demo):
    out, _ = demo
    truth = json.loads((out / "data" / "videos" / "inspection_000.json").read_text())
    run = out / "inspection"
    video = cv2.VideoCapture(str(run / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == truth["n_frames"]
    video.release()
    report = json.loads((run / "report.json").read_text())
    assert report["run"]["stats"]["frames"] == truth["n_frames"] and report["run"]["ended_by"] == "end of stream"
    lines = (run / "events.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["event"] == "start" and json.loads(lines[-1])["event"] == "end"
    assert (run / "report.html").is_file()
