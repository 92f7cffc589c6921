"""`edgesewer run` never overwrites its inputs or leaks a camera's password: an output that is the
source (or a model) is refused, the annotated video and the report appear whole (temporary file,
fsync, rename) with no temporary files left, and `rtsp://user:pass@host` shows as `user:***`."""

import json
import os
from pathlib import Path

import cv2
import pytest
import typer
import numpy as np
from test_runtime_support import RED, MjpegServer, colour_plan, free_port, make_classifier_artifact, write_video
from typer.testing import CliRunner

from edgesewer.runtime import report as report_module
from edgesewer.runtime.sinks import VideoFileSink
from edgesewer.runtime.uri import parse_source, redact


def cli_app():
    from edgesewer.cli.run import run_command

    app = typer.Typer()
    app.command("run")(run_command)
    app.command("noop")(lambda: None)  # two commands, so "run" stays a sub-command as in edgesewer
    return app


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    cls = make_classifier_artifact(root / "models")
    return root, cls


def one_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and lines and lines[-1].startswith("error: "), result.output
    return lines[-1]


@pytest.mark.parametrize("flag", ["--output", "--events", "--output-model"])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(files, tmp_path, flag):
    _, cls = files
    video = write_video(tmp_path / "inspection.avi", colour_plan(20, {(5, 9): RED}))
    before = video.read_bytes()
    if flag == "--output":
        extra, target = ["--output", f"file://{video}"], video
    elif flag == "--events":
        extra, target = ["--events", str(video)], video
    else:  # the annotated video written over the model's sidecar would need a video suffix: use a symlink
        link = tmp_path / "model.mp4"
        link.symlink_to(cls)
        extra, target = ["--output", f"file://{link}"], cls
    target_before = target.read_bytes()
    result = CliRunner().invoke(cli_app(), ["run", "-m", str(cls), "-s", str(video), "--headless", *extra])
    assert "would overwrite an input of this run" in one_error(result)
    assert video.read_bytes() == before and target.read_bytes() == target_before


def test_video_report_and_events_appear_whole_and_leave_no_temporary_files(files, tmp_path):
    _, cls = files
    video = write_video(tmp_path / "in.avi", colour_plan(30, {(5, 14): RED}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "annotated.mp4").write_bytes(b"an older run's video")
    result = CliRunner().invoke(cli_app(), [
        "run", "-m", str(cls), "-s", str(video), "--headless", "-o", f"file://{out / 'annotated.mp4'}",
        "--report", str(out / "rep"), "--events", str(out / "ev.jsonl")])
    assert result.exit_code == 0, result.output
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    cap.release()
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and "snapshots" not in p.parts)
    assert names == ["annotated.mp4", "ev.jsonl", "rep/observations.csv", "rep/observations.json", "rep/report.html",
                     "rep/report.json"]


def test_video_sink_keeps_the_old_file_until_the_new_one_is_complete(tmp_path):
    path = tmp_path / "a.mp4"
    path.write_bytes(b"old")
    sink = VideoFileSink(path, 10.0)
    for value in (0, 100, 200):
        sink.write(np.full((16, 16, 3), value, np.uint8))
    assert path.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 2  # the new one is still hidden
    sink.close()
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]


def test_report_files_are_fsynced_and_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real_fsync(fd)

    monkeypatch.setattr(report_module.os, "fsync", recording_fsync)
    report_module.write_report(tmp_path / "rep", [], {"source": "x"})
    # .report.json.XXXX, .report.html.XXXX, .observations.csv.XXXX, .observations.json.XXXX
    assert sorted(name.split(".")[1] for name in synced) == ["observations", "observations", "report", "report"]
    assert {name.rsplit(".", 1)[0] for name in synced} == {
        ".report.json", ".report.html", ".observations.csv", ".observations.json"}

    def no_space(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_module.os, "replace", no_space)
    with pytest.raises(OSError):
        report_module.write_report(tmp_path / "rep2", [], {"source": "x"})
    assert list((tmp_path / "rep2").iterdir()) == []


def test_passwords_are_masked_wherever_a_source_is_shown():
    assert redact("rtsp://user:pass@10.0.0.5:554/live") == "rtsp://user:***@10.0.0.5:554/live"
    assert redact("rtsp://user:p@ss@cam/x") == "rtsp://user:***@cam/x"  # an unescaped @ in the password
    assert redact("rtsp://token@cam/x") == "rtsp://***@cam/x"
    assert redact("rtsp://cam/x?at=a@b") == "rtsp://cam/x?at=a@b"
    gst = "gst://rtspsrc location=rtsp://admin:hunter2@cam/s user-pw=hunter2 ! decodebin ! appsink"
    assert "hunter2" not in redact(gst) and "user-pw=***" in redact(gst)
    uri = parse_source("rtsp://user:pass@10.0.0.5:554/live")
    assert uri.text == "rtsp://user:***@10.0.0.5:554/live" and uri.location == "rtsp://user:pass@10.0.0.5:554/live"
    assert "pass@" not in repr(uri)


@pytest.mark.stream
def test_a_stream_password_reaches_no_console_event_report_or_video(files, tmp_path):
    _, cls = files
    server = MjpegServer(free_port(), lifetime_s=60).start()
    try:
        url = server.url.replace("http://", "http://inspector:S3cretPw@")
        result = CliRunner().invoke(cli_app(), [
            "run", "-m", str(cls), "-s", url, "--headless", "--max-frames", "15", "-o", f"file://{tmp_path / 'a.mp4'}",
            "--events", str(tmp_path / "ev.jsonl"), "--report", str(tmp_path / "rep")])
    finally:
        server.kill()
    assert result.exit_code == 0, result.output
    assert "15 frames in" in result.output
    written = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert {"a.mp4", "ev.jsonl", "report.json", "report.html"} <= set(written)
    for name, data in {"console": result.output.encode(), **written}.items():
        assert b"S3cretPw" not in data, name
    start = json.loads((tmp_path / "ev.jsonl").read_text().splitlines()[0])
    assert start["source"] == url.replace("S3cretPw", "***")
    assert json.loads(written["report.json"])["run"]["source"] == url.replace("S3cretPw", "***")


def test_a_gstreamer_source_without_gstreamer_in_opencv_says_why_and_how_to_fix(monkeypatch):
    from edgesewer.errors import CaptureError
    from edgesewer.runtime.sources import open_source

    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  Video I/O:\n    FFMPEG: YES\n    GStreamer: NO\n")
    for source in ("csi://0", "gst://videotestsrc ! videoconvert ! appsink"):
        with pytest.raises(CaptureError) as info:
            open_source(source)
        message = str(info.value)
        assert message.startswith(f"{source}: cannot open: the OpenCV in use ({cv2.__file__}) says 'GStreamer: NO'")
        assert "opencv-python(-headless) has no GStreamer and shadows JetPack's OpenCV" in message
        assert "pip uninstall opencv-python-headless opencv-python" in message and "--no-deps" in message
