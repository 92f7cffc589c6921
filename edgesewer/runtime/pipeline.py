"""The live runtime: capture -> preprocess -> infer -> postprocess + sinks, in threads joined by small
bounded queues, so decoding frame N+1 overlaps inference on frame N.

Files deliver every frame (the queues block the reader, optional batching for throughput); live
sources deliver only the newest frame (the source drops and counts stale ones). Postprocessing and
the sinks run on the calling thread, which also receives Ctrl-C: the first stops capture and lets
the frames in flight finish, a second stops at once. Either way, and when the source dies, events
are flushed and the report is written: nothing already detected is lost.

Clip mode (`clip=`, a super-image or frame-stack video model) runs in the sink stage: every frame
goes into its sliding window, and every stride one window is classified (a "clip" event, a line on
the overlay); at the end the windows merge into clip-level segments for the report.

Distance along the pipe (`--telemetry`, `--distance ocr`, see distance.py) is looked up in the
preprocess stage, in frame order; frames, events and segments carry it from there.
"""

from __future__ import annotations

import platform
import queue
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import cv2

from edgesewer import __version__
from edgesewer.errors import CaptureError, EdgesewerError, EndOfStream
from edgesewer.runtime.distance import DEFAULT_OCR_EVERY, FrameDistance, open_distance
from edgesewer.runtime.distance_ocr import parse_roi
from edgesewer.runtime.events import EventWriter, utc_now
from edgesewer.runtime.overlay import Overlay
from edgesewer.runtime.postprocess import (
    FrameResult,
    TemporalSmoother,
    measure_cracks,
    parse_smoothing,
    parse_thresholds,
    sigmoid,
)
from edgesewer.runtime.predictors import ClassifierPredictor, Predictor, SegmenterPredictor
from edgesewer.runtime.report import encode_snapshot, write_report
from edgesewer.runtime.segments import DefectSegment, SegmentTracker
from edgesewer.runtime.sinks import default_output, open_sink, refuse_outputs_over_inputs
from edgesewer.runtime.sources import Frame, VideoSource
from edgesewer.runtime.stats import LiveStatus, PipelineStats
from edgesewer.runtime.uri import parse_output

if TYPE_CHECKING:
    from edgesewer.runtime.clip import ClipClassifier, ClipPrediction


@dataclass
class RunOptions:
    """Everything `edgesewer run` can set besides the models and the source."""

    # display://0 | file://out.mp4 | http://@:8080/ | rtsp://@:8554/inspect | none; None: display unless headless
    output: str | None = None
    headless: bool = False
    events: Path | None = None
    events_every_frame: bool = False
    report: Path | None = None
    thresholds: str | None = None  # "0.4" or "RB=0.3,OB=0.6"
    smooth: str | None = "none"  # none | ema[:A] | kofn:K/N
    seg_threshold: float = 0.5
    crack_min_area: float = 30.0  # frame pixels
    batch: int = 1  # frames per inference call (files only; live sources always use 1)
    max_frames: int | None = None
    merge_gap_s: float = 0.5  # a code off for longer than this ends its segment
    min_segment_s: float = 0.2  # shorter segments are flicker and are dropped
    live_status: bool = True
    distance: str = "none"  # ocr | none: read the camera's distance counter (runtime/distance.py)
    telemetry: str | None = None  # JSON-lines file or udp://HOST:PORT; wins over OCR where it has a value
    ocr_every: int = DEFAULT_OCR_EVERY  # frames between OCR reads
    ocr_roi: str | None = None  # X0,Y0,X1,Y1 fractions of the frame; default: where the synthetic videos draw it


@dataclass
class RunSummary:
    frames: int
    ended_by: str  # "end of stream" | "source failed" | "interrupted" | "max frames" | "stopped by user"
    message: str
    segments: list[DefectSegment]
    stats: dict[str, Any]
    report: Path | None = None
    events: Path | None = None
    error: EdgesewerError | None = None
    clip_segments: list[DefectSegment] = field(default_factory=list)  # from the clip model's windows


@dataclass
class _Item:
    frame: Frame
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    distance: FrameDistance | None = None


@dataclass
class _End:
    reason: str
    message: str = ""
    error: BaseException | None = None


