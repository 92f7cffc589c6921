"""Zero-shot training of SFR-Net on Sewer-ML: seen classes only, ZSL/GZSL evaluation, score calibration.

Protocol (SPEC 5.5): the model is trained on the 12 seen classes; the unseen columns are ignored,
and training rows with an unseen defect are left out (the authors' split holds no such images), so
the model never sees an unseen class. Validation scores three ways from one image pass: the seen
classes (`seen_mAP`, the model-selection metric, which needs no unseen labels), the unseen classes
alone (ZSL) and all classes (GZSL); see `edgesewer.metrics.zeroshot`.

Loss: the synergistic contrastive loss, a softmax over all B x C scores of the batch at T = 0.1
averaged over the positive entries, plus 10 x a hard-negative margin loss (margin 0.2). AdamW
with two learning rates: adapters 5e-6, MEF and GCN heads 1e-3, weight decay 1e-4.

Scores are not probabilities. After training, one offset is tuned on validation (the threshold on
seen-class GZSL scores with the best pooled F1) and stored with the temperature in best.pt's
ModelCfg (`extra.score_offset`, `extra.score_temperature`); the exported model returns
`(score - offset) / temperature` as logits, so the runtime's sigmoid >= 0.5 means score >= offset.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from edgesewer.data.sewerml import SewerMLSplit
from edgesewer.data.torch_dataset import SewerMLDataset
from edgesewer.errors import DataError
from edgesewer.metrics.zeroshot import mean_ap, zeroshot_metrics
from edgesewer.modelcfg import IMAGENET_MEAN, IMAGENET_STD, SEWERML_MEAN, SEWERML_STD, ModelCfg
from edgesewer.taxonomy import SEWER_CODES
from edgesewer.train import schedules
from edgesewer.train.checkpoint import load_checkpoint, save_checkpoint
from edgesewer.train.classify import RunResult, load_splits
from edgesewer.train.distributed import barrier, gather_rows, init_distributed
from edgesewer.train.engine import Trainer
from edgesewer.train.recipe import Recipe, save_recipe
from edgesewer.train.runs import resolve_run_dir, train_config, write_json
from edgesewer.train.transforms import build_augment

# SFR-Net's loss and optimiser settings; a recipe's loss/optim sections override them when the
# schema has the fields (temperature, margin, rank_weight, backbone_lr).
TEMPERATURE, MARGIN, RANK_WEIGHT = 0.1, 0.2, 10.0
ADAPTER_LR, HEAD_LR, WEIGHT_DECAY = 5e-6, 1e-3, 1e-4
MONITOR = "seen_mAP"


# ------------------------------------------------------------------------------------------ loss

class SynergisticContrastiveLoss(nn.Module):
    """L = L_mmc + rank_weight * L_rank on scores [B, C] and 0/1 targets.

    L_mmc: log-softmax over all B*C scores / T, minus its mean over the positive entries (0 when
    the batch has none). L_rank: over rows with a positive, mean over their positives of
    relu(margin + hardest negative of the row - positive score) on the raw scores; a row without
    negatives contributes zeros. `columns` picks the target columns that match the score columns
    (the seen classes), so a loader can keep yielding all 17 labels.
    """

    def __init__(self, temperature: float = TEMPERATURE, margin: float = MARGIN, rank_weight: float = RANK_WEIGHT,
                 columns: Sequence[int] | None = None) -> None:
        super().__init__()
        self.temperature, self.margin, self.rank_weight = temperature, margin, rank_weight
        self.columns = list(columns) if columns is not None else None

    def mmc(self, scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        if not positive.any():
            return scores.sum() * 0.0  # keeps the graph (and DDP's gradient bookkeeping) intact
        log_prob = torch.log_softmax(scores.reshape(-1) / self.temperature, dim=0)
        return -log_prob[positive.reshape(-1)].mean()

    def rank(self, scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        rows = positive.any(dim=1)
        if not rows.any():
            return scores.sum() * 0.0
        s, pos = scores[rows], positive[rows]
        has_negative = (~pos).any(dim=1, keepdim=True)
        hardest = s.masked_fill(pos, float("-inf")).amax(dim=1, keepdim=True)
        hardest = torch.where(has_negative, hardest, torch.zeros_like(hardest))
        violation = torch.relu(self.margin + hardest - s) * (pos & has_negative)
        return violation.sum() / pos.sum()

    def forward(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.columns is not None and targets.shape[1] != scores.shape[1]:
            targets = targets[:, self.columns]
        if targets.shape != scores.shape:
            raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} differ")
        scores = scores.float()
        positive = targets == 1
        return self.mmc(scores, positive) + self.rank_weight * self.rank(scores, positive)


# ------------------------------------------------------------------------------------------ optimiser

def optimizer_factory(head_lr: float = HEAD_LR, adapter_lr: float = ADAPTER_LR,
                      weight_decay: float = WEIGHT_DECAY) -> Callable[[nn.Module], torch.optim.Optimizer]:
    """AdamW with group 0 = MEF + GCN (head_lr) and group 1 = RS adapters (adapter_lr)."""
    def make(model: nn.Module) -> torch.optim.Optimizer:
        groups = [{"params": model.head_parameters(), "lr": head_lr, "name": "heads"},
                  {"params": model.adapter_parameters(), "lr": adapter_lr, "name": "adapters"}]
        return torch.optim.AdamW(groups, lr=head_lr, weight_decay=weight_decay)
    return make


def count_trainable(model: nn.Module) -> dict[str, int]:
    """Trainable parameters by part: adapters, MEF, GCN, and the total (everything else is frozen)."""
    counts = {"adapters": sum(p.numel() for p in model.adapter_parameters()),
              "mef": sum(p.numel() for p in model.mef.parameters() if p.requires_grad),
              "gcn": sum(p.numel() for p in model.gcn.parameters() if p.requires_grad)}
    counts["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


# ------------------------------------------------------------------------------------------ evaluation

@dataclasses.dataclass(frozen=True)
class ZeroShotSplit:
    """Where the seen and unseen classes are: model class indices and Sewer-ML label columns."""

    seen: list[int]  # model class indices
    unseen: list[int]
    label_columns: list[int]  # the Sewer-ML label column of every model class, in model order

    @classmethod
    def for_model(cls, model: nn.Module) -> "ZeroShotSplit":
        codes = model.class_texts.codes
        foreign = [c for c in codes if c not in SEWER_CODES]
        if foreign:
            raise DataError(f"{model.class_texts.source}: training needs Sewer-ML labels, but class(es) "
                            f"{', '.join(foreign)} are not Sewer-ML codes")
        seen = [c for c in model.cfg.extra.get("seen", []) if c in codes]
        unseen = [c for c in codes if c not in seen]
        if not seen or not unseen:
            raise DataError(f"{model.class_texts.source}: zero-shot training needs seen and unseen classes "
                            f"(seen {len(seen)}, unseen {len(unseen)})")
        return cls(model.class_indices(seen), model.class_indices(unseen), [SEWER_CODES.index(c) for c in codes])

    @property
    def seen_columns(self) -> list[int]:
        return [self.label_columns[i] for i in self.seen]

    @property
    def unseen_columns(self) -> list[int]:
        return [self.label_columns[i] for i in self.unseen]


@torch.no_grad()
def predict_zeroshot(model: nn.Module, loader, device: torch.device, split: ZeroShotSplit) -> dict[str, np.ndarray]:
    """Scores of every loader row in the three modes (one image pass), gathered across ranks.

    Returns {"seen": [N, S], "zsl": [N, U], "gzsl": [N, C], "targets": [N, C] (model class order)}.
    """
    model.eval()
    modes = {"seen": split.seen, "zsl": split.unseen, "gzsl": list(range(len(split.label_columns)))}
    text = {m: model.class_embeddings(idx) for m, idx in modes.items()}
    adjacency = {m: model.class_adjacency(idx) for m, idx in modes.items()}
    out: dict[str, list[torch.Tensor]] = {m: [] for m in (*modes, "targets")}
    for images, labels in loader:
        tokens = model.backbone.image_tokens(images.to(device, non_blocking=True))
        for m in modes:
            out[m].append(model.score(tokens, text[m], adjacency[m]).float())
        out["targets"].append(labels.to(device).float()[:, split.label_columns])
    widths = {"seen": len(split.seen), "zsl": len(split.unseen), "gzsl": len(split.label_columns),
              "targets": len(split.label_columns)}
    result = {}
    for m, chunks in out.items():
        local = torch.cat(chunks) if chunks else torch.zeros((0, widths[m]), device=device)
        result[m] = gather_rows(local).cpu().numpy().astype(np.float64)
    return result


def metrics_from_predictions(pred: dict[str, np.ndarray], split: ZeroShotSplit) -> dict[str, float]:
    """ZSL/GZSL metrics plus `seen_mAP`, the mAP of the seen-only pass (what training optimises)."""
    metrics = zeroshot_metrics(pred["zsl"], pred["gzsl"], pred["targets"], split.seen, split.unseen)
    metrics[MONITOR], _ = mean_ap(pred["seen"], pred["targets"][:, split.seen])
    return metrics


class ZeroShotEvaluator:
    """`evaluate_fn` for the Trainer: seen mAP (monitor) plus the ZSL and GZSL metrics."""

    def __init__(self, split: ZeroShotSplit) -> None:
        self.split = split

    def __call__(self, model: nn.Module, loader, device: torch.device) -> dict[str, float]:
        return metrics_from_predictions(predict_zeroshot(model, loader, device, self.split), self.split)


def tune_offset(scores: np.ndarray, targets: np.ndarray) -> float:
    """The score threshold with the best pooled F1 over all entries (midway between neighbouring scores)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(targets).ravel() == 1
    if s.size == 0 or not t.any():
        return 0.0
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    tp = np.cumsum(t)
    predicted = np.arange(1, s.size + 1)
    f1 = 2 * tp / (predicted + t.sum())
    # Only cut between distinct scores: equal scores must fall on the same side of the threshold.
    cut_ok = np.append(s[:-1] > s[1:], True)
    best = int(np.argmax(np.where(cut_ok, f1, -1.0)))
    return float(s[best] - 1.0) if best + 1 == s.size else float((s[best] + s[best + 1]) / 2)


