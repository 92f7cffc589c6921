"""Run statistics: pipeline FPS (wall clock, every stage) and network FPS (inference only), named
separately as jetson-inference does, plus per-stage latency percentiles and dropped frames.

Stages record from their own threads, so every update takes a lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.text import Text

STAGES = ("capture", "preprocess", "infer", "postprocess", "sinks")


class PipelineStats:
    """Counters and latency windows for one run."""

    def __init__(self, window: int = 2000, recent_s: float = 2.0) -> None:
        self._lock = threading.Lock()
        self._latency = {stage: deque(maxlen=window) for stage in STAGES}
        self._recent_s = recent_s
        self._done_times: deque[float] = deque()
        self.frames = 0
        self.inferred_frames = 0
        self.infer_seconds = 0.0
        self.dropped = 0
        self.stalls = 0  # times the source sent no frame for the stall timeout
        self.reconnects = 0
        self.started = time.perf_counter()
        self.finished: float | None = None

    def start(self) -> None:
        """Reset the wall clock (call after model loading and warm-up)."""
        with self._lock:
            self.started = time.perf_counter()

    def record(self, stage: str, seconds: float, frames: int = 1) -> None:
        """Time spent by `stage` on `frames` frames (a batch counts once per frame, at its per-frame share)."""
        with self._lock:
            per_frame = seconds / max(1, frames)
            self._latency[stage].extend([per_frame] * max(1, frames))
            if stage == "infer":
                self.inferred_frames += frames
                self.infer_seconds += seconds

    def frame_done(self) -> None:
        now = time.perf_counter()
        with self._lock:
            self.frames += 1
            self._done_times.append(now)
            while self._done_times and now - self._done_times[0] > self._recent_s:
                self._done_times.popleft()

    def stop(self) -> None:
        with self._lock:
            self.finished = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def pipeline_fps(self) -> float:
        """Frames through every stage per wall-clock second, over the whole run."""
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def recent_pipeline_fps(self) -> float:
        """Pipeline FPS over the last couple of seconds (what the status line shows while running)."""
        with self._lock:
            times = list(self._done_times)
        if len(times) < 2:
            return self.pipeline_fps
        return (len(times) - 1) / max(times[-1] - times[0], 1e-9)

    @property
    def network_fps(self) -> float:
        """Frames per second of inference time alone (what the backend could do if nothing else ran)."""
        return self.inferred_frames / self.infer_seconds if self.infer_seconds > 0 else 0.0

    def latency_ms(self, stage: str) -> tuple[float, float]:
        """(p50, p99) per-frame latency of a stage in milliseconds; (0, 0) before any sample."""
        with self._lock:
            samples = np.asarray(self._latency[stage], dtype=np.float64)
        if samples.size == 0:
            return 0.0, 0.0
        p50, p99 = np.percentile(samples, [50, 99])
        return float(p50 * 1000.0), float(p99 * 1000.0)

    def status_line(self) -> str:
        p50, p99 = self.latency_ms("infer")
        return (
            f"pipeline {self.recent_pipeline_fps:.1f} FPS | network {self.network_fps:.1f} FPS | "
            f"infer p50 {p50:.1f} ms p99 {p99:.1f} ms | frames {self.frames} | dropped {self.dropped}"
        )

    def short_status(self) -> str:
        """The overlay's status bar: both FPS, named, and the dropped count."""
        return (
            f"pipeline {self.recent_pipeline_fps:.1f} FPS | network {self.network_fps:.1f} FPS | dropped {self.dropped}"
        )

    def summary(self) -> dict[str, Any]:
        """Numbers for the report and the benchmark (rounded for humans)."""
        latency = {}
        for stage in STAGES:
            p50, p99 = self.latency_ms(stage)
            latency[stage] = {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3)}
        return {
            "frames": self.frames,
            "elapsed_s": round(self.elapsed, 3),
            "pipeline_fps": round(self.pipeline_fps, 2),
            "network_fps": round(self.network_fps, 2),
            "dropped_frames": self.dropped,
            "stalls": self.stalls,
            "reconnects": self.reconnects,
            "latency": latency,
        }


class LiveStatus:
    """A one-line rich status display on a terminal; silent when output is redirected.

    Messages (stream lost, reconnected...) print above the status line so they stay readable.
    """

    def __init__(self, stats: PipelineStats, console: Console | None = None, enabled: bool = True) -> None:
        self.stats = stats
        self.console = console or Console(stderr=True)
        self._live: Live | None = None
        self._enabled = enabled and self.console.is_terminal
        self._last = 0.0

    def __enter__(self) -> "LiveStatus":
        if self._enabled:
            self._live = Live(Text(""), console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def refresh(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self._live is not None and (force or now - self._last > 0.25):
            self._last = now
            self._live.update(Text(self.stats.status_line()))

    def message(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
