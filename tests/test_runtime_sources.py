"""Frame sources: every frame of a file then a clean end, truncated and unreadable files, image
folders, and the live source's newest-frame-only and reconnect logic (with a scripted capture)."""

import time

import cv2
import numpy as np
import pytest
from test_runtime_support import GREY, RED, colour_plan, write_video

from edgesewer.errors import CaptureError, EndOfStream
from edgesewer.runtime.sources import FileSource, ImageSource, LiveSource, open_source
from edgesewer.runtime.uri import parse_source


def test_file_source_gives_every_frame_then_ends_cleanly(tmp_path):
    video = write_video(tmp_path / "v.avi", colour_plan(30, {(5, 9): RED}), fps=10.0)
    source = open_source(str(video))
    assert isinstance(source, FileSource) and not source.is_live and source.fps == 10.0
    frames = list(source)
    assert [f.index for f in frames] == list(range(30))
    assert [round(f.time, 2) for f in frames[:3]] == [0.0, 0.1, 0.2]
    red = [f.index for f in frames if f.image[0, 0, 2] > 200 and f.image[0, 0, 1] < 60]
    assert red == [5, 6, 7, 8, 9]
    with pytest.raises(EndOfStream, match="end of file after 30 frames"):
        source.read()


def test_truncated_file_is_reported_with_frame_counts(tmp_path):
    video = write_video(tmp_path / "v.avi", [GREY] * 100)
    data = video.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    source = open_source(str(cut))
    count = 0
    with pytest.raises(CaptureError) as info:
        while True:
            source.read()
            count += 1
    message = str(info.value)
    assert 30 < count < 70
    assert f"ends at frame {count} of 100" in message and "truncated" in message and "\n" not in message


def test_unreadable_video_is_one_line(tmp_path):
    bogus = tmp_path / "notavideo.mp4"
    bogus.write_bytes(b"\x00" * 1000)
    with pytest.raises(CaptureError, match="cannot open as a video"):
        open_source(str(bogus))


def test_image_folder_in_name_order_skipping_corrupt_files(tmp_path):
    for i, value in enumerate((10, 20, 30)):
        cv2.imwrite(str(tmp_path / f"img_{i}.png"), np.full((8, 8, 3), value, np.uint8))
    (tmp_path / "img_1b.png").write_bytes(b"not a png")
    messages = []
    source = open_source(str(tmp_path), on_status=messages.append, image_fps=2.0)
    assert isinstance(source, ImageSource)
    frames = list(source)
    assert [(f.index, int(f.image[0, 0, 0]), f.time) for f in frames] == [(0, 10, 0.0), (1, 20, 0.5), (3, 30, 1.5)]
    assert len(messages) == 1 and "img_1b.png: cannot decode image, skipped" in messages[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CaptureError, match="no images found"):
        open_source(str(empty))


class ScriptedCapture:
    """Stands in for cv2.VideoCapture: delivers `frames` frames every `period` seconds, then fails."""

    def __init__(self, frames: int, period: float = 0.0, opened: bool = True) -> None:
        self.left, self.period, self.opened = frames, period, opened

    def isOpened(self):
        return self.opened

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        time.sleep(self.period)
        return True, np.zeros((4, 4, 3), np.uint8)

    def release(self):
        pass


def test_live_source_keeps_only_the_newest_frame_and_counts_the_rest():
    uri = parse_source("http://camera.local/stream")
    source = LiveSource(uri, opener=lambda u: ScriptedCapture(50, period=0.002), reconnect_timeout=0.0)
    time.sleep(0.5)  # a slow consumer: the grabber has delivered everything meanwhile
    frame = source.read(timeout=1.0)
    assert frame.index == 49  # the newest one
    assert source.dropped == 49 and source.received == 50
    with pytest.raises(CaptureError, match="no frames for 0 s after the stream dropped"):
        source.read(timeout=1.0)
    source.close()


def test_live_source_reconnects_and_tells_the_user():
    uri = parse_source("rtsp://camera.local/live")
    captures = iter([ScriptedCapture(3), ScriptedCapture(0, opened=False), ScriptedCapture(5)])
    messages = []
    opener = lambda u: next(captures, ScriptedCapture(0, opened=False))  # noqa: E731
    source = LiveSource(uri, on_status=messages.append, opener=opener, reconnect_timeout=10.0)
    seen = []
    deadline = time.monotonic() + 5
    while len(seen) < 1 or seen[-1] < 7:
        assert time.monotonic() < deadline, (seen, messages)
        frame = source.read(timeout=0.2)
        if frame is not None:
            seen.append(frame.index)
    assert source.reconnects == 1
    assert "stream lost after 3 frames; reconnecting for up to 10 s" in messages[0]
    assert "reconnected after" in messages[1] and "(2 attempts)" in messages[1]
    source.close()


def test_live_source_that_cannot_open_fails_at_once():
    with pytest.raises(CaptureError, match="cannot open source"):
        LiveSource(parse_source("rtsp://camera.local/live"), opener=lambda u: ScriptedCapture(0, opened=False))
