"""SCNet on CrackForest, as deployed: fp32, fp16, int8 (Q/DQ) and int8-cpu artifacts scored on the test split.

    python benchmarks/crackforest.py --weights runs/scnet/<run>/best.pt
    python benchmarks/crackforest.py --weights best.pt --data ../shared/data/CrackForest --threads 2

One rerunnable command for the README's real-data table. It runs `edgesewer benchmark` for scnet
alone (artifacts exported and cached under OUT/artifacts/scnet/, INT8 calibrated on the training
images only), so every number comes from the code a user runs:

- accuracy: ODS, OIS, AUPRC, IoU and region F1 on the held-out 20 % of CrackForest (24 of its 118
  labelled images, `edgesewer.data.crack`), each image at its native 480x320 through the runtime's
  tiling (`edgesewer.metrics.crack_eval`, the protocol `edgesewer eval` and the export use);
- speed: batch-1 network FPS of one model-size tile in ONNX Runtime on this CPU, and the images
  per second that makes at CrackForest's size (the tile count of one 480x320 image);
- the SCNet paper's CrackForest figures beside them (pixel F1 90.40, region F1 96.62; GPU, its own
  training budget and HED edges).

Writes OUT/crackforest.md (the table, the protocol, the machine) and OUT/crackforest_overlays.png
(a few test images with the fp32 model's cracks: true positives green, false positives red, missed
crack blue, at the checkpoint's validation ODS threshold).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a source checkout without install

from edgesewer.benchmark import BenchmarkOptions, TimingPlan, run_benchmark  # noqa: E402
from edgesewer.benchmark.machine import machine_lines  # noqa: E402
from edgesewer.benchmark.measure import BenchmarkRow  # noqa: E402
from edgesewer.data.crack import CrackFolder  # noqa: E402
from edgesewer.errors import EdgesewerError  # noqa: E402
from edgesewer.export.metadata import read_sidecar  # noqa: E402
from edgesewer.metrics.crack_eval import OVERLAY_COLORS, crack_overlay, crack_probability, onnx_predict  # noqa: E402
from edgesewer.metrics.crack_eval import tiling_protocol  # noqa: E402
from edgesewer.runtime.tiling import tile_overlap, tile_starts  # noqa: E402

PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu")
METRICS = ("ODS", "OIS", "AUPRC", "IoU", "region_F1")
PAPER = {"ODS": 90.40, "region_F1": 96.62}  # SCNet paper, CrackForest: pixel F1 and region F1 (%)
DEFAULT_DATA = REPO.parent / "shared" / "data" / "CrackForest"


def tiles_per_image(height: int, width: int, tile: int) -> int:
    overlap = tile_overlap(tile)
    return len(tile_starts(height, tile, overlap)) * len(tile_starts(width, tile, overlap))


def table(rows: list[BenchmarkRow], tiles: int) -> list[str]:
    header = ["Artifact", "ODS", "OIS", "AUPRC", "IoU", "Region F1", "Δ ODS", "Calibration", "Tile FPS (b1)",
              "Images/s", "Size MB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    fp32 = next((r for r in rows if r.precision == "fp32" and r.accuracy), None)
    for row in rows:
        if not row.ok:
            lines.append(f"| scnet {row.precision} | {row.status} |" + " |" * (len(header) - 2))
            continue
        acc = row.accuracy or {}
        cells = [f"{100 * acc[k]:.2f}" if k in acc else "n/a" for k in METRICS]
        delta = (f"{100 * (acc['ODS'] - fp32.accuracy['ODS']):+.2f}" if fp32 and "ODS" in acc and row is not fp32
                 else "")
        fps = f"{row.fps_b1:.1f}" if row.fps_b1 else "n/a"
        per_image = f"{row.fps_best / tiles:.2f}" if row.fps_best else "n/a"
        lines.append("| " + " | ".join([f"scnet {row.precision}", *cells, delta, row.calibration or "",
                                         fps, per_image, f"{row.size_mb:.1f}" if row.size_mb else ""]) + " |")
    paper = [f"{PAPER[k]:.2f}" if k in PAPER else "—" for k in METRICS]
    lines.append("| " + " | ".join(["SCNet paper (GPU, own budget)", *paper, "", "", "", "", ""]) + " |")
    return lines


def overlay_figure(onnx_path: Path, data: Path, out: Path, count: int, threads: int | None) -> Path:
    """A grid of `count` test images with the fp32 model's cracks drawn over them, and a colour legend."""
    import onnxruntime as ort

    sidecar = read_sidecar(onnx_path)
    cfg = sidecar["model_cfg"]
    threshold = (cfg.get("thresholds") or [0.5])[0]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    folder = CrackFolder(data, "test")
    panels = []
    for index in np.linspace(0, len(folder) - 1, count).round().astype(int):
        rgb, gt = folder[int(index)]
        prob = crack_probability(rgb, onnx_predict(session), tile=int(cfg["input_size"]),
                                 edge=str(cfg["extra"].get("edge", "canny")))
        panel = crack_overlay(rgb, prob > threshold, gt, alpha=0.85)
        cv2.putText(panel, folder.pairs[int(index)].image.name, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 255), 2, cv2.LINE_AA)
        panels.append(panel)
    while len(panels) % 2:
        panels.append(np.zeros_like(panels[0]))
    grid = np.vstack([np.hstack(panels[i:i + 2]) for i in range(0, len(panels), 2)])
    legend = np.full((36, grid.shape[1], 3), 255, dtype=np.uint8)
    x = 10
    for key, label in (("tp", "crack found"), ("fp", "false crack"), ("fn", "crack missed")):
        cv2.rectangle(legend, (x, 10), (x + 18, 28), OVERLAY_COLORS[key], -1)
        cv2.putText(legend, label, (x + 26, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        x += 190
    cv2.putText(legend, f"threshold {threshold:.2f} (validation ODS)", (x, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                (0, 0, 0), 1, cv2.LINE_AA)
    image = np.vstack([grid, legend])
    out.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise EdgesewerError(f"{out}: could not encode the overlay picture")
    encoded.tofile(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True, help="trained scnet checkpoint (best.pt)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CrackForest folder (image/, groundTruth/)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all usable cores)")
    parser.add_argument("--max-images", type=int, default=None, help="score at most this many test images (a quick check)")
    parser.add_argument("--overlays", type=int, default=4, help="test images in the overlay picture")
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds per artifact")
    args = parser.parse_args(argv)
    if not args.weights.is_file():
        parser.error(f"--weights {args.weights}: checkpoint not found")
    if not (args.data / "groundTruth").is_dir():
        parser.error(f"--data {args.data}: not a CrackForest folder (no groundTruth/)")

    opts = BenchmarkOptions(models=["scnet"], precisions=list(PRECISIONS), backend="ort", data=args.data,
                            crack_data=args.data, out=args.out, weights=[f"scnet={args.weights}"], batch_sizes=[1, 4],
                            timing=TimingPlan(warmup_s=1.0, min_s=args.seconds, min_iters=10, max_s=4 * args.seconds),
                            threads=args.threads, accuracy_images=args.max_images, pipeline_frames=0, eager=False)
    result = run_benchmark(opts, write=False)
    rows = result.rows
    fp32 = next((r for r in rows if r.precision == "fp32" and r.ok), None)
    if fp32 is None:
        raise SystemExit(f"error: the fp32 artifact failed: {rows[0].status}")
    tile = int(fp32.input_size or 256)
    test = CrackFolder(args.data, "test")
    height, width = test[0][1].shape
    left_out = "".join(f"; left out: {entry}" for entry in test.excluded)  # known label errors (crack_errata)
    tiles = tiles_per_image(height, width, tile)
    picture = overlay_figure(Path(fp32.artifact), args.data, args.out / "crackforest_overlays.png", args.overlays,
                             args.threads)
    lines = ["# SCNet on CrackForest", "",
             f"Checkpoint `{args.weights}`; made by `python benchmarks/crackforest.py --weights {args.weights}`.", "",
             *table(rows, tiles), "",
             f"- Test set: {fp32.accuracy_data}, {fp32.accuracy_images} images (the 20 % held out as in the SCNet "
             f"paper; the checkpoint's best epoch and threshold come from a validation part of the training images"
             f"{left_out}).",
             f"- Protocol: {tiling_protocol(tile)}.",
             f"- Speed: ONNX Runtime on this CPU, {result.settings['threads']} thread(s); *Tile FPS* is batch-1 "
             f"inferences per second on one {tile}x{tile} tile; *Images/s* is the best batched tile throughput / "
             f"{tiles} tiles per {width}x{height} image (network only, no decoding or edges).",
             "- INT8 calibrated on the training images only; Δ ODS in points against fp32.",
             "- The paper's numbers come from a GPU, its own (unstated) training length and HED edge maps; ours from "
             "the CPU recipe `train/scnet-cpu.yaml` and Canny edges.", "",
             "## Machine", "", *[f"- {line}" for line in machine_lines(result.machine)], "",
             f"![CrackForest test images: found, false and missed cracks]({picture.name})", ""]
    notes = [f"- scnet {row.precision}: {'; '.join(row.notes)}" for row in rows if row.notes]
    if notes:
        lines[-2:-2] = ["Notes:", "", *notes, ""]
    report = args.out / "crackforest.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(table(rows, tiles)))
    print(f"written: {report}, {picture}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
