"""Super-image export to ONNX and the runtime's clip mode (sliding window over a video file)."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from edgesewer.data.superimage import sample_indices, superimage_input  # noqa: E402
from edgesewer.data.video import read_frames  # noqa: E402
from edgesewer.errors import BackendError  # noqa: E402
from edgesewer.export.metadata import build_sidecar, sha256_file, write_sidecar  # noqa: E402
from edgesewer.export.onnx_export import export_onnx  # noqa: E402
from edgesewer.models.superimage import create_superimage  # noqa: E402
from edgesewer.runtime.clip import ClipClassifier, ClipPrediction, classify_video, clip_segments  # noqa: E402
from edgesewer.taxonomy import CIW, SEWER_CODES  # noqa: E402

TILE = 32


def write_numbered_video(path: Path, n_frames: int, fps: float = 10.0, size=(64, 48)) -> Path:
    """Frame i shows its number as 8 black/white bars plus a colour cast, so models see varied content."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(n_frames):
        image = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        image[..., 2] = 40 + 3 * i  # red rises over time (BGR)
        for b in range(8):
            if (i >> (7 - b)) & 1:
                image[:, b * 8:(b + 1) * 8] = 255
        writer.write(image)
    writer.release()
    return path


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """superimage-resnet18 (96 px input, Sewer-ML classes, random weights) exported as an fp32 artifact."""
    torch.manual_seed(0)
    model = create_superimage("superimage-resnet18", tile_size=TILE, classes="sewerml", clip_seconds=2.0).eval()
    folder = tmp_path_factory.mktemp("export")
    onnx_path = folder / "superimage-resnet18.fp32.onnx"
    exported = export_onnx(model, model.cfg, onnx_path)
    sidecar = build_sidecar(model="superimage-resnet18", task="video", precision="fp32", target="ort-cpu",
                            model_file=onnx_path, onnx_sha256=sha256_file(onnx_path), opset=exported.opset,
                            model_cfg=model.cfg.to_dict(), inputs=[t.as_dict() for t in exported.inputs],
                            outputs=[t.as_dict() for t in exported.outputs], weights="random")
    write_sidecar(onnx_path, sidecar)
    return model, onnx_path


def test_export_matches_pytorch(artifact, tmp_path):
    import onnxruntime as ort

    model, onnx_path = artifact
    meta = json.loads(onnx_path.with_suffix(".json").read_text())
    assert meta["inputs"][0]["shape"] == [-1, 3, 96, 96] and meta["outputs"][0]["shape"] == [-1, 17]
    assert meta["model_cfg"]["extra"]["tile"] == TILE and meta["task"] == "video"
    video = write_numbered_video(tmp_path / "v.mp4", 45)
    frames = read_frames(video, sample_indices(45))
    x = superimage_input(frames, TILE, model.cfg.mean, model.cfg.std)
    batch = np.concatenate([x, x[:, :, ::-1].copy()])  # two different super-images, dynamic batch
    onnx_logits = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": batch})[0]
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(batch)).numpy()
    assert np.abs(onnx_logits - torch_logits).max() < 1e-4