# ------------------------------------------------------------------------------------------ run

def _setting(section: Any, name: str, default: float) -> float:
    value = getattr(section, name, None)
    return float(default if value is None else value)


def build_zeroshot_model(recipe: Recipe) -> tuple[nn.Module, ModelCfg, dict[str, Any]]:
    """(model, its ModelCfg with the recipe's normalisation, kwargs that rebuild the architecture)."""
    import edgesewer.models.sfrnet  # noqa: F401  (registers sfr-net even before edgesewer.models imports it)
    from edgesewer.models import create_model, get_entry

    entry = get_entry(recipe.model.name)
    if entry.cfg.task != "zeroshot":
        raise DataError(f"{recipe.source}: {recipe.model.name} is a {entry.cfg.task} model, not a zero-shot one")
    kwargs = dict(recipe.model.kwargs)
    if recipe.model.img_size:
        kwargs["img_size"] = recipe.model.img_size
    model = create_model(recipe.model.name, pretrained=recipe.model.pretrained, **kwargs)
    if not recipe.model.pretrained and init_distributed().is_main:
        print(f"warning: {recipe.model.name} trains on a randomly initialised, frozen CLIP; zero-shot transfer "
              "needs CLIP's weights: model.pretrained=true (the sfr-net recipe's default)")
    arch_kw = {**kwargs, "class_texts": model.class_texts.as_rows()}  # the texts travel with the checkpoint
    cfg: ModelCfg = model.cfg
    stats = {"sewerml": (SEWERML_MEAN, SEWERML_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}
    norm = recipe.data.normalization
    if norm != "model":
        if norm not in stats:
            raise DataError(f"{recipe.source}: data.normalization must be model, sewerml or imagenet, not {norm!r}")
        cfg = dataclasses.replace(cfg, mean=stats[norm][0], std=stats[norm][1], extra=dict(cfg.extra))
    return model, cfg, arch_kw


def without_unseen(split: SewerMLSplit, unseen_columns: Sequence[int]) -> SewerMLSplit:
    """The rows of `split` that have no positive label among `unseen_columns`."""
    keep = np.flatnonzero(split.labels[:, list(unseen_columns)].sum(axis=1) == 0)
    return split.subset(keep)


def store_score_calibration(trainer: Trainer, run_dir: Path, split: ZeroShotSplit, temperature: float) -> float | None:
    """Tune the score offset with best.pt's weights on validation and write it into best.pt (rank 0)."""
    best_path = run_dir / "best.pt"
    if not best_path.is_file():
        return None
    ckpt = load_checkpoint(best_path)
    trainer.model.load_state_dict(ckpt["model"])
    pred = predict_zeroshot(trainer.model, trainer.val_loader, trainer.device, split)
    offset = tune_offset(pred["gzsl"][:, split.seen], pred["targets"][:, split.seen])
    if trainer.dist.is_main:
        cfg = ModelCfg.from_dict(ckpt["model_cfg"])
        cfg.extra = {**cfg.extra, "score_offset": offset, "score_temperature": temperature,
                     "score_calibration": "offset = best pooled-F1 threshold of seen-class GZSL scores on val"}
        ckpt["model_cfg"] = cfg.to_dict()
        save_checkpoint(best_path, ckpt)
    barrier()
    return offset


def train_zeroshot(recipe: Recipe, data_root: str | Path, out: str | Path | None = None,
                   resume: str | Path | None = None, callbacks: dict[str, list[Callable]] | None = None,
                   drop_unseen_rows: bool = True) -> RunResult:
    """Train a zero-shot recipe (sfr-net) on a Sewer-ML folder; returns the run folder and best metrics."""
    info = init_distributed(recipe.train.device)
    train_split, val_split = load_splits(recipe, data_root)
    model, model_cfg, arch_kw = build_zeroshot_model(recipe)
    split = ZeroShotSplit.for_model(model)
    if drop_unseen_rows:
        train_split = without_unseen(train_split, split.unseen_columns)
        if len(train_split) == 0:
            raise DataError(f"{train_split.csv_path}: no training rows left without an unseen-class label")
    model.active_classes = split.seen

    augment = build_augment(recipe.augment, model_cfg.input_size, model_cfg.interpolation)
    common = dict(size=model_cfg.input_size, mean=model_cfg.mean, std=model_cfg.std,
                  on_bad_image=recipe.data.on_bad_image, interpolation=model_cfg.interpolation)
    train_set = SewerMLDataset(train_split, augment=augment, **common)
    val_set = SewerMLDataset(val_split, **common)

    temperature = _setting(recipe.loss, "temperature", TEMPERATURE)
    loss_fn = SynergisticContrastiveLoss(temperature, _setting(recipe.loss, "margin", MARGIN),
                                         _setting(recipe.loss, "rank_weight", RANK_WEIGHT), split.seen_columns)
    optim = recipe.optim
    make_optimizer = optimizer_factory(optim.lr, _setting(optim, "backbone_lr", ADAPTER_LR), optim.weight_decay)
    make_scheduler = schedules.build_scheduler_factory(optim.schedule, **_schedule_kwargs(recipe))

    run_dir = resolve_run_dir(recipe.model.name, out, resume)
    counts = count_trainable(model)
    model_cfg.extra = {**model_cfg.extra, "train_mode": "zeroshot", "train_images": len(train_split),
                       "trainable_parameters": counts}
    cfg = train_config(recipe.train, run_dir, recipe.data.num_workers)
    trainer = Trainer(model, train_set, val_set, loss_fn=loss_fn, optimizer_factory=make_optimizer,
                      scheduler_factory=make_scheduler, evaluate_fn=ZeroShotEvaluator(split), cfg=cfg,
                      model_cfg=model_cfg, resume=Path(resume) if resume else None, callbacks=callbacks,
                      checkpoint_extra={"recipe": recipe.to_dict(), "model_kwargs": arch_kw})
    if info.is_main:
        save_recipe(recipe, run_dir / "recipe.yaml")
        print(f"{recipe.model.name}: {len(train_split)} training images (seen classes only), "
              f"{len(val_split)} validation images; trainable parameters: adapters {counts['adapters']:,}, "
              f"MEF {counts['mef']:,}, GCN {counts['gcn']:,} = {counts['trainable']:,} of {counts['total']:,}")
    best = trainer.fit()
    offset = store_score_calibration(trainer, run_dir, split, temperature)
    if info.is_main:
        write_json(run_dir / "best_metrics.json", {**best, "score_offset": offset, "stop": trainer.stop_reason})
    return RunResult(run_dir, best, None)


def _schedule_kwargs(recipe: Recipe) -> dict[str, Any]:
    o = recipe.optim
    table = {"cosine": {"warmup_epochs": o.warmup_epochs, "warmup_lr": o.warmup_lr, "min_lr": o.min_lr},
             "multistep": {"milestones": o.milestones, "gamma": o.gamma}, "constant": {}}
    # OneCycleLR would overwrite both groups' rates with one max_lr, losing the adapters' own rate.
    if o.schedule not in table:
        raise DataError(f"{recipe.source}: optim.schedule must be one of {', '.join(table)}, not {o.schedule!r}")
    return table[o.schedule]
