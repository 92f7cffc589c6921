"""`edgesewer batch`: every video of an archive through the `edgesewer run` pipeline, on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgesewer.cli._detection_options import CrackMinAreaOpt, SegThresholdOpt, SmoothOpt, ThresholdOpt
from edgesewer.cli._errors import one_line_errors


@one_line_errors
def batch_command(
    source: Annotated[
        str,
        typer.Option("--source", "-s", help="the archive: a folder (searched recursively), a glob such as "
                     "'archive/**/*.mp4', or a list file with one video path per line"),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder: manifest, summary, videos/<name>/")],
    model: Annotated[
        Optional[Path],
        typer.Option("--model", "-m", help="classifier artifact (.onnx or .engine, or its sidecar .json)"),
    ] = None,
    seg: Annotated[Optional[Path], typer.Option("--seg", help="crack segmenter artifact")] = None,
    address: Annotated[
        Optional[str],
        typer.Option(help="Ray cluster: auto (the cluster this node belongs to) or ray://HOST:10001 "
                     "(default: start a local Ray instance for this command)"),
    ] = None,
    workers: Annotated[
        Optional[int],
        typer.Option(help="videos in flight at once (default: as many as the CPUs/GPUs allow per task)", min=1),
    ] = None,
    cpus_per_task: Annotated[float, typer.Option(help="CPUs Ray reserves per video (also ONNX Runtime's threads)",
                                                 min=0.0)] = 1.0,
    gpus_per_task: Annotated[float, typer.Option(help="GPUs per video; 0.25 lets four engines share one GPU",
                                                 min=0.0)] = 0.0,
    retries: Annotated[int, typer.Option(help="times Ray reruns a video whose worker process died", min=0)] = 2,
    restart: Annotated[bool, typer.Option(help="forget the manifest: redo every video (e.g. with a new model)")]
    = False,
    backend: Annotated[Optional[str], typer.Option(help="ort | tensorrt (default: from the file type)")] = None,
    providers: Annotated[
        Optional[str],
        typer.Option(help="ONNX Runtime providers: cpu, auto, or a list such as cuda,cpu "
                     "(default: cpu, or auto with --gpus-per-task)"),
    ] = None,
    threads: Annotated[
        Optional[int], typer.Option(help="ONNX Runtime threads per video (default: --cpus-per-task)", min=1)
    ] = None,
    save_video: Annotated[bool, typer.Option(help="also write each video's annotated.mp4")] = False,
    threshold: ThresholdOpt = None,
    smooth: SmoothOpt = "none",
    seg_threshold: SegThresholdOpt = 0.5,
    crack_min_area: CrackMinAreaOpt = 30.0,
    frames_per_call: Annotated[int, typer.Option(help="frames per inference call (edgesewer run --batch)",
                                                 min=1)] = 1,
    merge_gap: Annotated[float, typer.Option(help="seconds a code may be off inside one defect segment")] = 0.5,
    min_segment: Annotated[float, typer.Option(help="drop defect segments shorter than this (seconds)")] = 0.2,
    progress: Annotated[bool, typer.Option(help="show the archive's progress bar")] = True,
) -> None:
    """Run every video of an archive through the same pipeline as `edgesewer run` (events, report and
    observation list per video) on Ray, and write an archive summary (summary.csv, summary.html).

    Resumable: OUT/manifest.json records each video's state; rerunning the same command skips finished
    videos and retries failed ones. A corrupt video is recorded as failed and never stops the batch.

    \b
    Examples:
      edgesewer batch -s /mnt/cctv/2019 -m vit-t.int8-cpu.onnx -o rescored/2019
      edgesewer batch -s 'archive/**/*.mp4' -m vit-t.int8-cpu.onnx --seg scnet.fp32.onnx -o out --workers 2
      edgesewer batch -s videos.txt -m vit-t.fp16.engine -o /shared/out --address ray://head:10001 \\
          --gpus-per-task 0.25
    """
    from rich.console import Console

    from edgesewer.batch.ray_runner import BatchConfig, run_batch
    from edgesewer.batch.worker import VideoJob

    if model is None and seg is None:
        raise typer.BadParameter("give --model and/or --seg")
    options = {
        "thresholds": threshold, "smooth": smooth, "seg_threshold": seg_threshold, "crack_min_area": crack_min_area,
        "batch": frames_per_call, "merge_gap_s": merge_gap, "min_segment_s": min_segment,
    }
    job = VideoJob(
        model=str(model.resolve()) if model else None, seg=str(seg.resolve()) if seg else None, backend=backend,
        providers=providers or ("auto" if gpus_per_task > 0 else "cpu"), threads=threads, options=options,
        save_video=save_video,
    )
    console = Console(stderr=True)
    cfg = BatchConfig(source=source, out=out, job=job, address=address, workers=workers,
                      cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task, retries=retries, restart=restart)
    try:
        result = run_batch(cfg, progress=progress and console.is_terminal, console=console,
                           log=lambda m: console.print(m, highlight=False, markup=False, soft_wrap=True))
    except KeyboardInterrupt:
        console.print(f"interrupted: the videos in flight are pending again in {out / 'manifest.json'}; "
                      "rerun the same command to resume", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(130) from None
    counts = result.manifest.counts()
    console.print(
        f"{result.done} videos done, {result.failed} failed, {result.skipped} done before; {result.frames} frames in "
        f"{result.elapsed_s:.1f} s ({result.fps:.1f} frames/s across workers). Archive: {counts['done']} of "
        f"{result.total} done.", highlight=False, markup=False, soft_wrap=True,
    )
    for source_path, error in result.failures:
        console.print(f"failed: {error}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"summary: {result.summary_html}", highlight=False, markup=False, soft_wrap=True)
    if counts["failed"]:
        raise typer.Exit(2)  # some videos failed: the summary has them; rerun the command to retry them
