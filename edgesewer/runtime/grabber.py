"""A capture read in its own thread, watched from outside and abandoned, never joined, when it hangs.

OpenCV's `VideoCapture.read()` can block for as long as the backend likes: FFmpeg on a socket that
stays open and sends nothing, a V4L2 device that stopped streaming, a GStreamer pipeline waiting for
a CSI sensor, a video file on a network share that stopped answering. Nothing can interrupt it from
another thread, and releasing a capture from another thread mid-read can crash. So the one thread
that opens a capture also reads and releases it, and records since when it has been waiting; its
owner (a source's watchdog) compares that with its stall timeout and, when it gives up, just stops
listening: the thread releases the capture and exits whenever the call returns, or dies with the
process (it is a daemon).
"""

from __future__ import annotations

import atexit
import threading
import time
from typing import Callable

import cv2
import numpy as np

Opener = Callable[[], cv2.VideoCapture]
FrameCallback = Callable[[np.ndarray], None]

# At exit, abandoned captures get this long to come back from OpenCV (FFmpeg's own timeouts, set a
# second above the stall timeout, end them): a thread that returns from cv2 while the interpreter is
# finalising is killed inside C++ code and aborts the process ("terminate called without an active
# exception", SIGABRT) after the events and the report were written.
EXIT_WAIT_S = 3.0
_running: set[threading.Thread] = set()


@atexit.register
def _wait_for_abandoned_captures() -> None:
    deadline = time.monotonic() + EXIT_WAIT_S
    for thread in list(_running):
        thread.join(timeout=max(0.0, deadline - time.monotonic()))


class Grabber:
    """Opens a capture and reads it until it ends, fails or is abandoned; frames go to `on_frame`.

    After `finished` is set, `opened` says whether the capture ever opened and `error` holds the
    exception that open or read raised (None when the capture simply stopped delivering).
    """

    def __init__(self, opener: Opener, on_frame: FrameCallback, name: str = "edgesewer-capture") -> None:
        self._opener = opener
        self._on_frame = on_frame
        self.abandoned = threading.Event()
        self.finished = threading.Event()
        self.open_done = threading.Event()
        self.opened = False
        self.error: BaseException | None = None
        self.frames = 0
        self.properties: dict[int, float] = {}  # fps, frame count and size, read once after opening
        self._waiting_since: float | None = None  # monotonic time the current open/read began
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Grabber":
        self._thread.start()
        return self

    def blocked_for(self) -> float:
        """Seconds the current open or read has been waiting; 0 between calls and once finished."""
        since = self._waiting_since
        return 0.0 if since is None else time.monotonic() - since

    def abandon(self, wait: float = 0.0) -> None:
        """Stop delivering frames; the thread exits when its current call returns. Up to `wait` seconds
        are spent letting a responsive capture release itself; none on a call already stuck that long."""
        self.abandoned.set()
        hung = self.blocked_for() >= wait
        if wait > 0 and not hung and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=wait)

    def _run(self) -> None:
        cap = None
        _running.add(self._thread)
        try:
            self._waiting_since = time.monotonic()
            cap = self._opener()
            self.opened = bool(cap.isOpened())
            if self.opened:
                self.properties = {
                    prop: float(cap.get(prop) or 0.0)
                    for prop in (
                        cv2.CAP_PROP_FPS,
                        cv2.CAP_PROP_FRAME_COUNT,
                        cv2.CAP_PROP_FRAME_WIDTH,
                        cv2.CAP_PROP_FRAME_HEIGHT,
                    )
                }
            self._waiting_since = None
            self.open_done.set()
            while self.opened and not self.abandoned.is_set():
                self._waiting_since = time.monotonic()
                ok, image = cap.read()
                self._waiting_since = None
                if not ok or image is None or self.abandoned.is_set():
                    break
                self.frames += 1
                self._on_frame(image)
        except BaseException as exc:  # noqa: BLE001 - the owner turns it into a CaptureError
            self.error = exc
        finally:
            self._waiting_since = None
            self.open_done.set()
            if cap is not None:
                try:
                    cap.release()
                except Exception:  # noqa: BLE001 - releasing a broken capture must not hide why it broke
                    pass
            self.finished.set()
            _running.discard(self._thread)
