"""SCNet's loss: focal loss on the fused and side logits plus Soft-IoU on the fused probability.

    L = focal(fused) + sum_i w_i * focal(side_i) + iou_weight * SoftIoU(sigmoid(fused))

with focal alpha 1, gamma 2 (the same alpha for both classes) and side weights
w = (0.5, 0.75, 1.0, 0.75, 0.5) from the shallowest to the deepest side output (SPEC 5.3).
Target pixels set to -1 (padding) are ignored.

Focal reduction: "sum" over an image's pixels (then the batch mean), as the paper's equations
write it, or "mean" over pixels (DeepSegmentor's BinaryFocalLoss). The two differ by H x W in
scale: with "sum" the focal terms dwarf Soft-IoU (which is at most 1) and the paper's small lr
(1e-4) fits; with "mean" Soft-IoU keeps a real share and lr ~1e-2 fits.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

SIDE_WEIGHTS: tuple[float, ...] = (0.5, 0.75, 1.0, 0.75, 0.5)


FOCAL_REDUCTIONS = ("sum", "mean")


def focal_loss_with_logits(logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0, gamma: float = 2.0,
                           valid: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """Binary focal loss -alpha (1 - p_t)^gamma log(p_t) over (valid) pixels: their mean, or ("sum") each
    image's sum averaged over the batch."""
    if reduction not in FOCAL_REDUCTIONS:
        raise ValueError(f"focal reduction must be one of {', '.join(FOCAL_REDUCTIONS)}, not {reduction!r}")
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.exp(-bce)  # probability given to the true class; bce is -log(p_t), computed stably
    loss = alpha * (1 - p_t).pow(gamma) * bce
    if valid is not None:
        loss = loss * valid
    if reduction == "sum":
        return loss.sum() / loss.shape[0]
    if valid is None:
        return loss.mean()
    return loss.sum() / valid.sum().clamp_min(1.0)


def soft_iou_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0,
                  valid: torch.Tensor | None = None) -> torch.Tensor:
    """1 - (sum p*y + s) / (sum (p + y - p*y) + s) per image, averaged over the batch.

    The smoothing s keeps crops without any crack well defined (the loss then pushes p to 0).
    """
    prob = prob.float()
    if valid is not None:
        prob, target = prob * valid, target * valid
    dims = tuple(range(1, prob.ndim))
    intersection = (prob * target).sum(dims)
    union = (prob + target - prob * target).sum(dims)
    return (1 - (intersection + smooth) / (union + smooth)).mean()


class SCNetLoss(nn.Module):
    """Callable as loss_fn(outputs, targets) with outputs = {"fused": logits, "sides": [logits x 5]}."""

    def __init__(self, side_weights: Sequence[float] = SIDE_WEIGHTS, alpha: float = 1.0, gamma: float = 2.0,
                 iou_weight: float = 1.0, focal_reduction: str = "sum") -> None:
        super().__init__()
        if focal_reduction not in FOCAL_REDUCTIONS:
            raise ValueError(f"focal reduction must be one of {', '.join(FOCAL_REDUCTIONS)}, not {focal_reduction!r}")
        self.side_weights = tuple(float(w) for w in side_weights)
        self.alpha, self.gamma, self.iou_weight, self.reduction = alpha, gamma, iou_weight, focal_reduction

    def forward(self, outputs: Mapping[str, Any], target: torch.Tensor) -> torch.Tensor:
        fused: torch.Tensor = outputs["fused"]
        sides: Sequence[torch.Tensor] = outputs["sides"]
        if len(sides) != len(self.side_weights):
            raise ValueError(f"{len(sides)} side outputs but {len(self.side_weights)} side weights")
        valid = (target >= 0).float() if bool((target < 0).any()) else None
        target = target.clamp_min(0).float()
        loss = focal_loss_with_logits(fused, target, self.alpha, self.gamma, valid, self.reduction)
        for weight, side in zip(self.side_weights, sides):
            loss = loss + weight * focal_loss_with_logits(side, target, self.alpha, self.gamma, valid, self.reduction)
        if self.iou_weight:
            loss = loss + self.iou_weight * soft_iou_loss(torch.sigmoid(fused.float()), target, valid=valid)
        return loss
