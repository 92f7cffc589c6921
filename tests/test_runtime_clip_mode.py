"""`edgesewer run --clip-model`: a super-image (video-level) model inside the live pipeline, and its export.

Two clip models: a super-image checkpoint exported by the real export stage (untrained weights, so
its scores are checked against the offline `classify_video`, not against truth), and a toy ONNX
whose verdict a test can predict exactly (RB when at least 4 of the 9 tiles are red).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import typer
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from edgesewer.cli.run import run_command
from edgesewer.data.superimage import sample_indices, superimage_input
from edgesewer.errors import EdgesewerError
from edgesewer.export.metadata import build_sidecar, write_sidecar
from edgesewer.runtime.clip import ClipClassifier, ClipPrediction, classify_video, clip_segments
from edgesewer.runtime.events import read_events
from edgesewer.runtime.overlay import Overlay
from edgesewer.runtime.pipeline import InspectionPipeline, RunOptions
from edgesewer.runtime.postprocess import FrameResult
from edgesewer.runtime.runner import run_inspection
from edgesewer.runtime.sources import open_source
from edgesewer.taxonomy import SEWER_CODES
from test_runtime_support import (GREY, RED, colour_plan, make_classifier_artifact, save_untrained_video_model,
                                  synthetic_set, write_video)

REPO = Path(__file__).resolve().parents[1]
FPS, SECONDS = 10, 6  # the synthetic inspection video: 60 frames
TILE = 16  # super-image checkpoint: 48 px input

app = typer.Typer()
app.command("run")(run_command)
app.command("noop")(lambda: None)  # a second command keeps `run` a named subcommand, as in the root CLI


# --------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """(Sewer-ML folder, inspection video) of a small synthetic set: 24 stills, one 6 s video at 10 fps."""
    return synthetic_set(tmp_path_factory.mktemp("synth") / "set", images=24, seconds=SECONDS, fps=FPS)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained superimage-resnet18 saved as `edgesewer video train` saves its best.pt (same cfg builder)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    path = tmp_path_factory.mktemp("run") / "best.pt"
    return save_untrained_video_model("superimage-resnet18", [f"video.tile={TILE}"], path)[2]


def export(checkpoint: Path, data: Path, out: Path, precision: str, **kwargs):
    from edgesewer.export.pipeline import ExportOptions, run_export

    options = ExportOptions(model="superimage-resnet18", weights=str(checkpoint), precision=precision,
                            target="ort-cpu", calib_data=data, calib_images=8, out=out, progress=False,
                            cache_dir=out.parent / f"{out.name}-cache", **kwargs)
    return run_export(options, log=lambda line: None)


@pytest.fixture(scope="module")
def artifact(checkpoint, synth, tmp_path_factory) -> Path:
    """The checkpoint's fp32 ONNX + sidecar, written by the export stage."""
    return export(checkpoint, synth[0], tmp_path_factory.mktemp("export") / "out", "fp32").artifacts["fp32"]


def make_toy_clip_artifact(out: Path, tile: int = 8, clip_seconds: float = 2.0) -> Path:
    """A video artifact: RB logit = 10 (R - G) - 3.5 on the super-image's channel means (pixels / 255).

    On grey/red frames that is 1.0 x (red tiles) - 3.5: RB is on exactly when 4 or more of the 9 tiles are red.
    """
    out.mkdir(parents=True, exist_ok=True)
    weight = np.zeros((len(SEWER_CODES), 3), dtype=np.float32)
    bias = np.full(len(SEWER_CODES), -10.0, dtype=np.float32)
    rb = SEWER_CODES.index("RB")
    weight[rb], bias[rb] = [10.0, -10.0, 0.0], -3.5
    size = 3 * tile
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], transB=1)],
        "toy_clip",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(SEWER_CODES)])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = out / "toy-clip.fp32.onnx"
    onnx.save(model, str(path))
    cfg = {"name": "toy-clip", "task": "video", "input_size": size, "in_chans": 3, "mean": [0.0] * 3,
           "std": [1.0] * 3, "classes": list(SEWER_CODES), "thresholds": None, "interpolation": "bilinear",
           "paper": "", "extra": {"grid": 3, "tile": tile, "frames": 9, "clip_seconds": clip_seconds}}
    sidecar = build_sidecar(model="toy-clip", task="video", precision="fp32", target="ort-cpu", model_file=path,
                            onnx_sha256="0" * 64, opset=17, model_cfg=cfg,
                            inputs=[{"name": "input", "shape": [-1, 3, size, size], "dtype": "float32"}],
                            outputs=[{"name": "logits", "shape": [-1, len(SEWER_CODES)], "dtype": "float32",
                                      "kind": "logits"}], weights="hand-set")
    write_sidecar(path, sidecar)
    return path


