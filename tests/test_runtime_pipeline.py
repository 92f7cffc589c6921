"""The whole runtime on video files with known content: segments equal the ground truth, batching
changes nothing, the CLI, and every way a run can end (end of file, truncated file, failing backend,
Ctrl-C, SIGTERM) still flushes events and writes the report."""

import json
import os
import signal
import threading
import time

import cv2
import numpy as np
import pytest
import typer
from test_runtime_support import (
    GREEN,
    GREY,
    RED,
    colour_plan,
    make_classifier_artifact,
    make_segmenter_artifact,
    write_video,
)
from typer.testing import CliRunner

from edgesewer.errors import BackendError, EdgesewerError
from edgesewer.runtime.events import read_events
from edgesewer.runtime.pipeline import InspectionPipeline, RunOptions
from edgesewer.runtime.predictors import load_predictor
from edgesewer.runtime.runner import install_sigterm_as_interrupt, run_inspection
from edgesewer.runtime.segments import score_report
from edgesewer.runtime.sources import Frame, VideoSource, open_source
from edgesewer.runtime.uri import parse_source

SPANS = {(10, 29): RED, (50, 69): GREEN, (72, 77): RED}
CRACK_LINE_FRAMES = set(range(91, 97))  # 13 frames after the last red one: more than the 0.5 s merge gap


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    cls = make_classifier_artifact(root / "models")
    seg = make_segmenter_artifact(root / "models")
    video = write_video(root / "pipe.avi", colour_plan(100, SPANS), crack_frames=CRACK_LINE_FRAMES)
    truth = root / "pipe.json"
    truth.write_text(
        json.dumps(
            {
                "segments": [
                    {"code": "RB", "start_frame": 10, "end_frame": 29},
                    {"code": "OB", "start_frame": 50, "end_frame": 69},
                    {"code": "RB", "start_frame": 72, "end_frame": 77},
                ]
            }
        )
    )
    return root, cls, seg, video, truth


def quiet(**kw) -> RunOptions:
    return RunOptions(live_status=False, headless=True, **kw)


def test_segments_match_ground_truth_and_batching_changes_nothing(files, tmp_path):
    root, cls, seg, video, truth = files
    results = {}
    for batch in (1, 4):
        out = tmp_path / f"b{batch}"
        summary = run_inspection(
            str(video), cls, seg, options=quiet(batch=batch, events=out / "ev.jsonl", report=out / "rep")
        )
        assert (summary.frames, summary.ended_by, summary.error) == (100, "end of stream", None)
        results[batch] = (
            [(s.code, s.start_frame, s.end_frame) for s in summary.segments],
            [(e["frame"], e["codes"]) for e in read_events(out / "ev.jsonl") if e["event"] == "detection"],
        )
        score = score_report(out / "rep" / "report.json", truth, iou_threshold=0.5)
        assert (score.precision, score.recall) == (1.0, 1.0)
    assert results[1] == results[4]
    segments = results[1][0]
    # red frames are RB to the classifier and all crack to the segmenter; the red line only the latter
    assert segments == [
        ("CRACK", 10, 29),
        ("RB", 10, 29),
        ("OB", 50, 69),
        ("CRACK", 72, 77),
        ("RB", 72, 77),
        ("CRACK", 91, 96),
    ]
    report = json.loads((tmp_path / "b1" / "rep" / "report.json").read_text())
    whole = next(s for s in report["segments"] if s["code"] == "CRACK" and s["start_frame"] == 10)
    assert whole["crack_area_px"] == 64 * 48 and 0 < whole["crack_length_px"] <= 80  # an all-red frame: one blob
    crack = next(s for s in report["segments"] if s["start_frame"] == 91)
    # the red line is 40 x 3 px in a 64 x 48 frame, seen through a 32 x 32 network input
    assert 25 <= crack["crack_length_px"] <= 48 and 60 <= crack["crack_area_px"] <= 400
    assert report["run"]["ended_by"] == "end of stream" and report["run"]["stats"]["frames"] == 100


def cli_app():
    from edgesewer.cli.run import run_command

    app = typer.Typer()
    app.command("run")(run_command)
    app.command("noop")(lambda: None)  # two commands, so "run" stays a sub-command as in edgesewer
    return app


