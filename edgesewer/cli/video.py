"""`edgesewer video ...`: video-level classification (super-image models, frame aggregation, VideoPipe format).

    edgesewer video cut-synth --data SYNTH --out clips          # synthetic inspection videos -> labelled clips
    edgesewer video frames --data SYNTH --out frames            # inspection videos -> Sewer-ML-format stills
    edgesewer video folds --labels train.json --out folds.json  # iterative-stratified K folds
    edgesewer video train --labels train.json [--model superimage-efficientnet-b0] [--fold 0]
    edgesewer video folds-train --labels train.json --out runs/si   # every fold + out-of-fold scores
    edgesewer video predict --weights best.pt --labels test.json --out test_result.json
    edgesewer video ensemble a.json b.json --weights 0.7,0.3 --out ens.json   (or --fit-gt oof_gt.json)
    edgesewer video ensemble --recipe train/videopipe-ensemble.yaml runs/*/oof_results.json --out ens.json
    edgesewer video eval --results test_result.json --gt test_gt.json
    edgesewer video clip --clip-model superimage.fp32.onnx --source inspection.mp4   # torch-free clip mode
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgesewer.cli._errors import one_line_errors
from edgesewer.cli._trust import TrustCheckpointOpt, checkpoint_trust
from edgesewer.errors import DataError

app = typer.Typer(help="Video-level defect classification: super-image models, frame aggregation, VideoPipe format.",
                  no_args_is_help=True)

LabelsOpt = Annotated[Path, typer.Option("--labels", help='Labels JSON {"video.mp4": [class indices]}.')]
ClassesOpt = Annotated[str, typer.Option("--classes", help="Label set: videopipe (ZC CJ ... TL) or sewerml.")]
VideoDirOpt = Annotated[Optional[Path], typer.Option("--video-dir", help="Where the videos are (default: the labels' folder).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe field: section.key=value (repeatable).")]
RecipeOpt = Annotated[Optional[Path], typer.Option("--recipe", help="Recipe YAML (default: train/superimage.yaml).")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="superimage-<backbone> (default: the recipe's).")]
FrameOpt = Annotated[Optional[str], typer.Option("--frame-model", help="Frame-based instead: a zoo classifier or timm:<arch>.")]


def _recipe(recipe: Path | None, model: str | None, labels: Path, classes: str, video_dir: Path | None,
            sets: list[str] | None, frame_model: str | None, **video: object):
    from edgesewer.train.video import load_video_recipe

    extra = [f"video.{k}={v}" for k, v in {"classes": classes, "frame_model": frame_model, **video}.items()
             if v is not None]
    rec, section = load_video_recipe(recipe, model, extra + list(sets or []))
    if not labels.is_file():
        raise DataError(f"{labels}: labels file not found")
    section.labels, section.video_dir = str(labels), str(video_dir) if video_dir else None
    return rec, section


@app.command("cut-synth")
@one_line_errors
def cut_synth(data: Annotated[Path, typer.Option("--data", help="Synthetic set (with videos/) or its videos folder.")],
              out: Annotated[Path, typer.Option("--out", help="Output folder for clips/ and labels.json.")],
              min_s: float = 3.0, max_s: float = 6.0, seed: int = 0,
              max_side: Annotated[Optional[int], typer.Option(help="Shrink clip frames to this longest side.")] = None,
              stride_s: Annotated[Optional[float], typer.Option(help="Overlapping clips: one starts every S s.")] = None
              ) -> None:
    """Cut synthetic inspection videos into 3-6 s clips labelled with every Sewer-ML code in view."""
    from edgesewer.data.video import cut_inspection_clips

    labels = cut_inspection_clips(data, out, min_s, max_s, seed, max_side, stride_s=stride_s)
    typer.echo(f"{len(labels)} clips, {int((labels.targets.sum(1) == 0).sum())} normal -> {labels.source}")
    typer.echo(f"next: edgesewer video train --labels {labels.source} --classes sewerml")


@app.command("frames")
@one_line_errors
def frames(data: Annotated[Path, typer.Option("--data", help="Synthetic set (with videos/) or its videos folder.")],
           out: Annotated[Path, typer.Option("--out", help="Output folder: images/, SewerML_Train.csv, SewerML_Val.csv.")],
           stride: Annotated[int, typer.Option(help="Keep every N-th frame (neighbours are near-duplicates).")] = 2,
           val_videos: Annotated[int, typer.Option(help="The last N videos go to SewerML_Val.csv, whole.")] = 1,
           max_side: Annotated[Optional[int], typer.Option(help="Shrink frames to this longest side.")] = None) -> None:
    """Turn inspection videos with per-frame ground truth into a Sewer-ML-format still set for frame classifiers."""
    from edgesewer.data.frames import extract_inspection_frames

    summary = extract_inspection_frames(data, out, stride, val_videos, max_side)
    typer.echo(f"{summary.train_images} train frames ({len(summary.train_videos)} videos), "
               f"{summary.val_images} val frames ({', '.join(summary.val_videos) or 'none'}) -> {summary.out}")
    typer.echo(f"next: edgesewer train vit-t --data {summary.out}")


@app.command("folds")
@one_line_errors
def folds(labels: LabelsOpt, out: Annotated[Path, typer.Option("--out")], classes: ClassesOpt = "videopipe",
          n_folds: Annotated[int, typer.Option("--folds")] = 5, seed: int = 0) -> None:
    """Iterative multi-label stratified folds; prints the positives of each class per fold."""
    from edgesewer.data.video import read_labels
    from edgesewer.train.video_folds import fold_label_counts, stratified_folds, write_folds

    lab = read_labels(labels, classes)
    fold_of = stratified_folds(lab.targets, n_folds, seed)
    counts = fold_label_counts(lab.targets, fold_of, n_folds)
    typer.echo("fold " + " ".join(f"{c:>4}" for c in lab.classes))
    for k, row in enumerate(counts):
        typer.echo(f"{k:>4} " + " ".join(f"{int(n):>4}" for n in row))
    typer.echo(f"wrote {write_folds(out, lab, fold_of, seed)}")


@app.command("train")
@one_line_errors
def train(labels: LabelsOpt, classes: ClassesOpt = "videopipe", video_dir: VideoDirOpt = None,
          val_labels: Annotated[Optional[Path], typer.Option(help="Held-out labels (default: hold out --fold).")] = None,
          fold: Annotated[Optional[int], typer.Option(help="Fold to hold out (video.fold).")] = None,
          model: ModelOpt = None, frame_model: FrameOpt = None, recipe: RecipeOpt = None, sets: SetOpt = None,
          out: Annotated[Optional[Path], typer.Option(help="Run folder.")] = None,
          resume: Annotated[Optional[Path], typer.Option(help="Continue from a run's last.pt.")] = None,
          trust_checkpoint: TrustCheckpointOpt = False) -> None:
    """Train one super-image model (or frame classifier) with one fold or a held-out set for validation."""
    from edgesewer.data.video import read_labels
    from edgesewer.train.progress import best_epoch_line
    from edgesewer.train.video import split_train_val, train_video

    rec, section = _recipe(recipe, model, labels, classes, video_dir, sets, frame_model,
                           fold=fold, val_labels=str(val_labels) if val_labels else None)
    train_set, val_set = split_train_val(read_labels(labels, section.classes, video_dir), section)
    with checkpoint_trust(trust_checkpoint):
        result = train_video(rec, section, train_set, val_set, out=out, resume=resume)
    best = result.best_metrics
    typer.echo(best_epoch_line(best, ("mAP", "mAP_post", "F2_CIW", "F1_Normal")))
    typer.echo(f"run folder: {result.run_dir}  (val scores: {result.run_dir / 'val_results.json'})")


@app.command("folds-train")
@one_line_errors
def folds_train(labels: LabelsOpt, out: Annotated[Path, typer.Option("--out", help="Folder for fold runs + OOF.")],
                classes: ClassesOpt = "videopipe", video_dir: VideoDirOpt = None, model: ModelOpt = None,
                frame_model: FrameOpt = None, recipe: RecipeOpt = None, sets: SetOpt = None,
                only: Annotated[Optional[list[int]], typer.Option("--only", help="Train only these folds.")] = None) -> None:
    """Train every fold; write out-of-fold scores (oof_results.json) and their metrics."""
    from edgesewer.data.video import read_labels
    from edgesewer.train.video_folds import train_folds

    rec, section = _recipe(recipe, model, labels, classes, video_dir, sets, frame_model)
    metrics = train_folds(rec, section, read_labels(labels, section.classes, video_dir), out, only)
    typer.echo(f"out-of-fold mAP {100 * metrics['mAP']:.3f} (after normal rule {100 * metrics['mAP_post']:.3f})")
    typer.echo(f"next: edgesewer video ensemble {out}/oof_results.json <other model's oof> --fit-gt {labels}")


def _unlabelled(videos: Path, classes: str):
    from edgesewer.data.video import VideoLabels, class_set
    import numpy as np

    files = sorted(p.name for p in videos.glob("*.mp4")) if videos.is_dir() else []
    if not files:
        raise DataError(f"{videos}: no .mp4 videos")
    codes = class_set(classes)
    return VideoLabels(files, np.zeros((len(files), len(codes)), dtype=np.uint8), codes, videos, videos)


@app.command("predict")
@one_line_errors
def predict(weights: Annotated[Path, typer.Option("--weights", help="best.pt of a video run.")],
            out: Annotated[Path, typer.Option("--out", help='Results JSON {"video.mp4": [scores]}.')],
            labels: Annotated[Optional[Path], typer.Option(help="Labels JSON naming the videos.")] = None,
            videos: Annotated[Optional[Path], typer.Option(help="Or: a folder of .mp4 videos.")] = None,
            video_dir: VideoDirOpt = None, batch: int = 8, device: str = "cpu", workers: int = 0,
            aggregate: Annotated[Optional[str], typer.Option(help="Frame models: mean, max or median.")] = None,
            frames: Annotated[Optional[str], typer.Option(
                help="Frame models: 'all' classifies every frame of each video (the report's frame baseline), "
                     "'sampled' the 9 of the super-image (default: as trained).")] = None,
            trust_checkpoint: TrustCheckpointOpt = False) -> None:
    """Score videos with a trained model (results in the VideoPipe submission format)."""
    from edgesewer.data.video import read_labels, write_results
    from edgesewer.train.video import load_video_checkpoint, predict_checkpoint

    with checkpoint_trust(trust_checkpoint):
        _, cfg, _ = load_video_checkpoint(weights)
    classes = "videopipe" if "ZC" in cfg.classes else "sewerml"
    if (labels is None) == (videos is None):
        raise DataError("give --labels FILE or --videos DIR")
    target = read_labels(labels, cfg.classes, video_dir) if labels else _unlabelled(videos, classes)
    with checkpoint_trust(trust_checkpoint):
        if frames not in (None, "all", "sampled"):
            raise DataError(f"--frames {frames}: give all or sampled")
        scores = predict_checkpoint(weights, target, batch, device, aggregate, workers, eval_frames=frames)
    typer.echo(f"wrote {write_results(out, target.names, scores)} ({len(target)} videos)")


@app.command("ensemble")
@one_line_errors
def ensemble(results: Annotated[list[Path], typer.Argument(help="Results JSONs of folds or models.")],
             out: Annotated[Path, typer.Option("--out")],
             weights: Annotated[Optional[str], typer.Option(help="Comma-separated weights (default: equal).")] = None,
             fit_gt: Annotated[Optional[Path], typer.Option(help="Fit weights on these labels (OOF results).")] = None,
             classes: ClassesOpt = "videopipe", step: float = 0.1,
             fixed: Annotated[Optional[str], typer.Option(
                 help="Fix some weights, the rest shared (equally, or fitted with --fit-gt): 'N=W' with N the "
                      "1-based position of a results file, e.g. '6=0.1' for Video Swin-B as in the VideoPipe "
                      "report (train/videopipe-ensemble.yaml).")] = None,
             recipe: Annotated[Optional[Path], typer.Option(
                 "--recipe", help="Ensemble recipe (train/videopipe-ensemble.yaml): its members' weights, each "
                                  "results file matched to its member by model name (fold runs next to it, or "
                                  "its folder or file name); null weights share the rest, or are fitted with "
                                  "--fit-gt.")] = None) -> None:
    """Average folds, or blend models with given, recipe or fitted (best OOF mAP) weights."""
    from edgesewer.data.video import align_results, class_set, read_labels, read_results, write_results
    from edgesewer.errors import DataError
    from edgesewer.train.video_folds import fit_ensemble_weights, weighted_ensemble, with_fixed_weights

    members: list[str] | None = None
    pinned: dict[int, float] = {}
    if recipe is not None:
        from edgesewer.train.ensemble_recipe import load_ensemble_recipe, match_members

        if weights or fixed:
            raise DataError(f"--recipe {recipe} sets the weights: drop --{'weights' if weights else 'fixed'}")
        spec = load_ensemble_recipe(recipe)
        matched = match_members(spec, results)  # the files in member order
        members, results = [m for m, _ in matched], [p for _, p in matched]
        pinned = {i: spec.fixed[m] for i, m in enumerate(members) if m in spec.fixed}
    loaded = [read_results(p, len(class_set(classes))) for p in results]
    w = [float(x) for x in weights.split(",")] if weights else None
    for item in (fixed or "").replace(" ", "").split(","):
        if not item:
            continue
        pos, _, value = item.partition("=")
        try:
            pinned[int(pos) - 1] = float(value)
        except ValueError:
            raise DataError(f"--fixed {item}: expected N=W, e.g. 6=0.1") from None
    if pinned and w is not None:
        raise DataError("--fixed and --weights both set weights: give one")
    if pinned and fit_gt is None:
        w = list(with_fixed_weights(len(loaded), pinned))
    if fit_gt is not None:
        gt = read_labels(fit_gt, classes)
        w, value = fit_ensemble_weights([align_results(gt, r, p) for r, p in zip(loaded, results)], gt.targets, step,
                                        fixed=pinned)
        typer.echo(f"fitted weights {', '.join(f'{x:.2f}' for x in w)}: mAP {100 * value:.3f} on {fit_gt}")
    blended = weighted_ensemble(loaded, w, [str(p) for p in results])
    if members is not None:
        w = w if w is not None else [1 / len(members)] * len(members)
        typer.echo("weights " + ", ".join(f"{m} {x:.3f}" for m, x in zip(members, w)))
    elif w is not None:
        typer.echo(f"weights {', '.join(f'{x:.3f}' for x in w)}")
    typer.echo(f"wrote {write_results(out, list(blended), [blended[n] for n in blended])}")
    if members is not None:
        rule = f" --normal-threshold {spec.normal_threshold:g}" if spec.normal_threshold is not None else ""
        target = ", ".join(f"{k} {v}" for k, v in spec.targets.items())
        typer.echo(f"next: edgesewer video eval --results {out} --gt GT.json{rule}"
                   + (f"   # {Path(spec.source).name} targets {target}" if target else ""))


@app.command("eval")
@one_line_errors
def evaluate(results: Annotated[Path, typer.Option("--results")], gt: Annotated[Path, typer.Option("--gt")],
             classes: ClassesOpt = "videopipe",
             normal_threshold: Annotated[float, typer.Option(help="p(normal) > t -> normal only.")] = 0.9,
             json_out: Annotated[Optional[Path], typer.Option("--json")] = None) -> None:
    """VideoPipe mAP (official AP: seed-0 shuffle, full ranking, all 17 classes) of a results file."""
    from edgesewer.data.video import align_results, read_labels, read_results
    from edgesewer.metrics.videopipe import evaluate_videos, format_video_report

    labels = read_labels(gt, classes)
    scores = align_results(labels, read_results(results, len(labels.classes)), results)
    result = evaluate_videos(scores, labels.targets, labels.classes, normal_threshold)
    typer.echo(format_video_report(result))
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


@app.command("clip")
@one_line_errors
def clip(clip_model: Annotated[Path, typer.Option("--clip-model", help="Exported video model (.onnx/.engine + sidecar).")],
         source: Annotated[str, typer.Option("--source", help="Video file.")],
         span: Annotated[Optional[str], typer.Option(
             help="Seconds the model's frames (9, or a frame stack's T) spread over (default: sidecar, else 4); "
                  "'whole' or 0: the whole file, as trained.")
         ] = None,
         stride: Annotated[Optional[float], typer.Option(help="Seconds between windows (default: span / 2).")] = None,
         backend: Optional[str] = None,
         json_out: Annotated[Optional[Path], typer.Option("--json", help="Write windows and segments here.")] = None) -> None:
    """Clip mode on a video file (torch-free): sliding-window predictions and clip-level defect segments."""
    from edgesewer.runtime.clip import classify_video, parse_span

    predictions, segments = classify_video(clip_model, source, span_s=parse_span(span), stride_s=stride,
                                           backend=backend)
    for s in segments:
        typer.echo(f"{s.code:<3} {s.start_time:7.1f}-{s.end_time:7.1f} s  frames {s.start_frame}-{s.end_frame}  "
                   f"peak {s.peak_score:.2f}  {s.description}")
    typer.echo(f"{len(predictions)} windows, {len(segments)} clip segments")
    if json_out is not None:
        data = {"windows": [p.to_event() for p in predictions], "clip_segments": [s.to_dict() for s in segments]}
        json_out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
