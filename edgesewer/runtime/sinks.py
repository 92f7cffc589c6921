"""Frame outputs named by `--output`: an annotated video file or a window (or nothing).

JSONL events and the inspection report are written by `events.py` and `report.py`; these two are
the image sinks.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edgesewer.errors import EdgesewerError
from edgesewer.runtime.uri import OutputURI, parse_output

FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


class VideoFileSink:
    """cv2.VideoWriter opened on the first frame, when the frame size is known."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps if fps > 0 else 25.0
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0
        try:  # fail before the run starts, not at the first frame
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgesewerError(f"{self.path}: cannot create its folder ({exc.strerror})") from None

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(*FOURCC.get(self.path.suffix.lower(), "mp4v"))
            height, width = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (width, height))
            if not self._writer.isOpened():
                raise EdgesewerError(f"{self.path}: cannot write a video here (folder not writable or codec missing)")
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class DisplaySink:
    """An OpenCV window; pressing q or Esc asks the run to stop."""

    def __init__(self, window: str = "edgesewer") -> None:
        self.window = window
        try:
            cv2.namedWindow(self.window, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise EdgesewerError(
                "display://0 needs an OpenCV with GUI support and a display (opencv-python-headless has none); "
                "use --headless or --output file://out.mp4"
            ) from None

    def show(self, image: np.ndarray) -> bool:
        """Show a frame; False when the user asked to quit."""
        cv2.imshow(self.window, image)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.window)
        except cv2.error:
            pass


def default_output(headless: bool) -> OutputURI:
    """jetson-inference's habit: a window unless --headless, but only where a display exists."""
    if headless or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return parse_output("none")
    return parse_output("display://0")


def open_sink(uri: OutputURI, fps: float) -> VideoFileSink | DisplaySink | None:
    if uri.scheme == "file":
        return VideoFileSink(uri.location, fps)
    if uri.scheme == "display":
        return DisplaySink(f"edgesewer {uri.location}")
    return None
