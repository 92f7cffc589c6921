"""Clip mode with a frame-stack video model (Video Swin-B, input [B, T, 3, S, S]): export, runtime, training sampling.

Two frame-stack models:
* a toy ONNX whose verdict a test can predict exactly: RB = 10 (red of the last frame - red of the
  first) - 3, so RB is on only in windows whose sampled frames go from grey to red; it checks the
  time order (axis 1) and the channel order (RGB, axis 2) the runtime feeds;
* video-swin3d-b itself (torchvision swin3d_b, 87.7M parameters, untrained) at a reduced input (4
  frames of 64 px), saved as `edgesewer video train` saves it and exported by the real export stage
  (onnxsim on): fp32 parity against PyTorch, then the exported artifact in `edgesewer run` (torch
  blocked) and over the whole video, where its scores must equal PyTorch's on the input training
  builds (`ClipFramesDataset`: the same T frames of the whole video, the same resize and normalisation).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgesewer.data.superimage import sample_indices
from edgesewer.errors import BackendError, DataError
from edgesewer.export.metadata import build_sidecar, write_sidecar
from edgesewer.runtime.artifact import load_artifact
from edgesewer.runtime.clip import ClipClassifier, classify_video
from edgesewer.runtime.events import read_events
from edgesewer.taxonomy import SEWER_CODES
from test_runtime_clip_mode import BLOCKED_CLI, REPO
from test_runtime_support import RED, colour_plan, save_untrained_video_model, synthetic_set, write_video

T, SIZE = 4, 64  # Video Swin-B at a reduced input: 4 frames of 64 px (the real one: 32 x 224)
FPS, SECONDS = 10, 4  # the synthetic inspection video: 40 frames


def windows(n_frames: int, fps: float, span_s: float, stride_s: float) -> list[tuple[int, int]]:
    """(first, last) frame of every window: one each stride once the span is full, plus one for an uncovered tail."""
    width, step = round(span_s * fps), round(stride_s * fps)
    ends = list(range(width - 1, n_frames, step))
    if ends[-1] != n_frames - 1:
        ends.append(n_frames - 1)
    return [(end - width + 1, end) for end in ends]


# --------------------------------------------------------------------------------------- the toy frame stack

def make_toy_stack_artifact(out: Path, frames: int = T, size: int = 8, sidecar_frames: int | None = None) -> Path:
    """[B, T, 3, S, S] -> per-frame channel means -> Gemm: RB = 10 (R[last] - R[first]) - 3, others -10."""
    out.mkdir(parents=True, exist_ok=True)
    weight = np.zeros((len(SEWER_CODES), 3 * frames), dtype=np.float32)
    bias = np.full(len(SEWER_CODES), -10.0, dtype=np.float32)
    rb = SEWER_CODES.index("RB")
    weight[rb, 3 * (frames - 1)], weight[rb, 0], bias[rb] = 10.0, -10.0, -3.0  # red is channel 0 of RGB
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["means"], axes=[3, 4], keepdims=0),  # [B, T, 3]
         helper.make_node("Flatten", ["means"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], transB=1)],
        "toy_stack",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", frames, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(SEWER_CODES)])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = out / "toy-stack.fp32.onnx"
    onnx.save(model, str(path))
    cfg = {"name": "toy-stack", "task": "video", "input_size": size, "in_chans": 3, "mean": [0.0] * 3,
           "std": [1.0] * 3, "classes": list(SEWER_CODES), "thresholds": None, "interpolation": "bilinear",
           "paper": "", "extra": {"input_layout": "BTCHW", "frames": sidecar_frames or frames, "tile": size,
                                  "video_kind": "clip", "clip_seconds": 2.0}}
    sidecar = build_sidecar(model="toy-stack", task="video", precision="fp32", target="ort-cpu", model_file=path,
                            onnx_sha256="0" * 64, opset=17, model_cfg=cfg,
                            inputs=[{"name": "input", "shape": [-1, frames, 3, size, size], "dtype": "float32"}],
                            outputs=[{"name": "logits", "shape": [-1, len(SEWER_CODES)], "dtype": "float32",
                                      "kind": "logits"}], weights="hand-set")
    write_sidecar(path, sidecar)
    return path


@pytest.fixture(scope="module")
def red_video(tmp_path_factory) -> Path:
    """100 frames at 10 fps, red from frame 40 to 69, grey elsewhere."""
    return write_video(tmp_path_factory.mktemp("video") / "pipe.avi", colour_plan(100, {(40, 69): RED}), fps=10.0)


def test_toy_frame_stack_windows_are_time_ordered_rgb_stacks(red_video, tmp_path):
    """2 s windows every 1 s, 4 frames each at window start + (2, 7, 12, 17): only window 30-49 (frames 32, 37
    grey, 42, 47 red) goes from grey to red. Reversed time or BGR channels would put RB elsewhere or nowhere."""
    artifact = make_toy_stack_artifact(tmp_path / "models")
    predictions, segments = classify_video(artifact, red_video, span_s=2.0, stride_s=1.0)
    assert [(p.start_frame, p.end_frame) for p in predictions] == windows(100, 10, 2.0, 1.0)
    for p in predictions:
        assert p.frame_indices == (p.start_frame + sample_indices(20, T)).tolist()
    assert [(p.start_frame, p.codes) for p in predictions if p.codes] == [(30, ["RB"])]
    on = next(p for p in predictions if p.codes)
    red, grey = 230 / 255, 128 / 255  # R of the red frames (RGB), of the grey ones
    assert on.scores[SEWER_CODES.index("RB")] == pytest.approx(1 / (1 + np.exp(-(10 * (red - grey) - 3))), abs=0.02)
    assert [(s.code, s.start_frame, s.end_frame) for s in segments] == [("RB", 30, 49)]

    # The whole video as one window (`--clip-span whole`): the T frames training samples from it, 12 and 87 grey.
    (whole,), _ = classify_video(artifact, red_video, span_s="whole")
    assert whole.frame_indices == sample_indices(100, T).tolist() == [12, 37, 62, 87] and whole.codes == []
    clip = ClipClassifier(artifact, span_s=2.0)
    assert clip.stack and clip.k == T and "2 s windows of 4 frames every 1 s" in clip.describe()
    clip.close()


def test_frame_stack_sidecar_must_match_the_input(tmp_path):
    with pytest.raises(BackendError, match=r"input shape \[-1, 4, 3, 8, 8\] does not fit model_cfg \(frames 8, "):
        load_artifact(make_toy_stack_artifact(tmp_path / "m", sidecar_frames=8))


# --------------------------------------------------------------------------------------- Video Swin-B

@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """(Sewer-ML folder, inspection video): 8 stills for the parity check, one 4 s video at 10 fps."""
    return synthetic_set(tmp_path_factory.mktemp("synth") / "set", images=8, seconds=SECONDS, fps=FPS)


@pytest.fixture(scope="module")
def swin(tmp_path_factory):
    """(model, cfg, best.pt) of an untrained video-swin3d-b built and saved as `edgesewer video train` does."""
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    path = tmp_path_factory.mktemp("run") / "best.pt"
    return save_untrained_video_model("video-swin3d-b", [f"video.frames={T}", f"video.tile={SIZE}"], path)


@pytest.fixture(scope="module")
def exported(swin, synth, tmp_path_factory):
    """The checkpoint's fp32 artifact from the export stage (onnxsim on, parity on 4 stills); (result, log)."""
    from edgesewer.export.pipeline import ExportOptions, run_export

    lines: list[str] = []
    options = ExportOptions(model="video-swin3d-b", weights=str(swin[2]), precision="fp32", target="ort-cpu",
                            calib_data=synth[0], out=tmp_path_factory.mktemp("export") / "out", progress=False,
                            parity_images=4)
    return run_export(options, log=lines.append), lines


