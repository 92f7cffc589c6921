"""Frame outputs named by `--output`: an annotated video file, a window, a live view served over HTTP
(MJPEG) or RTSP (`live_sinks.py`), or nothing.

JSONL events and the inspection report are written by `events.py` and `report.py`; these are the
image sinks. A sink with an `active` property that is False (a live view nobody watches) gets no
frames: the pipeline does not draw them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import cv2
import numpy as np

from edgesewer.errors import EdgesewerError
from edgesewer.runtime.uri import OutputURI, parse_output

if TYPE_CHECKING:
    from edgesewer.runtime.live_sinks import MjpegHttpSink, RtspSink

FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


class VideoFileSink:
    """cv2.VideoWriter opened on the first frame, when the frame size is known.

    Frames go to a hidden temporary file beside `path` (same suffix: FFmpeg picks the container from
    it), renamed over `path` on close: an existing file stays whole until the new video is complete,
    and nothing half-named is left behind.
    """

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps if fps > 0 else 25.0
        self._writer: cv2.VideoWriter | None = None
        self._tmp: Path | None = None
        self.frames = 0
        try:  # fail before the run starts, not at the first frame
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgesewerError(f"{self.path}: cannot create its folder ({exc.strerror})") from None

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(*FOURCC.get(self.path.suffix.lower(), "mp4v"))
            height, width = image.shape[:2]
            try:
                fd, name = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=self.path.parent)
            except OSError as exc:
                raise EdgesewerError(f"{self.path}: cannot write a video here ({exc.strerror})") from None
            os.close(fd)
            self._tmp = Path(name)
            self._writer = cv2.VideoWriter(name, fourcc, self.fps, (width, height))
            if not self._writer.isOpened():
                self._discard()
                raise EdgesewerError(f"{self.path}: cannot write a video here (folder not writable or codec missing)")
        self._writer.write(image)
        self.frames += 1

    def _discard(self) -> None:
        self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def close(self) -> None:
        """Finish the file and move it into place (what was recorded before an error or Ctrl-C is kept)."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        tmp, self._tmp = self._tmp, None
        try:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())  # a robot's power can go right after the run
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise EdgesewerError(f"{self.path}: cannot move the finished video into place ({exc.strerror})") from None


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


def open_sink(
    uri: OutputURI, fps: float, on_status: Callable[[str], None] | None = None
) -> VideoFileSink | DisplaySink | MjpegHttpSink | RtspSink | None:
    """The sink for a parsed `--output`; served outputs listen at once (a port in use fails here).

    `on_status` receives the live views' viewer connected / left messages.
    """
    if uri.scheme == "file":
        return VideoFileSink(uri.location, fps)
    if uri.scheme == "display":
        return DisplaySink(f"edgesewer {uri.location}")
    if uri.scheme == "http":
        from edgesewer.runtime.live_sinks import MjpegHttpSink

        return MjpegHttpSink(uri, on_status=on_status)
    if uri.scheme == "rtsp":
        from edgesewer.runtime.live_sinks import RtspSink

        return RtspSink(uri, fps, on_status=on_status)
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_outputs_over_inputs(inputs: Iterable[Path], outputs: Mapping[str, Path]) -> None:
    """One-line error when an output (video, events, report file) is one of the run's input files."""
    inputs = [Path(p) for p in inputs]
    for what, out in outputs.items():
        out = Path(out)
        for source in inputs:
            if _same_file(out, source):
                raise EdgesewerError(f"{out}: the {what} would overwrite an input of this run ({source}); "
                                     "choose another path")
