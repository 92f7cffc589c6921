"""Helpers shared by the runtime tests: toy artifacts, coloured test videos, a loopback MJPEG server.

The toy models are built with `onnx.helper` (no torch, a few milliseconds) and behave in ways a
test can predict exactly: the classifier fires RB on red frames and OB on green ones, the
segmenter marks red pixels as crack. Their sidecars are written with the export module's
`build_sidecar`, i.e. exactly as a real export writes them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgesewer.export.metadata import build_sidecar, write_sidecar
from edgesewer.runtime.artifact import load_artifact
from edgesewer.taxonomy import SEWER_CODES

RED, GREEN, GREY = (0, 0, 230), (0, 230, 0), (128, 128, 128)  # BGR
N_CLASSES = len(SEWER_CODES)


def classifier_weights() -> tuple[np.ndarray, np.ndarray]:
    """Gemm on the channel means of x = pixel / 255 (mean 0, std 1): RB = 10 (R - G) - 3, OB = 10 (G - R) - 3."""
    weight = np.zeros((N_CLASSES, 3), dtype=np.float32)
    bias = np.full(N_CLASSES, -10.0, dtype=np.float32)
    rb, ob = SEWER_CODES.index("RB"), SEWER_CODES.index("OB")
    weight[rb] = [10.0, -10.0, 0.0]  # input is RGB
    weight[ob] = [-10.0, 10.0, 0.0]
    bias[rb] = bias[ob] = -3.0
    return weight, bias


def _save(model: onnx.ModelProto, path: Path) -> None:
    model.opset_import[0].version = 17
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def make_classifier_artifact(
    out: Path, size: int = 32, precision: str = "fp32", cam: bool = False, thresholds: list[float] | None = None
) -> Path:
    """`out/toy-cls.<precision>.onnx` + sidecar; returns the ONNX path."""
    out.mkdir(parents=True, exist_ok=True)
    weight, bias = classifier_weights()
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], transB=1),
    ]
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", N_CLASSES])]
    if cam:
        nodes.append(helper.make_node("Conv", ["input", "Wc"], ["cam"]))
        inits.append(numpy_helper.from_array(weight.reshape(N_CLASSES, 3, 1, 1), "Wc"))
        outputs.append(helper.make_tensor_value_info("cam", TensorProto.FLOAT, ["batch", N_CLASSES, size, size]))
    graph = helper.make_graph(
        nodes,
        "toy_cls",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        outputs,
        inits,
    )
    path = out / f"toy-cls.{precision}.onnx"
    _save(helper.make_model(graph), path)
    cfg = {
        "name": "toy-cls",
        "task": "classify",
        "input_size": size,
        "in_chans": 3,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "classes": list(SEWER_CODES),
        "thresholds": thresholds,
        "interpolation": "area",
        "paper": "",
        "extra": {},
    }
    outs = [{"name": "logits", "shape": [-1, N_CLASSES], "dtype": "float32", "kind": "logits"}]
    if cam:
        outs.append({"name": "cam", "shape": [-1, N_CLASSES, size, size], "dtype": "float32", "kind": "cam"})
    sidecar = build_sidecar(
        model="toy-cls",
        task="classify",
        precision=precision,
        target="ort-cpu",
        model_file=path,
        onnx_sha256="0" * 64,
        opset=17,
        model_cfg=cfg,
        inputs=[{"name": "input", "shape": [-1, 3, size, size], "dtype": "float32"}],
        outputs=outs,
        weights="hand-set",
    )
    write_sidecar(path, sidecar)
    return path


def make_segmenter_artifact(out: Path, size: int = 32) -> Path:
    """`out/toy-seg.fp32.onnx`: prob = sigmoid(20 (r - g) - 10) with r, g in [-1, 1]: red pixels are crack."""
    out.mkdir(parents=True, exist_ok=True)
    weight = np.zeros((1, 4, 1, 1), dtype=np.float32)
    weight[0, 0, 0, 0], weight[0, 1, 0, 0] = 20.0, -20.0
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "W", "B"], ["z"]), helper.make_node("Sigmoid", ["z"], ["prob"])],
        "toy_seg",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4, size, size])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1, size, size])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.array([-10.0], np.float32), "B")],
    )
    path = out / "toy-seg.fp32.onnx"
    _save(helper.make_model(graph), path)
    cfg = {
        "name": "toy-seg",
        "task": "segment",
        "input_size": size,
        "in_chans": 4,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "classes": ["crack"],
        "thresholds": None,
        "interpolation": "bilinear",
        "paper": "",
        "extra": {"edge": "canny"},
    }
    sidecar = build_sidecar(
        model="toy-seg",
        task="segment",
        precision="fp32",
        target="ort-cpu",
        model_file=path,
        onnx_sha256="0" * 64,
        opset=17,
        model_cfg=cfg,
        inputs=[{"name": "input", "shape": [-1, 4, size, size], "dtype": "float32"}],
        outputs=[{"name": "prob", "shape": [-1, 1, size, size], "dtype": "float32", "kind": "prob"}],
        weights="hand-set",
    )
    write_sidecar(path, sidecar)
    return path


def colour_plan(n: int, spans: dict[tuple[int, int], tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Per-frame BGR colours: grey, except inclusive frame spans given a colour."""
    colours = [GREY] * n
    for (start, end), colour in spans.items():
        for i in range(start, end + 1):
            colours[i] = colour
    return colours


