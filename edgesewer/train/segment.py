"""The crack-segmentation task (SCNet) on top of the shared Trainer.

`train_segmenter(recipe, data_root)` builds what `train/scnet.yaml` names: SCNet, a crack dataset
in any supported layout (augmented random crops for training, whole images at their own
resolution, batch 1, for validation), the focal + side + Soft-IoU loss and the paper's SGD; validates with ODS/OIS/IoU
(monitor ODS) on the `val` split, scored with the one crack protocol (tiles at native resolution, as
`edgesewer eval`, the export report and the runtime score) and stores the ODS threshold in best.pt's ModelCfg (`thresholds = (t_ODS,)`), which
export and the runtime then use to binarise the crack map.

Recipe fields the shared schema does not have yet are read with the paper's defaults
(`loss.focal_alpha` 1, `loss.focal_gamma` 2, `loss.side_weights`, `loss.iou_weight` 1,
`augment.vflip` 0.5, `data.edge` "canny", `data.layout` auto, `data.repeats` 1).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from edgesewer.data.crack import CrackFolder
from edgesewer.data.crack_torch import CrackEvalDataset, CrackTrainDataset
from edgesewer.errors import DataError
from edgesewer.metrics.crack import CrackMetrics
from edgesewer.modelcfg import ModelCfg
from edgesewer.models._registry import create_model, get_entry
from edgesewer.runtime.tiling import tiled_predict
from edgesewer.train.checkpoint import load_checkpoint, save_checkpoint
from edgesewer.train.classify import RunResult, optimizer_factory, scaled_lr, scheduler_factory
from edgesewer.train.distributed import barrier, gather_objects, init_distributed
from edgesewer.train.engine import Trainer
from edgesewer.train.losses_seg import SIDE_WEIGHTS, SCNetLoss
from edgesewer.train.recipe import Recipe, save_recipe
from edgesewer.train.runs import resolve_run_dir, train_config, write_json

METRIC_KEYS = ("ODS", "OIS", "AUPRC", "IoU", "ODS_threshold", "precision", "recall", "region_F1")


def build_segmenter(recipe: Recipe) -> tuple[nn.Module, ModelCfg, dict[str, Any]]:
    """(model, its ModelCfg with the training crop size and edge detector, architecture kwargs)."""
    entry = get_entry(recipe.model.name)
    if entry.cfg.task != "segment":
        raise DataError(f"{recipe.source}: {recipe.model.name} is a {entry.cfg.task} model, not a segmenter")
    arch_kw = dict(recipe.model.kwargs)
    model = create_model(recipe.model.name, pretrained=recipe.model.pretrained, **arch_kw)
    edge = getattr(recipe.data, "edge", None) or entry.cfg.extra.get("edge", "canny")
    cfg = dataclasses.replace(model.cfg, input_size=recipe.model.img_size or entry.cfg.input_size,
                              extra={**model.cfg.extra, "edge": edge})
    model.cfg = cfg
    return model, cfg, arch_kw


def crack_jitter(augment) -> tuple[float, float, float]:
    """(brightness, contrast, saturation) for crack crops: `color_jitter`'s first three, if `jitter_cracks` is on.

    Opt-in because `color_jitter` has a non-zero default for the classifiers, which the paper's crack recipe
    does not use; hue is left out (a crack's cue is darkness and shape, not colour)."""
    if not getattr(augment, "jitter_cracks", False):
        return (0.0, 0.0, 0.0)
    strengths = list(getattr(augment, "color_jitter", [0.0, 0.0, 0.0]))[:3]
    return tuple(float(s) for s in strengths + [0.0] * (3 - len(strengths)))


def build_crack_datasets(recipe: Recipe, root: str | Path, cfg: ModelCfg) -> tuple[CrackTrainDataset, CrackEvalDataset]:
    layout = getattr(recipe.data, "layout", None)
    train = CrackFolder(root, recipe.data.train_split, layout)
    val = CrackFolder(root, recipe.data.val_split, layout)
    edge = cfg.extra.get("edge", "canny")
    train_set = CrackTrainDataset(train, crop=cfg.input_size, edge=edge, max_rotation=recipe.augment.rotation,
                                  hflip=recipe.augment.hflip, vflip=float(getattr(recipe.augment, "vflip", 0.5)),
                                  repeats=int(getattr(recipe.data, "repeats", 1)),
                                  right_angles=bool(getattr(recipe.augment, "right_angles", False)),
                                  jitter=crack_jitter(recipe.augment))
    # Validate on whole images at their own resolution, tiled by CrackEvaluator: the metric that counts.
    return train_set, CrackEvalDataset(val, mode="full", edge=edge)


def build_seg_loss(recipe: Recipe) -> SCNetLoss:
    loss = recipe.loss
    if loss.name != "scnet_focal_iou":
        raise DataError(f"{recipe.source}: loss.name must be scnet_focal_iou for a segmenter, not {loss.name!r}")
    return SCNetLoss(side_weights=getattr(loss, "side_weights", SIDE_WEIGHTS),
                     alpha=getattr(loss, "focal_alpha", 1.0), gamma=getattr(loss, "focal_gamma", 2.0),
                     iou_weight=getattr(loss, "iou_weight", 1.0), focal_reduction=loss.focal_reduction)


def sgd_factory(lr: float = 1e-4, momentum: float = 0.9, weight_decay: float = 2e-4) -> Callable:
    """The paper's optimiser (defaults) as an optimizer_factory(model) for the Trainer."""
    def make(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    return make


def crack_probabilities(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """[B,1,H,W] crack probability from a model in eval mode (prob) or train mode (dict of logits)."""
    out = model(inputs)
    if isinstance(out, dict):
        out = torch.sigmoid(out["fused"])
    return out.float()


class CrackEvaluator:
    """evaluate_fn for the Trainer: ODS, OIS, AUPRC, IoU, region F1 over the validation loader.

    With `tile`, each image (batch 1, native size) is scored through the runtime's tiling
    (`tiled_predict` with its `tile_overlap`), as every crack report scores; without, whole batches
    go through the model at once. Targets of -1 (padding added to reach a multiple of 32) at the
    bottom/right are cropped away. Under torchrun every rank scores its shard and the counts are merged.
    """

    def __init__(self, tile: int | None = None) -> None:
        self.tile = tile

    def __call__(self, model: nn.Module, loader, device: torch.device) -> dict[str, float]:
        model.eval()
        metrics = CrackMetrics()
        predict = torch_predict(model, device)
        with torch.no_grad():
            for inputs, targets in loader:
                if self.tile is None:
                    probs = crack_probabilities(model, inputs.to(device)).cpu().numpy()
                else:
                    probs = np.stack([tiled_predict(x, predict, tile=self.tile) for x in inputs.numpy()])
                for prob, target in zip(probs[:, 0], targets[:, 0].numpy()):
                    valid = target >= 0
                    height, width = int(valid.any(axis=1).sum()), int(valid.any(axis=0).sum())
                    metrics.update(prob[:height, :width], target[:height, :width] > 0.5)
        merged = merge_metrics(gather_objects((metrics.pixel, metrics.region, metrics.image_best_f)))
        result = merged.compute()
        return {key: float(result[key]) for key in METRIC_KEYS}


def merge_metrics(states: list[tuple[np.ndarray, np.ndarray, list[float]]]) -> CrackMetrics:
    merged = CrackMetrics()
    for pixel, region, best_f in states:
        merged.pixel += pixel
        merged.region += region
        merged.image_best_f.extend(best_f)
    return merged


def torch_predict(model: nn.Module, device: str | torch.device = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a segmenter as predict(batch float32 NCHW) -> prob NCHW numpy, for tiled inference and eval."""
    device = torch.device(device)
    model = model.to(device).eval()

    @torch.no_grad()
    def predict(batch: np.ndarray) -> np.ndarray:
        return crack_probabilities(model, torch.from_numpy(batch).to(device)).cpu().numpy()

    return predict


def store_ods_threshold(run_dir: Path, metrics: dict[str, Any]) -> float | None:
    """Write the validation ODS threshold into best.pt's ModelCfg.thresholds (rank 0)."""
    best_path = run_dir / "best.pt"
    if not best_path.is_file() or "ODS_threshold" not in metrics:
        return None
    threshold = float(metrics["ODS_threshold"])
    ckpt = load_checkpoint(best_path)
    cfg = ModelCfg.from_dict(ckpt["model_cfg"])
    cfg.thresholds = (threshold,)
    cfg.extra = {**cfg.extra, "threshold_tuning": {"objective": "ODS (pooled pixel F1)", "split": "val"}}
    ckpt["model_cfg"] = cfg.to_dict()
    save_checkpoint(best_path, ckpt)
    return threshold


def train_segmenter(recipe: Recipe, data_root: str | Path, out: str | Path | None = None,
                    resume: str | Path | None = None, callbacks: dict[str, list[Callable]] | None = None) -> RunResult:
    """Train the recipe's crack segmenter on a crack folder; returns the run folder and best metrics."""
    info = init_distributed(recipe.train.device)
    model, model_cfg, arch_kw = build_segmenter(recipe)
    train_set, val_set = build_crack_datasets(recipe, data_root, model_cfg)
    model_cfg.extra = {**model_cfg.extra, "train_images": len(train_set.folder), "data_layout": train_set.folder.layout}
    run_dir = resolve_run_dir(recipe.model.name, out, resume)
    lr = scaled_lr(recipe.optim, recipe.train.batch_size * recipe.train.accum_steps * info.world_size)
    cfg = train_config(recipe.train, run_dir, recipe.data.num_workers, eval_batch_size=1)  # images differ in size
    trainer = Trainer(model, train_set, val_set, loss_fn=build_seg_loss(recipe),
                      optimizer_factory=optimizer_factory(recipe.optim, lr),
                      scheduler_factory=scheduler_factory(recipe.optim, lr), evaluate_fn=CrackEvaluator(model_cfg.input_size), cfg=cfg,
                      model_cfg=model_cfg, resume=Path(resume) if resume else None, callbacks=callbacks,
                      checkpoint_extra={"recipe": recipe.to_dict(), "model_kwargs": arch_kw})
    if info.is_main:
        save_recipe(recipe, run_dir / "recipe.yaml")
    best = trainer.fit()
    barrier()
    threshold = store_ods_threshold(run_dir, best) if info.is_main and recipe.train.tune_thresholds else None
    if info.is_main:
        write_json(run_dir / "best_metrics.json", {**best, "thresholds": [threshold] if threshold is not None else None,
                                                  "stop": trainer.stop_reason})
    return RunResult(run_dir, best, (threshold,) if threshold is not None else None)
