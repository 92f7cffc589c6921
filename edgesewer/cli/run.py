"""`edgesewer run`: the torch-free live runtime on a camera, stream, video file or image folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgesewer.cli._detection_options import CrackMinAreaOpt, SegThresholdOpt, SmoothOpt, ThresholdOpt
from edgesewer.cli._errors import one_line_errors


@one_line_errors
def run_command(
    source: Annotated[
        str,
        typer.Option(
            "--source",
            "-s",
            help="0, /dev/video0, v4l2://, csi://0, rtsp://, http(s)://, file://x.mp4, a path, a folder or a glob",
        ),
    ],
    model: Annotated[
        Optional[Path],
        typer.Option("--model", "-m", help="classifier artifact (.onnx or .engine, or its sidecar .json)"),
    ] = None,
    seg: Annotated[
        Optional[Path], typer.Option("--seg", help="crack segmenter artifact, run on the same frames")
    ] = None,
    clip_model: Annotated[
        Optional[Path],
        typer.Option(
            "--clip-model",
            help="video-level artifact (super-image, or a frame stack such as video-swin3d-b), run over a sliding "
            "window of frames",
        ),
    ] = None,
    clip_span: Annotated[
        Optional[str],
        typer.Option(
            "--clip-span",
            metavar="SECONDS|whole",
            help="seconds of video per clip window (default: the model's clip_seconds, else 4); 'whole' (or 0): one "
            "window over the whole video file, the way the video models were trained (archive footage)",
        ),
    ] = None,
    clip_stride: Annotated[
        Optional[float],
        typer.Option("--clip-stride", metavar="SECONDS", help="seconds between clip windows (default: half the span)"),
    ] = None,
    backend: Annotated[Optional[str], typer.Option(help="ort | tensorrt (default: from the file type)")] = None,
    providers: Annotated[
        str,
        typer.Option(help="ONNX Runtime providers: cpu, auto (TensorRT/CUDA when present) or a list such as cuda,cpu"),
    ] = "cpu",
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output",
            "-o",
            help="display://0 | file://out.mp4 | http://@:8080/ (MJPEG, browser) | rtsp://@:8554/inspect | none "
            "(default: a window unless --headless)",
        ),
    ] = None,
    headless: Annotated[bool, typer.Option(help="no window")] = False,
    events: Annotated[Optional[Path], typer.Option(help="append JSONL events here")] = None,
    events_every_frame: Annotated[bool, typer.Option(help="log every frame, not only frames with detections")] = False,
    report: Annotated[
        Optional[Path], typer.Option(help="write report.json, report.html and snapshots into this folder")
    ] = None,
    threshold: ThresholdOpt = None,
    smooth: SmoothOpt = "none",
    seg_threshold: SegThresholdOpt = 0.5,
    crack_min_area: CrackMinAreaOpt = 30.0,
    seg_tiles: Annotated[
        bool, typer.Option(help="segment full-resolution overlapping tiles instead of a resized frame")
    ] = False,
    batch: Annotated[int, typer.Option(help="frames per inference call for files (live sources use 1)")] = 1,
    threads: Annotated[Optional[int], typer.Option(help="ONNX Runtime intra-op threads (default: all cores)")] = None,
    reconnect_timeout: Annotated[float, typer.Option(help="seconds to keep reconnecting a dropped stream")] = 60.0,
    stall_timeout: Annotated[
        float,
        typer.Option(
            help="seconds without a frame that count as a stall: a live source reconnects, a video file ends",
            min=0.1,
        ),
    ] = 5.0,
    merge_gap: Annotated[float, typer.Option(help="seconds a code may be off inside one defect segment")] = 0.5,
    min_segment: Annotated[float, typer.Option(help="drop defect segments shorter than this (seconds)")] = 0.2,
    max_frames: Annotated[Optional[int], typer.Option(help="stop after this many frames")] = None,
    distance: Annotated[
        str,
        typer.Option(
            help="distance along the pipe: ocr (read the camera's counter with Tesseract; needs the ocr extra "
            "and tesseract-ocr) or none"
        ),
    ] = "none",
    telemetry: Annotated[
        Optional[str],
        typer.Option(
            metavar="FILE|udp://HOST:PORT",
            help='the robot\'s distance as JSON lines {"t": s, "distance_m": m}; wins over OCR where it has a value',
        ),
    ] = None,
    ocr_every: Annotated[int, typer.Option(help="read the distance counter on every N-th frame", min=1)] = 5,
    ocr_roi: Annotated[
        Optional[str],
        typer.Option(metavar="X0,Y0,X1,Y1", help="where the counter is, as fractions of the frame "
                     "(default: top-left or bottom-left, where the synthetic videos draw it)"),
    ] = None,
) -> None:
    """Classify (and segment cracks in) every frame of a source, and/or classify sliding clips of it with a
    video-level model; write events, video and an inspection report.

    \b
    Examples:
      edgesewer run -m runs/export/vit-t/vit-t.int8-cpu.onnx -s inspection.mp4 --report out/ --headless
      edgesewer run -m vit-t.fp16.engine --seg scnet.fp16.engine -s csi://0 -o display://0
      edgesewer run -m vit-t.fp32.onnx -s rtsp://192.168.1.20:8554/live --events ev.jsonl --smooth kofn:3/5
      edgesewer run -m vit-t.int8-cpu.onnx -s 0 --headless -o http://@:8080/   # watch in a browser
      edgesewer run --clip-model superimage-efficientnet-b0.fp16.onnx -s inspection.mp4 --headless --report out/
      edgesewer run -m vit-t.int8-cpu.onnx --clip-model superimage-resnet18.fp32.onnx --clip-span 4 --clip-stride 1 -s 0
      edgesewer run -m vit-t.int8-cpu.onnx -s inspection.mp4 --headless --report out/ --distance ocr
      edgesewer run -m vit-t.int8-cpu.onnx -s rtsp://192.168.1.20:8554/live --telemetry udp://0.0.0.0:5600
    """
    from rich.console import Console

    from edgesewer.runtime.clip import parse_span
    from edgesewer.runtime.pipeline import RunOptions
    from edgesewer.runtime.runner import run_inspection

    if model is None and seg is None and clip_model is None:
        raise typer.BadParameter("give --model, --seg and/or --clip-model")
    options = RunOptions(
        output=output,
        headless=headless,
        events=events,
        events_every_frame=events_every_frame,
        report=report,
        thresholds=threshold,
        smooth=smooth,
        seg_threshold=seg_threshold,
        crack_min_area=crack_min_area,
        batch=batch,
        max_frames=max_frames,
        merge_gap_s=merge_gap,
        min_segment_s=min_segment,
        distance=distance,
        telemetry=telemetry,
        ocr_every=ocr_every,
        ocr_roi=ocr_roi,
    )
    console = Console(stderr=True)
    summary = run_inspection(
        source,
        model,
        seg,
        backend=backend,
        providers=providers,
        threads=threads,
        seg_tiles=seg_tiles,
        reconnect_timeout=reconnect_timeout,
        stall_timeout=stall_timeout,
        options=options,
        clip_model=clip_model,
        clip_span_s=parse_span(clip_span),
        clip_stride_s=clip_stride,
    )
    stats = summary.stats
    frame_models = model is not None or seg is not None  # clip mode alone has no per-frame network or segments
    network = f"network {stats['network_fps']:.1f} FPS, " if frame_models else ""
    console.print(
        f"{summary.frames} frames in {stats['elapsed_s']:.1f} s: pipeline {stats['pipeline_fps']:.1f} FPS, "
        f"{network}{stats['dropped_frames']} dropped, {stats['stalls']} stalls ({summary.ended_by})",
        highlight=False,
    )
    if frame_models:
        console.print(f"{len(summary.segments)} defect segments: {_by_code(summary.segments)}", highlight=False)
    if clip_model is not None:
        console.print(f"{len(summary.clip_segments)} clip-level segments: {_by_code(summary.clip_segments)}",
                      highlight=False)
    if summary.report is not None:
        console.print(f"report: {summary.report.parent / 'report.html'}", highlight=False)
    if summary.events is not None:
        console.print(f"events: {summary.events}", highlight=False)
    if summary.error is not None:
        raise summary.error  # after the report is written: the run still ends with a clear error


def _by_code(segments) -> str:
    """`OB x1, RB x2`, or `none`."""
    counts: dict[str, int] = {}
    for segment in segments:
        counts[segment.code] = counts.get(segment.code, 0) + 1
    return ", ".join(f"{code} x{n}" for code, n in sorted(counts.items())) or "none"
