"""`edgesewer train MODEL --data DIR` and `edgesewer pretrain MODEL --data DIR`.

Both load the model's shipped recipe (or `--recipe FILE`), apply the shortcut options and any
`--set section.key=value` overrides, and run in `runs/<model>/<timestamp>/`. Under
`torchrun --nproc_per_node N` every process runs the same command (DDP).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgesewer.cli._errors import one_line_errors
from edgesewer.cli._trust import TrustCheckpointOpt, checkpoint_trust
from edgesewer.errors import DataError

ModelArg = Annotated[str, typer.Argument(help="Model name, e.g. vit-t, vit-t-dino, q2l-r101, ma-q2l-r101.")]
DataOpt = Annotated[Path, typer.Option("--data", help="Sewer-ML folder: SewerML_Train.csv, SewerML_Val.csv, images/.")]
RecipeOpt = Annotated[Optional[Path], typer.Option("--recipe", help="Recipe YAML (default: the model's shipped one).")]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="Shortcut for --set train.epochs=N.")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch", help="Per-process batch size (train.batch_size).")]
ImgszOpt = Annotated[Optional[int], typer.Option("--imgsz", help="Input size in pixels (model.img_size).")]
SetOpt = Annotated[Optional[list[str]],
                   typer.Option("--set", help="Override a recipe field: section.key=value (repeatable).")]
ResumeOpt = Annotated[Optional[Path], typer.Option("--resume", help="Continue from a run's last.pt.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Run folder (default runs/<model>/<timestamp>).")]
MinutesOpt = Annotated[Optional[float], typer.Option("--max-minutes", help="Stop, evaluate and save after M minutes.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N (train.device).")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", help="DataLoader worker processes (data.num_workers).")]
TrainCsvOpt = Annotated[Optional[Path], typer.Option(
    "--train-csv", help="Training rows from this CSV (e.g. MA-Q2L's SewerML_Train_sub_0.0625.csv; data.train_csv).")]
ValCsvOpt = Annotated[Optional[Path], typer.Option(
    "--val-csv", help="Validation rows from this CSV (e.g. SewerML_Val_sub_0.0625.csv; data.val_csv).")]


def _overrides(sets: list[str] | None, **shortcuts: object) -> list[str]:
    """Shortcut options as --set strings (they win over the recipe; explicit --set wins over them)."""
    keys = {"epochs": "train.epochs", "batch": "train.batch_size", "imgsz": "model.img_size",
            "max_minutes": "train.max_minutes", "device": "train.device", "workers": "data.num_workers",
            "backbone": "model.backbone_ckpt", "fraction": "data.fraction", "mode": "train.mode",
            "pretrain_mode": "dino.mode", "train_csv": "data.train_csv", "val_csv": "data.val_csv"}
    out = [f"{keys[name]}={value}" for name, value in shortcuts.items() if value is not None]
    return out + list(sets or [])


def _check_inputs(model: str, data: Path) -> str:
    """The model's task; one-line errors for an unknown model or a missing data path."""
    from edgesewer.train.classify import check_model_name

    task = check_model_name(model).cfg.task
    if not data.exists():
        raise DataError(f"{data}: no such data folder")
    return task


def _trainer_for(task: str, model: str):
    """The task module's `train_*(recipe, data, out=, resume=)` function."""
    if task == "classify":
        from edgesewer.train.classify import train_classifier
        return train_classifier
    if task == "segment":
        from edgesewer.train.segment import train_segmenter
        return train_segmenter
    if task == "zeroshot":
        from edgesewer.train.zeroshot import train_zeroshot
        return train_zeroshot
    if task == "video":
        raise DataError(f"{model} is a video model: train it with `edgesewer video train --labels LABELS.json`")
    raise DataError(f"{model} is a {task} model, which `edgesewer train` does not train")


