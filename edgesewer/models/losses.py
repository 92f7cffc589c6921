"""Multi-label losses of the classification recipes.

- `ciw_bce_loss`: BCE-with-logits with `pos_weight_c = 2 * (1 + CIW_c / mean(CIW))` (ViT recipes,
  DINO-SSL paper): important classes weigh more, and every positive at least twice a negative.
- `AsymmetricLoss`: ASL as configured by MA-Q2L's released code (gamma- 2, gamma+ 0, no clip,
  eps 1e-5, detached focal weight, `-sum / (B*K) * 1000`), with class weights on the focal term:
  x2 on the bottleneck classes RB, IS, FO, OS, or dynamic weights from per-class AP.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from edgesewer.taxonomy import BOTTLENECK_CODES, SEWER_CODES, ciw_vector


def ciw_pos_weight(codes: Sequence[str] = SEWER_CODES) -> Tensor:
    """`2 * (1 + CIW_c / mean(CIW))` per class, float32, in the order of `codes`."""
    ciw = ciw_vector(tuple(codes))
    return torch.as_tensor(2.0 * (1.0 + ciw / ciw.mean()), dtype=torch.float32)


def ciw_bce_loss(codes: Sequence[str] = SEWER_CODES) -> nn.BCEWithLogitsLoss:
    """BCE-with-logits (mean over B x K) with the CIW positive weights; `.to(device)` moves them."""
    return nn.BCEWithLogitsLoss(pos_weight=ciw_pos_weight(codes))


def bottleneck_weights(codes: Sequence[str] = SEWER_CODES, alpha: float = 2.0) -> Tensor:
    """Per-class focal-weight multipliers: `alpha` on MA-Q2L's bottleneck classes, 1 elsewhere."""
    return torch.tensor([alpha if c in BOTTLENECK_CODES else 1.0 for c in codes], dtype=torch.float32)


class AsymmetricLoss(nn.Module):
    """Asymmetric loss (Ridnik et al.) in MA-Q2L's configuration.

    Per element, with p = sigmoid(x), p- = min(1 - p + clip, 1):
    `L = w * (y log(max(p, eps)) + (1-y) log(max(p-, eps)))`,
    `w = alpha_k * (1 - p_t)^(gamma+ y + gamma- (1-y))`, p_t = p if y else p-;
    loss = `-sum(L) / (B * K) * scale`. With `detach_focal_weight` (MA-Q2L's default) `w` is a
    constant for autograd, so the gradient is that of a weighted BCE.

    `class_weights` (alpha_k) default to 1; MA-Q2L uses `bottleneck_weights()` (see `ma_q2l`).
    """

    def __init__(
        self,
        gamma_neg: float = 2.0,
        gamma_pos: float = 0.0,
        clip: float = 0.0,
        eps: float = 1e-5,
        detach_focal_weight: bool = True,
        class_weights: Sequence[float] | Tensor | None = None,
        scale: float = 1000.0,
    ) -> None:
        super().__init__()
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.eps = eps
        self.detach_focal_weight = detach_focal_weight
        self.scale = scale
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights)

    @classmethod
    def ma_q2l(cls, codes: Sequence[str] = SEWER_CODES) -> "AsymmetricLoss":
        """The released MA-Q2L loss: defaults plus x2 focal weight on RB, IS, FO, OS."""
        return cls(class_weights=bottleneck_weights(codes))

    def _focal_weight(self, p_pos: Tensor, p_neg: Tensor, targets: Tensor) -> Tensor:
        p_t = p_pos * targets + p_neg * (1 - targets)
        gamma = self.gamma_pos * targets + self.gamma_neg * (1 - targets)
        weight = torch.pow(1 - p_t, gamma)
        if self.class_weights is not None:
            weight = weight * self.class_weights.to(weight.dtype)
        return weight

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """logits, targets `[B, K]` (targets 0/1) -> scalar loss."""
        targets = targets.to(logits.dtype)
        p_pos = torch.sigmoid(logits)
        p_neg = 1.0 - p_pos
        if self.clip > 0:
            p_neg = (p_neg + self.clip).clamp(max=1.0)
        loss = targets * torch.log(p_pos.clamp(min=self.eps)) + (1 - targets) * torch.log(p_neg.clamp(min=self.eps))
        if self.gamma_neg > 0 or self.gamma_pos > 0 or self.class_weights is not None:
            if self.detach_focal_weight:
                with torch.no_grad():
                    weight = self._focal_weight(p_pos, p_neg, targets)
            else:
                weight = self._focal_weight(p_pos, p_neg, targets)
            loss = loss * weight
        return -loss.sum() / logits.numel() * self.scale

    @torch.no_grad()
    def set_dynamic_weights(self, ap_per_class: Sequence[float] | np.ndarray, top_m: int = 4) -> Tensor:
        """Replace the class weights from validation AP (fractions in [0, 1]); returns the weights.

        alpha_n = (mean AP - AP_n) / 10 with AP in percent (the released code's scale) for the
        `top_m` classes furthest below the mean; every other class gets 1. The released code sets
        negative values to 1 *before* ranking, so above-mean classes can take the top-m slots; here
        only below-mean classes compete for them.
        """
        ap = 100.0 * np.asarray(ap_per_class, dtype=np.float64)
        if ap.ndim != 1:
            raise ValueError(f"expected one AP per class, got shape {ap.shape}")
        alpha = (ap.mean() - ap) / 10.0
        weights = np.ones_like(alpha)
        below = [i for i in np.argsort(-alpha, kind="stable") if alpha[i] > 0][:top_m]
        weights[below] = alpha[below]
        new = torch.as_tensor(weights, dtype=torch.float32)
        if self.class_weights is None or self.class_weights.shape != new.shape:
            device = None if self.class_weights is None else self.class_weights.device
            self.class_weights = new.to(device)
        else:
            self.class_weights.copy_(new)
        return new
