"""JSONL event log: one JSON object per line, flushed as it is written so that a killed process
loses nothing already detected.

Event kinds: `start` (what runs on what), `detection` (a frame with active codes or cracks; every
frame with `every_frame=True`), `status` (stream lost, reconnected, skipped images...), `clip` (one
classified window of a `--clip-model`), `end` (why the run stopped, statistics).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Any, TextIO

from edgesewer.runtime.postprocess import FrameResult


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def frame_event(result: FrameResult) -> dict[str, Any]:
    """The `detection` record of one frame (scores of the active codes only, 4 decimals)."""
    event: dict[str, Any] = {"event": "detection", "frame": result.index, "time": round(result.time, 3)}
    codes = result.codes
    event["codes"] = codes
    if result.scores is not None:
        event["scores"] = {
            c: round(float(s), 4) for c, s, on in zip(result.classes, result.scores, result.active) if on
        }
    if result.crack is not None:
        event["crack_area_px"] = round(result.crack.area_px, 1)
        event["crack_length_px"] = round(result.crack.length_px, 1)
    if result.distance_m is not None:  # along the pipe: where an inspector goes to find it
        event["distance_m"] = result.distance_m
        event["distance_source"] = result.distance_source
    return event


class EventWriter:
    """Append events to a JSONL file (or nowhere when `path` is None)."""

    def __init__(self, path: str | Path | None, every_frame: bool = False) -> None:
        self.path = Path(path) if path else None
        self.every_frame = every_frame
        self.count = 0
        self._lock = threading.Lock()  # status messages arrive from the capture thread
        self._fh: TextIO | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8", buffering=1)

    def write(self, event: dict[str, Any]) -> None:
        event.setdefault("utc", utc_now())
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            if self._fh is None:
                return
            self._fh.write(line)
            self._fh.flush()
            self.count += 1

    def start(self, **info: Any) -> None:
        self.write({"event": "start", **info})

    def frame(self, result: FrameResult) -> None:
        if self.every_frame or result.has_detection:
            self.write(frame_event(result))

    def status(self, message: str) -> None:
        self.write({"event": "status", "message": message})

    def end(self, **info: Any) -> None:
        self.write({"event": "end", **info})

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
                os.fsync(self._fh.fileno())  # on a robot, power can go right after the run ends
                self._fh.close()
                self._fh = None


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All events of a JSONL file (a half-written last line, from a hard kill, is ignored)."""
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
