"""`edgesewer benchmark`: FPS / latency / memory / accuracy for every model x precision, one table + plot.

Thin command: options in, `edgesewer.benchmark.run_benchmark` does the work (heavy imports inside).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgesewer.cli._errors import one_line_errors
from edgesewer.cli._trust import TrustCheckpointOpt, checkpoint_trust


@one_line_errors
def benchmark_command(
    models: Annotated[str, typer.Option(help="Comma list of model names.")] = "vit-t-dino,ma-q2l-r101,scnet",
    precisions: Annotated[str, typer.Option(help="Comma list of fp32, fp16, int8, int8-fp16, int8-cpu.")] = "fp32,fp16,int8",
    backend: Annotated[str, typer.Option(help="ort | tensorrt.")] = "ort",
    data: Annotated[Optional[Path], typer.Option(
        help="Labelled set: a Sewer-ML folder or a root with sewerml/ + crack/ + videos/ (default: the synthetic set).")
    ] = None,
    crack_data: Annotated[Optional[Path], typer.Option(
        help="Crack set for scnet (default: found beside --data).")] = None,
    video: Annotated[Optional[Path], typer.Option(help="Video for pipeline FPS (default: the data's videos/).")] = None,
    out: Annotated[Path, typer.Option(help="Results folder (artifacts are cached under OUT/artifacts/).")] = Path(
        "benchmarks/results"),
    weights: Annotated[Optional[list[str]], typer.Option(
        help="Checkpoint per model (repeat, in --models order, or MODEL=CKPT), or 'random' (speed only). "
             "Default: the newest runs/<model>/*/best.pt.")] = None,
    imgsz: Annotated[Optional[int], typer.Option(help="Input side in pixels (default: the model's).")] = None,
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes for throughput.")] = "1,2,4,8",
    warmup_s: Annotated[float, typer.Option(help="Warm-up seconds before timing.")] = 2.0,
    min_s: Annotated[float, typer.Option(help="Time at least this many seconds...")] = 5.0,
    min_iters: Annotated[int, typer.Option(help="...and at least this many runs.")] = 50,
    max_s: Annotated[float, typer.Option(help="Stop timing after this many seconds even below --min-iters.")] = 60.0,
    threads: Annotated[Optional[int], typer.Option(help="Threads for ORT and PyTorch (default: all usable cores).")
                       ] = None,
    calib_images: Annotated[Optional[int], typer.Option(help="INT8 calibration images for missing artifacts.")] = None,
    accuracy_images: Annotated[int, typer.Option(help="At most this many labelled images for accuracy.")] = 500,
    pipeline_frames: Annotated[int, typer.Option(help="At most this many video frames for pipeline FPS (0: skip).")
                               ] = 200,
    eager: Annotated[bool, typer.Option("--eager/--no-eager", help="Time the PyTorch eager reference.")] = True,
    trust_checkpoint: TrustCheckpointOpt = False,
) -> None:
    """Benchmark exported models: latency p50/p90/p99, throughput, pipeline FPS, memory, accuracy, x eager."""
    from edgesewer.benchmark import BenchmarkOptions, TimingPlan, run_benchmark
    from edgesewer.benchmark.report import console_table, table_console
    from edgesewer.benchmark.sweep import parse_ints, parse_list
    from edgesewer.errors import EdgesewerError

    opts = BenchmarkOptions(
        models=parse_list(models, "--models"), precisions=parse_list(precisions, "--precisions"), backend=backend,
        data=data, crack_data=crack_data, video=video, out=out, weights=weights, imgsz=imgsz,
        batch_sizes=parse_ints(batch_sizes, "--batch-sizes"), timing=TimingPlan(warmup_s, min_s, min_iters, max_s),
        threads=threads, calib_images=calib_images, accuracy_images=accuracy_images, pipeline_frames=pipeline_frames,
        eager=eager)
    with checkpoint_trust(trust_checkpoint):
        result = run_benchmark(opts)
    console = table_console()
    table, failed = console_table(result)
    if table.row_count:
        console.print(table)
    for line in failed:
        console.print(line, highlight=False, markup=False)
    console.print("written: " + ", ".join(str(path) for path in result.outputs.values()), highlight=False)
    if failed and len(failed) == len(result.rows):
        first = result.rows[0]
        raise EdgesewerError(f"every row failed (first: {first.model} {first.precision}: {first.status}); "
                             f"see {result.outputs['md']}")
