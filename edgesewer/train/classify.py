"""The Sewer-ML multi-label classification task on top of the Trainer.

`train_classifier(recipe, data_root)` builds everything a recipe names (model, splits with
subset/fraction, augmentation, CIW-BCE or ASL loss, optimiser, schedule), trains, then tunes one
threshold per class on the validation set (maximising that class's F2) and stores them in
best.pt's ModelCfg next to the 0.5 default. Modes: `finetune` (all weights) and `linear_probe`
(frozen backbone, head only). Hybrid (DINO + supervised) is a pretraining stage, as in the DINO-SSL
paper: `edgesewer pretrain vit-t-dino --mode hybrid`, then fine-tuning from its backbone.pt.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from edgesewer.data.sewerml import SewerMLSplit, every_kth, fraction, load_split, load_split_or_subset
from edgesewer.data.torch_dataset import SewerMLDataset
from edgesewer.errors import DataError, ModelNotFound
from edgesewer.metrics.sewerml import average_precision, evaluate_sewerml
from edgesewer.modelcfg import IMAGENET_MEAN, IMAGENET_STD, SEWERML_MEAN, SEWERML_STD, ModelCfg
from edgesewer.taxonomy import SEWER_CODES, ciw_vector
from edgesewer.train import schedules
from edgesewer.train.checkpoint import load_checkpoint, save_checkpoint, seed_everything
from edgesewer.train.distributed import barrier, gather_rows, init_distributed
from edgesewer.train.engine import Trainer
from edgesewer.train.recipe import LossSection, OptimSection, Recipe, save_recipe
from edgesewer.train.runs import resolve_run_dir, train_config, write_json
from edgesewer.train.transforms import build_augment

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


# ------------------------------------------------------------------------------------------ model

def check_model_name(name: str):
    """The registry entry of `name`; ModelNotFound (with a suggestion) for an unknown name."""
    from edgesewer.models import get_entry  # importing the package registers every family

    return get_entry(name)


def model_kwargs_from_recipe(recipe: Recipe) -> dict[str, Any]:
    """Factory arguments that rebuild the same architecture later (eval, export): no weight sources."""
    kw: dict[str, Any] = {"num_classes": len(SEWER_CODES), **recipe.model.kwargs}
    if recipe.model.img_size:
        kw["img_size"] = recipe.model.img_size
    if recipe.model.drop_path_rate:
        kw["drop_path_rate"] = recipe.model.drop_path_rate
    return kw


def enable_grad_checkpointing(model: nn.Module, recipe: Recipe) -> None:
    """`model.grad_checkpointing: true`: switch on the model's activation checkpointing, or say it has none."""
    if not recipe.model.grad_checkpointing:
        return
    switch = getattr(model, "set_grad_checkpointing", None)
    if switch is None:
        raise DataError(f"{recipe.source}: model.grad_checkpointing: {recipe.model.name} has no gradient "
                        "checkpointing (timm models and video-swin3d-b do); set it to false")
    switch(True)


