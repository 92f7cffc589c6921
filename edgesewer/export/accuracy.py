"""Accuracy of each exported precision on a labelled set, run through ONNX Runtime, with deltas to FP32.

Classifiers: Sewer-ML metrics (F2_CIW, F1_Normal, mAP at the benchmark threshold 0.5).
Segmenter: crack metrics (ODS, OIS, AUPRC, IoU, region F1) at each image's native resolution, tiled
as the runtime tiles (`edgesewer.metrics.crack_eval.evaluate_crack_pairs`, the one crack protocol).
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
from edgesewer.precisions import PRECISIONS

CLASSIFY_KEYS = ("F2_CIW", "F1_Normal", "mAP")
SEGMENT_KEYS = ("ODS", "OIS", "AUPRC", "IoU", "region_F1")


# The metric the export gate holds each precision to: the task's main benchmark metric.
MAIN_METRIC = {"classify": "F2_CIW", "segment": "ODS", "zeroshot": "mAP"}
# Points of the main metric a variant may lose against fp32 before the export refuses it.
DEFAULT_MAX_LOSS = {"fp16": 0.3, "int8": 1.5}


def headline_keys(task: str) -> tuple[str, ...]:
    return SEGMENT_KEYS if task == "segment" else CLASSIFY_KEYS


def main_metric(task: str) -> str:
    return MAIN_METRIC.get(task, "F2_CIW")


@dataclass
class GateVerdict:
    """One precision's loss of the main metric against fp32, and whether it is within its limit."""

    precision: str
    metric: str
    fp32: float
    value: float
    loss_points: float  # 100 x (fp32 - value); negative when the variant scores higher
    limit_points: float | None  # None for fp32
    images: int

    @property
    def passed(self) -> bool:
        return self.limit_points is None or self.loss_points <= self.limit_points

    def as_dict(self, accepted: bool = False) -> dict[str, Any]:
        return {"metric": self.metric, "fp32": self.fp32, "value": self.value, "loss_points": self.loss_points,
                "limit_points": self.limit_points, "passed": self.passed, "accepted_loss": accepted and not self.passed,
                "images": self.images}

    def message(self, data: str) -> str:
        return (f"{self.precision} loses {self.loss_points:.2f} points of {self.metric} against fp32 "
                f"({100 * self.fp32:.2f} -> {100 * self.value:.2f} on {self.images} images of {data}), more than the "
                f"{self.limit_points:g} allowed; check the calibration data (--calib-data, --calib-images, "
                f"--calib-method), raise --max-{'fp16' if self.precision == 'fp16' else 'int8'}-loss, or pass "
                "--accept-accuracy-loss to write it anyway")


def gate_verdicts(rows: Sequence["AccuracyRow"], task: str, max_fp16_loss: float = DEFAULT_MAX_LOSS["fp16"],
                  max_int8_loss: float = DEFAULT_MAX_LOSS["int8"]) -> list[GateVerdict]:
    """Each row's loss of the task's main metric against the fp32 row (int8 and int8-cpu share the int8 limit)."""
    metric = main_metric(task)
    base = next((r for r in rows if r.precision == "fp32"), None)
    if base is None or metric not in base.metrics:
        return []
    limits = {"fp32": None, "fp16": max_fp16_loss, "int8": max_int8_loss, "int8-cpu": max_int8_loss}
    return [GateVerdict(row.precision, metric, float(base.metrics[metric]), float(row.metrics[metric]),
                        100.0 * (float(base.metrics[metric]) - float(row.metrics[metric])), limits[row.precision],
                        int(row.metrics.get("images", 0)))
            for row in rows if metric in row.metrics]


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
    if cfg.task == "segment":
        return _score_segmenter(session, cfg, images, batch, progress, Path(path).name)
    stats = LoadedBatches()
    prepare = input_preparer(cfg)
    with progress_bar(progress, f"scoring {Path(path).name}", len(images)) as step:
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


def _score_segmenter(session, cfg: ModelCfg, images: ImageSet, batch: int, progress: bool,
                     name: str) -> tuple[dict[str, Any], int]:
    from edgesewer.data.crack import CrackPair
    from edgesewer.metrics.crack_eval import evaluate_crack_pairs, onnx_predict

    assert images.masks is not None
    pairs = [CrackPair(Path(image), Path(mask)) for image, mask in zip(images.paths, images.masks)]
    result = evaluate_crack_pairs(onnx_predict(session), pairs, tile=cfg.input_size,
                                  edge=str(cfg.extra.get("edge", "canny")), batch_size=batch, progress=progress,
                                  title=f"scoring {name}")
    metrics = {**{k: result[k] for k in SEGMENT_KEYS}, "images": result["images"], "protocol": result["protocol"]}
    return metrics, len(result["skipped"])


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
    for artifact, sidecar in sorted(sidecars, key=lambda item: PRECISIONS.index(item[1]["precision"])):
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
