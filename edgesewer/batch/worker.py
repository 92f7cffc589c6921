"""One video of an archive: the `edgesewer run` pipeline into DIR/videos/<name>.partial-<id>/, renamed
to DIR/videos/<name>/ only once events, report and observation list are complete.

A worker killed mid-video leaves only the `.partial-*` folder (the driver removes those), never a
half-written DIR/videos/<name>/. Needs neither Ray nor torch: the Ray task is this function.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesewer.errors import EdgesewerError

PARTIAL_MARK = ".partial-"
# Test hook: "NAME:FRAME[:MARKER]" kills the worker process (SIGKILL) at that frame of that video; with
# MARKER, only while the marker file does not exist yet (it is created first), so a retry gets through.
# Read by the driver from the environment and handed to the task in its job.
TEST_KILL_ENV = "EDGESEWER_BATCH_TEST_KILL"


@dataclass
class VideoJob:
    """What every video of a batch is run with (same meaning as `edgesewer run`'s options)."""

    model: str | None = None
    seg: str | None = None
    backend: str | None = None
    providers: str = "cpu"
    threads: int | None = None
    seg_tiles: bool = False
    save_video: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # RunOptions fields besides the outputs
    test_kill: str | None = None

    def config(self) -> dict[str, Any]:
        """The manifest's record of what decides the results (not threads or the test hook)."""
        return {"model": self.model, "seg": self.seg, "seg_tiles": self.seg_tiles, "options": self.options}


def _kill_hook(job: VideoJob, name: str):
    """The frame at which the test hook kills this process, or None."""
    if not job.test_kill:
        return None
    parts = job.test_kill.split(":")
    if parts[0] != name:
        return None
    if len(parts) > 2:
        marker = Path(":".join(parts[2:]))
        if marker.exists():
            return None
        marker.write_text("killed once\n")
    return int(parts[1])


def _quiet_status(kill_at: int | None):
    """A LiveStatus that prints nothing (workers have no terminal) and honours the test hook."""
    from rich.console import Console

    from edgesewer.runtime.stats import LiveStatus, PipelineStats

    class _Status(LiveStatus):
        def refresh(self, force: bool = False) -> None:
            if kill_at is not None and self.stats.frames >= kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    return _Status(PipelineStats(), console=Console(file=io.StringIO()), enabled=False)


def video_duration(path: Path, frames: int) -> float | None:
    """Seconds of video in the frames read (frames / the file's frame rate); None without a frame rate."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    finally:
        capture.release()
    return round(frames / fps, 3) if fps and fps > 0 else None


def summary_row(report: dict[str, Any], frames: int, duration_s: float | None, elapsed_s: float) -> dict[str, Any]:
    """The archive summary's numbers for one video, from its report.json (so they agree with it exactly)."""
    summary = report["summary"]
    return {
        "frames": frames,
        "duration_s": duration_s,
        "segments": summary["segments"],
        "by_code": dict(summary["by_code"]),
        "max_severity": summary["max_severity"],
        "elapsed_s": round(elapsed_s, 3),
        "ended_by": report["run"].get("ended_by"),
    }


def _replace_dir(partial: Path, final: Path) -> None:
    """partial -> final; an older final (a rerun with --restart) is moved aside first, then removed."""
    old = None
    if final.exists():
        old = final.with_name(f"{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
    os.rename(partial, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def process_video(source: str, name: str, out_dir: str, job: VideoJob) -> dict[str, Any]:
    """Run one video; returns {"ok": True, "row": ...} or {"ok": False, "error": one line}.

    A user-caused failure (corrupt, truncated or unreadable file, a source that died mid-way) is a
    result, not an exception, so one bad file never stops the batch; bugs still raise.
    """
    import json

    from edgesewer.runtime.pipeline import RunOptions
    from edgesewer.runtime.runner import run_inspection

    started = time.perf_counter()
    videos = Path(out_dir) / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    partial = videos / f"{name}{PARTIAL_MARK}{uuid.uuid4().hex[:12]}"
    partial.mkdir()
    try:
        output = f"file://{partial / 'annotated.mp4'}" if job.save_video else "none"
        options = RunOptions(
            output=output, headless=True, events=partial / "events.jsonl", report=partial, live_status=False,
            **job.options,
        )
        summary = run_inspection(
            source, job.model, job.seg, backend=job.backend, providers=job.providers, threads=job.threads,
            seg_tiles=job.seg_tiles, options=options, status=_quiet_status(_kill_hook(job, name)),
        )
        if summary.error is not None:
            raise summary.error
        if summary.ended_by != "end of stream":
            raise EdgesewerError(f"{source}: the run ended early ({summary.ended_by}: {summary.message})")
        report = json.loads((partial / "report.json").read_text(encoding="utf-8"))
        row = summary_row(report, summary.frames, video_duration(Path(source), summary.frames),
                          time.perf_counter() - started)
        _replace_dir(partial, videos / name)
        return {"ok": True, "row": row}
    except EdgesewerError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        message = " ".join(str(exc).split())
        if source not in message:
            message = f"{source}: {message}"
        return {"ok": False, "error": message}
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
