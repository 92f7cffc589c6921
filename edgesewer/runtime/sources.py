"""Frame sources: video files (every frame), live cameras and network streams (newest frame only,
reconnect with back-off), and image folders or globs.

`read()` returns a `Frame` or raises `EndOfStream` (a finite source is done) or `CaptureError`
(the source died: truncated file, stream gone for longer than the reconnect window). It never
collapses the two into one generic error, so the run can say which happened.
"""

from __future__ import annotations

import os
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edgesewer.errors import CaptureError, EndOfStream
from edgesewer.runtime.uri import SourceURI, list_images, parse_source

StatusCallback = Callable[[str], None]

# FFmpeg prints every refused connection and decode error; our one-line messages say what happened,
# so keep its log to fatal errors unless the user asks for more (OPENCV_FFMPEG_LOGLEVEL=16 or 24).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")

# A stalled (not closed) network stream is declared lost after this long without a frame.
STREAM_READ_TIMEOUT_S = 5.0
MAX_BACKOFF_S = 4.0


@dataclass
class Frame:
    """One decoded frame: BGR uint8 as OpenCV delivers it, its source frame number and time."""

    image: np.ndarray
    index: int  # frame number in the source; live streams count dropped frames too
    time: float  # seconds into the file, or since the live stream started


class VideoSource(ABC):
    """The small interface every source offers (jetson-inference's videoSource, minus the C++)."""

    is_live: bool = False

    def __init__(self, uri: SourceURI, on_status: StatusCallback | None = None) -> None:
        self.uri = uri
        self.fps = 0.0  # nominal frame rate; 0 when the source does not say
        self.dropped = 0  # stale frames replaced by newer ones before being read (live only)
        self._on_status = on_status or (lambda message: None)

    @abstractmethod
    def read(self, timeout: float = 1.0) -> Frame | None:
        """Next frame; None if a live source had nothing new within `timeout` seconds."""

    def close(self) -> None:
        """Release the device or file; safe to call twice."""

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self):
        while True:
            try:
                frame = self.read()
            except EndOfStream:
                return
            if frame is not None:
                yield frame