def build_model(recipe: Recipe) -> tuple[nn.Module, ModelCfg, dict[str, Any]]:
    """(model, its ModelCfg with the recipe's normalisation, architecture kwargs)."""
    from edgesewer.models import create_model

    check_model_name(recipe.model.name)  # unknown names fail here, with a suggestion
    if recipe.model.name.endswith("-dino") and not (recipe.model.backbone_ckpt or recipe.model.pretrained):
        raise DataError(f"{recipe.model.name} fine-tunes a DINO backbone: pass --backbone runs/{recipe.model.name}/"
                        f"pretrain-<time>/backbone.pt (from `edgesewer pretrain {recipe.model.name}`)")
    arch_kw = model_kwargs_from_recipe(recipe)
    weights_kw: dict[str, Any] = {"pretrained": recipe.model.pretrained}
    if recipe.model.backbone_ckpt:
        weights_kw["backbone_ckpt"] = recipe.model.backbone_ckpt
    model = create_model(recipe.model.name, **arch_kw, **weights_kw)
    enable_grad_checkpointing(model, recipe)
    cfg: ModelCfg = model.cfg
    norm = recipe.data.normalization
    stats = {"sewerml": (SEWERML_MEAN, SEWERML_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}
    if norm != "model":
        if norm not in stats:
            raise DataError(f"{recipe.source}: data.normalization must be model, sewerml or imagenet, not {norm!r}")
        cfg = dataclasses.replace(cfg, mean=stats[norm][0], std=stats[norm][1])
    return model, cfg, arch_kw


def freeze_backbone(model: nn.Module) -> int:
    """Linear probe: train only the classifier head; returns the number of trainable parameters."""
    if not hasattr(model, "get_classifier"):
        raise ModelNotFound(f"{type(model).__name__} has no separable classifier head; linear_probe needs a ViT")
    head = model.get_classifier()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    return sum(p.numel() for p in head.parameters())


@torch.no_grad()
def calibrate_frozen_bn(model: nn.Module, images: torch.Tensor) -> int:
    """Set every FrozenBatchNorm2d's statistics to those of its input on `images`, in forward order.

    A forward pre-hook normalises each layer's input before the next layer sees it, so one pass
    calibrates the whole network (data-dependent init in the spirit of LSUV). Returns the number of
    layers set. Only meant for randomly initialised backbones; pretrained statistics are kept.
    """
    from torchvision.ops.misc import FrozenBatchNorm2d

    def set_stats(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].float()
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False))

    hooks = [m.register_forward_pre_hook(set_stats) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    was_training = model.training
    try:
        model.eval()
        model(images)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return len(hooks)


# ------------------------------------------------------------------------------------------ data

def load_splits(recipe: Recipe, root: str | Path) -> tuple[SewerMLSplit, SewerMLSplit]:
    """(train, val) as the recipe's data section says: subset CSVs, every_kth, then the training fraction."""
    d = recipe.data
    if d.subset_fallback_kth < 1:
        raise DataError(f"{recipe.source}: data.subset_fallback_kth must be >= 1, got {d.subset_fallback_kth}")
    note = print if os.environ.get("RANK", "0") == "0" else None
    splits = []
    for name, csv_name in ((d.train_split, d.train_csv), (d.val_split, d.val_csv)):
        split, how = load_split_or_subset(root, name, csv_name, d.image_dir, d.subset_fallback_kth, note)
        if split.labels is None:
            raise DataError(f"{split.csv_path}: has no label columns; training needs the 17 Sewer-ML codes")
        if how == "full" and d.every_kth > 1:  # a subset (file or fallback) is not thinned again
            split = every_kth(split, d.every_kth)
        splits.append(split)
    train, val = splits
    if d.fraction < 1.0:
        if not 0.0 < d.fraction <= 1.0:
            raise DataError(f"{recipe.source}: data.fraction must be in (0, 1], got {d.fraction}")
        train = fraction(train, d.fraction, seed=recipe.train.seed)
    return train, val


def build_datasets(recipe: Recipe, train: SewerMLSplit, val: SewerMLSplit, cfg: ModelCfg):
    augment = build_augment(recipe.augment, cfg.input_size, cfg.interpolation)
    common = dict(size=cfg.input_size, mean=cfg.mean, std=cfg.std, on_bad_image=recipe.data.on_bad_image,
                  interpolation=cfg.interpolation)
    return SewerMLDataset(train, augment=augment, **common), SewerMLDataset(val, **common)


# ------------------------------------------------------------------------------------------ loss / optim

def build_loss(cfg: LossSection, classes: tuple[str, ...] = SEWER_CODES) -> nn.Module:
    from edgesewer.models.losses import AsymmetricLoss, bottleneck_weights, ciw_bce_loss

    if cfg.name == "ciw_bce":
        return ciw_bce_loss(classes)
    if cfg.name == "bce":
        return nn.BCEWithLogitsLoss()
    if cfg.name == "asl":
        weights = bottleneck_weights(classes, cfg.bottleneck_alpha) if cfg.bottleneck_alpha != 1.0 else None
        return AsymmetricLoss(gamma_neg=cfg.gamma_neg, gamma_pos=cfg.gamma_pos, clip=cfg.clip, eps=cfg.eps,
                              class_weights=weights)
    raise DataError(f"loss.name must be ciw_bce, bce or asl, not {cfg.name!r}")


def param_groups(model: nn.Module, weight_decay: float, decay_1d: bool) -> list[dict[str, Any]]:
    """Decay matrices only (Q2L's Adam_twd, timm's default) unless decay_1d; frozen params are left out."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if decay_1d or (p.ndim > 1 and not name.endswith(".bias")) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def scaled_lr(optim: OptimSection, global_batch: int) -> float:
    return optim.lr * global_batch / 256 if optim.scale_lr else optim.lr


def optimizer_factory(optim: OptimSection, lr: float) -> Callable[[nn.Module], torch.optim.Optimizer]:
    def make(model: nn.Module) -> torch.optim.Optimizer:
        groups = param_groups(model, optim.weight_decay, optim.decay_1d)
        if optim.name == "adamw":
            return torch.optim.AdamW(groups, lr=lr, betas=tuple(optim.betas))
        if optim.name == "adam":  # L2 weight decay, as Q2L's Adam_twd
            return torch.optim.Adam(groups, lr=lr, betas=tuple(optim.betas))
        if optim.name == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=optim.momentum)
        raise DataError(f"optim.name must be adamw, adam or sgd, not {optim.name!r}")
    return make


def scheduler_factory(optim: OptimSection, lr: float) -> schedules.SchedulerFactory:
    if optim.schedule == "onecycle":
        return schedules.onecycle(max_lr=lr, pct_start=optim.pct_start)
    if optim.schedule == "multistep":
        return schedules.multistep(optim.milestones, optim.gamma)
    if optim.schedule == "cosine":
        return schedules.cosine(optim.warmup_epochs, optim.warmup_lr, optim.min_lr)
    if optim.schedule == "constant":
        return schedules.constant()
    raise DataError(f"optim.schedule must be multistep, onecycle, cosine or constant, not {optim.schedule!r}")


# ------------------------------------------------------------------------------------------ evaluation

@torch.no_grad()
def predict(model: nn.Module, loader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid scores and targets for the loader's rows, gathered from every rank in dataset order."""
    model.eval()
    scores, targets = [], []
    for inputs, labels in loader:
        out = model(inputs.to(device, non_blocking=True))
        if isinstance(out, (tuple, list)):
            out = out[0]
        scores.append(torch.sigmoid(out.float()))
        targets.append(labels.to(device).float())
    k = len(SEWER_CODES)
    s = torch.cat(scores) if scores else torch.zeros((0, k), device=device)
    t = torch.cat(targets) if targets else torch.zeros((0, k), device=device)
    return gather_rows(s).cpu().numpy().astype(np.float64), gather_rows(t).cpu().numpy()


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The headline Sewer-ML numbers plus per-class AP/F2 as flat floats (for results.jsonl)."""
    out = {k: float(result[k]) for k in ("F2_CIW", "F1_Normal", "mAP", "CF1", "OF1", "EMAcc", "n_images")}
    for code, m in result["per_class"].items():
        out[f"AP_{code}"] = float(m["AP"])
        out[f"F2_{code}"] = float(m["F2"])
    return out


class SewerMLEvaluator:
    """`evaluate_fn` for the Trainer: Sewer-ML metrics at 0.5 on the (gathered) validation set."""

    def __call__(self, model: nn.Module, loader, device: torch.device) -> dict[str, float]:
        scores, targets = predict(model, loader, device)
        return flat_metrics(evaluate_sewerml(scores, targets))


def f2_per_class(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """Per-class F2 with the benchmark's conventions (s >= t, Np == 0 -> 1, NaN -> 0)."""
    truth = targets == 1
    pred = scores >= np.asarray(thresholds)
    nc = (truth & pred).sum(0).astype(np.float64)
    p = nc / np.maximum(pred.sum(0), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = nc / truth.sum(0)
        f2 = 5 * p * r / (4 * p + r)
    return np.nan_to_num(f2, nan=0.0)


def tune_thresholds(scores: np.ndarray, targets: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """Per class, the grid threshold with the highest F2 (ties: the one nearest 0.5; no positives: 0.5).

    A class at chance level keeps 0.5: its AP is below twice its prevalence p (p is what a constant score
    gets; noise alone reaches 1.5p on a few dozen positives) or, for common classes, below (1 + p) / 2,
    halfway to a perfect ranking; or its best F2 is no better than flagging every image (5p / (4p + 1)).
    Tuning such scores picks the grid's bottom, which turns every frame into a detection: a chance-level
    model would fill the live report with whole-video segments.
    """
    table = np.stack([f2_per_class(scores, targets, t) for t in grid])  # [G, K]
    best = np.full(scores.shape[1], 0.5)
    truth = targets == 1
    prevalence = truth.mean(0)
    learned = average_precision(scores, truth.astype(np.float32)) > np.minimum(2 * prevalence, (1 + prevalence) / 2)
    flag_all_f2 = 5 * prevalence / (4 * prevalence + 1)
    distance = np.abs(grid - 0.5)
    for k in np.flatnonzero(truth.any(0) & learned):
        if table[:, k].max() <= flag_all_f2[k] + 1e-9:
            continue
        ties = np.flatnonzero(table[:, k] >= table[:, k].max() - 1e-12)
        best[k] = grid[ties[np.argmin(distance[ties])]]
    return best


def validation_record(scores: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """mAP on the validation split beside what a constant predictor scores (AP = prevalence).

    Stored in the checkpoint's model cfg and from there in every exported sidecar, so that the runtime
    can say when a classifier has not learned (`Artifact.learning_warning`).
    """
    truth = targets == 1
    has_pos = truth.any(0)
    ap = average_precision(scores, targets.astype(np.float32))
    return {"split": "val", "images": int(len(targets)),
            "mAP": round(float(ap[has_pos].mean()), 4) if has_pos.any() else None,
            "chance_mAP": round(float(truth.mean(0)[has_pos].mean()), 4) if has_pos.any() else None}


def ciw_f2(f2: np.ndarray) -> float:
    w = ciw_vector()
    return float((f2 * w).sum() / w.sum())


# ------------------------------------------------------------------------------------------ training

@dataclass
class RunResult:
    run_dir: Path
    best_metrics: dict[str, Any]
    thresholds: tuple[float, ...] | None


def dynamic_weights_callback(loss: nn.Module, top_m: int) -> Callable:
    """MA-Q2L's optional dynamic ASL weights from the epoch's per-class validation AP."""
    asl = loss

    def on_epoch_end(trainer: Trainer, record: dict[str, Any]) -> None:
        ap = [record[f"val/AP_{c}"] for c in SEWER_CODES]
        asl.set_dynamic_weights(ap, top_m=top_m)  # type: ignore[operator]
    return on_epoch_end


def store_thresholds(trainer: Trainer, run_dir: Path) -> tuple[float, ...] | None:
    """Tune per-class thresholds with best.pt's weights on val; write them into best.pt (rank 0)."""
    best_path = run_dir / "best.pt"
    # Every rank reads it (fit() ended with a barrier): predict() below is collective.
    ckpt = load_checkpoint(best_path) if best_path.is_file() else None
    if ckpt is None:
        return None
    model = trainer.model
    model.load_state_dict(ckpt["model"])
    scores, targets = predict(model, trainer.val_loader, trainer.device)
    thresholds = tune_thresholds(scores, targets)
    if trainer.dist.is_main:
        cfg = ModelCfg.from_dict(ckpt["model_cfg"])
        f2_default, f2_tuned = f2_per_class(scores, targets, 0.5), f2_per_class(scores, targets, thresholds)
        cfg.extra = {**cfg.extra, "threshold_default": 0.5, "threshold_tuning": {
            "objective": "F2 per class", "split": "val", "grid": [float(THRESHOLD_GRID[0]), float(THRESHOLD_GRID[-1])],
            "F2_CIW_at_0.5": ciw_f2(f2_default), "F2_CIW_tuned": ciw_f2(f2_tuned)},
            "validation": validation_record(scores, targets)}
        cfg.thresholds = tuple(float(t) for t in thresholds)
        ckpt["model_cfg"] = cfg.to_dict()
        ckpt["metrics"]["F2_CIW_tuned"] = ciw_f2(f2_tuned)
        save_checkpoint(best_path, ckpt)
    barrier()
    return tuple(float(t) for t in thresholds)


def train_classifier(recipe: Recipe, data_root: str | Path, out: str | Path | None = None,
                     resume: str | Path | None = None, callbacks: dict[str, list[Callable]] | None = None) -> RunResult:
    """Train the recipe's classifier on a Sewer-ML folder; returns the run folder and best metrics."""
    if recipe.train.mode == "hybrid":
        name = recipe.model.name if recipe.model.name.endswith("-dino") else f"{recipe.model.name}-dino"
        raise DataError(f"{recipe.source}: hybrid (DINO + supervised) is a pretraining stage now: "
                        f"`edgesewer pretrain {name} --mode hybrid --data DIR`, then "
                        f"`edgesewer train {name} --backbone runs/{name}/pretrain-hybrid-<time>/backbone.pt`")
    info = init_distributed(recipe.train.device)
    train_split, val_split = load_splits(recipe, data_root)
    seed_everything(recipe.train.seed)  # the same initial weights on every rank and every rerun
    if recipe.train.mode in ("finetune", "linear_probe"):
        model, model_cfg, arch_kw = build_model(recipe)
        if recipe.train.mode == "linear_probe":
            freeze_backbone(model)
        train_set, val_set = build_datasets(recipe, train_split, val_split, model_cfg)
        if not recipe.model.pretrained and recipe.model.frozen_bn_init == "data" and resume is None:
            plain = SewerMLDataset(train_split.subset(range(min(len(train_split), 32))), model_cfg.input_size,
                                   model_cfg.mean, model_cfg.std, interpolation=model_cfg.interpolation)
            batch = torch.stack([plain[i][0] for i in range(len(plain))])  # training images, un-augmented
            if calibrate_frozen_bn(model, batch):
                model_cfg.extra = {**model_cfg.extra, "frozen_bn_init": "data"}
        loss_module: nn.Module = build_loss(recipe.loss, model_cfg.classes)
    else:
        raise DataError(f"{recipe.source}: train.mode must be finetune or linear_probe, not {recipe.train.mode!r}")

    run_dir = resolve_run_dir(recipe.model.name, out, resume)
    global_batch = recipe.train.batch_size * recipe.train.accum_steps * info.world_size
    lr = scaled_lr(recipe.optim, global_batch)
    cb = {k: list(v) for k, v in (callbacks or {}).items()}
    if recipe.loss.name == "asl" and recipe.loss.dynamic_weights:
        cb.setdefault("on_epoch_end", []).append(dynamic_weights_callback(loss_module, recipe.loss.dynamic_top))
    model_cfg.extra = {**model_cfg.extra, "train_mode": recipe.train.mode, "train_images": len(train_split)}
    cfg = train_config(recipe.train, run_dir, recipe.data.num_workers)
    trainer = Trainer(model, train_set, val_set, loss_fn=loss_module,
                      optimizer_factory=optimizer_factory(recipe.optim, lr), scheduler_factory=scheduler_factory(recipe.optim, lr), evaluate_fn=SewerMLEvaluator(), cfg=cfg,
                      model_cfg=model_cfg, resume=Path(resume) if resume else None, callbacks=cb,
                      checkpoint_extra={"recipe": recipe.to_dict(), "model_kwargs": arch_kw})
    loss_module.to(trainer.device)
    if info.is_main:
        save_recipe(recipe, run_dir / "recipe.yaml")
    best = trainer.fit()
    thresholds = store_thresholds(trainer, run_dir) if recipe.train.tune_thresholds else None
    if info.is_main:
        write_json(run_dir / "best_metrics.json", {**best, "thresholds": thresholds, "stop": trainer.stop_reason})
    return RunResult(run_dir, best, thresholds)


# ------------------------------------------------------------------------------------------ checkpoints

def load_classifier(weights: str | Path, expect_model: str | None = None) -> tuple[nn.Module, ModelCfg]:
    """Rebuild a trained classifier from best.pt/last.pt (architecture from the checkpoint's model_kwargs)."""
    from edgesewer.models import create_model

    ckpt = load_checkpoint(weights, expect_model)
    cfg = ModelCfg.from_dict(ckpt["model_cfg"])
    if cfg.task != "classify":
        raise ModelNotFound(f"{weights}: is a {cfg.task} checkpoint of {cfg.name}, not a trained classifier")
    check_model_name(cfg.name)
    model = create_model(cfg.name, **ckpt.get("model_kwargs", {}))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ModelNotFound(f"{weights}: weights do not fit {cfg.name}: {str(exc).splitlines()[0]}") from None
    model.cfg = cfg
    return model.eval(), cfg


def evaluate_checkpoint(weights: str | Path, data: str | Path, split: str = "Val", batch_size: int = 32,
                        device: str = "auto", num_workers: int = 2, image_dir: str | Path | None = None
                        ) -> tuple[list[str], np.ndarray, np.ndarray, ModelCfg]:
    """Run a checkpoint over a labelled Sewer-ML split: (filenames, scores, targets, model cfg)."""
    from torch.utils.data import DataLoader

    from edgesewer.train.distributed import resolve_device

    model, cfg = load_classifier(weights)
    rows = load_split(data, split, image_dir=image_dir)
    if rows.labels is None:
        raise DataError(f"{rows.csv_path}: has no label columns to evaluate against")
    dev = resolve_device(device)
    dataset = SewerMLDataset(rows, cfg.input_size, cfg.mean, cfg.std, on_bad_image="error",
                             interpolation=cfg.interpolation)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    scores, targets = predict(model.to(dev), loader, dev)
    return rows.filenames, scores, targets, cfg
