"""`edgesewer batch` on this machine: archive throughput with 1 and 2 Ray workers (their ratio, in one
run), and the per-video overhead of the Ray path against calling `run_inspection` (what `edgesewer run`
does) on the same files.

    python benchmarks/batch_throughput.py                   # exports vit-t fp32 (random weights) and renders
                                                            # 6 synthetic inspection videos of 6 s first
    python benchmarks/batch_throughput.py --artifact runs/export/vit-t/vit-t.int8-cpu.onnx --videos 8
    python benchmarks/batch_throughput.py --decode 720x576      # one core's decode rate (for cluster sizing)

Every configuration runs the same files with one ONNX Runtime thread per video (`--cpus-per-task 1`),
so 2 workers on 2 cores is the most this machine can do in parallel. Order: direct, Ray warm-up (worker
processes start and import the runtime: a fixed cost, reported apart), Ray 1 worker, Ray 2 workers.
The machine's load average is printed: on a shared machine, other work takes cores from both.
Needs torch for the default export (not for `--artifact`) and Ray (`pip install -e ".[batch]"`).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline_overhead import export_vit_t  # noqa: E402

from edgesewer.batch.ray_runner import BatchConfig, init_ray, run_batch  # noqa: E402
from edgesewer.batch.worker import VideoJob  # noqa: E402
from edgesewer.runtime.pipeline import RunOptions  # noqa: E402
from edgesewer.runtime.runner import run_inspection  # noqa: E402


def render_archive(out: Path, videos: int, seconds: float, size: tuple[int, int]) -> Path:
    from edgesewer.data.synth.video import render_video

    out.mkdir(parents=True, exist_ok=True)
    for i in range(videos):
        render_video(out, f"inspection_{i:03d}", seed=100 + i, seconds=seconds, fps=25, size=size)
    return out


def direct(artifact: Path, archive: Path, work: Path) -> tuple[float, int]:
    """run_inspection on each file in turn, one thread: (wall seconds, frames)."""
    frames, start = 0, time.perf_counter()
    for video in sorted(archive.glob("*.mp4")):
        run_dir = work / video.stem
        summary = run_inspection(str(video), artifact, threads=1, options=RunOptions(
            output="none", headless=True, live_status=False, events=run_dir / "events.jsonl", report=run_dir))
        frames += summary.frames
    return time.perf_counter() - start, frames


def batch(artifact: Path, archive: str, out: Path, workers: int) -> tuple[float, int, float]:
    """(wall seconds, frames, seconds spent inside the tasks, summed over videos)."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = run_batch(BatchConfig(source=archive, out=out, job=VideoJob(model=str(artifact), threads=1),
                                   workers=workers, cpus_per_task=1.0), progress=False)
    wall = time.perf_counter() - start
    if result.failed:
        raise SystemExit(f"batch failed: {result.failures}")
    inside = sum(e.row["elapsed_s"] for e in result.manifest.videos.values() if e.row)
    return wall, result.frames, inside


