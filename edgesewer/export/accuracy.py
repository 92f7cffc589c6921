"""Accuracy of each exported precision on a labelled set, run through ONNX Runtime, with deltas to FP32.

Classifiers: Sewer-ML metrics (F2_CIW, F1_Normal, mAP at the benchmark threshold 0.5).
Segmenter: crack metrics (ODS, OIS, AUPRC, IoU, region F1) at the network's input resolution.
Every INT8 row carries its calibration image count. Random-weight artifacts are refused: their
accuracy means nothing and would only mislead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesewer.errors import DataError, ExportError
from edgesewer.export.calibrate import (
    ImageSet,
    LoadedBatches,
    input_preparer,
    iter_batches,
    progress_bar,
    select_images,
)
from edgesewer.export.metadata import read_sidecar, sidecar_path_for
from edgesewer.metrics.sewerml import evaluate_sewerml
from edgesewer.modelcfg import ModelCfg

CLASSIFY_KEYS = ("F2_CIW", "F1_Normal", "mAP")
SEGMENT_KEYS = ("ODS", "OIS", "AUPRC", "IoU", "region_F1")
PRECISION_ORDER = ("fp32", "fp16", "int8", "int8-fp16", "int8-cpu")


def headline_keys(task: str) -> tuple[str, ...]:
    return SEGMENT_KEYS if task == "segment" else CLASSIFY_KEYS


def evaluation_set(data_dir: str | Path, task: str, max_images: int | None = None, seed: int = 0) -> ImageSet:
    """The labelled split scored by the report: Sewer-ML Val, or the crack set's test split."""
    split = "test" if task == "segment" else "Val"
    try:
        images = select_images(data_dir, task, max_images or 10**9, seed, split=split)
    except DataError:
        if task != "segment":
            raise
        images = select_images(data_dir, task, max_images or 10**9, seed, split="all")
    if task != "segment" and images.labels is None:
        raise DataError(f"{data_dir}: the {split} split has no labels; an accuracy report needs a labelled set")
    return images