def _report(result, model: str, data: Path, stage: str, task: str = "classify") -> None:
    from edgesewer.train.distributed import DistInfo, init_distributed
    from edgesewer.train.progress import best_epoch_line

    info: DistInfo = init_distributed()
    if not info.is_main:
        return
    best = result.best_metrics
    typer.echo(best_epoch_line(best, ("F2_CIW", "F1_Normal", "mAP", "ODS", "OIS", "IoU", "rankme")))
    typer.echo(f"run folder: {result.run_dir}")
    if stage == "train":
        best_pt = result.run_dir / "best.pt"
        if task == "classify":
            typer.echo(f"next: edgesewer eval --weights {best_pt} --data {data}")
        typer.echo(f"{'      ' if task == 'classify' else 'next: '}edgesewer export --model {model} --weights {best_pt}")
    else:
        typer.echo(f"next: edgesewer train {model} --data {data} --backbone {result.run_dir / 'backbone.pt'}")


@one_line_errors
def train_command(
    model: ModelArg, data: DataOpt, recipe: RecipeOpt = None, epochs: EpochsOpt = None, batch: BatchOpt = None,
    imgsz: ImgszOpt = None, set_: SetOpt = None, resume: ResumeOpt = None, out: OutOpt = None,
    max_minutes: MinutesOpt = None, device: DeviceOpt = None, workers: WorkersOpt = None,
    backbone: Annotated[Optional[Path], typer.Option("--backbone", help="DINO backbone.pt to fine-tune from.")] = None,
    fraction: Annotated[Optional[float], typer.Option("--fraction", help="Share of training rows (0-1].")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="finetune or linear_probe (hybrid: `edgesewer "
                                                                 "pretrain MODEL --mode hybrid`).")] = None,
    train_csv: TrainCsvOpt = None, val_csv: ValCsvOpt = None,
    trust_checkpoint: TrustCheckpointOpt = False,
) -> None:
    """Train a model on a Sewer-ML folder (classifiers, sfr-net) or a crack dataset (scnet).

    The recipe is train/<model>.yaml unless --recipe is given.
    """
    from edgesewer.train.distributed import cleanup_distributed
    from edgesewer.train.recipe import load_recipe

    task = _check_inputs(model, data)
    run = _trainer_for(task, model)
    sets = _overrides(set_, epochs=epochs, batch=batch, imgsz=imgsz, max_minutes=max_minutes, device=device,
                      workers=workers, backbone=backbone, fraction=fraction, mode=mode, train_csv=train_csv,
                      val_csv=val_csv)
    resolved = load_recipe(model, recipe, sets, stage="train")
    try:
        with checkpoint_trust(trust_checkpoint):
            result = run(resolved, data, out=out, resume=resume)
        _report(result, model, data, "train", task)
    finally:
        cleanup_distributed()


@one_line_errors
def pretrain_command(
    model: ModelArg,
    data: Annotated[Path, typer.Option("--data", help="Sewer-ML folder or a folder of unlabelled images.")],
    recipe: RecipeOpt = None, epochs: EpochsOpt = None, batch: BatchOpt = None, imgsz: ImgszOpt = None,
    set_: SetOpt = None, resume: ResumeOpt = None, out: OutOpt = None, max_minutes: MinutesOpt = None,
    device: DeviceOpt = None, workers: WorkersOpt = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="dino (unlabelled images) or hybrid (DINO + "
                                                                 "supervised loss on a labelled Sewer-ML folder).")] = None,
    train_csv: TrainCsvOpt = None, val_csv: ValCsvOpt = None,
    trust_checkpoint: TrustCheckpointOpt = False,
) -> None:
    """DINO (or hybrid DINO + supervised) pretraining of a ViT backbone (recipe: train/<model>.pretrain.yaml).

    Both modes track RankMe of the teacher's embeddings and write backbone.pt for `edgesewer train --backbone`.
    """
    from edgesewer.train.dino_pretrain import pretrain_dino
    from edgesewer.train.distributed import cleanup_distributed
    from edgesewer.train.recipe import load_recipe

    _check_inputs(model, data)
    sets = _overrides(set_, epochs=epochs, batch=batch, imgsz=imgsz, max_minutes=max_minutes, device=device,
                      workers=workers, pretrain_mode=mode, train_csv=train_csv, val_csv=val_csv)
    resolved = load_recipe(model, recipe, sets, stage="pretrain")
    try:
        with checkpoint_trust(trust_checkpoint):
            result = pretrain_dino(resolved, data, out=out, resume=resume)
        _report(result, model, data, "pretrain")
    finally:
        cleanup_distributed()