@pytest.fixture(scope="module")
def red_video(tmp_path_factory) -> Path:
    """100 frames at 10 fps, red from frame 40 to 69 (4.0-6.9 s), grey elsewhere."""
    return write_video(tmp_path_factory.mktemp("video") / "pipe.avi", colour_plan(100, {(40, 69): RED}), fps=10.0)


def expected_windows(n_frames: int, fps: float, span_s: float, stride_s: float) -> list[tuple[int, int]]:
    """(first, last) frame of every window: one each stride once the span is full, plus one for an uncovered tail."""
    width, step = round(span_s * fps), round(stride_s * fps)
    ends = list(range(width - 1, n_frames, step))
    if ends[-1] != n_frames - 1:
        ends.append(n_frames - 1)  # finish(): the frames after the last window get a window too
    return [(end - width + 1, end) for end in ends]


def options(tmp_path: Path, **kwargs) -> RunOptions:
    settings = dict(events=tmp_path / "events.jsonl", report=tmp_path / "report", output="none", headless=True,
                    live_status=False)
    return RunOptions(**{**settings, **kwargs})


# --------------------------------------------------------------------------------------- the runtime

def test_clip_mode_alone_on_a_synthetic_inspection(artifact, synth, tmp_path):
    """--clip-model without --model/--seg: a clip event every stride, the same windows as `classify_video`."""
    video = synth[1]
    span, stride = 2.0, 1.5
    summary = run_inspection(str(video), clip_model=artifact, clip_span_s=span, clip_stride_s=stride,
                             options=options(tmp_path))
    assert (summary.frames, summary.ended_by) == (FPS * SECONDS, "end of stream")
    assert summary.segments == []  # no frame-level model ran

    events = read_events(tmp_path / "events.jsonl")
    clips = [e for e in events if e["event"] == "clip"]
    windows = expected_windows(FPS * SECONDS, FPS, span, stride)
    classes = json.loads(artifact.with_suffix(".json").read_text())["model_cfg"]["classes"]
    assert windows == [(0, 19), (15, 34), (30, 49), (40, 59)]  # 1 + (60 - 20) // 15 strided windows, then the tail
    assert [(e["start_frame"], e["end_frame"]) for e in clips] == windows
    for event, (first, last) in zip(clips, windows):
        assert event["type"] == "clip"
        assert (event["start_time"], event["end_time"]) == pytest.approx((first / FPS, last / FPS))
        assert len(event["scores"]) == 17 and all(0.0 <= s <= 1.0 for s in event["scores"].values())
        assert list(event["scores"]) == classes
        assert event["frames"] == (first + sample_indices(last - first + 1)).tolist()
    assert not [e for e in events if e["event"] == "detection"]
    assert events[-1]["event"] == "end" and events[-1]["clip_segments"] == len(summary.clip_segments)

    # The live pipeline feeds the classifier exactly the frames the offline path reads.
    offline, _ = classify_video(artifact, video, span_s=span, stride_s=stride)
    assert [(p.start_frame, p.end_frame) for p in offline] == windows
    for event, prediction in zip(clips, offline):
        np.testing.assert_allclose(list(event["scores"].values()), prediction.scores, atol=1e-4)
        assert event["codes"] == prediction.codes
    expected = clip_segments(offline, RunOptions().merge_gap_s, normal_class="ZC")
    assert expected  # untrained weights put several codes over 0.5: the comparison below is not of empty lists
    assert [s.to_dict() for s in summary.clip_segments] == [s.to_dict() for s in expected]

    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["clip_segments"] == [s.to_dict() for s in expected]
    assert report["segments"] == [] and report["summary"]["segments"] == 0
    assert (report["run"]["clip_span_s"], report["run"]["clip_stride_s"], report["run"]["clip_windows"]) == (
        span, stride, len(windows))
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<h2>Clip-level segments</h2>" in page and "No frame-level model in this run" in page
    clip_table = page.split("<h2>Clip-level segments</h2>")[1]
    assert clip_table.count("<tr class=") == len(expected)


