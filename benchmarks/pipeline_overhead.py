"""Pipeline FPS on a video file versus network-only FPS: how much do decode, preprocess, postprocess
and sinks cost on top of inference? Target: pipeline >= 85% of network-only for vit-t fp32 in ORT.

    python benchmarks/pipeline_overhead.py                       # exports vit-t fp32 (random weights) and
                                                                 # renders a synthetic inspection video first
    python benchmarks/pipeline_overhead.py --artifact runs/export/vit-t/vit-t.fp32.onnx --video pipe.mp4

Network-only: the video's frames are decoded and preprocessed beforehand, then `backend.infer` is
timed alone, one frame per call (what `edgesewer run` does on a live source). Pipeline: a full
`edgesewer run` over the same file (headless, JSONL events and the report on), wall clock from the
first frame to the last. The two are measured alternately `--repeats` times and the medians compared,
so background load affects both alike. Random weights change nothing here: only speed is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgesewer.runtime.artifact import load_artifact  # noqa: E402
from edgesewer.runtime.backends import load_backend  # noqa: E402
from edgesewer.runtime.pipeline import RunOptions  # noqa: E402
from edgesewer.runtime.predictors import ClassifierPredictor  # noqa: E402
from edgesewer.runtime.runner import run_inspection  # noqa: E402

TARGET_RATIO = 0.85


def export_vit_t(out: Path) -> Path:
    """vit-t fp32 ONNX with random weights, through the export stage (needs torch)."""
    import edgesewer.models.vit  # noqa: F401  (registers vit-t, in case the models package does not yet)
    from edgesewer.export.pipeline import ExportOptions, run_export

    result = run_export(
        ExportOptions(
            model="vit-t",
            precision="fp32",
            weights="random",
            target="ort-cpu",
            out=out,
            runs_dir=out.parent / "runs",
            accuracy=False,
            progress=False,
        ),
        log=lambda m: None,
    )
    return result.artifacts["fp32"]


def synthetic_video(out: Path, seconds: float, size: tuple[int, int]) -> Path:
    from edgesewer.data.synth.video import render_video

    render_video(out, "bench", seed=0, seconds=seconds, fps=25, size=size)
    return out / "bench.mp4"


def read_frames(video: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"{video}: no frames")
    return frames


def network_fps(artifact_path: Path, frames: list[np.ndarray], threads: int | None) -> float:
    artifact = load_artifact(artifact_path)
    predictor = ClassifierPredictor(artifact, load_backend(artifact, "ort", threads=threads))
    inputs = [predictor.prepare(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))[None] for f in frames]
    predictor.backend.warmup(5)
    start = time.perf_counter()
    for x in inputs:
        predictor.backend.infer(x)
    elapsed = time.perf_counter() - start
    predictor.close()
    return len(inputs) / elapsed


def pipeline_fps(artifact_path: Path, video: Path, threads: int | None, work: Path) -> dict:
    options = RunOptions(headless=True, live_status=False, events=work / "events.jsonl", report=work / "report")
    summary = run_inspection(str(video), artifact_path, threads=threads, options=options)
    return summary.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, help="classifier artifact (default: export vit-t fp32)")
    parser.add_argument("--video", type=Path, help="video file (default: render a synthetic inspection video)")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of the synthetic video")
    parser.add_argument("--size", default="640x480", help="synthetic video frame size WxH")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="edgesewer-bench-"))
    artifact = args.artifact or export_vit_t(work / "vit-t")
    width, height = (int(v) for v in args.size.lower().split("x"))
    video = args.video or synthetic_video(work, args.seconds, (width, height))
    frames = read_frames(video)
    print(f"artifact {artifact}\nvideo {video}: {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}")

    nets, pipes, inner = [], [], []
    for r in range(args.repeats):
        nets.append(network_fps(artifact, frames, args.threads))
        stats = pipeline_fps(artifact, video, args.threads, work / f"run{r}")
        pipes.append(stats["pipeline_fps"])
        inner.append(stats)
        print(f"  repeat {r + 1}: network-only {nets[-1]:.1f} FPS, pipeline {pipes[-1]:.1f} FPS")
    net, pipe = statistics.median(nets), statistics.median(pipes)
    ratio = pipe / net
    last = inner[-1]["latency"]
    rows = [
        ("network-only FPS (backend.infer, batch 1)", f"{net:.1f}", f"{1000 / net:.2f}"),
        ("pipeline FPS (decode..sinks, wall clock)", f"{pipe:.1f}", f"{1000 / pipe:.2f}"),
        ("network FPS inside the pipeline", f"{statistics.median(s['network_fps'] for s in inner):.1f}", ""),
    ] + [(f"  stage {stage} p50 / p99 ms", "", f"{v['p50_ms']:.2f} / {v['p99_ms']:.2f}") for stage, v in last.items()]
    print("\n| measurement | FPS | ms/frame |\n|---|---|---|")
    for name, fps, ms in rows:
        print(f"| {name} | {fps} | {ms} |")
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"\npipeline / network-only = {ratio:.1%} (target >= {TARGET_RATIO:.0%}): {verdict}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"onnxruntime {__import__('onnxruntime').__version__}, OpenCV {cv2.__version__}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "network_fps": nets,
                    "pipeline_fps": pipes,
                    "ratio": ratio,
                    "stats": inner,
                    "frames": len(frames),
                    "video": str(video),
                    "artifact": str(artifact),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
