"""`run_inspection`: load the artifacts, open the source, run the pipeline, clean up.

The plain function behind `edgesewer run` (the CLI only maps options onto it), usable from Python.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Callable

from edgesewer.runtime.clip import ClipClassifier
from edgesewer.runtime.pipeline import InspectionPipeline, RunOptions, RunSummary
from edgesewer.runtime.predictors import Predictor, load_predictor
from edgesewer.runtime.sources import STALL_TIMEOUT_S, VideoSource, open_source
from edgesewer.runtime.stats import LiveStatus


def install_sigterm_as_interrupt() -> Callable[[], None]:
    """systemd stops services with SIGTERM: treat it like Ctrl-C so the report is still written.

    Returns a function that restores the previous handler (a no-op outside the main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def _raise(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    return lambda: signal.signal(signal.SIGTERM, previous)


def run_inspection(
    source: str,
    model: str | Path | None = None,
    seg: str | Path | None = None,
    *,
    backend: str | None = None,
    providers: str = "cpu",
    threads: int | None = None,
    seg_tiles: bool = False,
    reconnect_timeout: float = 60.0,
    stall_timeout: float = STALL_TIMEOUT_S,
    options: RunOptions | None = None,
    status: LiveStatus | None = None,
    clip_model: str | Path | None = None,
    clip_span_s: float | str | None = None,
    clip_stride_s: float | None = None,
) -> RunSummary:
    """Load the artifacts, open the source and run the pipeline; the plain function behind `edgesewer run`.

    `clip_model` adds clip mode (a super-image or frame-stack video model over a sliding window);
    span and stride default to the model's clip_seconds (else 4 s) and half of it;
    `clip_span_s="whole"` (or 0) classifies a video file once, over its whole length, as the models
    were trained.
    """
    options = options or RunOptions()
    loaded: list[Predictor | ClipClassifier] = []
    opened: VideoSource | None = None
    restore = install_sigterm_as_interrupt()
    try:
        classifier = load_predictor(model, "classify", backend, providers=providers, threads=threads) if model else None
        loaded += [classifier] if classifier else []
        segmenter = (
            load_predictor(seg, "segment", backend, providers=providers, threads=threads, tiles=seg_tiles)
            if seg
            else None
        )
        loaded += [segmenter] if segmenter else []
        clip = (
            ClipClassifier(
                clip_model, backend, span_s=clip_span_s, stride_s=clip_stride_s, providers=providers, threads=threads
            )
            if clip_model
            else None
        )
        loaded += [clip] if clip else []
        for predictor in loaded:
            predictor.backend.warmup()
        forward: list[Callable[[str], None]] = []
        opened = open_source(
            source,
            reconnect_timeout=reconnect_timeout,
            stall_timeout=stall_timeout,
            on_status=lambda m: [f(m) for f in forward],
        )
        if clip is not None:
            clip.set_source(opened)  # a whole-video window needs the file's frame count
        pipeline = InspectionPipeline(opened, classifier, segmenter, options, status, clip=clip)
        forward.append(pipeline.on_source_status)
        return pipeline.run()
    finally:
        if opened is not None:
            opened.close()
        for predictor in loaded:
            predictor.close()
        restore()