def test_clip_mode_next_to_a_frame_classifier(red_video, tmp_path):
    """Both levels on one video: frame segment RB 40-69, clip segment RB 30-79 (the windows with >= 4 red tiles)."""
    clip = make_toy_clip_artifact(tmp_path / "models")
    frame = make_classifier_artifact(tmp_path / "models")
    summary = run_inspection(str(red_video), frame, clip_model=clip, clip_stride_s=1.0,
                             options=options(tmp_path, output=f"file://{tmp_path / 'annotated.mp4'}"))
    assert [(s.code, s.start_frame, s.end_frame) for s in summary.segments] == [("RB", 40, 69)]
    # Windows of 20 frames every 10 (span 2 s from the sidecar): red tiles per window 0, 0, 0, 5, 9, 9, 4, 0, 0.
    clips = [e for e in read_events(tmp_path / "events.jsonl") if e["event"] == "clip"]
    assert [(e["start_frame"], e["codes"]) for e in clips] == [
        (0, []), (10, []), (20, []), (30, ["RB"]), (40, ["RB"]), (50, ["RB"]), (60, ["RB"]), (70, []), (80, [])]
    all_red = 1 / (1 + np.exp(-(10 * 230 / 255 - 3.5)))  # 9 red tiles: R mean 230 / 255, G mean 0
    assert clips[4]["scores"]["RB"] == pytest.approx(all_red, abs=0.02)
    (segment,) = summary.clip_segments
    assert (segment.code, segment.start_frame, segment.end_frame) == ("RB", 30, 79)
    assert (segment.start_time, segment.end_time) == pytest.approx((3.0, 7.9))
    assert segment.peak_score == pytest.approx(clips[4]["scores"]["RB"], abs=1e-4)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [s["code"] for s in report["segments"]] == ["RB"] and report["clip_segments"][0]["end_frame"] == 79
    assert "No frame-level model" not in (tmp_path / "report" / "report.html").read_text()
    assert (tmp_path / "annotated.mp4").stat().st_size > 0


def test_pipeline_needs_at_least_one_model(red_video, tmp_path):
    with open_source(str(red_video)) as source, pytest.raises(EdgesewerError, match=r"--clip-model"):
        InspectionPipeline(source, None, None, options(tmp_path))


def test_clip_label_on_the_overlay():
    scores = np.zeros(17, dtype=np.float32)
    scores[[SEWER_CODES.index("RB"), SEWER_CODES.index("OB"), SEWER_CODES.index("PF")]] = [0.82, 0.61, 0.3]
    prediction = ClipPrediction(0, 19, 0.0, 1.9, list(range(9)), scores, scores, scores >= 0.5, SEWER_CODES)
    assert prediction.label() == "clip: RB 0.82, OB 0.61"
    assert prediction.label(max_codes=1) == "clip: RB 0.82 +1"
    none = ClipPrediction(0, 19, 0.0, 1.9, list(range(9)), scores * 0, scores * 0, scores < 0, SEWER_CODES)
    assert none.label() == "clip: no defect"

    image = np.full((240, 320, 3), GREY, dtype=np.uint8)
    plain = Overlay().draw(FrameResult(0, 0.0, image))
    labelled = Overlay().draw(FrameResult(0, 0.0, image, extra={"clip": prediction.label()}))
    assert np.array_equal(plain, image)  # nothing to say, nothing drawn
    changed = np.argwhere((labelled != image).any(axis=2))
    assert len(changed) > 100 and changed[:, 0].max() < 40  # one text line in the label box at the top


