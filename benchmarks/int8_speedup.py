"""CPU INT8 speed-up of vit-t in ONNX Runtime at batch 1: the int8-cpu artifact versus fp32.

    python benchmarks/int8_speedup.py                    # vit-t at 224, random weights (speed only)
    python benchmarks/int8_speedup.py --seconds 20 --threads 2 --json out.json

Target (issue 5): int8-cpu >= 1.25x the fp32 throughput, measured in one run. The int8-cpu graph
is made exactly as `edgesewer export --target ort-cpu --precision int8` makes it (calibrated on
the synthetic set when it exists, else on noise images; `--mode auto` times dynamic vs static
QOperator and keeps the faster). Throughput is measured in alternating blocks of iterations so
that background load on a shared machine slows both models alike; the Q/DQ `int8` (TensorRT)
graph is timed too, to show why the CPU needs its own variant.
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

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without install

from edgesewer.export.calibrate import ImageSet, calibrate, select_images  # noqa: E402
from edgesewer.export.onnx_export import export_onnx  # noqa: E402
from edgesewer.export.quantize import quantize_cpu, quantize_qdq  # noqa: E402
from edgesewer.export.simplify import simplify_onnx  # noqa: E402
from edgesewer.models import create_model  # noqa: E402

TARGET = 1.25


def calibration_images(tmp: Path, n: int, task: str = "classify") -> ImageSet:
    """The synthetic set's images when it exists (no generation here), else noise PNGs."""
    try:
        from edgesewer.data.synth import default_synthetic_dir

        root = default_synthetic_dir(create=False) / "sewerml"
        if root.is_dir():
            return select_images(root, task, n)
    except Exception:  # noqa: BLE001 - any problem with the synthetic set: fall back to noise
        pass
    import cv2

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = tmp / f"noise_{i:03d}.png"
        cv2.imwrite(str(path), (rng.random((224, 224, 3)) * 255).astype(np.uint8))
        paths.append(path)
    return ImageSet(paths, tmp, "noise")


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure(models: dict[str, Path], seconds: float, threads: int, block: int = 20) -> dict[str, list[float]]:
    """Per-call latencies (s) of every model, measured in alternating blocks for `seconds` each."""
    sessions = {name: session(path, threads) for name, path in models.items()}
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for s in sessions.values():  # warm-up: first calls allocate and pick kernels
        for _ in range(10):
            s.run(None, {"input": x})
    latencies: dict[str, list[float]] = {name: [] for name in sessions}
    spent = dict.fromkeys(sessions, 0.0)
    while min(spent.values()) < seconds:
        for name, s in sessions.items():
            for _ in range(block):
                start = time.perf_counter()
                s.run(None, {"input": x})
                latencies[name].append(time.perf_counter() - start)
            spent[name] = sum(latencies[name])
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-t")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per model")
    parser.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0 = all cores)")
    parser.add_argument("--mode", default="auto", choices=("auto", "dynamic", "static"))
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="int8-speedup-") as tmp_name:
        tmp = Path(tmp_name)
        torch.manual_seed(0)
        net = create_model(args.model).eval()
        fp32 = tmp / f"{args.model}.fp32.onnx"
        export_onnx(net, net.cfg, fp32)
        simplify_onnx(fp32)
        images = calibration_images(tmp, args.calib_images)
        calibration = calibrate(fp32, images, net.cfg, "entropy", cache_dir=tmp / "cache", progress=False)
        cpu = quantize_cpu(fp32, tmp / f"{args.model}.int8-cpu.onnx", calibration, args.mode)
        qdq = quantize_qdq(fp32, tmp / f"{args.model}.int8.onnx", calibration)
        models = {"fp32": fp32, f"int8-cpu ({cpu.mode})": cpu.path, "int8 (Q/DQ, TensorRT)": qdq.path}
        latencies = measure(models, args.seconds, args.threads)

    fps = {name: len(v) / sum(v) for name, v in latencies.items()}
    base = fps["fp32"]
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.model} at batch 1, ONNX Runtime {ort.__version__} CPU, "
                        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})")
    for column in ("artifact", "images/s", "median ms", "p90 ms", "vs fp32", "iterations"):
        table.add_column(column, justify="left" if column == "artifact" else "right")
    rows = []
    for name, values in latencies.items():
        ms = sorted(v * 1000 for v in values)
        row = {"artifact": name, "fps": fps[name], "median_ms": statistics.median(ms),
               "p90_ms": ms[int(0.9 * (len(ms) - 1))], "speedup": fps[name] / base, "iterations": len(ms)}
        rows.append(row)
        table.add_row(name, f"{row['fps']:.1f}", f"{row['median_ms']:.2f}", f"{row['p90_ms']:.2f}",
                      f"{row['speedup']:.2f}x", str(row["iterations"]))
    Console().print(table)
    speedup = rows[1]["speedup"]
    verdict = "meets" if speedup >= TARGET else "misses"
    print(f"int8-cpu speed-up {speedup:.2f}x {verdict} the {TARGET:.2f}x target "
          f"(calibrated on {calibration.images} images from {images.source})")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "rows": rows, "target": TARGET}, indent=2))
    return 0 if speedup >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