def write_video(
    path: Path,
    colours: list[tuple[int, int, int]],
    size: tuple[int, int] = (64, 48),
    fps: float = 25.0,
    crack_frames: set[int] = frozenset(),
) -> Path:
    """MJPG AVI of flat frames; frames in `crack_frames` get a red horizontal line (3 px x 40 px)."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for i, colour in enumerate(colours):
        image = np.full((height, width, 3), colour, dtype=np.uint8)
        if i in crack_frames:
            cv2.line(image, (10, height // 2), (49, height // 2), RED, 3)
        writer.write(image)
    writer.release()
    return path


MJPEG_SERVER = textwrap.dedent(
    """
    import http.server, socketserver, sys, threading, time, os
    import numpy as np, cv2
    port, lifetime, stall_after = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    threading.Timer(lifetime, lambda: os._exit(0)).start()  # never outlive a crashed test
    sent = [0]  # frames sent on all connections
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            i = 0
            try:
                while True:
                    if 0 <= stall_after <= sent[0]:  # a stalled camera: socket open, nothing sent
                        time.sleep(lifetime)
                    sent[0] += 1
                    image = np.full((48, 64, 3), (0, 0, 230) if (i // 10) % 2 else (128, 128, 128), np.uint8)
                    data = cv2.imencode(".jpg", image)[1].tobytes()
                    self.wfile.write(b"--frame\\r\\nContent-Type: image/jpeg\\r\\nContent-Length: "
                                     + str(len(data)).encode() + b"\\r\\n\\r\\n" + data + b"\\r\\n")
                    i += 1
                    time.sleep(0.02)
            except (BrokenPipeError, ConnectionResetError):
                pass
        def log_message(self, *args):
            pass
    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True
    Server(("127.0.0.1", port), Handler).serve_forever()
    """
)


class MjpegServer:
    """A real MJPEG-over-HTTP server in a child process on 127.0.0.1 (killed for real by `kill`).

    With `stall_after`, it stops sending after that many frames (counted over all connections)
    but keeps every socket open and accepts new ones: a camera that hangs rather than drops.
    """

    def __init__(self, port: int, lifetime_s: float = 60.0, stall_after: int | None = None) -> None:
        self.port, self.lifetime_s, self.stall_after = port, lifetime_s, stall_after
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> "MjpegServer":
        stall_after = -1 if self.stall_after is None else self.stall_after
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MJPEG_SERVER, str(self.port), str(self.lifetime_s), str(stall_after)]
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until it accepts connections
            cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG)
            ok = cap.isOpened() and cap.read()[0]
            cap.release()
            if ok:
                return self
            time.sleep(0.1)
        raise RuntimeError("MJPEG test server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=5)
            self.proc = None


def synthetic_set(root: Path, images: int, seconds: float, fps: int) -> tuple[Path, Path]:
    """(Sewer-ML folder, inspection video) of a small synthetic set at 96x80: `images` stills, one video."""
    from edgesewer.data.synth import generate

    summary = generate(root, images=images, videos=1, size=(96, 80), crack_images=0, video_seconds=seconds,
                       fps=fps, progress=False)
    return root / "sewerml", Path(summary.videos[0])


def save_untrained_video_model(model: str, overrides: list[str], path: Path):
    """(model in eval mode, cfg, path): an untrained video model saved as `edgesewer video train` saves best.pt."""
    import torch

    from edgesewer.data.video import class_set
    from edgesewer.train.checkpoint import save_checkpoint
    from edgesewer.train.video import build_video_model, load_video_recipe

    recipe, video = load_video_recipe(model=model, overrides=["model.pretrained=false", *overrides])
    torch.manual_seed(0)
    net, cfg, arch_kw, _ = build_video_model(recipe, video, class_set("videopipe"))
    save_checkpoint(path, {"model": net.state_dict(), "model_cfg": cfg.to_dict(), "model_kwargs": arch_kw})
    return net.eval(), cfg, path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- checks of the helpers themselves -----------------------------------------------------------


def test_toy_artifacts_load_and_validate(tmp_path):
    cls = load_artifact(make_classifier_artifact(tmp_path, cam=True))
    seg = load_artifact(make_segmenter_artifact(tmp_path))
    assert (cls.task, cls.precision, len(cls.classes), cls.output("cam").shape) == (
        "classify",
        "fp32",
        17,
        (-1, 17, 32, 32),
    )
    assert (seg.task, seg.cfg.in_chans, seg.output("prob").shape) == ("segment", 4, (-1, 1, 32, 32))
    assert np.allclose(cls.thresholds, 0.5)