@pytest.mark.slow
def test_video_swin_exports_with_fp32_parity(exported):
    result, log = exported
    sidecar = result.sidecars["fp32"]
    assert sidecar["inputs"][0]["shape"] == [-1, T, 3, SIZE, SIZE] and sidecar["outputs"][0]["shape"] == [-1, 17]
    extra = sidecar["model_cfg"]["extra"]
    assert (extra["input_layout"], extra["frames"], extra["tile"], extra["video_kind"]) == ("BTCHW", T, SIZE, "clip")
    assert sidecar["parity"]["images"] == 4 and sidecar["parity"]["decision_agreement"] == 1.0
    assert sidecar["parity"]["max_abs_diff"] < 1e-4  # the export gate is 1e-3; measured ~1e-6
    assert sidecar["simplified"] is True  # onnxsim ran, and its graph still runs (the mask constants)
    ops = {node.op_type for node in onnx.load(str(result.artifacts["fp32"]), load_external_data=False).graph.node}
    assert "ScatterND" not in ops  # torchvision's slice-assigned masks are gone (see models/videoswin.py)
    assert any(f"input {T}x3x{SIZE}x{SIZE}" in line for line in log)


@pytest.mark.slow
def test_whole_video_window_is_the_training_input(exported, swin, synth):
    """`--clip-span whole`: the runtime's T frames, resize and normalisation are ClipFramesDataset's."""
    import torch

    from edgesewer.data.video import VideoLabels
    from edgesewer.data.video_torch import ClipFramesDataset

    model, cfg, _ = swin
    video = synth[1]
    (p,), _ = classify_video(exported[0].artifacts["fp32"], video, span_s="whole")
    assert p.frame_indices == sample_indices(FPS * SECONDS, T).tolist() and (p.start_frame, p.end_frame) == (0, 39)
    labels = VideoLabels([video.name], np.zeros((1, 17), np.uint8), tuple(cfg.classes), video.parent, video.parent)
    x, _ = ClipFramesDataset(labels, SIZE, cfg.mean, cfg.std, interpolation=cfg.interpolation, frames=T)[0]
    assert tuple(x.shape) == (T, 3, SIZE, SIZE)
    with torch.no_grad():
        reference = torch.sigmoid(model(x[None]))[0].numpy()
    np.testing.assert_allclose(p.probs, reference, atol=1e-4)


