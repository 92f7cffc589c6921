"""Frame sources: every frame of a file then a clean end, truncated and unreadable files, image
folders, and the live source's newest-frame-only and reconnect logic (with a scripted capture); a
capture that raises or hangs inside read() ends or reconnects in time, it never hangs the run."""

import threading
import time

import cv2
import numpy as np
import pytest
from test_runtime_support import GREY, RED, colour_plan, make_classifier_artifact, write_video

from edgesewer.errors import CaptureError, EndOfStream
from edgesewer.runtime.events import read_events
from edgesewer.runtime.pipeline import InspectionPipeline, RunOptions
from edgesewer.runtime.predictors import load_predictor
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


class RaisingCapture(ScriptedCapture):
    """Delivers `frames` frames, then its read raises (a driver or backend error inside OpenCV)."""

    def read(self):
        if self.left <= 0:
            raise RuntimeError("VIDIOC_DQBUF: No such device")
        return super().read()


class HangingCapture(ScriptedCapture):
    """Delivers `frames` frames, then blocks inside read() until `release_hang` is set, as OpenCV does
    on a camera that keeps its socket open and sends nothing (or a V4L2 / GStreamer device that stalls)."""

    def __init__(self, frames: int) -> None:
        super().__init__(frames)
        self.release_hang = threading.Event()
        self.released = threading.Event()

    def read(self):
        if self.left <= 0:
            self.release_hang.wait()
            return False, None
        return super().read()

    def release(self):
        self.released.set()


def read_until(source, predicate, timeout):
    """read() until predicate(frames seen) holds; re-raises what read() raises; fails rather than hang."""
    seen = []
    deadline = time.monotonic() + timeout
    while not predicate(seen):
        assert time.monotonic() < deadline, f"no progress after {timeout} s: {len(seen)} frames"
        frame = source.read(timeout=0.1)
        if frame is not None:
            seen.append(frame)
    return seen


def test_live_capture_exception_becomes_a_capture_error():
    uri = parse_source("rtsp://camera.local/live")
    source = LiveSource(uri, opener=lambda u: RaisingCapture(3), reconnect_timeout=10.0)
    with pytest.raises(CaptureError, match=r"capture failed: RuntimeError\('VIDIOC_DQBUF: No such device'\)"):
        read_until(source, lambda seen: False, timeout=5)
    source.close()


def test_stalled_live_capture_is_abandoned_and_reconnected():
    """read() never returns: the watchdog counts a stall after 1 s, reconnects, and close() does not wait."""
    hung = HangingCapture(4)
    captures = iter([hung, ScriptedCapture(6)])
    messages = []
    started = time.monotonic()  # the 4 frames, and so the hang, may come before the constructor returns
    source = LiveSource(
        parse_source("http://camera.local/mjpg"),
        on_status=messages.append,
        opener=lambda u: next(captures, ScriptedCapture(0, opened=False)),
        reconnect_timeout=10.0,
        stall_timeout=1.0,
    )
    seen = read_until(source, lambda seen: source.reconnects == 1 and seen and seen[-1].index >= 9, timeout=8)
    assert 1.0 <= time.monotonic() - started < 4.0
    assert source.stalls == 1 and source.reconnects == 1
    assert "no frame for 1 s (stalled) after 4 frames; reconnecting for up to 10 s" in messages[0]
    assert "reconnected after" in messages[1] and "(1 attempts)" in messages[1]
    assert not hung.released.is_set()  # still stuck in read(): nobody released it under its feet
    t0 = time.monotonic()
    source.close()
    assert time.monotonic() - t0 < 1.0
    hung.release_hang.set()  # the abandoned read returns at last: its thread releases the capture itself
    assert hung.released.wait(2.0)
    assert seen[-1].index >= 9


def test_stalled_file_decoder_ends_the_file_with_a_clear_error(tmp_path):
    video = write_video(tmp_path / "v.avi", [GREY] * 10)
    hung = HangingCapture(3)
    started = time.monotonic()
    source = FileSource(parse_source(str(video)), stall_timeout=1.0, opener=lambda u: hung)
    with pytest.raises(CaptureError) as info:
        read_until(source, lambda seen: False, timeout=5)
    assert 1.0 <= time.monotonic() - started < 3.0
    assert f"{video}: no frame for 1 s, decoding is stuck at frame 3" in str(info.value)
    assert source.stalls == 1
    t0 = time.monotonic()
    source.close()
    assert time.monotonic() - t0 < 1.0
    hung.release_hang.set()
    assert hung.released.wait(2.0)


def test_file_decoder_exception_becomes_a_capture_error(tmp_path):
    video = write_video(tmp_path / "v.avi", [GREY] * 10)
    source = FileSource(parse_source(str(video)), opener=lambda u: RaisingCapture(2))
    with pytest.raises(CaptureError, match=r"decoding failed at frame 2: RuntimeError"):
        read_until(source, lambda seen: False, timeout=5)


def test_capture_exception_ends_the_pipeline_as_a_source_failure(tmp_path):
    """Before: the grabber thread died, read() returned None for ever and the run never ended."""
    classifier = load_predictor(make_classifier_artifact(tmp_path / "models"), "classify")
    source = LiveSource(parse_source("rtsp://camera.local/live"), opener=lambda u: RaisingCapture(5))
    options = RunOptions(events=tmp_path / "ev.jsonl", headless=True, output="none", live_status=False)
    pipeline = InspectionPipeline(source, classifier, None, options)
    result = {}
    runner = threading.Thread(target=lambda: result.update(summary=pipeline.run()), daemon=True)
    runner.start()
    runner.join(timeout=20)
    assert "summary" in result, "the run did not end after the capture raised"
    summary = result["summary"]
    assert summary.ended_by == "source failed" and isinstance(summary.error, CaptureError)
    assert "capture failed: RuntimeError('VIDIOC_DQBUF: No such device')" in str(summary.error)
    end = read_events(tmp_path / "ev.jsonl")[-1]
    assert (end["event"], end["ended_by"]) == ("end", "source failed")
