"""DINO self-distillation pretraining of a ViT backbone on unlabelled sewer images (DINO-SSL paper).

Runs on the shared Trainer, so DDP, AMP, resume and progress come for free; the DINO specifics
are callbacks: per-step lr and weight-decay schedules (ParamGroupSchedule), the teacher EMA with
a cosine momentum 0.996 -> 0.999, per-parameter gradient clipping and the frozen prototype layer in
epoch 0. Two global views only (no multi-crop). Validation tracks RankMe of the teacher's CLS
embeddings (a collapse shows as a RankMe near 1).

`dino.mode: hybrid` (`edgesewer pretrain vit-t-dino --mode hybrid`) is the paper's hybrid stage:
the same run on labelled Sewer-ML images with a supervised loss added (see `hybrid.py`).

Writes the usual run folder plus `backbone.pt` ({"teacher": ViT state dict, "student": ...}) from
the last epoch, which `create_model("vit-t-dino", backbone_ckpt=...)` loads for fine-tuning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from edgesewer.data.images import read_image
from edgesewer.data.sewerml import SewerMLSplit, every_kth, fraction, load_split
from edgesewer.data.torch_dataset import SewerMLDataset
from edgesewer.errors import DataError
from edgesewer.modelcfg import SEWERML_MEAN, SEWERML_STD, ModelCfg
from edgesewer.taxonomy import SEWER_CODES
from edgesewer.train.checkpoint import save_checkpoint, seed_everything
from edgesewer.train.classify import RunResult, check_model_name
from edgesewer.train.distributed import gather_rows, init_distributed
from edgesewer.train.engine import Trainer
from edgesewer.train.recipe import DinoSection, Recipe, save_recipe
from edgesewer.train.runs import resolve_run_dir, train_config, write_json
from edgesewer.train.schedules import ParamGroupSchedule

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


# ------------------------------------------------------------------------------------------ data

def image_split(root: str | Path, split: str, recipe: Recipe) -> SewerMLSplit:
    """A Sewer-ML split when `root` has SewerML_<split>.csv (labels unused), else every image in the folder."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    if root.is_file() or (root / f"SewerML_{split}.csv").is_file():
        found = load_split(root, split, image_dir=recipe.data.image_dir)
    else:
        folder = root / "images" if (root / "images").is_dir() else root
        names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not names:
            raise DataError(f"{root}: no SewerML_{split}.csv and no images ({', '.join(IMAGE_SUFFIXES)})")
        found = SewerMLSplit(folder, folder, names, None)
    if recipe.data.every_kth > 1:
        found = every_kth(found, recipe.data.every_kth)
    return found


class TwoViewDataset(Dataset):
    """(views, 0) per image, `views = transform(image)`; an unreadable image is replaced by the next one."""

    def __init__(self, split: SewerMLSplit, transform: Callable[[Any], list[torch.Tensor]]):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[list[torch.Tensor], int]:
        n = len(self.split)
        for step in range(min(n, 64)):
            try:
                image = read_image(self.split.image_path((i + step) % n))
            except DataError:
                continue
            return self.transform(image), 0
        raise DataError(f"{self.split.image_dir}: 64 consecutive images are unreadable")


# ------------------------------------------------------------------------------------------ evaluation

class RankMeEvaluator:
    """`evaluate_fn`: RankMe of the teacher (and student) CLS embeddings of the validation images."""

    def __call__(self, model: nn.Module, loader, device: torch.device) -> dict[str, float]:
        from edgesewer.models.dino import rankme

        teacher, student = [], []
        with torch.no_grad():
            for images, _ in loader:
                images = images.to(device, non_blocking=True)
                teacher.append(model.teacher.backbone(images).float())
                student.append(model.student.backbone(images).float())
        t, s = gather_rows(torch.cat(teacher)), gather_rows(torch.cat(student))
        return {"rankme": rankme(t), "rankme_student": rankme(s), "embed_std": float(t.std(0).mean())}


# ------------------------------------------------------------------------------------------ callbacks

def dino_callbacks(model: nn.Module, cfg: DinoSection, momentum: Any) -> dict[str, list[Callable]]:
    from edgesewer.models.dino import cancel_last_layer_grad

    def before_step(trainer: Trainer) -> None:
        if cfg.clip_grad > 0:  # DINO clips each parameter's gradient norm separately
            for p in model.student.parameters():
                if p.grad is not None:
                    nn.utils.clip_grad_norm_([p], cfg.clip_grad)
        cancel_last_layer_grad(model.student, trainer.epoch, cfg.freeze_last_layer)

    def after_step(trainer: Trainer) -> None:
        model.update_teacher(float(momentum[min(trainer.global_step - 1, len(momentum) - 1)]))

    return {"on_before_optimizer_step": [before_step], "on_optimizer_step": [after_step]}


# ------------------------------------------------------------------------------------------ run

