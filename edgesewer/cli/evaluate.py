"""`edgesewer eval`: Sewer-ML metrics for a score CSV against the ground-truth CSV.

The command only gathers (filenames, scores, targets) and hands them to `score_and_report`;
with --weights/--data the triple comes from running a checkpoint over a Sewer-ML split
(`edgesewer.train.classify.evaluate_checkpoint`), sharing the reporting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console

from edgesewer.cli._errors import one_line_errors
from edgesewer.cli._trust import TrustCheckpointOpt, checkpoint_trust
from edgesewer.errors import DataError
from edgesewer.taxonomy import CIW, SEWER_CODES


def align_by_filename(
    score_names: list[str], scores: np.ndarray, gt_names: list[str], scores_path: Path, gt_path: Path
) -> np.ndarray:
    """Scores re-ordered to the ground-truth rows; both files must list exactly the same images."""
    position = {name: i for i, name in enumerate(score_names)}
    missing = [name for name in gt_names if name not in position]
    if missing:
        raise DataError(f"{scores_path}: no scores for {len(missing)} of the {len(gt_names)} images in {gt_path}, "
                        f"e.g. {', '.join(missing[:3])}")
    if len(score_names) != len(gt_names):
        gt_set = set(gt_names)
        extra = [name for name in score_names if name not in gt_set]
        raise DataError(f"{scores_path}: {len(extra)} images are not in {gt_path}, e.g. {', '.join(extra[:3])}")
    return scores[[position[name] for name in gt_names]]


def score_and_report(scores: np.ndarray, targets: np.ndarray, threshold: float, json_out: Path | None,
                     sources: dict[str, Any]) -> dict[str, Any]:
    """Compute the metrics, print the table and write the JSON report (when asked)."""
    from edgesewer.metrics.sewerml import evaluate_sewerml, format_sewerml_table

    result = evaluate_sewerml(scores, targets, threshold=threshold)
    Console().print(format_sewerml_table(result))
    if json_out is not None:
        report = {**sources, "labels": list(SEWER_CODES), "label_weights": [CIW[c] for c in SEWER_CODES], **result}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        typer.echo(f"wrote {json_out}")
    return result


@one_line_errors
def eval_command(
    scores: Annotated[Optional[Path], typer.Option("--scores", help="Score CSV: Filename + the 17 codes (sigmoid probabilities).")] = None,
    gt: Annotated[Optional[Path], typer.Option("--gt", help="Ground truth in Sewer-ML format, e.g. SewerML_Val.csv.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the metrics as JSON here.")] = None,
    threshold: Annotated[float, typer.Option(help="A class is predicted when its score is >= this.")] = 0.5,
    weights: Annotated[Optional[Path], typer.Option(
        "--weights", help="A trained checkpoint (best.pt) to run instead of --scores.")] = None,
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="With --weights: the Sewer-ML folder to evaluate on.")] = None,
    split: Annotated[str, typer.Option("--split", help="With --weights: which SewerML_<split>.csv; for a crack set "
                                       "test (the default), val, train or all.")] = "Val",
    batch: Annotated[int, typer.Option("--batch", help="With --weights: images per forward pass.")] = 32,
    device: Annotated[str, typer.Option("--device", help="With --weights: auto, cpu, cuda or cuda:N.")] = "auto",
    save_scores: Annotated[Optional[Path], typer.Option(
        "--save-scores", help="With --weights: write the score CSV here.")] = None,
    trust_checkpoint: TrustCheckpointOpt = False,
) -> None:
    """Score predictions against Sewer-ML ground truth (F2_CIW, F1_Normal, mAP and per-class metrics).

    Either a score CSV with its ground truth (--scores, --gt) or a checkpoint run over a Sewer-ML
    folder (--weights, --data).
    """
    if weights is not None:
        if scores is not None or gt is not None:
            raise DataError("give either --scores/--gt or --weights/--data, not both")
        if data is None:
            raise DataError("--weights needs --data DIR (a Sewer-ML folder with SewerML_<split>.csv)")
        with checkpoint_trust(trust_checkpoint):
            if _checkpoint_task(weights) == "segment":
                _eval_segmenter(weights, data, split, device, json_out)
            else:
                _eval_weights(weights, data, split, batch, device, threshold, json_out, save_scores)
        return
    if scores is None or gt is None:
        raise DataError("give --scores CSV and --gt CSV, or --weights CKPT and --data DIR")
    from edgesewer.data.sewerml import read_scores_csv, read_sewerml_csv

    gt_names, targets = read_sewerml_csv(gt)
    if targets is None:
        raise DataError(f"{gt}: has no label columns (the public test CSV carries no labels)")
    score_names, score_values = read_scores_csv(scores)
    aligned = align_by_filename(score_names, score_values, gt_names, scores, gt)
    sources = {"scores": str(scores), "gt": str(gt)}
    score_and_report(aligned, targets, threshold, json_out, sources)


def _eval_weights(weights: Path, data: Path, split: str, batch: int, device: str, threshold: float,
                  json_out: Path | None, save_scores: Path | None) -> None:
    """Run a checkpoint over a labelled split; the report adds the per-class tuned thresholds' F2_CIW."""
    from edgesewer.data.sewerml import write_scores_csv
    from edgesewer.train.classify import ciw_f2, evaluate_checkpoint, f2_per_class

    names, values, targets, cfg = evaluate_checkpoint(weights, data, split=split, batch_size=batch, device=device)
    sources: dict[str, Any] = {"weights": str(weights), "data": str(data), "split": split, "model": cfg.name}
    if cfg.thresholds is not None:
        tuned = ciw_f2(f2_per_class(values, targets, np.asarray(cfg.thresholds)))
        sources["tuned_thresholds"] = {"thresholds": list(cfg.thresholds), "F2_CIW": tuned}
    score_and_report(values, targets, threshold, json_out, sources)
    if cfg.thresholds is not None:
        tuned = 100 * sources["tuned_thresholds"]["F2_CIW"]
        typer.echo(f"F2_CIW with the checkpoint's per-class thresholds: {tuned:.2f}")
    if save_scores is not None:
        typer.echo(f"wrote {write_scores_csv(save_scores, names, values)}")


