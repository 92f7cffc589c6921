"""A real network stream on loopback: an MJPEG-over-HTTP server in a child process (OpenCV's FFmpeg
backend reads it like any IP camera), killed and restarted within the reconnect window (the run
resumes), then killed for good (the run ends with a clear message, events flushed, report written);
and a server that keeps its sockets open but stops sending (a stall, caught by the watchdog), also
under SIGTERM in a real `edgesewer run` subprocess.

No extra packages: the server is Python + OpenCV. (RTSP would take the same code path through
FFmpeg but needs an RTSP server; Debian 12 has no mediamtx, only gir1.2-gst-rtsp-server-1.0.)
"""

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from test_runtime_support import MjpegServer, free_port, make_classifier_artifact

from edgesewer.runtime.events import read_events
from edgesewer.runtime.pipeline import InspectionPipeline, RunOptions
from edgesewer.runtime.predictors import load_predictor
from edgesewer.runtime.sources import LiveSource, open_source

RECONNECT_S = 5.0


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.stream
def test_stream_survives_a_restart_and_ends_cleanly_when_it_stays_dead(tmp_path):
    server = MjpegServer(free_port(), lifetime_s=60).start()
    try:
        classifier = load_predictor(make_classifier_artifact(tmp_path / "models"), "classify")
        pipeline = None
        source = open_source(
            server.url,
            reconnect_timeout=RECONNECT_S,
            on_status=lambda message: pipeline.on_source_status(message) if pipeline else None,
        )
        assert isinstance(source, LiveSource)
        options = RunOptions(events=tmp_path / "ev.jsonl", report=tmp_path / "rep", headless=True, live_status=False)
        pipeline = InspectionPipeline(source, classifier, None, options)
        timeline = {}

        def operate_the_server():
            wait_for(lambda: pipeline.stats.frames >= 20, 15, "first frames")
            server.kill()
            timeline["killed"] = pipeline.stats.frames
            time.sleep(1.0)
            server.start()
            wait_for(lambda: source.reconnects == 1 and pipeline.stats.frames >= timeline["killed"] + 20, 15, "resume")
            timeline["resumed"] = pipeline.stats.frames
            server.kill()  # for good
            timeline["dead_at"] = time.monotonic()

        operator = threading.Thread(target=operate_the_server, daemon=True)
        operator.start()
        summary = pipeline.run()
        operator.join(timeout=5)
        ended = time.monotonic()
    finally:
        server.kill()

    assert "resumed" in timeline, "the stream was not resumed after the restart"
    assert summary.ended_by == "source failed"
    assert f"no frames for {RECONNECT_S:.0f} s after the stream dropped" in str(summary.error)
    assert RECONNECT_S - 0.5 < ended - timeline["dead_at"] < RECONNECT_S + 4  # gave up after the window, not before
    assert summary.frames >= timeline["resumed"] >= 40
    events = read_events(tmp_path / "ev.jsonl")
    statuses = [e["message"] for e in events if e["event"] == "status"]
    assert "stream lost after" in statuses[0] and "reconnecting for up to 5 s" in statuses[0]
    assert "reconnected after" in statuses[1]
    assert "stream lost after" in statuses[2] and "giving up" in statuses[-1]
    assert events[-1]["event"] == "end" and events[-1]["ended_by"] == "source failed"
    detections = [e for e in events if e["event"] == "detection"]
    assert detections and all(e["codes"] == ["RB"] for e in detections)  # the server alternates red and grey
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["run"]["ended_by"] == "source failed" and report["run"]["live"] is True
    assert report["summary"]["by_code"].get("RB", 0) >= 2  # red stretches before and after the restart


STALL_S = 1.0


def statuses_of(path):
    return [e["message"] for e in read_events(path) if e["event"] == "status"] if path.exists() else []


@pytest.mark.stream
def test_a_camera_that_stays_connected_and_sends_nothing_is_a_stall(tmp_path):
    """The socket stays open, FFmpeg's read just waits: the watchdog calls it a stall after 1 s,
    reconnect attempts hang too and are abandoned, and the run ends when the reconnect window closes."""
    server = MjpegServer(free_port(), lifetime_s=60, stall_after=150).start()
    try:
        classifier = load_predictor(make_classifier_artifact(tmp_path / "models"), "classify")
        pipeline = None
        source = open_source(
            server.url,
            reconnect_timeout=3.0,
            stall_timeout=STALL_S,
            on_status=lambda message: pipeline.on_source_status(message) if pipeline else None,
        )
        options = RunOptions(events=tmp_path / "ev.jsonl", report=tmp_path / "rep", headless=True, live_status=False)
        pipeline = InspectionPipeline(source, classifier, None, options)
        summary = pipeline.run()
    finally:
        server.kill()
    assert summary.ended_by == "source failed" and summary.frames > 0
    assert "no frames for 3 s after the stream dropped" in str(summary.error)
    statuses = statuses_of(tmp_path / "ev.jsonl")
    assert f"no frame for {STALL_S:.0f} s (stalled) after" in statuses[0]
    assert "reconnecting for up to 3 s" in statuses[0]
    assert "giving up" in statuses[-1] and not any("reconnected" in m for m in statuses)
    assert (summary.stats["stalls"], summary.stats["reconnects"]) == (1, 0)
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["run"]["stats"]["stalls"] == 1 and report["run"]["ended_by"] == "source failed"
    assert "stalls 1" in (tmp_path / "rep" / "report.html").read_text()


@pytest.mark.stream
def test_sigterm_ends_a_run_on_a_stalled_stream_within_seconds(tmp_path):
    """`edgesewer run` in a subprocess, stalled and reconnecting (every attempt hangs): SIGTERM ends it
    within a few seconds, with the events and the report written."""
    server = MjpegServer(free_port(), lifetime_s=120, stall_after=100).start()
    model = make_classifier_artifact(tmp_path / "models")
    events, report = tmp_path / "ev.jsonl", tmp_path / "rep"
    command = [sys.executable, "-m", "edgesewer", "run", "-m", str(model), "-s", server.url, "--headless"]
    command += ["--events", str(events), "--report", str(report), "--stall-timeout", f"{STALL_S}"]
    proc = subprocess.Popen(command + ["--reconnect-timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: any("no frame for" in m for m in statuses_of(events)), 120, "the stall")
        time.sleep(1.5)  # into the reconnect attempts, which hang as well
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        proc.kill()
        server.kill()
    assert took < 4.0, (took, output)
    assert proc.returncode == 0, output
    end = read_events(events)[-1]
    assert (end["event"], end["ended_by"]) == ("end", "interrupted") and end["stats"]["stalls"] >= 1
    data = json.loads((report / "report.json").read_text())
    assert data["run"]["ended_by"] == "interrupted" and data["run"]["stats"]["stalls"] >= 1
    assert b"stalls" in output  # the summary line names them