class FileSource(VideoSource):
    """A video file: every frame in order; a file shorter than its header says is reported as truncated."""

    def __init__(self, uri: SourceURI, on_status: StatusCallback | None = None) -> None:
        super().__init__(uri, on_status)
        self.path = Path(uri.location)
        self._cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            raise CaptureError(
                f"{self.path}: cannot open as a video (not a video, an unsupported codec, "
                "or a truncated file whose index is missing)"
            )
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.announced_frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._next = 0
        self._done = False

    def read(self, timeout: float = 1.0) -> Frame | None:
        if self._done:
            raise EndOfStream(f"{self.path}: end of file after {self._next} frames")
        ok, image = self._cap.read()
        if not ok or image is None:
            self._done = True
            self._cap.release()
            # Containers whose frame count comes from the duration can be off by a frame or two.
            tolerance = max(2, self.announced_frames // 100)
            if self.announced_frames > 0 and self._next < self.announced_frames - tolerance:
                raise CaptureError(
                    f"{self.path}: video ends at frame {self._next} of {self.announced_frames} "
                    "announced in its header (truncated or corrupt file)"
                )
            raise EndOfStream(f"{self.path}: end of file after {self._next} frames")
        fps = self.fps or 25.0
        frame = Frame(image, self._next, self._next / fps)
        self._next += 1
        return frame

    def close(self) -> None:
        self._done = True
        self._cap.release()


class ImageSource(VideoSource):
    """An image folder, a glob or one image, in name order; unreadable images are skipped and counted."""

    def __init__(self, uri: SourceURI, on_status: StatusCallback | None = None, fps: float = 1.0) -> None:
        super().__init__(uri, on_status)
        self.paths = list_images(uri.location)
        if not self.paths:
            raise CaptureError(f"{uri.location}: no images found (looked for .jpg .jpeg .png .bmp .tif .tiff .webp)")
        self.fps = fps  # images carry no time; frame time is index / fps
        self.skipped: list[Path] = []
        self._next = 0

    def read(self, timeout: float = 1.0) -> Frame | None:
        while self._next < len(self.paths):
            index, path = self._next, self.paths[self._next]
            self._next += 1
            image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                self.skipped.append(path)
                self._on_status(f"{path}: cannot decode image, skipped")
                continue
            return Frame(image, index, index / self.fps)
        raise EndOfStream(f"{self.uri.location}: all {len(self.paths)} images read")


def open_capture(uri: SourceURI) -> cv2.VideoCapture:
    """Open a camera, CSI pipeline or network stream with OpenCV (not yet checked for frames)."""
    if uri.kind == "stream":
        timeout_ms = int(STREAM_READ_TIMEOUT_S * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        return cv2.VideoCapture(uri.location, cv2.CAP_FFMPEG, params)
    if uri.kind in ("csi", "gstreamer"):
        if not re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()):
            raise CaptureError(
                f"{uri.text}: cannot open: the OpenCV in use ({cv2.__file__}) says 'GStreamer: NO' in its build "
                "information. pip's opencv-python(-headless) has no GStreamer and shadows JetPack's OpenCV: "
                "pip uninstall opencv-python-headless opencv-python, keep JetPack's python3-opencv, and install "
                "edgesewer with --no-deps (runtime/README.md, 'Installing the torch-free runtime on a Jetson')"
            )
        return cv2.VideoCapture(uri.location, cv2.CAP_GSTREAMER)
    cap = cv2.VideoCapture(uri.camera_index, cv2.CAP_V4L2)
    if not cap.isOpened():
        cap = cv2.VideoCapture(uri.camera_index)
    return cap


class LiveSource(VideoSource):
    """A camera or network stream read by a grabber thread that keeps only the newest frame.

    When frames stop coming the grabber reopens the source with exponential back-off for up to
    `reconnect_timeout` seconds, reporting each step through `on_status`; after that `read()` raises
    `CaptureError`.
    """

    is_live = True

    def __init__(
        self,
        uri: SourceURI,
        on_status: StatusCallback | None = None,
        reconnect_timeout: float = 60.0,
        opener: Callable[[SourceURI], cv2.VideoCapture] = open_capture,
    ) -> None:
        super().__init__(uri, on_status)
        self.reconnect_timeout = reconnect_timeout
        self.reconnects = 0
        self._opener = opener
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._error: CaptureError | None = None
        self._stop = threading.Event()
        self._received = 0
        self._cap = opener(uri)
        if not self._cap.isOpened():
            raise CaptureError(f"{uri.text}: cannot open source (check the device, URL, network and credentials)")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._grab_loop, name="edgesewer-capture", daemon=True)
        self._thread.start()

    def _grab_loop(self) -> None:
        # Only this thread touches the capture: releasing it from another thread mid-read can crash.
        try:
            while not self._stop.is_set():
                ok, image = self._cap.read()
                if ok and image is not None:
                    self._publish(image)
                    continue
                self._cap.release()
                if not self._reconnect():
                    return
        finally:
            self._cap.release()

    def _publish(self, image: np.ndarray) -> None:
        with self._cond:
            if self._latest is not None:
                self.dropped += 1  # the consumer was busy: the older frame is stale, skip it
            self._latest = Frame(image, self._received, time.monotonic() - self._t0)
            self._received += 1
            self._cond.notify_all()

    def _reconnect(self) -> bool:
        lost_at = time.monotonic()
        deadline = lost_at + self.reconnect_timeout
        self._on_status(
            f"{self.uri.text}: stream lost after {self._received} frames; "
            f"reconnecting for up to {self.reconnect_timeout:.0f} s"
        )
        attempt = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            delay = min(MAX_BACKOFF_S, 0.25 * 2**attempt, max(0.0, deadline - time.monotonic()))
            if self._stop.wait(delay):
                return False
            attempt += 1
            cap = self._opener(self.uri)
            ok, image = cap.read() if cap.isOpened() else (False, None)
            if ok and image is not None:
                self._cap = cap
                self.reconnects += 1
                self._on_status(
                    f"{self.uri.text}: reconnected after {time.monotonic() - lost_at:.1f} s ({attempt} attempts)"
                )
                self._publish(image)
                return True
            cap.release()
        if self._stop.is_set():
            return False
        error = CaptureError(
            f"{self.uri.text}: no frames for {self.reconnect_timeout:.0f} s after the stream dropped "
            f"({attempt} reconnect attempts); giving up (raise --reconnect-timeout to wait longer)"
        )
        # Report before publishing: once read() raises, the pipeline closes its event log.
        self._on_status(str(error))
        with self._cond:
            self._error = error
            self._cond.notify_all()
        return False

    def read(self, timeout: float = 1.0) -> Frame | None:
        with self._cond:
            if self._latest is None and self._error is None and not self._stop.is_set():
                self._cond.wait(timeout)
            frame, self._latest = self._latest, None
            if frame is not None:
                return frame
            if self._error is not None:
                raise self._error
            if self._stop.is_set():
                raise EndOfStream(f"{self.uri.text}: closed")
            return None

    @property
    def received(self) -> int:
        """Frames delivered by the device, including the dropped ones."""
        return self._received

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        # cap.read() may block for up to the stream read timeout; the thread releases the capture
        # itself when it sees the stop flag, and is a daemon if it never does.
        self._thread.join(timeout=STREAM_READ_TIMEOUT_S + 1.0)


def open_source(
    source: str | SourceURI,
    *,
    reconnect_timeout: float = 60.0,
    on_status: StatusCallback | None = None,
    image_fps: float = 1.0,
) -> VideoSource:
    """Open whatever `--source` names; raises `CaptureError` with one line if it cannot."""
    uri = source if isinstance(source, SourceURI) else parse_source(source)
    if uri.kind == "video":
        return FileSource(uri, on_status)
    if uri.kind == "images":
        return ImageSource(uri, on_status, fps=image_fps)
    return LiveSource(uri, on_status, reconnect_timeout=reconnect_timeout)