def test_bad_span_or_stride_is_a_one_line_error(red_video, tmp_path):
    clip = make_toy_clip_artifact(tmp_path / "models")
    with pytest.raises(EdgesewerError, match=r"span and stride must be positive seconds, got span 2 s, stride 0 s"):
        ClipClassifier(clip, stride_s=0.0)
    with pytest.raises(EdgesewerError, match=r"got span -1 s"):
        run_inspection(str(red_video), clip_model=clip, clip_span_s=-1.0, options=options(tmp_path))


# --------------------------------------------------------------------------------------- the CLI

BLOCKED_CLI = textwrap.dedent(
    """
    import importlib.abc, sys
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "torchvision", "timm", "onnx"}:
                raise ImportError(f"{name} is blocked: the runtime must not import it")
    sys.meta_path.insert(0, Blocker())
    sys.argv = ["edgesewer", *sys.argv[1:]]
    from edgesewer.cli import main
    main()
    """
)


def test_cli_clip_mode_runs_torch_free(red_video, tmp_path):
    """`edgesewer run --clip-model X -s video --headless --report DIR` with torch, timm and onnx unimportable."""
    clip = make_toy_clip_artifact(tmp_path / "models", clip_seconds=4.0)
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED_CLI, "run", "--clip-model", str(clip), "-s", str(red_video), "--headless",
         "--report", str(tmp_path / "report"), "--events", str(tmp_path / "ev.jsonl")],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Default span: the sidecar's 4 s (40 frames); default stride: half of it. Windows end at 39, 59, 79, 99.
    clips = [e for e in read_events(tmp_path / "ev.jsonl") if e["event"] == "clip"]
    assert [(e["start_frame"], e["end_frame"]) for e in clips] == expected_windows(100, 10, 4.0, 2.0)
    assert len(clips) == 4
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    n = len(report["clip_segments"])
    assert n == 1 and f"{n} clip-level segments: RB x1" in proc.stderr
    assert not [line for line in proc.stderr.splitlines() if " defect segments:" in line]  # no frame model, no line