class InspectionPipeline:
    """One run over one source with a classifier, a crack segmenter and/or a clip (video-level) model."""

    def __init__(
        self,
        source: VideoSource,
        classifier: ClassifierPredictor | None,
        segmenter: SegmenterPredictor | None,
        options: RunOptions,
        status: LiveStatus | None = None,
        *,
        clip: ClipClassifier | None = None,
    ) -> None:
        if classifier is None and segmenter is None and clip is None:
            raise EdgesewerError(
                "give a classifier (--model), a crack segmenter (--seg) and/or a clip model (--clip-model)"
            )
        self.source, self.classifier, self.segmenter, self.opts = source, classifier, segmenter, options
        self.clip = clip
        self._clip_label: str | None = None  # the latest window's verdict, shown until the next one
        self.stats = PipelineStats()
        self.status = status or LiveStatus(self.stats, enabled=options.live_status)
        self.status.stats = self.stats
        self.predictors: list[tuple[str, Predictor]] = [
            (name, p) for name, p in (("cls", classifier), ("seg", segmenter)) if p is not None
        ]
        self.batch = 1 if source.is_live else max(1, options.batch)
        depth = 1 if source.is_live else 2 * self.batch  # live: never queue stale frames
        self._q_captured: queue.Queue = queue.Queue(depth)
        self._q_prepared: queue.Queue = queue.Queue(depth)
        self._q_inferred: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()  # stop capturing, finish what is in flight
        self._abort = threading.Event()  # stop everything now
        if classifier is not None:
            a = classifier.artifact
            self.thresholds = parse_thresholds(options.thresholds, a.classes, a.thresholds)
            self.smoother = TemporalSmoother(parse_smoothing(options.smooth), self.thresholds)
        fps = source.fps or 25.0
        # Live: also by time, since a stream outage leaves no gap in the received-frame numbers.
        gap_s = options.merge_gap_s + 1.0 / fps if source.is_live else None
        self.overlay = Overlay()
        # Snapshots are encoded as each segment closes, and only for a report: no frames pile up.
        snapshot = (lambda result: encode_snapshot(result, self.overlay)) if options.report is not None else None
        self.tracker = SegmentTracker(
            round(options.merge_gap_s * fps),
            max(1, round(options.min_segment_s * fps)),
            max_gap_s=gap_s,
            snapshot=snapshot,
        )
        self.output = parse_output(options.output) if options.output is not None else default_output(options.headless)
        refuse_outputs_over_inputs(self._input_files(), self._output_files())
        self.distance = open_distance(
            options.distance, options.telemetry, live=source.is_live, clock_origin=source.clock_origin,
            ocr_every=options.ocr_every, roi=parse_roi(options.ocr_roi) if options.ocr_roi else None,
        )
        # Clip mode: the last window's worth of frame distances, and those of every window's first and last
        # frame (two per window, like the predictions the clip model keeps) for the clip events and segments.
        span_frames = int(((clip.span_s if clip is not None else 0.0) + 1.0) * fps * 1.5) + 16
        self._recent_distances: deque[tuple[int, FrameDistance]] = deque(maxlen=span_frames)
        self._clip_distances: dict[int, FrameDistance] = {}
        self.sink = None
        try:
            self.sink = open_sink(self.output, source.fps, on_status=self.status.message)
            # Last, so that a bad option above leaves no half-opened event log behind.
            self.events = EventWriter(options.events, every_frame=options.events_every_frame)
        except BaseException:
            # Release what already holds a port: a telemetry listener (UDP), a live view (TCP).
            if self.distance is not None:
                self.distance.close()
            if self.sink is not None:
                self.sink.close()
            raise
        self._started = utc_now()
        self._interrupts = 0  # Ctrl-C / SIGTERM received during this run

    def _input_files(self) -> list[Path]:
        uri = self.source.uri
        files = [Path(uri.location)] if uri.kind in ("video", "images") and Path(uri.location).is_file() else []
        for model in (self.classifier, self.segmenter, self.clip):
            if model is not None:
                files += [model.artifact.model_path, model.artifact.sidecar_path]
        return files

    def _output_files(self) -> dict[str, Path]:
        files = {"--output video": Path(self.output.location)} if self.output.scheme == "file" else {}
        if self.opts.events is not None:
            files["--events log"] = Path(self.opts.events)
        if self.opts.report is not None:
            files.update({f"--report {name}": Path(self.opts.report) / name for name in ("report.json", "report.html")})
        return files

    # --- worker threads ---------------------------------------------------------------------

    def _put(self, q: queue.Queue, item: Any) -> bool:
        while not self._abort.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue) -> Any:
        while not self._abort.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return _End("aborted")

    def _capture(self) -> None:
        end = _End("stopped by user")
        count = 0
        try:
            while not self._stop.is_set():
                if self.opts.max_frames is not None and count >= self.opts.max_frames:
                    end = _End("max frames", f"stopped after {count} frames (--max-frames)")
                    break
                t0 = time.perf_counter()
                frame = self.source.read(timeout=0.2)
                if frame is None:
                    continue
                self.stats.record("capture", time.perf_counter() - t0)
                count += 1
                if not self._put(self._q_captured, _Item(frame)):
                    return
        except EndOfStream as exc:
            end = _End("end of stream", str(exc))
        except CaptureError as exc:
            end = _End("source failed", str(exc), exc)
        except BaseException as exc:  # a bug or backend failure must still end the run cleanly
            end = _End("error", f"capture failed: {exc!r}", exc)
        self._put(self._q_captured, end)

    def _preprocess(self) -> None:
        while True:
            item = self._get(self._q_captured)
            if isinstance(item, _End):
                self._put(self._q_prepared, item)
                return
            try:
                if self.distance is not None:  # here, in frame order, overlapping inference of the previous frame
                    item.distance = self.distance.for_frame(item.frame.time, item.frame.image)
                if self.predictors:  # clip mode alone prepares its own input, in the sink stage
                    t0 = time.perf_counter()
                    rgb = cv2.cvtColor(item.frame.image, cv2.COLOR_BGR2RGB)
                    for name, predictor in self.predictors:
                        item.inputs[name] = predictor.prepare(rgb)
                    self.stats.record("preprocess", time.perf_counter() - t0)
            except BaseException as exc:
                self._fail(self._q_prepared, "preprocess", exc)
                return
            if not self._put(self._q_prepared, item):
                return

    def _infer(self) -> None:
        pending: list[_Item] = []
        end: _End | None = None
        while end is None:
            item = self._get(self._q_prepared)
            if isinstance(item, _End):
                end = item
            else:
                pending.append(item)
                # Files: fill the batch from what preprocess already has ready, without waiting.
                while len(pending) < self.batch:
                    try:
                        extra = self._q_prepared.get(timeout=0.05)
                    except queue.Empty:
                        break
                    if isinstance(extra, _End):
                        end = extra
                        break
                    pending.append(extra)
            if pending:
                try:
                    t0 = time.perf_counter()
                    for name, predictor in self.predictors:
                        for it, out in zip(pending, predictor.run([it.inputs.pop(name) for it in pending])):
                            it.outputs[name] = out
                    if self.predictors:  # clip mode alone infers in the sink stage: no network FPS to claim here
                        self.stats.record("infer", time.perf_counter() - t0, frames=len(pending))
                except BaseException as exc:
                    self._fail(self._q_inferred, "inference", exc)
                    return
                for it in pending:
                    if not self._put(self._q_inferred, it):
                        return
                pending = []
        self._put(self._q_inferred, end)

    def _fail(self, downstream: queue.Queue, stage: str, exc: BaseException) -> None:
        self._stop.set()
        message = str(exc) if isinstance(exc, EdgesewerError) else f"{stage} failed: {exc!r}"
        self._put(downstream, _End("error", message, exc))

    # --- calling thread: postprocess and sinks -----------------------------------------------

    def _postprocess(self, item: _Item) -> FrameResult:
        frame = item.frame
        result = FrameResult(frame.index, frame.time, frame.image)
        if item.distance is not None:
            result.distance_m, result.distance_source = item.distance.metres, item.distance.source
        if self.classifier is not None:
            out = item.outputs["cls"]
            result.classes = self.classifier.artifact.classes
            result.probs = sigmoid(out["logits"])
            result.scores, result.active = self.smoother.update(result.probs)
            result.cam = out.get("cam")
        if self.segmenter is not None:
            result.crack = measure_cracks(
                item.outputs["seg"]["prob"], frame.image.shape[:2], self.opts.seg_threshold, self.opts.crack_min_area
            )
        return result

    def _push_clip(self, result: FrameResult) -> None:
        """Feed the clip window; log a classified window and keep its verdict on screen until the next."""
        if self.distance is not None:
            self._recent_distances.append((result.index, FrameDistance(result.distance_m, result.distance_source)))
        prediction = self.clip.push(result.image, result.index, result.time)
        if prediction is not None:
            self._write_clip_event(prediction)
            self._clip_label = prediction.label()
        if self._clip_label is not None:
            result.extra["clip"] = self._clip_label

    def _write_clip_event(self, prediction: ClipPrediction) -> None:
        # "event" like every other line of the log; "type" is what ClipPrediction.to_event names it.
        event = {"event": "clip", **prediction.to_event()}
        if self.distance is not None:
            recent = dict(self._recent_distances)
            for key, frame in (("start", prediction.start_frame), ("end", prediction.end_frame)):
                known = recent.get(frame) or self._clip_distances.get(frame) or FrameDistance(None, None)
                self._clip_distances[frame] = known
                event[f"{key}_m"] = known.metres
            event["distance_source"] = self._clip_distances[prediction.end_frame].source
        self.events.write(event)

    def _sinks(self, result: FrameResult) -> None:
        if self.clip is not None:
            self._push_clip(result)
        if self.sink is not None and getattr(self.sink, "active", True):  # a live view nobody watches: no drawing
            annotated = self.overlay.draw(result, self.stats.short_status())
            if hasattr(self.sink, "show"):
                if not self.sink.show(annotated):
                    self._stop.set()
            else:
                self.sink.write(annotated)
        self.events.frame(result)
        self.tracker.update(result)

    def _on_item(self, item: _Item) -> None:
        t0 = time.perf_counter()
        result = self._postprocess(item)
        t1 = time.perf_counter()
        self._sinks(result)
        self.stats.record("postprocess", t1 - t0)
        self.stats.record("sinks", time.perf_counter() - t1)
        self.stats.frame_done()
        self._count_source_trouble()

    def _count_source_trouble(self) -> None:
        """Copy the source's counters (any thread may have changed them) into the run statistics."""
        self.stats.dropped, self.stats.stalls = self.source.dropped, self.source.stalls
        self.stats.reconnects = self.source.reconnects

    def _consume(self) -> _End:
        announced = False
        while True:
            if self._interrupts and not announced:
                announced = True
                self.status.message("stopping: finishing the frames in flight (Ctrl-C again to stop at once)")
            if self._interrupts >= 2:
                self._abort.set()
                return _End("interrupted", "interrupted twice: stopped without finishing frames in flight")
            try:
                item = self._q_inferred.get(timeout=0.1)
                if isinstance(item, _End):
                    return item
                self._on_item(item)
                self.status.refresh()
            except queue.Empty:
                self.status.refresh()
            except Exception as exc:  # a sink failed (disk full, writer refused): end, but keep the report
                self._abort.set()
                message = str(exc) if isinstance(exc, EdgesewerError) else f"postprocess/sinks failed: {exc!r}"
                return _End("error", message, exc)
            except KeyboardInterrupt:  # only when run() could not trap the signals (not the main thread)
                self._on_interrupt()

    def _on_interrupt(self, signum: int | None = None, frame: Any = None) -> None:
        """Ctrl-C / SIGTERM: the first stops capture, the second stops at once (see _consume).

        Installed as the signal handler while run() runs on the main thread: it only sets flags and
        never raises, because a KeyboardInterrupt landing inside queue.Queue's condition wait can
        leave the queue's locks inconsistent and hang every stage.
        """
        self._interrupts += 1
        self._stop.set()

    def _trap_signals(self) -> Callable[[], None]:
        """Route SIGINT and SIGTERM to `_on_interrupt` for the run; returns the restorer."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.signal(sig, self._on_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def run(self) -> RunSummary:
        """Run until the source ends, dies, is interrupted, or `max_frames` is reached."""
        self._interrupts = 0
        self._started = utc_now()
        threads = [
            threading.Thread(target=fn, name=f"edgesewer-{fn.__name__.strip('_')}", daemon=True)
            for fn in (self._capture, self._preprocess, self._infer)
        ]
        info = self.run_info()
        self.events.start(**info)
        for role, label in (("classifier", "classifier"), ("segmenter", "segmenter"), ("clip_model", "clip model")):
            if role in info:
                self.status.message(f"{label}: {info[role]} on {info['source']}")
        for warning in info.get("warnings", []):
            self.status.message(f"WARNING: {warning}")
        if getattr(self.sink, "url", None):
            self.status.message(f"live view: {self.sink.url}")
        self.stats.start()
        end = _End("error", "the run did not start")
        restore_signals = self._trap_signals()
        with self.status:
            try:
                for thread in threads:
                    thread.start()
                end = self._consume()
            finally:
                restore_signals()
                self.stats.stop()
                self._stop.set()
                self._abort.set()
                for thread in threads:
                    thread.join(timeout=2.0)
                summary = self._finish(end)
        return summary

    def on_source_status(self, message: str) -> None:
        """Stream lost / reconnected / image skipped: tell the user and log it (any thread)."""
        self.status.message(message)
        self.events.status(message)

    def _finish(self, end: _End) -> RunSummary:
        if self._interrupts and end.reason not in ("error", "interrupted"):
            end = _End("interrupted", f"interrupted by the user after {self.stats.frames} frames")
        segments = self.tracker.finish()
        clip_segments = self._finish_clip()
        self._count_source_trouble()  # a stall after the last frame counts too
        stats = self.stats.summary()
        info = {
            **self.run_info(),
            "ended": utc_now(),
            "ended_by": end.reason,
            "end_message": end.message,
            "stats": stats,
        }
        if self.clip is not None:
            info["clip_windows"] = len(self.clip.predictions)
        counts = {"segments": len(segments), **({"clip_segments": len(clip_segments)} if self.clip else {})}
        report = None
        try:
            if self.opts.report is not None:
                report = write_report(
                    self.opts.report, segments, info, self.tracker.snapshots, clip_segments
                )
        finally:
            distance = {"distance": self.distance.describe()} if self.distance is not None else {}
            self.events.end(ended_by=end.reason, message=end.message, **counts, stats=stats, **distance)
            self.events.close()
            if self.sink is not None:
                self.sink.close()
            if self.distance is not None:
                self.distance.close()
            self.source.close()
        error = end.error if isinstance(end.error, EdgesewerError) else None
        if end.error is not None and error is None and not isinstance(end.error, KeyboardInterrupt):
            raise end.error  # a bug: events and report are written, now show the traceback
        return RunSummary(
            self.stats.frames, end.reason, end.message, segments, stats, report, self.events.path, error, clip_segments
        )

    def _finish_clip(self) -> list[DefectSegment]:
        """Classify the frames after the last window, then merge the windows into clip-level segments."""
        if self.clip is None:
            return []
        try:
            last = self.clip.finish()
        except Exception as exc:  # noqa: BLE001 - the windows already classified must still reach the report
            self.status.message(f"clip model: the last window failed ({exc}); reporting the windows before it")
            last = None
        if last is not None:
            self._write_clip_event(last)
        segments = self.clip.segments(self.opts.merge_gap_s)
        if self.distance is not None:
            for segment in segments:
                start = self._clip_distances.get(segment.start_frame, FrameDistance(None, None))
                end = self._clip_distances.get(segment.end_frame, FrameDistance(None, None))
                segment.start_m, segment.end_m = start.metres, end.metres
                segment.distance_source = "+".join(sorted({d.source for d in (start, end) if d.source})) or None
        return segments

    def run_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "source": self.source.uri.text,
            "live": self.source.is_live,
            "output": self.output.text,
            "started": self._started,
            "edgesewer_version": __version__,
            "host": platform.node(),
        }
        if self.classifier is not None:
            info["classifier"] = self.classifier.artifact.describe()
            info["backend"] = self.classifier.backend.name
            info["thresholds"] = {
                c: round(float(t), 3) for c, t in zip(self.classifier.artifact.classes, self.thresholds)
            }
            info["smoothing"] = str(self.smoother.spec)
            warning = self.classifier.artifact.learning_warning()
            if warning:
                info["warnings"] = [warning]
        if self.segmenter is not None:
            info["segmenter"] = self.segmenter.artifact.describe()
            info["crack_threshold"] = self.opts.seg_threshold
        if self.distance is not None:
            info.update(self.distance.describe())
        if self.clip is not None:
            info["clip_model"] = self.clip.describe()
            info["clip_backend"] = self.clip.backend.name
            info["clip_span_s"] = self.clip.span_s
            info["clip_window"] = "whole video" if self.clip.whole else "sliding"
            info["clip_stride_s"] = self.clip.stride_s
        return info
