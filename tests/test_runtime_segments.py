"""Defect segments (merging consecutive detections), their scoring against ground truth by temporal
IoU, the JSONL events and the inspection report, all on hand-made cases."""

import json

import cv2
import numpy as np
import pytest

from edgesewer.runtime.events import EventWriter, read_events
from edgesewer.runtime.postprocess import CrackResult, FrameResult
from edgesewer.runtime.report import encode_snapshot, format_time, write_report
from edgesewer.runtime.segments import (
    CRACK_CODE,
    SegmentTracker,
    load_truth_segments,
    score_segments,
    temporal_iou,
)

CLASSES = ("RB", "OB")
IMAGE = np.zeros((48, 64, 3), np.uint8)


def frame(index, rb=None, ob=None, fps=10.0, crack=None):
    scores = np.array([rb or 0.1, ob or 0.1], np.float32)
    active = np.array([rb is not None, ob is not None])
    return FrameResult(index, index / fps, IMAGE, CLASSES, scores, scores, active, crack)


def test_tracker_bridges_short_gaps_and_drops_flicker():
    tracker = SegmentTracker(max_gap=2, min_frames=2, snapshot=lambda result: b"frame %d" % result.index)
    rb = {2: 0.6, 3: 0.8, 4: 0.7, 7: 0.9, 8: 0.6, 12: 0.95}
    for i in range(20):
        tracker.update(frame(i, rb=rb.get(i), ob=0.99 if i == 15 else None))
    segments = tracker.finish()
    assert len(segments) == 1  # RB 12 and OB 15 are single frames: flicker
    s = segments[0]
    assert (s.code, s.start_frame, s.end_frame, s.frames, s.peak_frame) == ("RB", 2, 8, 5, 7)
    assert (s.start_time, s.end_time) == pytest.approx((0.2, 0.8))
    assert s.peak_score == pytest.approx(0.9) and s.mean_score == pytest.approx(0.72)
    assert (s.ciw, s.severity) == pytest.approx((1.0, 0.9))
    assert s.description == "cracks, breaks and collapses"
    assert tracker.snapshots == {id(s): b"frame 7"}  # the peak frame, handed over as the segment closed


def test_closed_segments_keep_no_frames():
    """A long run must not hold a frame per segment: peak frames are encoded (or dropped) at close."""
    encoded = []
    keep = SegmentTracker(max_gap=1, min_frames=1, snapshot=lambda r: encoded.append(r.index) or b"jpeg")
    drop = SegmentTracker(max_gap=1, min_frames=1)
    for i in range(200):  # 50 segments of 2 frames
        for tracker in (keep, drop):
            tracker.update(frame(i, rb=0.9 if i % 4 < 2 else None))
            # Encoded as soon as each segment closes, not at the end: nothing waits in memory.
            assert len(tracker._open) <= 1
        assert len(encoded) == len(keep.segments)
    assert len(keep.finish()) == len(drop.finish()) == 50
    assert encoded == [4 * k for k in range(50)] and set(keep.snapshots.values()) == {b"jpeg"}
    assert drop.snapshots == {}
    assert not any(isinstance(v, FrameResult) for v in vars(keep).values())


def test_gap_limit_is_exact():
    for on_frames, expected in (([0, 3], [(0, 3)]), ([0, 4], [(0, 0), (4, 4)])):
        tracker = SegmentTracker(max_gap=2, min_frames=1)
        for i in range(6):
            tracker.update(frame(i, ob=0.9 if i in on_frames else None))
        assert [(s.start_frame, s.end_frame) for s in tracker.finish()] == expected


def test_crack_segments_carry_the_largest_crack():
    tracker = SegmentTracker(max_gap=0, min_frames=1)
    for i, (area, length) in enumerate([(0, 0), (120.0, 30.0), (300.0, 55.0), (80.0, 20.0), (0, 0)]):
        crack = CrackResult(np.zeros((4, 4), np.uint8), area, area / 3072, length, int(area > 0), 0.8 if area else 0.0)
        tracker.update(frame(i, rb=0.9 if area else None, ob=0.9 if area else None, crack=crack))
    by_code = {s.code: s for s in tracker.finish()}
    assert set(by_code) == {"RB", "OB", CRACK_CODE}
    for code in ("RB", CRACK_CODE):
        s = by_code[code]
        assert (s.start_frame, s.end_frame, s.crack_area_px, s.crack_length_px) == (1, 3, 300.0, 55.0)
    # a root mass in the same frames is not measured by the crack beside it
    assert (by_code["OB"].crack_area_px, by_code["OB"].crack_length_px) == (None, None)
    assert by_code[CRACK_CODE].ciw == 1.0 and by_code[CRACK_CODE].peak_score == pytest.approx(0.8)


def test_temporal_iou():
    assert temporal_iou((10, 19), (15, 24)) == pytest.approx(5 / 15)
    assert temporal_iou((0, 9), (10, 19)) == 0.0
    assert temporal_iou((3, 3), (3, 3)) == 1.0


