"""Frame sources: video files (every frame), live cameras and network streams (newest frame only,
reconnect with back-off), and image folders or globs.

`read()` returns a `Frame`, None (nothing within its timeout), or raises `EndOfStream` (a finite
source is done) or `CaptureError` (the source died: truncated file, a decoder stuck for the stall
timeout, stream gone for longer than the reconnect window). It never collapses the two into one
generic error, so the run can say which happened. Files and live sources capture in a `Grabber`
thread that a watchdog observes, so that `read()` and `close()` return in time even when OpenCV
hangs inside a read.
"""

from __future__ import annotations

import os
import queue
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
from edgesewer.runtime.grabber import Grabber
from edgesewer.runtime.uri import SourceURI, list_images, parse_source

StatusCallback = Callable[[str], None]

# FFmpeg prints every refused connection and decode error; our one-line messages say what happened,
# so keep its log to fatal errors unless the user asks for more (OPENCV_FFMPEG_LOGLEVEL=16 or 24).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")

# No frame for this long is a stall (`--stall-timeout`): a live source reconnects, a file ends.
STALL_TIMEOUT_S = 5.0
MAX_BACKOFF_S = 4.0
CLOSE_WAIT_S = 0.5  # close() gives a responsive capture this long to release itself, and no longer


@dataclass
class Frame:
    """One decoded frame: BGR uint8 as OpenCV delivers it, its source frame number and time."""

    image: np.ndarray
    index: int  # frame number in the source; live streams count dropped frames too
    time: float  # seconds into the file, or since the live stream started


class VideoSource(ABC):
    """The small interface every source offers (jetson-inference's videoSource, minus the C++)."""

    is_live: bool = False
    clock_origin: float | None = None  # time.monotonic() at frame time 0 for live sources; files have their own clock

    def __init__(self, uri: SourceURI, on_status: StatusCallback | None = None) -> None:
        self.uri = uri
        self.fps = 0.0  # nominal frame rate; 0 when the source does not say
        self.dropped = 0  # stale frames replaced by newer ones before being read (live only)
        self.stalls = 0  # times no frame came for the stall timeout
        self.reconnects = 0  # live sources: times the stream came back after a drop or a stall
        self._on_status = on_status or (lambda message: None)

    @abstractmethod
    def read(self, timeout: float = 1.0) -> Frame | None:
        """Next frame; None if nothing new came within `timeout` seconds."""

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


def open_file(uri: SourceURI) -> cv2.VideoCapture:
    """Open a video file with OpenCV's FFmpeg backend."""
    return cv2.VideoCapture(str(Path(uri.location)), cv2.CAP_FFMPEG)