def pretrain_dino(recipe: Recipe, data_root: str | Path, out: str | Path | None = None,
                  resume: str | Path | None = None, callbacks: dict[str, list[Callable]] | None = None) -> RunResult:
    """DINO-pretrain `recipe.model.name`'s ViT on the images under `data_root`.

    With `dino.mode: hybrid` the images must be a labelled Sewer-ML folder and the supervised loss of
    a linear classifier on the student's embedding is added to the DINO loss (the paper's hybrid).
    """
    from edgesewer.models.dino import (DINOLoss, TwoGlobalViews, build_dino, lr_schedule, momentum_schedule,
                                       param_groups, weight_decay_schedule)
    from edgesewer.train.hybrid import PRETRAIN_MODES, HybridDINO, HybridLoss, LabelledTwoViews

    entry = check_model_name(recipe.model.name)
    arch = entry.cfg.extra.get("arch", "")
    if not str(arch).startswith("vit_"):
        raise DataError(f"DINO pretraining needs a ViT model (vit-t-dino, vit-s-dino), not {recipe.model.name}")
    d, size = recipe.dino, recipe.model.img_size or entry.cfg.input_size
    if d.mode not in PRETRAIN_MODES:
        raise DataError(f"{recipe.source}: dino.mode must be {' or '.join(PRETRAIN_MODES)}, not {d.mode!r}")
    hybrid = d.mode == "hybrid"
    info = init_distributed(recipe.train.device)
    if hybrid:
        from edgesewer.train.classify import load_splits

        train_split, val_split = load_splits(recipe, data_root)  # labelled; every_kth/fraction/subset CSVs apply
    else:
        train_split = image_split(data_root, recipe.data.train_split, recipe)
        if recipe.data.fraction < 1.0:
            train_split = fraction(train_split, recipe.data.fraction, seed=recipe.train.seed)
        try:
            val_split = image_split(data_root, recipe.data.val_split, recipe)
        except DataError:
            val_split = train_split  # a plain image folder: RankMe on (a slice of) the training images
    val_split = val_split.subset(range(min(len(val_split), d.rankme_images)))
    mean, std = SEWERML_MEAN, SEWERML_STD
    views = TwoGlobalViews(size, scale=tuple(d.crop_scale), mean=mean, std=std, equalize_p=d.equalize,
                           solarize_p=d.solarize)
    train_set = LabelledTwoViews(train_split, views) if hybrid else TwoViewDataset(train_split, views)
    val_set = SewerMLDataset(val_split, size, mean, std, interpolation="bicubic")

    seed_everything(recipe.train.seed)  # the same initial weights on every rank and every rerun
    model = build_dino(recipe.model.name, img_size=size, out_dim=d.out_dim, norm_last_layer=d.norm_last_layer,
                       drop_path_rate=d.drop_path_rate)
    dino_loss = DINOLoss(d.out_dim, recipe.train.epochs, d.warmup_teacher_temp, d.teacher_temp,
                         d.warmup_teacher_temp_epochs, d.student_temp, d.center_momentum)
    loss_fn: Callable
    if hybrid:
        from edgesewer.train.classify import build_loss

        model = HybridDINO(model, len(SEWER_CODES))
        hybrid_loss = HybridLoss(dino_loss, build_loss(recipe.loss, SEWER_CODES), d.supervised_weight)
        loss_fn = hybrid_loss
    else:
        loss_fn = lambda out, _: model.dino_loss(out[0], out[1], trainer.epoch)  # noqa: E731
    # The loss holds the centre (a buffer): as a submodule it is checkpointed and resumed with the model.
    model.add_module("dino_loss", dino_loss)
    global_batch = recipe.train.batch_size * recipe.train.accum_steps * info.world_size
    epochs = recipe.train.epochs

    def schedule(optimizer: torch.optim.Optimizer, steps: int, n_epochs: int) -> ParamGroupSchedule:
        lr = lr_schedule(global_batch, n_epochs, steps, d.lr, d.warmup_epochs, d.warmup_lr, d.min_lr)
        wd = weight_decay_schedule(n_epochs, steps, d.weight_decay, d.weight_decay_end)
        return ParamGroupSchedule(optimizer, {"lr": lr, "weight_decay": wd}, groups={"weight_decay": [0]})

    run_dir = resolve_run_dir(recipe.model.name, out, resume, prefix="pretrain-hybrid-" if hybrid else "pretrain-")
    model_cfg = ModelCfg(name=recipe.model.name, task="dino-pretrain", input_size=size, mean=mean, std=std,
                         classes=SEWER_CODES if hybrid else (), interpolation="bicubic", paper=entry.cfg.paper,
                         extra={"arch": arch, "out_dim": d.out_dim, "train_images": len(train_split),
                                "pretrain_mode": d.mode,
                                **({"supervised_loss": recipe.loss.name, "supervised_weight": d.supervised_weight}
                                   if hybrid else {})})
    cfg = train_config(recipe.train, run_dir, recipe.data.num_workers, ema_decay=None, clip_grad=None)
    cb = {k: list(v) for k, v in (callbacks or {}).items()}
    trainer = Trainer(model, train_set, val_set, loss_fn=loss_fn,
                      optimizer_factory=lambda m: torch.optim.AdamW(param_groups(m)),
                      scheduler_factory=schedule, evaluate_fn=RankMeEvaluator(), cfg=cfg, model_cfg=model_cfg,
                      resume=Path(resume) if resume else None, callbacks=cb,
                      checkpoint_extra={"recipe": recipe.to_dict(), "model_kwargs": {"img_size": size}})
    if hybrid:
        hybrid_loss.to(trainer.device)  # the supervised loss's class weights

        def epoch_start(t: Trainer) -> None:
            hybrid_loss.epoch = t.epoch
        trainer.add_callback("on_epoch_start", epoch_start)
    momentum = momentum_schedule(epochs, trainer.steps_per_epoch, d.momentum_teacher, d.momentum_teacher_final)
    for event, fns in dino_callbacks(model, d, momentum).items():
        for fn in fns:
            trainer.add_callback(event, fn)
    if info.is_main:
        save_recipe(recipe, run_dir / "recipe.yaml")
    best = trainer.fit()
    if info.is_main:
        save_checkpoint(run_dir / "backbone.pt", {
            "teacher": model.backbone_state_dict("teacher"), "student": model.backbone_state_dict("student"),
            "model_cfg": model_cfg.to_dict(), "epoch": trainer.epoch, "mode": d.mode})
        write_json(run_dir / "best_metrics.json", {**best, "mode": d.mode, "stop": trainer.stop_reason})
    return RunResult(run_dir, best, None)
