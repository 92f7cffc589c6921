"""Clip mode: a video-level model over a sliding window of the live stream. Torch-free.

Every frame is pushed into a ring buffer that holds the last `span_s` seconds, shrunk to the
model's tile size (so the buffer stays small: 100 tiles of 224 px are 15 MB). Every `stride_s`
seconds, once the buffer covers the span, k frames are picked from the window with the same
`sample_indices` the model was trained with (segment centres over the window's frames), and
classified the way training built its input:

* super-image models (`superimage-*`): k = 9 frames tiled 3 x 3 by the same `make_superimage`,
  normalised by the same `preprocess`, one [1, 3, S, S] input;
* frame-stack models (`video-swin3d-b`, `input_layout` BTCHW): k = the model's `frames` (T, 32 by
  default) frames, each resized and normalised by `preprocess` as `ClipFramesDataset` does, one
  [1, T, 3, S, S] input.

The result is a `ClipPrediction` for the window; consecutive windows in which a code is on merge
into clip-level `DefectSegment`s for the inspection report.

Runs next to the frame-level models of `edgesewer run` (see `ClipClassifier.push`), or alone on a
video file (`classify_video`).

Windows and training: both kinds are trained on *whole* videos (the VideoPipe clips: k frames
spread over each clip's full length), so a window of `span_s` seconds shows the model k frames
`span_s / k` apart, where training showed frames `video length / k` apart. A window close to the
training videos' length matches training best; for archive footage of clip-like length,
`span_s="whole"` (`--clip-span whole`, or 0) classifies the whole file once, with exactly the
training sampling (`WholeVideoWindow`), and a live stream keeps the sliding window. A window that
holds fewer frames than k repeats some (as `sample_indices` does for a short training video).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from edgesewer.data.preprocess import preprocess
from edgesewer.data.superimage import GRID, N_FRAMES, make_superimage, resize_tile, sample_indices
from edgesewer.errors import BackendError, EdgesewerError
from edgesewer.metrics.videopipe import apply_normal_rule
from edgesewer.runtime.artifact import Artifact, load_artifact
from edgesewer.runtime.backends import load_backend
from edgesewer.runtime.postprocess import sigmoid
from edgesewer.runtime.segments import DefectSegment
from edgesewer.taxonomy import CIW, SEWER_CODES, SEWER_DESCRIPTIONS

DEFAULT_SPAN_S = 4.0
WHOLE = "whole"  # span_s: the whole video (file sources), as the models were trained


@dataclass
class ClipPrediction:
    """One classified window; frames are inclusive, scores are after the normal rule."""

    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    frame_indices: list[int]  # the k frames classified (9 tiled, or the T of a frame stack), in time order
    probs: np.ndarray  # raw sigmoid outputs
    scores: np.ndarray  # after the normal post-processing rule (equal to probs without a normal class)
    active: np.ndarray  # bool per class: scores >= thresholds
    classes: tuple[str, ...]

    @property
    def codes(self) -> list[str]:
        return [c for c, on in zip(self.classes, self.active) if on]

    def label(self, max_codes: int = 3) -> str:
        """The overlay line: `clip: RB 0.82, OB 0.61` (highest scores first), or `clip: no defect`."""
        on = sorted(((float(s), c) for c, s, a in zip(self.classes, self.scores, self.active) if a), reverse=True)
        if not on:
            return "clip: no defect"
        more = f" +{len(on) - max_codes}" if len(on) > max_codes else ""
        return "clip: " + ", ".join(f"{c} {s:.2f}" for s, c in on[:max_codes]) + more

    def to_event(self) -> dict[str, Any]:
        """A JSONL event: `{"type": "clip", ...}`."""
        return {"type": "clip", "start_frame": self.start_frame, "end_frame": self.end_frame,
                "start_time": round(self.start_time, 3), "end_time": round(self.end_time, 3),
                "frames": self.frame_indices, "codes": self.codes,
                "scores": {c: round(float(s), 4) for c, s in zip(self.classes, self.scores)}}


class ClipWindow:
    """Ring buffer of the last `span_s` seconds of frames, stored as RGB tiles."""

    def __init__(self, span_s: float, tile: int, k: int = N_FRAMES, interpolation: str = "bilinear") -> None:
        if span_s <= 0:
            raise ValueError(f"the clip span must be positive, got {span_s}")
        self.span_s, self.tile, self.k, self.interpolation = float(span_s), int(tile), k, interpolation
        self._frames: deque[tuple[int, float, np.ndarray]] = deque()
        self._dt = 0.0  # latest frame interval: a window is full when it reaches back one interval short of the span

    def push(self, image_bgr: np.ndarray, index: int, time: float) -> None:
        # Shrink first, convert after: both are per-pixel/per-channel, so the order does not change the tile.
        tile = cv2.cvtColor(resize_tile(image_bgr, self.tile, self.interpolation), cv2.COLOR_BGR2RGB)
        if self._frames:
            self._dt = max(0.0, time - self._frames[-1][1])
        self._frames.append((int(index), float(time), tile))
        # The epsilon keeps frame times like 29 / 10 - 2.0 = 0.8999... from keeping one frame too many.
        while self._frames and self._frames[0][1] <= time - self.span_s + 1e-6:
            self._frames.popleft()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def full(self) -> bool:
        if not self._frames:
            return False
        return self._frames[0][1] <= self._frames[-1][1] - self.span_s + self._dt + 1e-6

    @property
    def last(self) -> tuple[int, float]:
        index, time, _ = self._frames[-1]
        return index, time

    def select(self) -> tuple[list[int], list[float], list[np.ndarray]]:
        """The k frames of the window at `sample_indices` positions: (frame numbers, times, RGB tiles)."""
        if not self._frames:
            raise ValueError("the clip window is empty")
        picks = sample_indices(len(self._frames), self.k)
        chosen = [self._frames[int(i)] for i in picks]
        return [c[0] for c in chosen], [c[1] for c in chosen], [c[2] for c in chosen]

    def span(self) -> tuple[int, int, float, float]:
        (i0, t0, _), (i1, t1, _) = self._frames[0], self._frames[-1]
        return i0, i1, t0, t1


class WholeVideoWindow:
    """The whole video as one window: the k frames at `sample_indices(total, k)`, as in training.

    With the file's frame count known (`set_total`), only those frames are kept. Without it (a
    container that does not say), a thinned copy of the video is kept (every `stride`-th frame, the
    stride doubling whenever more than `8 * k` frames are held: memory stays bounded) and the k
    frames are sampled from it at the end; the same happens when the header overstated the length.
    """

    def __init__(self, tile: int, k: int = N_FRAMES, interpolation: str = "bilinear") -> None:
        self.tile, self.k, self.interpolation = int(tile), k, interpolation
        self.total: int | None = None
        self._wanted: dict[int, list[int]] = {}
        self._exact: dict[int, tuple[int, float, np.ndarray]] = {}
        self._thinned: list[tuple[int, float, np.ndarray]] = []
        self._stride = 1
        self._first: tuple[int, float] | None = None
        self._last: tuple[int, float] | None = None
        self._count = 0

    def set_total(self, n_frames: int) -> None:
        """The file's frame count (from its header): keep exactly the frames training would sample."""
        self.total = int(n_frames) if n_frames and n_frames > 0 else None
        self._wanted = {}
        if self.total:
            for position, index in enumerate(sample_indices(self.total, self.k)):
                self._wanted.setdefault(int(index), []).append(position)

    def _tile(self, image_bgr: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(resize_tile(image_bgr, self.tile, self.interpolation), cv2.COLOR_BGR2RGB)

    def push(self, image_bgr: np.ndarray, index: int, time: float) -> None:
        index, time = int(index), float(time)
        if self._first is None:
            self._first = (index, time)
        self._last = (index, time)
        ordinal = self._count  # position in the file: the frame counter sample_indices refers to
        self._count += 1
        tile = None
        if ordinal in self._wanted:
            tile = self._tile(image_bgr)
            self._exact[ordinal] = (index, time, tile)
        if ordinal % self._stride == 0:
            self._thinned.append((index, time, tile if tile is not None else self._tile(image_bgr)))
            if len(self._thinned) > 8 * self.k:
                self._thinned = self._thinned[::2]
                self._stride *= 2

    def __len__(self) -> int:
        return self._count

    full = False  # never classified before the end: `finish` does it

    @property
    def last(self) -> tuple[int, float]:
        if self._last is None:
            raise ValueError("the clip window is empty")
        return self._last

    def select(self) -> tuple[list[int], list[float], list[np.ndarray]]:
        if not self._count:
            raise ValueError("the clip window is empty")
        if self.total == self._count and len(self._exact) == len(self._wanted):
            chosen = [self._exact[int(i)] for i in sample_indices(self.total, self.k)]
        else:  # no or a wrong frame count: the k from the thinned copy (uniform up to the stride)
            chosen = [self._thinned[int(i)] for i in sample_indices(len(self._thinned), self.k)]
        return [c[0] for c in chosen], [c[1] for c in chosen], [c[2] for c in chosen]

    def span(self) -> tuple[int, int, float, float]:
        (i0, t0), (i1, t1) = self._first, self.last  # type: ignore[misc]
        return i0, i1, t0, t1


def parse_span(value: str | float | None) -> float | str | None:
    """`--clip-span`: seconds, or `whole` (also 0) for the whole video; None keeps the model's default."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in (WHOLE, "all", "video"):
            return WHOLE
        try:
            value = float(text)
        except ValueError:
            raise EdgesewerError(f"--clip-span {value!r}: give seconds (e.g. 4) or 'whole' for the whole video") from None
    return WHOLE if value == 0 else float(value)


class ClipClassifier:
    """A video-level artifact run over a sliding window; `push` every frame, `finish` at the end."""

    def __init__(self, artifact: str | Path | Artifact, backend: str | None = None, *,
                 span_s: float | str | None = None,
                 stride_s: float | None = None, thresholds: Sequence[float] | np.ndarray | None = None,
                 normal_threshold: float | None | str = "model", providers: str | Sequence[str] = "cpu",
                 threads: int | None = None, **backend_options: Any) -> None:
        self.artifact = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
        a, cfg = self.artifact, self.artifact.cfg
        if a.task != "video":
            raise BackendError(f"{a.model_path.name}: is a {a.task} model; --clip-model needs a video (super-image or "
                               "frame-stack) model, e.g. an export of superimage-efficientnet-b0 or video-swin3d-b")
        self.classes = a.classes
        self.stack = cfg.extra.get("input_layout") == "BTCHW"  # frame stack (Video Swin): T frames, no tiling
        if self.stack:
            self.grid, self.tile = 1, cfg.input_size
            self.k = int(cfg.extra.get("frames") or 0)  # load_artifact checked it against the input shape
            if self.k < 1:
                raise BackendError(f"{a.sidecar_path}: a frame-stack model needs model_cfg.extra.frames (T)")
        else:
            self.grid = int(cfg.extra.get("grid", GRID))
            self.tile = int(cfg.extra.get("tile") or cfg.input_size // self.grid)
            self.k = self.grid * self.grid
            if self.tile * self.grid != cfg.input_size:
                raise BackendError(f"{a.sidecar_path}: tile {self.tile} x grid {self.grid} "
                                   f"!= input size {cfg.input_size}")
        span = parse_span(span_s)
        self.whole = span == WHOLE  # one window over the whole video, as in training
        self.span_s = 0.0 if self.whole else float(span if span is not None
                                                   else cfg.extra.get("clip_seconds") or DEFAULT_SPAN_S)
        self.stride_s = 0.0 if self.whole else float(stride_s) if stride_s is not None else self.span_s / 2
        if not self.whole and (self.span_s <= 0 or self.stride_s <= 0):
            raise EdgesewerError(f"the clip span and stride must be positive seconds, got span {self.span_s:g} s, "
                                 f"stride {self.stride_s:g} s")
        self.thresholds = np.asarray(thresholds if thresholds is not None else a.thresholds, dtype=np.float32)
        if normal_threshold == "model":
            normal_threshold = cfg.extra.get("normal_threshold")
        self.normal_class = cfg.extra.get("normal_class")
        self.normal_threshold = normal_threshold if self.normal_class in self.classes else None
        self.window: ClipWindow | WholeVideoWindow = (
            WholeVideoWindow(self.tile, self.k, cfg.interpolation) if self.whole
            else ClipWindow(self.span_s, self.tile, self.k, cfg.interpolation))
        if (backend or "ort") == "ort" and a.format == "onnx":  # ONNX Runtime settings, as for the frame models
            backend_options = {"providers": providers, "threads": threads, **backend_options}
        self.backend = load_backend(a, backend, **backend_options)
        self.predictions: list[ClipPrediction] = []
        self._last_end_time: float | None = None
        self._last_end_frame: int | None = None

    def set_source(self, source: Any) -> None:
        """Tell a whole-video window the file's frame count; a live stream has no whole to classify."""
        if not self.whole:
            return
        if getattr(source, "is_live", False):
            raise EdgesewerError("--clip-span whole classifies a whole video file; a live stream has no end: "
                                 "give the window in seconds (e.g. --clip-span 30)")
        assert isinstance(self.window, WholeVideoWindow)
        self.window.set_total(int(getattr(source, "announced_frames", 0) or 0))

    def classify_tiles(self, tiles: Sequence[np.ndarray]) -> np.ndarray:
        """Sigmoid probabilities (K,) of one clip given its k RGB frames (time order)."""
        cfg = self.artifact.cfg
        if self.stack:  # [1, T, 3, S, S]: each frame normalised on its own, as ClipFramesDataset does
            x = preprocess(list(tiles), cfg.input_size, cfg.mean, cfg.std, cfg.interpolation)[None]
        else:
            image = make_superimage(tiles, self.tile, grid=self.grid, interpolation=cfg.interpolation)
            x = preprocess(image, cfg.input_size, cfg.mean, cfg.std, cfg.interpolation)
        return sigmoid(self.backend.infer(x)["logits"][0])

    def _predict(self) -> ClipPrediction:
        indices, _, tiles = self.window.select()
        start_frame, end_frame, start_time, end_time = self.window.span()
        probs = self.classify_tiles(tiles)
        scores = apply_normal_rule(probs, self.classes, str(self.normal_class), self.normal_threshold).astype(np.float32)
        prediction = ClipPrediction(start_frame, end_frame, start_time, end_time, indices, probs, scores,
                                    scores >= self.thresholds, self.classes)
        self.predictions.append(prediction)
        self._last_end_time, self._last_end_frame = end_time, end_frame
        return prediction

    def push(self, image_bgr: np.ndarray, index: int, time: float) -> ClipPrediction | None:
        """Add a frame (BGR, as captured); returns a prediction when a window is due."""
        self.window.push(image_bgr, index, time)
        if not self.window.full:
            return None
        if self._last_end_time is not None and time < self._last_end_time + self.stride_s - 1e-6:
            return None
        return self._predict()

    def finish(self) -> ClipPrediction | None:
        """At the end of a stream: classify the frames not yet covered (a stream shorter than the span included)."""
        if not len(self.window) or self.window.last[0] == self._last_end_frame:
            return None
        return self._predict()

    def segments(self, merge_gap_s: float = 0.0) -> list[DefectSegment]:
        return clip_segments(self.predictions, merge_gap_s, normal_class=self.normal_class)

    def describe(self) -> str:
        """One line for the console and the report: the model and its window."""
        if self.whole:
            return (f"{self.artifact.describe()}, one window over the whole video ({self.k} frames over its length, "
                    "as trained)")
        return f"{self.artifact.describe()}, {self.span_s:g} s windows of {self.k} frames every {self.stride_s:g} s"

    def close(self) -> None:
        self.backend.close()


def clip_segments(predictions: Sequence[ClipPrediction], merge_gap_s: float = 0.0,
                  normal_class: str | None = None) -> list[DefectSegment]:
    """Merge, per code, the windows where it is on and that overlap or lie within `merge_gap_s`.

    A segment spans from its first window's start to its last window's end; peak and mean are over
    its windows' scores; severity is CIW x peak for Sewer-ML codes (0 for label sets without CIW).
    The normal class is not a defect and gets no segments.
    """
    if not predictions:
        return []
    classes = predictions[0].classes
    sewer = tuple(classes) == SEWER_CODES
    segments: list[DefectSegment] = []
    for k, code in enumerate(classes):
        if code == normal_class:
            continue
        runs: list[list[ClipPrediction]] = []
        for p in sorted((p for p in predictions if p.active[k]), key=lambda p: p.start_time):
            if runs and p.start_time <= runs[-1][-1].end_time + merge_gap_s + 1e-9:
                runs[-1].append(p)
            else:
                runs.append([p])
        for run in runs:
            scores = [float(p.scores[k]) for p in run]
            peak = run[int(np.argmax(scores))]
            ciw = CIW[code] if sewer else 0.0
            end = max(run, key=lambda p: p.end_frame)
            segments.append(DefectSegment(
                code=code, description=SEWER_DESCRIPTIONS[code] if sewer else f"VideoPipe class {code}",
                start_frame=run[0].start_frame, end_frame=end.end_frame, start_time=run[0].start_time,
                end_time=end.end_time, peak_score=max(scores), mean_score=float(np.mean(scores)),
                frames=end.end_frame - run[0].start_frame + 1, ciw=ciw, severity=ciw * max(scores),
                peak_frame=peak.frame_indices[len(peak.frame_indices) // 2]))
    segments.sort(key=lambda s: (s.start_frame, s.code))
    return segments


def classify_video(artifact: str | Path | Artifact, video: str | Path, *, span_s: float | str | None = None,
                   stride_s: float | None = None, backend: str | None = None,
                   **backend_options: Any) -> tuple[list[ClipPrediction], list[DefectSegment]]:
    """Run clip mode over a whole video file; returns (window predictions, clip-level segments).

    `span_s="whole"` gives one prediction for the file, from the frames training would have sampled
    (9 for a super-image model, the model's T for a frame stack).
    """
    from edgesewer.runtime.sources import open_source

    clip = ClipClassifier(artifact, backend, span_s=span_s, stride_s=stride_s, **backend_options)
    try:
        with open_source(str(video)) as source:
            clip.set_source(source)
            for frame in source:
                clip.push(frame.image, frame.index, frame.time)
        clip.finish()
        return clip.predictions, clip.segments()
    finally:
        clip.close()