class FileSource(VideoSource):
    """A video file: every frame in order; a file shorter than its header says is reported as truncated.

    Decoding runs in a `Grabber` thread a few frames ahead; a decoder that has been stuck for
    `stall_timeout` seconds (a network share that stopped answering) ends the file with a
    `CaptureError` instead of hanging the run.
    """

    AHEAD = 4  # decoded frames waiting for the pipeline; the decoder waits (unwatched) when it is full

    def __init__(
        self,
        uri: SourceURI,
        on_status: StatusCallback | None = None,
        stall_timeout: float = STALL_TIMEOUT_S,
        opener: Callable[[SourceURI], cv2.VideoCapture] = open_file,
    ) -> None:
        super().__init__(uri, on_status)
        self.path = Path(uri.location)
        self.stall_timeout = stall_timeout
        self._frames: queue.Queue[np.ndarray] = queue.Queue(self.AHEAD)
        self._next = 0
        self._done = False
        self._grabber = Grabber(lambda: opener(uri), self._enqueue, name="edgesewer-decoder")
        self._grabber.start()
        try:
            _wait_for_open(self._grabber, stall_timeout, self.path)
        except BaseException:
            self._grabber.abandon()
            raise
        if not self._grabber.opened:
            raise CaptureError(
                f"{self.path}: cannot open as a video (not a video, an unsupported codec, "
                "or a truncated file whose index is missing)"
            )
        props = self._grabber.properties
        self.fps = props.get(cv2.CAP_PROP_FPS, 0.0)
        self.announced_frames = int(props.get(cv2.CAP_PROP_FRAME_COUNT, 0))
        self.width = int(props.get(cv2.CAP_PROP_FRAME_WIDTH, 0))
        self.height = int(props.get(cv2.CAP_PROP_FRAME_HEIGHT, 0))

    def _enqueue(self, image: np.ndarray) -> None:
        while not self._grabber.abandoned.is_set():
            try:
                self._frames.put(image, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, timeout: float = 1.0) -> Frame | None:
        """Next frame; None if the decoder had none ready within `timeout` seconds (it is still working)."""
        deadline = time.monotonic() + timeout
        while not self._done:
            # Finished before empty: every frame is queued before the decoder says it has finished.
            finished = self._grabber.finished.is_set()
            try:
                image = self._frames.get(timeout=max(0.0, min(0.1, deadline - time.monotonic())))
            except queue.Empty:
                if finished:
                    self._end()
            else:
                fps = self.fps or 25.0
                frame = Frame(image, self._next, self._next / fps)
                self._next += 1
                return frame
            blocked = self._grabber.blocked_for()
            if blocked >= self.stall_timeout:
                self.stalls += 1
                self._done = True
                self._grabber.abandon()
                raise CaptureError(
                    f"{self.path}: no frame for {blocked:.0f} s, decoding is stuck at frame {self._next} "
                    "(a network share or disk that stopped answering?); giving up on the file"
                )
            if time.monotonic() >= deadline:
                return None
        raise EndOfStream(f"{self.path}: end of file after {self._next} frames")

    def _end(self) -> None:
        """The decoder has stopped: a clean end, an error, or fewer frames than the header announced."""
        self._done = True
        if self._grabber.error is not None:
            raise CaptureError(f"{self.path}: decoding failed at frame {self._next}: {self._grabber.error!r}")
        # Containers whose frame count comes from the duration can be off by a frame or two.
        tolerance = max(2, self.announced_frames // 100)
        if self.announced_frames > 0 and self._next < self.announced_frames - tolerance:
            raise CaptureError(
                f"{self.path}: video ends at frame {self._next} of {self.announced_frames} "
                "announced in its header (truncated or corrupt file)"
            )
        raise EndOfStream(f"{self.path}: end of file after {self._next} frames")

    def close(self) -> None:
        self._done = True
        self._grabber.abandon(wait=CLOSE_WAIT_S)

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


def open_capture(uri: SourceURI, timeout_s: float = STALL_TIMEOUT_S + 1.0) -> cv2.VideoCapture:
    """Open a camera, CSI pipeline or network stream with OpenCV (not yet checked for frames).

    FFmpeg's own open/read timeouts are set a little above the stall timeout, so that the watchdog
    speaks first and a capture it abandons still returns (and is released) soon after.
    """
    if uri.kind == "stream":
        timeout_ms = int(timeout_s * 1000)
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


def _wait_for_open(grabber: Grabber, stall_timeout: float, name: object) -> None:
    """Wait (interruptibly: Ctrl-C lands here) until the grabber has opened its capture or failed."""
    while not grabber.open_done.wait(0.1):
        if grabber.blocked_for() >= stall_timeout:
            raise CaptureError(f"{name}: no answer for {stall_timeout:.0f} s while opening; giving up")
    if not grabber.opened and grabber.error is not None:  # a read error after opening is the reader's to report
        if isinstance(grabber.error, CaptureError):  # already one line that names the source and the cause
            raise grabber.error
        raise CaptureError(f"{name}: cannot open: {grabber.error!r}")


class LiveSource(VideoSource):
    """A camera or network stream read by a grabber thread that keeps only the newest frame.

    A watchdog thread observes the grabber: when frames stop coming, because the capture ended or
    because it has delivered nothing for `stall_timeout` seconds (a stall: the hung grabber is
    abandoned), it reopens the source with exponential back-off for up to `reconnect_timeout`
    seconds, reporting each step through `on_status`; after that `read()` raises `CaptureError`.
    An exception inside the capture is not retried: `read()` raises it as a `CaptureError`.
    """

    is_live = True

    def __init__(
        self,
        uri: SourceURI,
        on_status: StatusCallback | None = None,
        reconnect_timeout: float = 60.0,
        opener: Callable[[SourceURI], cv2.VideoCapture] | None = None,
        stall_timeout: float = STALL_TIMEOUT_S,
    ) -> None:
        super().__init__(uri, on_status)
        self.reconnect_timeout = reconnect_timeout
        self.stall_timeout = stall_timeout
        self._opener = opener or (lambda u: open_capture(u, timeout_s=stall_timeout + 1.0))
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._error: CaptureError | None = None
        self._stop = threading.Event()
        self._received = 0
        self._lost_at: float | None = None  # set while reconnecting
        self._attempts = 0  # reconnect attempts since the last drop
        self._t0 = self.clock_origin = time.monotonic()
        self._grabber = self._new_grabber()
        self._grabber.start()
        try:
            _wait_for_open(self._grabber, stall_timeout, uri.text)
        except BaseException:
            self._grabber.abandon()
            raise
        if not self._grabber.opened:
            raise CaptureError(f"{uri.text}: cannot open source (check the device, URL, network and credentials)")
        self.fps = self._grabber.properties.get(cv2.CAP_PROP_FPS, 0.0)
        self._watchdog = threading.Thread(target=self._watch, name="edgesewer-watchdog", daemon=True)
        self._watchdog.start()

    def _new_grabber(self) -> Grabber:
        grabber = Grabber(
            lambda: self._opener(self.uri), lambda image: self._publish(grabber, image), name="edgesewer-capture"
        )
        return grabber

    def _publish(self, grabber: Grabber, image: np.ndarray) -> None:
        with self._cond:
            if grabber is not self._grabber:
                return  # an abandoned grabber whose read returned late
            lost_at, self._lost_at = self._lost_at, None
        if lost_at is not None:  # the first frame since a drop or a stall: say so before it is read
            self.reconnects += 1
            self._on_status(
                f"{self.uri.text}: reconnected after {time.monotonic() - lost_at:.1f} s ({self._attempts} attempts)"
            )
        with self._cond:
            if self._latest is not None:
                self.dropped += 1  # the consumer was busy: the older frame is stale, skip it
            self._latest = Frame(image, self._received, time.monotonic() - self._t0)
            self._received += 1
            self._cond.notify_all()

    # --- watchdog thread -----------------------------------------------------------------------

    def _watch(self) -> None:
        try:
            while not self._stop.is_set():
                trouble = self._trouble(self._grabber)
                if trouble is None:
                    return
                self._grabber.abandon()
                if self._grabber.error is not None:
                    self._fail(f"{self.uri.text}: capture failed: {self._grabber.error!r}")
                    return
                if not self._reconnect(trouble):
                    return
        except BaseException as exc:  # noqa: BLE001 - read() must learn that nobody is capturing any more
            self._fail(f"{self.uri.text}: capture watchdog failed: {exc!r}")
        finally:
            self._grabber.abandon()

    def _trouble(self, grabber: Grabber) -> str | None:
        """Wait until the grabber ends or stalls; says what happened (None: the source was closed)."""
        while not self._stop.is_set():
            if grabber.finished.wait(0.1):
                return "stream lost"
            blocked = grabber.blocked_for()
            if blocked >= self.stall_timeout:
                self.stalls += 1
                return f"no frame for {blocked:.0f} s (stalled)"
        return None

    def _reconnect(self, trouble: str) -> bool:
        lost_at = time.monotonic()
        deadline = lost_at + self.reconnect_timeout
        self._lost_at, self._attempts = lost_at, 0
        self._on_status(
            f"{self.uri.text}: {trouble} after {self._received} frames; "
            f"reconnecting for up to {self.reconnect_timeout:.0f} s"
        )
        attempt = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            delay = min(MAX_BACKOFF_S, 0.25 * 2**attempt, max(0.0, deadline - time.monotonic()))
            if self._stop.wait(delay):
                return False
            attempt += 1
            self._attempts = attempt
            grabber = self._new_grabber()
            with self._cond:
                self._grabber = grabber  # before it starts, so that its first frame is published
            grabber.start()
            if self._first_frame(grabber):
                return True  # _publish has announced it
            grabber.abandon()
            if grabber.error is not None:
                self._fail(f"{self.uri.text}: capture failed while reconnecting: {grabber.error!r}")
                return False
        if self._stop.is_set():
            return False
        self._fail(
            f"{self.uri.text}: no frames for {self.reconnect_timeout:.0f} s after the stream dropped "
            f"({attempt} reconnect attempts); giving up (raise --reconnect-timeout to wait longer)"
        )
        return False

    def _first_frame(self, grabber: Grabber) -> bool:
        """Did this reconnect attempt deliver a frame before it ended, stalled or the source closed?"""
        while not self._stop.is_set():
            if grabber.frames > 0:
                return True
            if grabber.finished.wait(0.05):
                return grabber.frames > 0
            if grabber.blocked_for() >= self.stall_timeout:
                return False
        return False

    def _fail(self, message: str) -> None:
        error = CaptureError(message)
        # Report before publishing: once read() raises, the pipeline closes its event log.
        self._on_status(message)
        with self._cond:
            self._error = error
            self._cond.notify_all()

    # --- consumer side ---------------------------------------------------------------------------

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
        """Stop at once: a grabber stuck in read() is abandoned, not waited for (it releases itself)."""
        if self._stop.is_set():
            return
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._grabber.abandon(wait=CLOSE_WAIT_S)


def open_source(
    source: str | SourceURI,
    *,
    reconnect_timeout: float = 60.0,
    stall_timeout: float = STALL_TIMEOUT_S,
    on_status: StatusCallback | None = None,
    image_fps: float = 1.0,
) -> VideoSource:
    """Open whatever `--source` names; raises `CaptureError` with one line if it cannot.

    `stall_timeout`: seconds without a frame after which a video file ends with an error and a live
    source counts a stall and reconnects.
    """
    uri = source if isinstance(source, SourceURI) else parse_source(source)
    if uri.kind == "video":
        return FileSource(uri, on_status, stall_timeout=stall_timeout)
    if uri.kind == "images":
        return ImageSource(uri, on_status, fps=image_fps)
    return LiveSource(uri, on_status, reconnect_timeout=reconnect_timeout, stall_timeout=stall_timeout)