def test_cli_model_errors_are_one_line(tmp_path, red_video):
    runner = CliRunner()
    frame = make_classifier_artifact(tmp_path / "models")
    result = runner.invoke(app, ["run", "--clip-model", str(frame), "-s", str(red_video), "--headless"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("error: toy-cls.fp32.onnx: is a classify model; --clip-model needs a video")
    result = runner.invoke(app, ["run", "-s", str(red_video), "--headless"])
    assert result.exit_code == 2 and "give --model, --seg and/or --clip-model" in result.output


# --------------------------------------------------------------------------------------- export

def test_superimage_export_fp16_and_int8(checkpoint, synth, tmp_path):
    """A super-image checkpoint exports to every precision; its accuracy report is skipped with a note."""
    from edgesewer.errors import ExportError

    from edgesewer.export.calibrate import select_images

    data, video = synth
    train_stills = len(select_images(data, "video", 32))  # the parity set: every Train still (fewer than 32)
    fp16 = export(checkpoint, data, tmp_path / "fp16", "fp16")
    int8 = export(checkpoint, data, tmp_path / "int8", "int8")
    assert sorted(fp16.artifacts) == ["fp16", "fp32"] and sorted(int8.artifacts) == ["fp32", "int8", "int8-cpu"]
    for result in (fp16, int8):
        assert any(n.startswith("accuracy report skipped: a video (super-image) model") for n in result.notes)
        for precision, sidecar in result.sidecars.items():
            assert sidecar["task"] == "video" and sidecar["accuracy"] is None
            assert sidecar["model_cfg"]["extra"]["tile"] == TILE and sidecar["inputs"][0]["shape"] == [-1, 3, 48, 48]
            assert sidecar["parity"]["images"] == train_stills == 19
    assert int8.sidecars["int8"]["calibration"]["images"] == 8
    assert int8.sidecars["int8"]["parity"]["max_abs_diff"] < 0.1
    # Every precision runs in clip mode and agrees with fp32 on the same windows.
    reference, _ = classify_video(fp16.artifacts["fp32"], video, span_s=2.0, stride_s=2.0)
    for path, tolerance in ((fp16.artifacts["fp16"], 5e-3), (int8.artifacts["int8"], 5e-2),
                            (int8.artifacts["int8-cpu"], 5e-2)):
        predictions, _ = classify_video(path, video, span_s=2.0, stride_s=2.0)
        assert len(predictions) == len(reference) == 3
        for p, r in zip(predictions, reference):
            assert np.abs(p.probs - r.probs).max() < tolerance, path.name
    with pytest.raises(ExportError, match=r"--accuracy: a video \(super-image\) model is not measured"):
        export(checkpoint, data, tmp_path / "acc", "fp32", accuracy=True)


def test_calibration_input_of_a_superimage_model_is_a_superimage(artifact, synth, tmp_path, monkeypatch):
    """calibrate() feeds the ONNX 3 x 3 super-images of 9 copies of each still, as clip mode lays them out."""
    import edgesewer.export.calibrate as calibrate_module
    from edgesewer.data.images import read_image
    from edgesewer.export.calibrate import calibrate, input_preparer, is_superimage, select_images
    from edgesewer.runtime.artifact import load_artifact

    cfg = load_artifact(artifact).cfg
    assert is_superimage(cfg) and cfg.input_size == 3 * TILE
    images = select_images(synth[0], cfg.task, 5)
    stills = [read_image(p) for p in images.paths]
    expected = np.concatenate([superimage_input([s] * 9, TILE, cfg.mean, cfg.std) for s in stills])
    batch = input_preparer(cfg)(stills)
    np.testing.assert_allclose(batch, expected, atol=1e-6)
    tiles = batch.reshape(5, 3, 3, TILE, 3, TILE)  # (image, channel, row, y, column, x)
    assert np.array_equal(tiles[:, :, 0, :, 0], tiles[:, :, 2, :, 1])  # every grid cell holds the same frame
    assert not np.allclose(batch[0], batch[1])

    seen: list[np.ndarray] = []
    real_reader = calibrate_module.OneBatchReader

    def spy(array, name):
        seen.append(array)
        return real_reader(array, name)

    monkeypatch.setattr(calibrate_module, "OneBatchReader", spy)
    result = calibrate(artifact, images, cfg, "minmax", cache_dir=tmp_path / "cache", batch=8, progress=False)
    assert result.images == 5 and not result.cache_hit
    np.testing.assert_allclose(np.concatenate(seen), expected, atol=1e-6)

    frame_cfg = load_artifact(make_classifier_artifact(tmp_path / "models")).cfg
    assert not is_superimage(frame_cfg) and input_preparer(frame_cfg)(stills[:1]).shape == (1, 3, 32, 32)


def test_export_imgsz_moves_the_tile_with_it(checkpoint):
    """--imgsz on a super-image export: the sidecar's tile is what the runtime resizes frames to."""
    from edgesewer.errors import DataError
    from edgesewer.export.weights import load_for_export

    loaded = load_for_export("superimage-resnet18", checkpoint, imgsz=3 * (TILE + 8))
    assert loaded.cfg.input_size == 3 * (TILE + 8) and loaded.cfg.extra["tile"] == TILE + 8
    with pytest.raises(DataError, match=r"--imgsz 100: superimage-resnet18 tiles 3 x 3 frames; needs a multiple of 3"):
        load_for_export("superimage-resnet18", checkpoint, imgsz=100)