def test_cli_run_with_threshold_override(files, tmp_path):
    root, cls, _, video, _ = files
    args = [
        "run",
        "--model",
        str(cls),
        "--source",
        str(video),
        "--headless",
        "--report",
        str(tmp_path / "rep"),
        "--events",
        str(tmp_path / "ev.jsonl"),
        "--threshold",
        "RB=0.999",
        "--smooth",
        "ema:0.9",
        "--batch",
        "2",
    ]
    result = CliRunner().invoke(cli_app(), args)
    assert result.exit_code == 0, result.output
    assert "100 frames in" in result.output and "1 defect segments: OB x1" in result.output
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["run"]["thresholds"]["RB"] == 0.999 and report["run"]["smoothing"] == "ema:0.9"
    bad = CliRunner().invoke(cli_app(), ["run", "--model", str(cls), "--source", "ftp://x/y", "--headless"])
    assert bad.exit_code == 1 and bad.output.strip().startswith("error: ftp://x/y: unknown source scheme ftp://")



def _opencv_can_open_a_window() -> bool:
    try:
        cv2.namedWindow("edgesewer-probe")
        cv2.destroyWindow("edgesewer-probe")
    except cv2.error:
        return False
    return True


@pytest.mark.skipif(_opencv_can_open_a_window(), reason="this OpenCV opens windows: the refusal cannot be shown")
def test_display_output_without_gui_is_a_one_line_error(files):
    root, cls, _, video, _ = files
    window = CliRunner().invoke(
        cli_app(), ["run", "-m", str(cls), "-s", str(video), "-o", "display://0", "--max-frames", "1"]
    )
    # pip's headless OpenCV (as here and in CI): refused in one line, not a crash
    assert window.exit_code == 1
    assert window.output.strip().splitlines()[-1].startswith("error: display://0 needs an OpenCV with GUI")


def test_truncated_file_ends_the_run_with_report_and_error(files, tmp_path):
    root, cls, _, video, _ = files
    cut = tmp_path / "cut.avi"
    data = video.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    args = [
        "run",
        "-m",
        str(cls),
        "-s",
        str(cut),
        "--headless",
        "--report",
        str(tmp_path / "rep"),
        "--events",
        str(tmp_path / "ev.jsonl"),
    ]
    result = CliRunner().invoke(cli_app(), args)
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and "of 100 announced in its header (truncated or corrupt file)" in last
    events = read_events(tmp_path / "ev.jsonl")
    assert events[-1]["event"] == "end" and events[-1]["ended_by"] == "source failed"
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["run"]["ended_by"] == "source failed"
    frames = report["run"]["stats"]["frames"]
    assert 50 < frames < 70  # the file was cut inside the green (OB) stretch: its segment ends there
    assert [(s["code"], s["start_frame"], s["end_frame"]) for s in report["segments"]] == [
        ("RB", 10, 29),
        ("OB", 50, frames - 1),
    ]


class EndlessSource(VideoSource):
    """A file-like source that never ends: grey frames, red ones from 20 to 39."""

    def __init__(self):
        super().__init__(parse_source("csi://0"))
        self.fps, self.next = 25.0, 0

    def read(self, timeout=1.0):
        colour = RED if 20 <= self.next < 40 else GREY
        frame = Frame(np.full((48, 64, 3), colour, np.uint8), self.next, self.next / 25.0)
        self.next += 1
        return frame


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_flushes_events_and_writes_the_report(files, tmp_path, sig):
    root, cls, _, _, _ = files
    classifier = load_predictor(cls, "classify")
    options = quiet(events=tmp_path / "ev.jsonl", report=tmp_path / "rep")
    pipeline = InspectionPipeline(EndlessSource(), classifier, None, options)
    restore = install_sigterm_as_interrupt()
    fired = threading.Event()

    def interrupt_once_red_is_seen():
        while pipeline.stats.frames < 60:
            if fired.wait(0.01):
                return
        os.kill(os.getpid(), sig)

    threading.Thread(target=interrupt_once_red_is_seen, daemon=True).start()
    try:
        summary = pipeline.run()
    finally:
        fired.set()
        restore()
    assert summary.ended_by == "interrupted" and summary.frames >= 60
    assert [(s.code, s.start_frame, s.end_frame) for s in summary.segments] == [("RB", 20, 39)]
    assert read_events(tmp_path / "ev.jsonl")[-1]["ended_by"] == "interrupted"
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["summary"]["by_code"] == {"RB": 1}