def test_clip_mode_windows_match_training_sampling(artifact, tmp_path):
    model, onnx_path = artifact
    video = write_numbered_video(tmp_path / "walk.mp4", 50)
    clip = ClipClassifier(onnx_path, stride_s=1.0)  # span 2 s from the sidecar's clip_seconds
    assert (clip.span_s, clip.tile) == (2.0, TILE)
    predictions, segments = classify_video(onnx_path, video, stride_s=1.0)
    clip.close()
    # 10 fps, 2 s windows = 20 frames, a new window every 1 s once the first is full (frame 19).
    assert [(p.start_frame, p.end_frame) for p in predictions] == [(0, 19), (10, 29), (20, 39), (30, 49)]
    # Inside a window the 9 frames are `sample_indices(20)` = floor((j + 0.5) * 20 / 9), offset by its start.
    assert predictions[0].frame_indices == [1, 3, 5, 7, 10, 12, 14, 16, 18]
    assert predictions[1].frame_indices == [11, 13, 15, 17, 20, 22, 24, 26, 28]
    assert predictions[3].start_time == pytest.approx(3.0) and predictions[3].end_time == pytest.approx(4.9)
    # The runtime's probabilities equal the PyTorch model on the super-image training would build.
    for p in (predictions[0], predictions[2]):
        frames = read_frames(video, p.frame_indices)
        x = superimage_input(frames, TILE, model.cfg.mean, model.cfg.std)
        with torch.no_grad():
            expected = torch.sigmoid(model(torch.from_numpy(x)))[0].numpy()
        np.testing.assert_allclose(p.probs, expected, atol=1e-4)
        np.testing.assert_array_equal(p.active, p.scores >= 0.5)
    assert all(s.code in SEWER_CODES for s in segments)


def test_a_video_shorter_than_the_span_still_gets_one_prediction(artifact, tmp_path):
    _, onnx_path = artifact
    predictions, _ = classify_video(onnx_path, write_numbered_video(tmp_path / "short.mp4", 12), span_s=5.0)
    assert len(predictions) == 1
    assert (predictions[0].start_frame, predictions[0].end_frame) == (0, 11)
    assert predictions[0].frame_indices == sample_indices(12).tolist()


def _prediction(start: int, end: int, on: dict[str, float], fps: float = 10.0) -> ClipPrediction:
    scores = np.zeros(17, dtype=np.float32)
    for code, s in on.items():
        scores[SEWER_CODES.index(code)] = s
    return ClipPrediction(start, end, start / fps, end / fps, list(range(start, end + 1, 2))[:9], scores, scores,
                          scores >= 0.5, SEWER_CODES)


def test_clip_segments_merge_overlapping_windows():
    predictions = [
        _prediction(0, 19, {"RB": 0.6}),
        _prediction(10, 29, {"RB": 0.9, "RO": 0.7}),
        _prediction(20, 39, {"RO": 0.4}),  # RO off (below 0.5)
        _prediction(30, 49, {"RO": 0.8}),
        _prediction(40, 59, {}),
    ]
    segments = clip_segments(predictions)
    summary = [(s.code, s.start_frame, s.end_frame, round(s.peak_score, 3), round(s.mean_score, 3)) for s in segments]
    # RB: windows 0-19 and 10-29 overlap -> one segment 0..29, peak 0.9, mean 0.75.
    # RO: windows 10-29 and 30-49 neither overlap nor touch (29 s gap of 0.1 s) -> two segments.
    assert summary == [("RB", 0, 29, 0.9, 0.75), ("RO", 10, 29, 0.7, 0.7), ("RO", 30, 49, 0.8, 0.8)]
    assert segments[0].severity == pytest.approx(CIW["RB"] * 0.9)
    assert segments[0].peak_frame == predictions[1].frame_indices[4]
    # With a 0.2 s merge gap the two RO windows join.
    assert [(s.code, s.start_frame, s.end_frame) for s in clip_segments(predictions, merge_gap_s=0.2)][1:] == [
        ("RO", 10, 49)]


def test_clip_mode_refuses_a_frame_classifier(artifact, tmp_path):
    _, onnx_path = artifact
    meta = json.loads(onnx_path.with_suffix(".json").read_text())
    other = tmp_path / "vit-t.fp32.onnx"
    other.write_bytes(onnx_path.read_bytes())
    meta.update(task="classify", file=other.name)
    (tmp_path / "vit-t.fp32.json").write_text(json.dumps(meta))
    with pytest.raises(BackendError, match=r"vit-t.fp32.onnx: is a classify model; --clip-model needs a video"):
        ClipClassifier(other)


def test_clip_mode_imports_without_torch():
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'timm', 'onnx'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import edgesewer.runtime.clip\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
