"""Score a crack segmenter on crack images at full resolution, writing overlays (no torch).

The one crack-accuracy protocol: `edgesewer eval --weights`, the export accuracy report and gate,
`edgesewer benchmark`, `benchmarks/crackforest.py` and training validation all score through
`evaluate_crack_pairs`, which runs the runtime's tiling (`edgesewer run --seg-tiles`): the edge
channel computed on the whole image, then overlapping model-size tiles (`tile_overlap`) blended
back to the native resolution. `predict(batch NCHW float32) -> prob NCHW` can be a PyTorch model
(`edgesewer.train.segment.torch_predict`), an ONNX Runtime session (`onnx_predict`) or a runtime
backend. With `out_dir` it writes:

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

from edgesewer.data.crack import CrackFolder, CrackPair, load_pair
from edgesewer.data.edges import crack_input
from edgesewer.errors import DataError
from edgesewer.metrics.crack import PROTOCOL, CrackMetrics, prf
from edgesewer.runtime.tiling import tile_overlap, tiled_predict

Predict = Callable[[np.ndarray], np.ndarray]
OVERLAY_COLORS = {"tp": (0, 200, 0), "fp": (230, 0, 0), "fn": (0, 90, 255)}  # RGB


def tiling_protocol(tile: int) -> str:
    """The protocol text every crack report carries."""
    return (f"full resolution: edge channel on the whole image, {tile}x{tile} tiles overlapping by "
            f"{tile_overlap(tile)} px, raised-cosine blended (the runtime's --seg-tiles); {PROTOCOL}")


def crack_probability(rgb: np.ndarray, predict: Predict, tile: int = 256, edge: str = "canny",
                      batch_size: int = 4) -> np.ndarray:
    """Full-size crack probability HxW for an RGB uint8 frame (edges on the whole frame, then tiles)."""
    return tiled_predict(crack_input(rgb, edge=edge), predict, tile=tile, batch_size=batch_size)[0]


def onnx_predict(session, input_name: str = "input") -> Predict:
    """An ONNX Runtime session as `predict` (first output: the crack probability)."""
    return lambda batch: session.run(None, {input_name: batch})[0]


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


def evaluate_crack_pairs(predict: Predict, pairs: list[CrackPair], out_dir: str | Path | None = None, *,
                         tile: int = 256, edge: str = "canny", threshold: float = 0.5, max_overlays: int | None = 50,
                         batch_size: int = 4, progress: bool = True, title: str = "scoring",
                         about: dict[str, Any] | None = None) -> dict[str, Any]:
    """Crack metrics of `predict` over (image, mask) pairs (see the module docstring for the files).

    An unreadable image or mask is skipped and named in `skipped` (never fatal unless all are);
    `about` (the data set, split, ...) is added to the result and metrics.json."""
    metrics = CrackMetrics()
    rows, skipped = [], []
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(title, total=len(pairs))
        for index, pair in enumerate(pairs):
            bar.advance(task)
            try:
                rgb, gt = load_pair(pair)
            except DataError as exc:
                skipped.append(str(exc))
                continue
            prob = crack_probability(rgb, predict, tile=tile, edge=edge, batch_size=batch_size)
            image_best = metrics.update(prob, gt, name=str(pair.image))
            crack = prob > threshold
            f_at_threshold = float(prf((crack & gt).sum(), (crack & ~gt).sum(), (~crack & gt).sum())[2])
            rows.append({"image": pair.image.name, "best_F": image_best["best_F"],
                         "best_threshold": image_best["best_threshold"], "F_at_threshold": f_at_threshold})
            if out is not None and (max_overlays is None or index < max_overlays):
                _write_png(out / "overlays" / f"{pair.image.stem}.png", crack_overlay(rgb, crack, gt))
                _write_png(out / "probs" / f"{pair.image.stem}.png", np.round(prob * 255).astype(np.uint8))
    if not rows:
        raise DataError(f"none of the {len(pairs)} crack images could be scored" +
                        (f" (e.g. {skipped[0]})" if skipped else ""))
    result = metrics.compute()
    result.update(protocol=tiling_protocol(tile), threshold=threshold, tile=tile, overlap=tile_overlap(tile),
                  edge=edge, skipped=skipped, **(about or {}))
    if out is not None:
        curve = {k: np.round(v, 6).tolist() for k, v in metrics.curve().items()}
        (out / "metrics.json").write_text(json.dumps({**result, "curve": curve}, indent=2) + "\n", encoding="utf-8")
        with open(out / "per_image.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return result


def evaluate_crack_folder(predict: Predict, folder: CrackFolder, out_dir: str | Path | None = None, *,
                          tile: int = 256, edge: str = "canny", threshold: float = 0.5,
                          max_overlays: int | None = 50, batch_size: int = 4, progress: bool = True) -> dict[str, Any]:
    """`evaluate_crack_pairs` over every image of a dataset split, with the set named in the result."""
    return evaluate_crack_pairs(predict, folder.pairs, out_dir, tile=tile, edge=edge, threshold=threshold,
                                max_overlays=max_overlays, batch_size=batch_size, progress=progress,
                                title=f"scoring {folder.root.name}/{folder.split}",
                                about={"dataset": str(folder.root), "split": folder.split, "layout": folder.layout,
                                       "excluded": list(folder.excluded)})