def test_second_interrupt_stops_at_once_and_signal_handlers_are_restored(files, tmp_path):
    root, cls, _, _, _ = files
    classifier = load_predictor(cls, "classify")
    classifier.backend = SlowBackend(classifier.backend, seconds=0.1)  # frames in flight take a while to drain
    pipeline = InspectionPipeline(EndlessSource(), classifier, None, quiet(report=tmp_path / "rep"))
    before = signal.getsignal(signal.SIGINT)

    def interrupt_twice():
        while pipeline.stats.frames < 5:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # two signals sent back to back would reach Python as one
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_twice, daemon=True).start()
    summary = pipeline.run()
    assert summary.ended_by == "interrupted" and pipeline._interrupts == 2  # both signals handled, none raised
    assert signal.getsignal(signal.SIGINT) is before  # the run's handler is gone again
    assert (tmp_path / "rep" / "report.json").is_file()


class SlowBackend:
    """Wraps a backend and takes `seconds` per call."""

    name = "ort"

    def __init__(self, inner, seconds):
        self.inner, self.seconds = inner, seconds

    def infer(self, batch):
        time.sleep(self.seconds)
        return self.inner.infer(batch)

    def close(self):
        self.inner.close()


class FailingBackend:
    """Wraps a backend and fails like a GPU that fell off the bus after `ok` calls."""

    name = "ort"

    def __init__(self, inner, ok):
        self.inner, self.ok = inner, ok

    def infer(self, batch):
        self.ok -= 1
        if self.ok < 0:
            raise BackendError("inference failed: device lost")
        return self.inner.infer(batch)

    def close(self):
        self.inner.close()


def test_backend_failure_keeps_what_was_found(files, tmp_path):
    root, cls, _, video, _ = files
    classifier = load_predictor(cls, "classify")
    classifier.backend = FailingBackend(classifier.backend, ok=40)
    source = open_source(str(video))
    options = quiet(events=tmp_path / "ev.jsonl", report=tmp_path / "rep")
    summary = InspectionPipeline(source, classifier, None, options).run()
    assert (summary.ended_by, str(summary.error)) == ("error", "inference failed: device lost")
    assert summary.frames == 40 and [(s.code, s.start_frame, s.end_frame) for s in summary.segments] == [("RB", 10, 29)]
    assert read_events(tmp_path / "ev.jsonl")[-1]["message"] == "inference failed: device lost"
    assert (tmp_path / "rep" / "report.html").exists()


def test_image_folder_and_max_frames(files, tmp_path):
    import cv2

    root, cls, _, _, _ = files
    for i in range(6):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((48, 64, 3), RED if i in (2, 3) else GREY, np.uint8))
    summary = run_inspection(str(tmp_path / "*.png"), cls, options=quiet(max_frames=5))
    assert (summary.frames, summary.ended_by) == (5, "max frames")
    assert [(s.code, s.start_frame, s.end_frame) for s in summary.segments] == [("RB", 2, 3)]


def test_model_roles_are_checked(files):
    root, cls, seg, video, _ = files
    with pytest.raises(BackendError, match="--seg toy-cls.fp32.onnx: is a classify model, --seg needs a segment model"):
        run_inspection(str(video), None, cls, options=quiet())
    with pytest.raises(BackendError, match="--model toy-seg.fp32.onnx: is a segment model"):
        run_inspection(str(video), seg, None, options=quiet())


def test_unwritable_output_video_is_refused_before_the_run(files, tmp_path):
    root, cls, _, video, _ = files
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    result = CliRunner().invoke(cli_app(), ["run", "-m", str(cls), "-s", str(video), "-o", f"file://{blocker}/a.mp4"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == f"error: {blocker}/a.mp4: cannot create its folder (File exists)"


class DiskFullSink:
    def __init__(self, ok):
        self.ok = ok

    def write(self, image):
        self.ok -= 1
        if self.ok < 0:
            raise EdgesewerError("annotated.mp4: disk full")

    def close(self):
        pass


def test_sink_failure_mid_run_keeps_the_report(files, tmp_path):
    root, cls, _, video, _ = files
    options = quiet(report=tmp_path / "rep", events=tmp_path / "ev.jsonl")
    pipeline = InspectionPipeline(open_source(str(video)), load_predictor(cls, "classify"), None, options)
    pipeline.sink = DiskFullSink(ok=35)
    summary = pipeline.run()
    assert (summary.ended_by, str(summary.error), summary.frames) == ("error", "annotated.mp4: disk full", 35)
    assert [(s.code, s.start_frame, s.end_frame) for s in summary.segments] == [("RB", 10, 29)]
    assert (
        json.loads((tmp_path / "rep" / "report.json").read_text())["run"]["end_message"] == "annotated.mp4: disk full"
    )