@pytest.mark.slow
def test_cli_runs_the_exported_swin_torch_free(exported, synth, tmp_path):
    """`edgesewer run --clip-model video-swin3d-b.fp32.onnx -s video`: one clip event per window, 17 scores each."""
    artifact, video = exported[0].artifacts["fp32"], synth[1]
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED_CLI, "run", "--clip-model", str(artifact), "-s", str(video), "--headless",
         "--clip-span", "2", "--clip-stride", "1", "--events", str(tmp_path / "ev.jsonl"),
         "--report", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    clips = [e for e in read_events(tmp_path / "ev.jsonl") if e["event"] == "clip"]
    assert [(e["start_frame"], e["end_frame"]) for e in clips] == windows(FPS * SECONDS, FPS, 2.0, 1.0) == [
        (0, 19), (10, 29), (20, 39)]
    for event in clips:
        assert event["frames"] == (event["start_frame"] + sample_indices(20, T)).tolist()
        assert len(event["scores"]) == 17 and all(0.0 <= s <= 1.0 for s in event["scores"].values())
    offline, _ = classify_video(artifact, video, span_s=2.0, stride_s=1.0)  # the same windows in this process
    for event, prediction in zip(clips, offline):
        np.testing.assert_allclose(list(event["scores"].values()), prediction.scores, atol=1e-4)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["run"]["clip_windows"] == 3 and "4 frames" in report["run"]["clip_model"]


def test_export_frames_option(tmp_path):
    """--frames sets T of a frame-stack export and is refused for single-image models."""
    pytest.importorskip("torch")
    from edgesewer.export.weights import load_for_export

    with pytest.raises(DataError, match=r"--frames: vit-t takes single images"):
        load_for_export("vit-t", "random", frames=4)
    loaded = load_for_export("video-swin3d-b", "random", imgsz=32, frames=2)
    assert loaded.cfg.input_shape == (2, 3, 32, 32) and loaded.cfg.extra["tile"] == 32
