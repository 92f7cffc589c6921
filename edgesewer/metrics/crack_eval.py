"""Score a crack segmenter on a crack dataset folder at full resolution, writing overlays (no torch).

`evaluate_crack_folder(predict, folder)` runs any `predict(batch NCHW float32) -> prob NCHW`
(a PyTorch model via `edgesewer.train.segment.torch_predict`, an ONNX Runtime or TensorRT
backend) over every image with tiled inference (`edgesewer.runtime.tiling`), scores the maps with
`CrackMetrics` and, with `out_dir`, writes:

    metrics.json        ODS/OIS/AUPRC/IoU/region F1, the protocol, the pooled P/R/F1 curve
    per_image.csv       image, best F, its threshold, F at the reported threshold
    overlays/<stem>.png the image with true positives green, false positives red and missed
                        crack blue, at `threshold` (the model's stored threshold, else 0.5)
    probs/<stem>.png    the probability map as 8-bit grey (to re-score without the model)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from rich.progress import Progress

from edgesewer.data.crack import CrackFolder
from edgesewer.data.edges import crack_input
from edgesewer.metrics.crack import CrackMetrics, prf
from edgesewer.runtime.tiling import tiled_predict

Predict = Callable[[np.ndarray], np.ndarray]
OVERLAY_COLORS = {"tp": (0, 200, 0), "fp": (230, 0, 0), "fn": (0, 90, 255)}  # RGB


def crack_probability(rgb: np.ndarray, predict: Predict, tile: int = 256, overlap: int = 64, edge: str = "canny",
                      batch_size: int = 4) -> np.ndarray:
    """Full-size crack probability HxW for an RGB uint8 frame (edges on the whole frame, then tiles)."""
    return tiled_predict(crack_input(rgb, edge=edge), predict, tile=tile, overlap=overlap, batch_size=batch_size)[0]


def crack_overlay(rgb: np.ndarray, crack: np.ndarray, gt: np.ndarray | None = None, alpha: float = 0.6) -> np.ndarray:
    """RGB overlay: predicted crack green (red where the GT says background), missed GT crack blue."""
    out = rgb.astype(np.float32)
    layers = {"tp": crack} if gt is None else {"tp": crack & gt, "fp": crack & ~gt, "fn": ~crack & gt}
    for name, where in layers.items():
        out[where] = (1 - alpha) * out[where] + alpha * np.array(OVERLAY_COLORS[name], dtype=np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", image)
    if ok:
        data.tofile(str(path))


def evaluate_crack_folder(predict: Predict, folder: CrackFolder, out_dir: str | Path | None = None, *,
                          tile: int = 256, overlap: int = 64, edge: str = "canny", threshold: float = 0.5,
                          max_overlays: int | None = 50, batch_size: int = 4, progress: bool = True) -> dict[str, Any]:
    """Crack metrics of `predict` over every image of `folder` (see the module docstring for the files)."""
    metrics = CrackMetrics()
    rows = []
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"scoring {folder.root.name}/{folder.split}", total=len(folder))
        for index, pair in enumerate(folder.pairs):
            rgb, gt = folder[index]
            prob = crack_probability(rgb, predict, tile=tile, overlap=overlap, edge=edge, batch_size=batch_size)
            image_best = metrics.update(prob, gt, name=str(pair.image))
            crack = prob > threshold
            f_at_threshold = float(prf((crack & gt).sum(), (crack & ~gt).sum(), (~crack & gt).sum())[2])
            rows.append({"image": pair.image.name, "best_F": image_best["best_F"],
                         "best_threshold": image_best["best_threshold"], "F_at_threshold": f_at_threshold})
            if out is not None and (max_overlays is None or index < max_overlays):
                _write_png(out / "overlays" / f"{pair.image.stem}.png", crack_overlay(rgb, crack, gt))
                _write_png(out / "probs" / f"{pair.image.stem}.png", np.round(prob * 255).astype(np.uint8))
            bar.advance(task)
    result = metrics.compute()
    result.update(threshold=threshold, tile=tile, overlap=overlap, edge=edge, dataset=str(folder.root),
                  split=folder.split, layout=folder.layout)
    if out is not None:
        curve = {k: np.round(v, 6).tolist() for k, v in metrics.curve().items()}
        (out / "metrics.json").write_text(json.dumps({**result, "curve": curve}, indent=2) + "\n", encoding="utf-8")
        with open(out / "per_image.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return result