def score_onnx(path: str | Path, cfg: ModelCfg, images: ImageSet, batch: int = 8, threads: int = 0,
               progress: bool = True) -> tuple[dict[str, Any], int]:
    """Metrics of one ONNX file on `images`; returns (metrics, skipped image count)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    stats = LoadedBatches()
    prepare = input_preparer(cfg)
    with progress_bar(progress, f"scoring {Path(path).name}", len(images)) as step:
        if cfg.task == "segment":
            return _score_segmenter(session, cfg, images, prepare, batch, stats, step), len(stats.skipped)
        outputs = [session.run(None, {"input": x})[0]
                   for x in iter_batches(images.paths, prepare, batch, stats, on_step=step)]
    if not outputs:
        raise DataError(f"{images.source}: none of the {len(images)} evaluation images could be read")
    logits = np.concatenate(outputs).astype(np.float64)
    skipped = {path for path, _ in stats.skipped}
    good = [i for i, p in enumerate(images.paths) if str(p) not in skipped]
    scores = 0.5 * (1.0 + np.tanh(0.5 * logits))  # the sigmoid, without exp overflow for large |logits|
    result = evaluate_sewerml(scores, images.labels[good], threshold=0.5, codes=tuple(cfg.classes))
    metrics = {k: result[k] for k in CLASSIFY_KEYS}
    metrics.update(images=result["n_images"], threshold=0.5, protocol="Sewer-ML benchmark metrics at threshold 0.5")
    return metrics, len(stats.skipped)


def _score_segmenter(session, cfg: ModelCfg, images: ImageSet, prepare, batch: int, stats: LoadedBatches,
                     step) -> dict[str, Any]:
    import cv2

    from edgesewer.data.crack import read_mask
    from edgesewer.metrics.crack import CrackMetrics

    assert images.masks is not None
    metrics = CrackMetrics()
    for start in range(0, len(images), batch):
        chunk = images.paths[start:start + batch]
        masks = images.masks[start:start + batch]
        before = len(stats.skipped)
        arrays = list(iter_batches(chunk, prepare, batch, stats, on_step=step))
        if not arrays:
            continue
        skipped = {p for p, _ in stats.skipped[before:]}
        probs = session.run(None, {"input": arrays[0]})[0]
        kept = [(p, m) for p, m in zip(chunk, masks) if str(p) not in skipped]
        for prob, (image_path, mask_path) in zip(probs, kept):
            gt = read_mask(mask_path).astype(np.uint8)
            # Scored at the network's resolution, as the runtime sees it (nearest keeps the mask binary).
            gt = cv2.resize(gt, (cfg.input_size, cfg.input_size), interpolation=cv2.INTER_NEAREST).astype(bool)
            metrics.update(prob[0], gt, name=Path(image_path).name)
    result = metrics.compute()
    protocol = (f"whole images and masks resized to the network input {cfg.input_size}x{cfg.input_size} "
                f"(masks nearest); {result['protocol']}")
    return {**{k: result[k] for k in SEGMENT_KEYS}, "images": result["images"], "protocol": protocol}


@dataclass
class AccuracyRow:
    precision: str
    file: str
    metrics: dict[str, Any]
    calibration_images: int | None
    deltas: dict[str, float] = field(default_factory=dict)


@dataclass
class AccuracyReport:
    model: str
    task: str
    data: str
    rows: list[AccuracyRow]

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "task": self.task, "data": self.data,
                "rows": [row.__dict__ for row in self.rows]}


def refuse_random(sidecar: dict[str, Any], where: str | Path) -> None:
    if sidecar.get("random_weights"):
        raise ExportError(f"{where}: exported with --weights random; an accuracy report on untrained weights is "
                          "meaningless (export a trained checkpoint with --weights CKPT)")


def accuracy_report(artifacts: Sequence[str | Path], data_dir: str | Path, max_images: int | None = None,
                    batch: int = 8, progress: bool = True) -> AccuracyReport:
    """Score every ONNX artifact on the labelled set of `data_dir`; deltas are to the fp32 row."""
    sidecars = []
    for artifact in artifacts:
        sidecar = read_sidecar(artifact)
        refuse_random(sidecar, artifact)
        sidecars.append((Path(artifact), sidecar))
    if not sidecars:
        raise DataError("no artifacts to score")
    cfg = ModelCfg.from_dict(sidecars[0][1]["model_cfg"])
    images = evaluation_set(data_dir, cfg.task, max_images)
    rows = []
    for artifact, sidecar in sorted(sidecars, key=lambda item: PRECISION_ORDER.index(item[1]["precision"])):
        model_file = artifact if artifact.suffix == ".onnx" else sidecar_path_for(artifact).with_name(sidecar["file"])
        metrics, _ = score_onnx(model_file, cfg, images, batch, progress=progress)
        calib = sidecar.get("calibration") or {}
        rows.append(AccuracyRow(sidecar["precision"], sidecar["file"], metrics, calib.get("images")))
    add_deltas(rows, cfg.task)
    return AccuracyReport(cfg.name, cfg.task, str(data_dir), rows)


def add_deltas(rows: list[AccuracyRow], task: str) -> None:
    """Metric minus the fp32 row's, in points (x100), for every non-fp32 row."""
    base = next((r for r in rows if r.precision == "fp32"), None)
    if base is None:
        return
    for row in rows:
        row.deltas = {k: 100.0 * (row.metrics[k] - base.metrics[k]) for k in headline_keys(task)
                      if k in row.metrics and k in base.metrics}


def report_table(report: AccuracyReport):
    """A rich Table: one row per precision, metrics in %, deltas to fp32 in points, calibration count."""
    from rich.table import Table

    keys = headline_keys(report.task)
    table = Table(title=f"{report.model}: accuracy per precision on {report.data} (ONNX Runtime, CPU)")
    table.add_column("precision")
    for key in keys:
        table.add_column(key, justify="right")
        table.add_column("Δ", justify="right")
    table.add_column("calib. images", justify="right")
    table.add_column("images", justify="right")
    for row in report.rows:
        cells = [row.precision]
        for key in keys:
            cells.append(f"{100 * row.metrics[key]:.2f}")
            cells.append("" if row.precision == "fp32" else f"{row.deltas.get(key, 0.0):+.2f}")
        calib = "dynamic" if row.precision == "int8-cpu" and row.calibration_images is None else (
            str(row.calibration_images) if row.calibration_images is not None else "")
        cells += [calib, str(row.metrics.get("images", ""))]
        table.add_row(*cells)
    return table
