"""End to end with trained artifacts: `edgesewer run` on a synthetic inspection video with per-frame
ground truth must report defect segments that match it.

Needs exported artifacts of trained models, so it is skipped unless they are named:
    EDGESEWER_E2E_MODEL=runs/export/vit-t/vit-t.int8-cpu.onnx   (classifier, required)
    EDGESEWER_E2E_SEG=runs/export/scnet/scnet.fp32.onnx         (crack segmenter, optional)
    EDGESEWER_E2E_VIDEO=.../inspection_000.mp4                  (default: the synthetic set's first video;
                                                                  its ground truth is the .json beside it)
"""

import os
from pathlib import Path

import pytest

from edgesewer.runtime.events import read_events
from edgesewer.runtime.pipeline import RunOptions
from edgesewer.runtime.runner import run_inspection
from edgesewer.runtime.segments import score_report

# A segment counts as found when a predicted segment of the same code overlaps it with temporal IoU >= 0.3.
IOU = 0.3
MIN_RECALL = 0.7
MIN_PRECISION = 0.6

MODEL = os.environ.get("EDGESEWER_E2E_MODEL")


def _video() -> Path:
    if os.environ.get("EDGESEWER_E2E_VIDEO"):
        return Path(os.environ["EDGESEWER_E2E_VIDEO"])
    from edgesewer.data.synth.writer import default_synthetic_dir

    return default_synthetic_dir() / "videos" / "inspection_000.mp4"


@pytest.mark.slow
@pytest.mark.skipif(not MODEL, reason="set EDGESEWER_E2E_MODEL to a trained classifier artifact")
def test_report_segments_match_ground_truth(tmp_path):
    video = _video()
    seg = os.environ.get("EDGESEWER_E2E_SEG")
    options = RunOptions(
        headless=True,
        live_status=False,
        events=tmp_path / "events.jsonl",
        report=tmp_path / "report",
        smooth="kofn:3/5",
    )
    summary = run_inspection(str(video), MODEL, seg, options=options)
    assert summary.ended_by == "end of stream" and summary.error is None
    score = score_report(tmp_path / "report" / "report.json", video.with_suffix(".json"), iou_threshold=IOU)
    print(
        f"segments: {score.matched} matched of {score.predicted} predicted / {score.truth} true; "
        f"precision {score.precision:.2f}, recall {score.recall:.2f}"
    )
    assert score.recall >= MIN_RECALL and score.precision >= MIN_PRECISION
    assert any(e["event"] == "detection" for e in read_events(tmp_path / "events.jsonl"))