def decode_fps(size: tuple[int, int], seconds: float, work: Path) -> float:
    """Frames per second one core decodes (OpenCV/FFmpeg, MPEG-4 part 2 as the synthetic videos) at `size`."""
    import cv2

    from edgesewer.data.synth.video import render_video

    render_video(work, "decode", seed=7, seconds=seconds, fps=25, size=size)
    cv2.setNumThreads(1)
    # one decoding thread (FFmpeg's default is one per core)
    capture = cv2.VideoCapture(str(work / "decode.mp4"), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    frames, start = 0, time.perf_counter()
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, help="classifier artifact (default: export vit-t fp32)")
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each synthetic video")
    parser.add_argument("--size", default="320x256", help="synthetic video frame size WxH")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of direct, 1 worker, 2 workers (medians)")
    parser.add_argument("--decode", metavar="WxH", help="only measure one core's decode rate at this frame size")
    args = parser.parse_args()
    if args.decode:
        width, height = (int(v) for v in args.decode.lower().split("x"))
        work = Path(tempfile.mkdtemp(prefix="edgesewer-decode-"))
        fps = decode_fps((width, height), args.seconds, work)
        print(f"decode {width}x{height} MPEG-4, one thread: {fps:.0f} frames/s "
              f"(load average {os.getloadavg()[0]:.1f})")
        shutil.rmtree(work, ignore_errors=True)
        return
    import ray

    work = Path(tempfile.mkdtemp(prefix="edgesewer-batch-bench-"))
    load_before = os.getloadavg()
    artifact = args.artifact or export_vit_t(work / "vit-t")
    width, height = (int(v) for v in args.size.lower().split("x"))
    archive = render_archive(work / "archive", args.videos, args.seconds, (width, height))
    print(f"artifact {artifact.name}; archive: {args.videos} videos x {args.seconds:g} s, {width}x{height}, 25 fps; "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); "
          f"load average before {load_before[0]:.1f}")

    t0 = time.perf_counter()
    init_ray(ray, num_cpus=2)
    init_s = time.perf_counter() - t0
    first_two = work / "first_two.txt"
    first_two.write_text("".join(f"{p}\n" for p in sorted(archive.glob("*.mp4"))[:2]))
    warm_s, _, _ = batch(artifact, str(first_two), work / "warmup", workers=2)  # spawns and imports both workers
    runs: dict[str, list[float]] = {"direct": [], "w1": [], "w2": [], "inside1": []}
    for r in range(args.repeats):  # interleaved, so that a change in the machine's load hits all three
        direct_s, frames = direct(artifact, archive, work / f"direct{r}")
        one_s, frames1, inside1 = batch(artifact, str(archive), work / f"w1-{r}", workers=1)
        two_s, frames2, _ = batch(artifact, str(archive), work / f"w2-{r}", workers=2)
        assert frames == frames1 == frames2, (frames, frames1, frames2)
        for key, value in (("direct", direct_s), ("w1", one_s), ("w2", two_s), ("inside1", inside1)):
            runs[key].append(value)
        print(f"  round {r + 1}: direct {direct_s:.1f} s, 1 worker {one_s:.1f} s, 2 workers {two_s:.1f} s")
    ray.shutdown()
    load_after = os.getloadavg()
    direct_s, one_s, two_s, inside1 = (statistics.median(runs[k]) for k in ("direct", "w1", "w2", "inside1"))

    n = args.videos
    rows = [
        ("run_inspection, one file after another (1 thread)", direct_s, frames / direct_s, ""),
        ("batch, Ray, 1 worker (1 CPU, 1 thread)", one_s, frames / one_s, f"{direct_s / one_s:.2f} x direct"),
        ("batch, Ray, 2 workers (1 CPU, 1 thread each)", two_s, frames / two_s, f"{one_s / two_s:.2f} x 1 worker"),
    ]
    print(f"\n{n} videos, {frames} frames, median of {args.repeats} round(s)\n\n"
          "| configuration | wall s | frames/s | ratio |\n|---|---|---|---|")
    for name, seconds, fps, ratio in rows:
        print(f"| {name} | {seconds:.1f} | {fps:.1f} | {ratio} |")
    print(f"\nper-video overhead of the Ray path, 1 worker vs direct: {(one_s - direct_s) / n * 1000:+.0f} ms "
          f"({(one_s - direct_s) / direct_s:+.1%} of the direct time)")
    print(f"per-video overhead outside the task (driver wall - time inside the tasks, 1 worker): "
          f"{(one_s - inside1) / n * 1000:.0f} ms")
    print(f"fixed cost: local Ray start {init_s:.1f} s; a first batch of 2 videos with cold workers {warm_s:.1f} s")
    print(f"load average after {load_after[0]:.1f} (before {load_before[0]:.1f}; other processes share the cores)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