def test_segment_scoring_hand_case():
    pred = [("RB", 10, 19), ("RB", 40, 49), ("OB", 0, 9), ("FS", 100, 110)]
    truth = [{"code": "RB", "start_frame": 12, "end_frame": 21}, ("RB", 60, 70), ("OB", 5, 14)]
    strict = score_segments(pred, truth, iou_threshold=0.5)  # RB/RB IoU 8/12; OB/OB 5/15 too low
    assert (strict.matched, strict.precision, strict.recall) == (1, 0.25, pytest.approx(1 / 3))
    assert strict.f1 == pytest.approx(2 * 0.25 * (1 / 3) / (0.25 + 1 / 3))
    assert strict.pairs == [(0, 0, pytest.approx(8 / 12))]
    loose = score_segments(pred, truth, iou_threshold=0.3)
    assert (loose.matched, loose.precision, loose.recall) == (2, 0.5, pytest.approx(2 / 3))
    # one-to-one: two predictions cannot both claim one true segment
    double = score_segments([("RB", 0, 9), ("RB", 5, 14)], [("RB", 0, 14)], iou_threshold=0.5)
    assert (double.matched, double.precision, double.recall) == (1, 0.5, 1.0)
    assert score_segments([], []).f1 == 1.0


def test_truth_segments_from_synthetic_json(tmp_path):
    gt = tmp_path / "inspection_000.json"
    gt.write_text(json.dumps({"fps": 25, "segments": [{"code": "RB", "start_frame": 3, "end_frame": 9, "x": 1}]}))
    assert load_truth_segments(gt) == [{"code": "RB", "start_frame": 3, "end_frame": 9}]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(Exception, match="bad.json: not a ground-truth JSON"):
        load_truth_segments(tmp_path / "bad.json")


def test_events_are_flushed_line_by_line(tmp_path):
    path = tmp_path / "logs" / "events.jsonl"
    writer = EventWriter(path)
    writer.start(source="x.mp4")
    writer.frame(frame(0))  # nothing detected: not logged
    writer.frame(frame(1, rb=0.875))
    writer.status("stream lost")
    events = read_events(path)  # readable before close: every line is flushed
    assert [e["event"] for e in events] == ["start", "detection", "status"]
    assert events[1]["frame"] == 1 and events[1]["codes"] == ["RB"] and events[1]["scores"] == {"RB": 0.875}
    assert events[1]["time"] == 0.1 and "utc" in events[1]
    writer.end(ended_by="end of stream")
    writer.close()
    with open(path, "a") as fh:
        fh.write('{"event": "detec')  # a hard kill mid-line
    assert [e["event"] for e in read_events(path)] == ["start", "detection", "status", "end"]
    every = EventWriter(tmp_path / "all.jsonl", every_frame=True)
    every.frame(frame(0))
    every.close()
    assert read_events(tmp_path / "all.jsonl")[0]["codes"] == []


def test_report_json_html_and_snapshots(tmp_path):
    tracker = SegmentTracker(max_gap=1, min_frames=1, snapshot=encode_snapshot)
    for i in range(6):
        tracker.update(frame(i, rb=0.9 if 1 <= i <= 3 else None, ob=0.6 if i == 5 else None))
    segments = tracker.finish()
    run = {"source": "pipe<7>.mp4", "stats": {"pipeline_fps": 30.0, "network_fps": 80.0, "dropped_frames": 0}}
    path = write_report(tmp_path / "report", segments, run, tracker.snapshots)
    data = json.loads(path.read_text())
    assert data["summary"] == {"segments": 2, "by_code": {"OB": 1, "RB": 1}, "max_severity": 0.9}
    rb = data["segments"][0]
    assert (rb["code"], rb["start_frame"], rb["end_frame"], rb["snapshot"]) == ("RB", 1, 3, "snapshots/001_RB_f1.jpg")
    snapshot = cv2.imread(str(tmp_path / "report" / rb["snapshot"]))
    assert snapshot.shape == (48, 64, 3)
    html = (tmp_path / "report" / "report.html").read_text()
    assert (
        "pipe&lt;7&gt;.mp4" in html
        and "cracks, breaks and collapses" in html
        and 'src="snapshots/001_RB_f1.jpg"' in html
    )
    assert "30.0 / 80.0" in html
    assert format_time(62.26) == "01:02.3"


def test_live_segments_also_split_on_time():
    """A stream outage: frames 3 and 4 are consecutive numbers but 5 s apart."""
    times = {0: 0.0, 1: 0.04, 2: 0.08, 3: 0.12, 4: 5.12, 5: 5.16}
    tracker = SegmentTracker(max_gap=12, min_frames=1, max_gap_s=0.54)
    for i, t in times.items():
        tracker.update(
            FrameResult(i, t, IMAGE, CLASSES, np.array([0.9, 0.1]), np.array([0.9, 0.1]), np.array([True, False]))
        )
    assert [(s.start_frame, s.end_frame) for s in tracker.finish()] == [(0, 3), (4, 5)]
