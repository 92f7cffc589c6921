"""Defect segments: consecutive detections of one code merged into one entry, as an inspector logs
them ("RB from 00:12.4 to 00:14.0, peak 0.93"), and their scoring against ground truth by temporal IoU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from edgesewer.errors import DataError
from edgesewer.runtime.clock import segment_clock
from edgesewer.runtime.postprocess import FrameResult
from edgesewer.taxonomy import CIW, SEWER_DESCRIPTIONS

CRACK_CODE = "CRACK"  # segments found by the crack segmenter (cracks are Sewer-ML's RB)
# Codes whose segments carry the segmenter's crack size: its own, and the classifier's cracks/breaks (RB).
# An infiltration seen beside a crack is not measured by that crack.
CRACK_CODES = frozenset({CRACK_CODE, "RB"})


@dataclass
class DefectSegment:
    """One defect as the report lists it; frames are inclusive."""

    code: str
    description: str
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    peak_score: float
    mean_score: float
    frames: int  # frames in which the code was on (gaps bridged by merging are not counted)
    ciw: float
    severity: float  # CIW x peak score: how much this entry should worry an inspector, in [0, 1]
    peak_frame: int
    crack_area_px: float | None = None  # largest crack area over the segment, frame pixels
    crack_length_px: float | None = None  # longest crack skeleton over the segment, frame pixels
    snapshot: str | None = None  # image file of the peak frame, relative to the report folder
    # Clock position in the peak frame (runtime/clock.py): 1-12, 12 = crown. A crack gets the arc
    # clock_from -> clock_to (clockwise; clock_to None when within one hour, 12 -> 12 all round);
    # a classifier code one position from its CAM (clock_to None). None where no map says.
    clock: int | None = None
    clock_from: int | None = None
    clock_to: int | None = None
    start_m: float | None = None  # distance along the pipe at the first / last frame it was on (runtime/distance.py)
    end_m: float | None = None
    distance_source: str | None = None  # "telemetry", "ocr" or "ocr+telemetry" when it changed during the segment

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("start_time", "end_time", "peak_score", "mean_score", "ciw", "severity"):
            d[key] = round(float(d[key]), 4)
        for key in ("crack_area_px", "crack_length_px"):
            if d[key] is not None:
                d[key] = round(float(d[key]), 1)
        return d


@dataclass
class _Open:
    start_frame: int
    start_time: float
    last_frame: int
    last_time: float
    scores: list[float] = field(default_factory=list)
    peak: float = -1.0
    peak_result: FrameResult | None = None
    crack_area: float | None = None
    crack_length: float | None = None
    start_m: float | None = None  # first and last known distance of the frames it was on
    end_m: float | None = None
    distance_sources: set[str] = field(default_factory=set)


class SegmentTracker:
    """Feeds on `FrameResult`s in frame order; closes a segment when its code has been off for more
    than `max_gap` frames; drops segments with fewer than `min_frames` on-frames (flicker).

    Live streams number the frames they receive, so an outage leaves no gap in frame numbers; for
    them `max_gap_s` also closes a segment whose code was last seen more than that many seconds ago.
    The peak frame of an open segment is kept by reference; when the segment closes it goes through
    `snapshot` (the report's JPEG encoder) and is let go, so that memory stays flat however long the
    run and however many segments it finds. Without `snapshot` (no report asked for) nothing is kept.
    """

    def __init__(
        self,
        max_gap: int = 12,
        min_frames: int = 3,
        max_gap_s: float | None = None,
        snapshot: Callable[[FrameResult], bytes] | None = None,
    ) -> None:
        self.max_gap = max(0, int(max_gap))
        self.min_frames = max(1, int(min_frames))
        self.max_gap_s = max_gap_s
        self._snapshot = snapshot
        self._open: dict[str, _Open] = {}
        self.segments: list[DefectSegment] = []
        self.snapshots: dict[int, bytes] = {}  # id(segment) -> its peak frame as `snapshot` encoded it

    def update(self, result: FrameResult) -> None:
        on: dict[str, float] = {}
        if result.active is not None:
            on = {c: float(s) for c, s, a in zip(result.classes, result.scores, result.active) if a}
        if result.crack is not None and result.crack.found:
            on[CRACK_CODE] = result.crack.peak_prob
        for code, seg in list(self._open.items()):
            # Frames this code has been off, counting the current one only if it is off too.
            off_frames = result.index - seg.last_frame - (1 if code in on else 0)
            stale = self.max_gap_s is not None and result.time - seg.last_time > self.max_gap_s
            if off_frames > self.max_gap or stale:
                self._close(code)
        for code, score in on.items():
            seg = self._open.get(code)
            if seg is None:
                seg = self._open[code] = _Open(result.index, result.time, result.index, result.time)
            seg.last_frame, seg.last_time = result.index, result.time
            seg.scores.append(score)
            if score > seg.peak:
                seg.peak, seg.peak_result = score, result
            if code in CRACK_CODES and result.crack is not None and result.crack.found:
                seg.crack_area = max(seg.crack_area or 0.0, result.crack.area_px)
                seg.crack_length = max(seg.crack_length or 0.0, result.crack.length_px)
            if result.distance_m is not None:
                seg.start_m = result.distance_m if seg.start_m is None else seg.start_m
                seg.end_m = result.distance_m
                seg.distance_sources.add(result.distance_source or "unknown")

    def _close(self, code: str) -> None:
        seg = self._open.pop(code)
        if len(seg.scores) < self.min_frames:
            return
        ciw = CIW.get("RB" if code == CRACK_CODE else code, 0.0)
        description = "crack (segmentation)" if code == CRACK_CODE else SEWER_DESCRIPTIONS.get(code, code)
        segment = DefectSegment(
            code=code,
            description=description,
            start_frame=seg.start_frame,
            end_frame=seg.last_frame,
            start_time=seg.start_time,
            end_time=seg.last_time,
            peak_score=seg.peak,
            mean_score=float(np.mean(seg.scores)),
            frames=len(seg.scores),
            ciw=ciw,
            severity=ciw * seg.peak,
            peak_frame=seg.peak_result.index if seg.peak_result else seg.start_frame,
            crack_area_px=seg.crack_area,
            crack_length_px=seg.crack_length,
            start_m=seg.start_m,
            end_m=seg.end_m,
            distance_source="+".join(sorted(seg.distance_sources)) or None,
        )
        segment.clock, segment.clock_from, segment.clock_to = segment_clock(code, seg.peak_result)
        self.segments.append(segment)
        if seg.peak_result is not None and self._snapshot is not None:
            self.snapshots[id(segment)] = self._snapshot(seg.peak_result)

    def finish(self) -> list[DefectSegment]:
        """Close everything still open; segments sorted by start frame, then code."""
        for code in list(self._open):
            self._close(code)
        self.segments.sort(key=lambda s: (s.start_frame, s.code))
        return self.segments


# --- scoring against ground truth -------------------------------------------------------------


def temporal_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """IoU of two inclusive frame ranges, e.g. (10, 19) and (15, 24) -> 5 / 15."""
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    union = (a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter
    return inter / union


@dataclass
class SegmentScore:
    precision: float
    recall: float
    f1: float
    matched: int
    predicted: int
    truth: int
    pairs: list[tuple[int, int, float]]  # (prediction index, truth index, IoU)


def _as_triples(segments: Iterable[Any]) -> list[tuple[str, int, int]]:
    triples = []
    for s in segments:
        if isinstance(s, DefectSegment):
            triples.append((s.code, s.start_frame, s.end_frame))
        elif isinstance(s, dict):
            triples.append((str(s["code"]), int(s["start_frame"]), int(s["end_frame"])))
        else:
            code, start, end = s
            triples.append((str(code), int(start), int(end)))
    return triples


def score_segments(predicted: Sequence[Any], truth: Sequence[Any], iou_threshold: float = 0.3) -> SegmentScore:
    """Match predicted to true segments of the same code one-to-one, highest temporal IoU first.

    A pair counts when IoU >= `iou_threshold`. Precision = matched / predicted, recall = matched /
    truth (1.0 for an empty side, so an empty video with no predictions scores perfectly).
    """
    pred, gt = _as_triples(predicted), _as_triples(truth)
    candidates = []
    for i, (pc, ps, pe) in enumerate(pred):
        for j, (gc, gs, ge) in enumerate(gt):
            if pc == gc:
                iou = temporal_iou((ps, pe), (gs, ge))
                if iou >= iou_threshold:
                    candidates.append((iou, i, j))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    used_p, used_g, pairs = set(), set(), []
    for iou, i, j in candidates:
        if i not in used_p and j not in used_g:
            used_p.add(i)
            used_g.add(j)
            pairs.append((i, j, iou))
    matched = len(pairs)
    precision = matched / len(pred) if pred else 1.0
    recall = matched / len(gt) if gt else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return SegmentScore(precision, recall, f1, matched, len(pred), len(gt), sorted(pairs))


def load_truth_segments(path: str | Path) -> list[dict[str, Any]]:
    """The `segments` list of a synthetic inspection video's ground-truth JSON."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        segments = data["segments"]
        return [
            {"code": s["code"], "start_frame": int(s["start_frame"]), "end_frame": int(s["end_frame"])}
            for s in segments
        ]
    except FileNotFoundError:
        raise DataError(f"{path}: ground-truth file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a ground-truth JSON with a 'segments' list ({exc})") from None


def score_report(report: str | Path | dict[str, Any], truth: str | Path, iou_threshold: float = 0.3) -> SegmentScore:
    """Score an inspection report's segments against a synthetic video's ground truth.

    Codes must match exactly. Crack-segmenter segments (code CRACK) are left out unless the truth
    lists CRACK segments itself: Sewer-ML-style truth scores cracks as the classifier's RB.
    """
    data = report if isinstance(report, dict) else json.loads(Path(report).read_text(encoding="utf-8"))
    gt = load_truth_segments(truth)
    predicted = [s for s in data["segments"] if s["code"] != CRACK_CODE or any(g["code"] == CRACK_CODE for g in gt)]
    return score_segments(predicted, gt, iou_threshold)