def _checkpoint_task(weights: Path) -> str:
    from edgesewer.train.checkpoint import load_checkpoint

    return str(load_checkpoint(weights).get("model_cfg", {}).get("task", "classify"))


def _eval_segmenter(weights: Path, data: Path, split: str, device: str, json_out: Path | None) -> None:
    """Crack metrics of a segmenter checkpoint on a crack folder, tiled at its input size, with overlays."""
    import json

    from edgesewer.data.crack import CrackFolder
    from edgesewer.export.weights import load_for_export
    from edgesewer.metrics.crack_eval import evaluate_crack_folder
    from edgesewer.train.checkpoint import load_checkpoint
    from edgesewer.train.segment import torch_predict

    name = load_checkpoint(weights)["model_cfg"]["name"]
    loaded = load_for_export(name, str(weights))
    cfg = loaded.cfg
    # "Val", the Sewer-ML default of --split, means a crack set's held-out test images; any other name is a
    # crack split (test, val: the part carved out of the training images for model selection, train, all).
    crack_split = "test" if split == "Val" else split.lower()
    out_dir = (json_out.parent if json_out else weights.parent) / f"eval-{crack_split}"
    metrics = evaluate_crack_folder(
        torch_predict(loaded.model, "cpu" if device == "auto" else device), CrackFolder(data, crack_split), out_dir,
        tile=cfg.input_size, edge=cfg.extra.get("edge", "canny"),
        threshold=(cfg.thresholds or (0.5,))[0])
    headline = {k: metrics[k] for k in ("ODS", "OIS", "AUPRC", "IoU") if k in metrics}
    typer.echo("  ".join(f"{k} {100 * v:.2f}" for k, v in headline.items()) + f"   (overlays: {out_dir})")
    if json_out is not None:
        json_out.write_text(json.dumps({"weights": str(weights), "data": str(data), "split": crack_split, **metrics},
                                       indent=2, default=float), encoding="utf-8")
        typer.echo(f"wrote {json_out}")
