"""Memory on a long run: does RSS stay flat over many frames and many defect segments?

    python benchmarks/long_run_memory.py                          # 20000 frames of 1280x720, 1000 segments
    python benchmarks/long_run_memory.py --frames 3000 --size 1920x1080

A synthetic source decodes (allocates) a fresh frame each time, as a real decoder does: grey, with a
red stretch of 6 frames every 20 frames, which the tests' toy classifier (RB on red, a few
milliseconds per frame, no torch) turns into one RB segment each. The run goes through the real
`InspectionPipeline` with a report asked for, the case that keeps a snapshot per segment. RSS
(/proc/self/statm, Linux) is sampled after the first `--warmup` frames and at the end; a pipeline
that held each segment's peak frame would grow by one frame per segment (2.6 MiB at 720p). RSS
only shows it once the retained frames outgrow the heap that malloc keeps from freed frames (a few
dozen), so `--trace` also counts the bytes still allocated (tracemalloc, which sees numpy's and
OpenCV's arrays), exact at any length, at the price of a slower run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the toy classifier artifact of the runtime tests

from test_runtime_support import GREY, RED, make_classifier_artifact  # noqa: E402

from edgesewer.errors import EndOfStream  # noqa: E402
from edgesewer.runtime.pipeline import InspectionPipeline, RunOptions  # noqa: E402
from edgesewer.runtime.predictors import load_predictor  # noqa: E402
from edgesewer.runtime.sources import Frame, VideoSource  # noqa: E402
from edgesewer.runtime.uri import SourceURI  # noqa: E402

PERIOD, RED_FRAMES = 20, 6  # at 25 FPS: 0.56 s grey between red stretches, more than the 0.5 s merge gap


def rss_mb() -> float:
    """Resident set size of this process now, in MiB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def traced_mb() -> float | None:
    """Bytes allocated and not yet freed (numpy and OpenCV arrays included), in MiB; None untraced."""
    return tracemalloc.get_traced_memory()[0] / 2**20 if tracemalloc.is_tracing() else None


class SyntheticSource(VideoSource):
    """`frames` freshly allocated frames at 25 FPS; RSS sampled after `warmup` frames."""

    def __init__(self, frames: int, width: int, height: int, warmup: int) -> None:
        super().__init__(SourceURI("synthetic", "synthetic", "video", "synthetic"))
        self.fps, self.frames, self.size, self.warmup = 25.0, frames, (height, width, 3), warmup
        self.next = 0
        self.rss_at_warmup: float | None = None
        self.traced_at_warmup: float | None = None

    def read(self, timeout: float = 1.0) -> Frame | None:
        if self.next >= self.frames:
            raise EndOfStream(f"synthetic: {self.frames} frames")
        if self.next == self.warmup:
            self.rss_at_warmup = rss_mb()
            self.traced_at_warmup = traced_mb()
        colour = RED if self.next % PERIOD < RED_FRAMES else GREY
        frame = Frame(np.full(self.size, colour, np.uint8), self.next, self.next / self.fps)
        self.next += 1
        return frame


def long_run(
    frames: int, width: int, height: int, warmup: int, workdir: Path, trace: bool = False
) -> dict[str, float]:
    """One headless run with events and a report; RSS (and with `trace` the bytes still allocated)
    after warm-up and at the end, in MiB."""
    classifier = load_predictor(make_classifier_artifact(workdir / "models"), "classify")
    source = SyntheticSource(frames, width, height, warmup)
    options = RunOptions(
        headless=True, output="none", live_status=False, events=workdir / "ev.jsonl", report=workdir / "report"
    )
    pipeline = InspectionPipeline(source, classifier, None, options)
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    summary = pipeline.run()
    seconds = time.perf_counter() - started
    # The report is written and the pipeline still referenced: whatever the run kept is still held.
    end, traced_end = rss_mb(), traced_mb()
    tracemalloc.stop()
    snapshots = sorted((workdir / "report" / "snapshots").glob("*.jpg"))
    return {
        "frames": summary.frames,
        "segments": len(summary.segments),
        "snapshots": len(snapshots),
        "rss_warmup_mb": source.rss_at_warmup or 0.0,
        "rss_end_mb": end,
        "growth_mb": end - (source.rss_at_warmup or end),
        "traced_growth_mb": (traced_end - source.traced_at_warmup) if trace else float("nan"),
        "frame_mb": width * height * 3 / 2**20,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    parser.add_argument("--warmup", type=int, default=200, help="frames before the first RSS sample")
    parser.add_argument("--trace", action="store_true", help="also count allocated bytes with tracemalloc")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        r = long_run(args.frames, width, height, args.warmup, Path(tmp), trace=args.trace)
    later_segments = max(1, r["segments"] - args.warmup // PERIOD)
    print(f"| frames | segments | snapshots | RSS after {args.warmup} frames | RSS at end | RSS growth | "
          "per later segment | allocated growth | one frame | run time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {r['frames']} | {r['segments']} | {r['snapshots']} | {r['rss_warmup_mb']:.0f} MiB | "
        f"{r['rss_end_mb']:.0f} MiB | {r['growth_mb']:+.1f} MiB | {r['growth_mb'] / later_segments:.3f} MiB | "
        f"{r['traced_growth_mb']:+.2f} MiB | {r['frame_mb']:.2f} MiB | {r['seconds']:.0f} s |"
    )


if __name__ == "__main__":
    main()
