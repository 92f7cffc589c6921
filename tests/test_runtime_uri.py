"""Source and output URIs: jetson-inference shorthand, the CSI pipeline, one-line errors."""

import pytest

from edgesewer.errors import CaptureError, EdgesewerError
from edgesewer.runtime.uri import gstreamer_csi_pipeline, list_images, parse_output, parse_source


def test_camera_shorthands_all_mean_v4l2():
    for text in ("0", "/dev/video0", "v4l2:///dev/video0", "v4l2://0"):
        uri = parse_source(text)
        assert (uri.scheme, uri.kind, uri.camera_index, uri.is_live) == ("v4l2", "camera", 0, True), text
    assert parse_source("/dev/video2").camera_index == 2


def test_csi_becomes_an_nvargus_pipeline():
    uri = parse_source("csi://1")
    assert (uri.kind, uri.camera_index, uri.is_live) == ("csi", 1, True)
    assert uri.location == gstreamer_csi_pipeline(1)
    assert uri.location.startswith("nvarguscamerasrc sensor-id=1 ! ")
    assert "width=(int)1280, height=(int)720, framerate=(fraction)30/1" in uri.location
    assert uri.location.endswith("appsink drop=true max-buffers=1 sync=false")


def test_gstreamer_pipelines_pass_through():
    text = "gst://rtspsrc location=rtsp://10.0.0.5/live latency=0 ! rtph264depay ! h264parse ! nvv4l2decoder ! appsink"
    uri = parse_source(text)
    assert (uri.kind, uri.is_live) == ("gstreamer", True)
    assert uri.location == text[len("gst://") :]
    with pytest.raises(CaptureError, match="must end in appsink"):
        parse_source("gst://videotestsrc ! autovideosink")


def test_network_streams_are_live_and_keep_the_url():
    for text in ("rtsp://user:pw@10.0.0.5:8554/live", "http://127.0.0.1:8080/stream.mjpg", "https://cam.local/x"):
        uri = parse_source(text)
        assert (uri.kind, uri.location, uri.is_live) == ("stream", text, True)


def test_files_folders_and_globs(tmp_path):
    video = tmp_path / "inspection.mp4"
    video.write_bytes(b"x")
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    assert (parse_source(str(video)).kind, parse_source(str(video)).is_live) == ("video", False)
    assert parse_source(f"file://{video}").location == str(video)
    assert parse_source(str(image)).kind == "images"
    assert parse_source(str(tmp_path)).kind == "images"
    glob_uri = parse_source(str(tmp_path / "*.png"))
    assert glob_uri.kind == "images"
    assert list_images(glob_uri.location) == [image]


def test_list_images_sorts_and_filters(tmp_path):
    for name in ("b.jpg", "a.PNG", "notes.txt", "c.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_images(str(tmp_path))] == ["a.PNG", "b.jpg", "c.jpeg"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("foo://bar", "unknown source scheme foo://"),
        ("csi://front", "csi:// takes a sensor number"),
        ("rtsp://", "needs a host"),
        ("v4l2://camera", "V4L2 device"),
        ("/no/such/video.mp4", "no such file or folder"),
        ("", "empty --source"),
    ],
)
def test_bad_sources_give_one_line_errors(text, fragment):
    with pytest.raises(CaptureError) as info:
        parse_source(text)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_outputs():
    assert (parse_output("display://0").scheme, parse_output("display://0").location) == ("display", "0")
    assert parse_output("display").scheme == "display"
    assert (parse_output("file://out/run.mp4").scheme, parse_output("file://out/run.mp4").location) == (
        "file",
        "out/run.mp4",
    )
    assert parse_output("run.avi").location == "run.avi"
    for text in (None, "none", ""):
        assert parse_output(text).scheme == "none"
    for bad, fragment in (
        ("rtmp://x", "unknown output scheme rtmp://"),
        ("file://out.txt", "must end in"),
        ("display://left", "window number"),
    ):
        with pytest.raises(EdgesewerError, match=fragment):
            parse_output(bad)
