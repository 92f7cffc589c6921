"""End to end with a trained classifier: `edgesewer run` with a vit-t int8 artifact (ONNX Runtime) and scnet
on a synthetic inspection video must report defect segments that match the video's per-frame ground truth.

Needs a trained classifier artifact, so it is skipped unless one is named:
    EDGESEWER_E2E_MODEL=runs/export/vit-t/vit-t.int8-cpu.onnx   (classifier, required)
    EDGESEWER_E2E_VIDEO=.../inspection_000.mp4                  (default: the synthetic set's first video;
                                                                  its ground truth is the .json beside it)
No such artifact can be made on a 2-core CPU. The data are not the problem: on 24,000 frames of 192
synthetic videos (`edgesewer video frames`), a resnet10t trained for 15 CPU minutes finds all 6 segments
of the test video (`benchmarks/frame_segments.py`). A ViT-T from scratch on the same frames stays at
chance (val mAP 0.05-0.08): 3,000 steps at lr 3e-4, 3,000 steps distilled from that CNN at lr 1e-3, and
6 epochs of `edgesewer train vit-t` at lr 1e-3; on stills it reaches mAP 0.20 after 50 CPU minutes.
The route on a GPU:
    edgesewer data synth --out V --images 0 --videos 200 --crack-images 0 --seed 12 --workers 16
    edgesewer video frames --data V --out F --val-videos 8
    edgesewer train vit-t --data F --set train.device=cuda --set model.img_size=224 ...
    edgesewer export --model vit-t --weights runs/.../best.pt --precision int8 --target ort-cpu
(seed 12's videos do not include the test video, seed 0 of the default set).
The runtime's own segment logic is covered with hand-made artifacts in test_runtime_pipeline/segments/stream.
The crack segmenter is an untrained scnet exported here: it exercises the two-model path (crack fields
in events and report); its CRACK segments are not scored against Sewer-ML-coded truth (`score_report`).
"""
import json
import os
from pathlib import Path

import pytest

from edgesewer.runtime.events import read_events
from edgesewer.runtime.pipeline import RunOptions
from edgesewer.runtime.runner import run_inspection
from edgesewer.runtime.segments import score_report

MODEL = os.environ.get("EDGESEWER_E2E_MODEL")

# A true segment counts as found when a predicted segment of the same code overlaps it with temporal
# IoU >= 0.3 (each matched once).
IOU = 0.3
MIN_RECALL = 0.6
MIN_PRECISION = 0.5


def _video() -> Path:
    if os.environ.get("EDGESEWER_E2E_VIDEO"):
        return Path(os.environ["EDGESEWER_E2E_VIDEO"])
    from edgesewer.data.synth.writer import default_synthetic_dir

    return default_synthetic_dir() / "videos" / "inspection_000.mp4"


@pytest.fixture(scope="module")
def untrained_scnet(tmp_path_factory):
    pytest.importorskip("torch")
    from edgesewer.export.pipeline import ExportOptions, run_export

    out = tmp_path_factory.mktemp("scnet")
    result = run_export(ExportOptions(model="scnet", precision="fp32", weights="random", target="ort-cpu",
                                      imgsz=64, out=out, accuracy=False, progress=False), log=lambda m: None)
    return result.out_dir / "scnet.fp32.onnx"


@pytest.mark.slow
@pytest.mark.skipif(not MODEL, reason="set EDGESEWER_E2E_MODEL to a trained classifier artifact")
def test_report_segments_match_ground_truth(tmp_path, untrained_scnet):
    video = _video()
    options = RunOptions(headless=True, live_status=False, events=tmp_path / "events.jsonl",
                         report=tmp_path / "report", thresholds="0.5", smooth="kofn:3/5", min_segment_s=0.4)
    summary = run_inspection(str(video), MODEL, untrained_scnet, options=options)
    truth = json.loads(video.with_suffix(".json").read_text())
    assert summary.ended_by == "end of stream" and summary.error is None
    assert summary.frames == truth["n_frames"]
    score = score_report(tmp_path / "report" / "report.json", video.with_suffix(".json"), iou_threshold=IOU)
    print(f"segments: {score.matched} matched of {score.predicted} predicted / {score.truth} true; "
          f"precision {score.precision:.2f}, recall {score.recall:.2f}")
    assert score.recall >= MIN_RECALL and score.precision >= MIN_PRECISION
    events = read_events(tmp_path / "events.jsonl")
    detections = [e for e in events if e["event"] == "detection"]
    # both models ran on every logged frame: classifier scores of the active codes, and the crack measures
    assert detections and all("crack_area_px" in e and set(e["scores"]) == set(e["codes"]) for e in detections)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["run"]["segmenter"].startswith("scnet") and report["run"]["classifier"].startswith("vit-t")
