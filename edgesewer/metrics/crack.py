"""Crack segmentation metrics: ODS, OIS, AUPRC, IoU and region-wise F1 (numpy only).

Protocol (SPEC section 3; pixel-exact, the DeepSegmentor `prf_metrics` sweep plus OIS):

* thresholds t_k = k/100 for k = 0..99; a pixel is predicted crack when prob > t_k (strict,
  compared in float64); ground truth is mask > 127 for integer masks (bool masks as they are,
  float masks > 0.5).
* per threshold P = TP/(TP+FP), or 1 when nothing is predicted; R = TP/(TP+FN), or 1 when there
  is no crack to find; F = 2PR/(P+R), or 0 when P+R = 0.
* ODS: TP/FP/FN summed over all images at each threshold, best F over thresholds (the first
  threshold reaching it is the ODS threshold). OIS: mean over images of each image's best F.
* AUPRC: sum_k (R_k - R_{k+1}) * P_k over the pooled curve with R_100 = 0 (step-wise area, as
  average precision). IoU: pooled TP/(TP+FP+FN) of the crack class at the ODS threshold.
* region-wise F1 at the ODS threshold on a grid of 32x32 patches (the last row/column may be
  smaller; fractions are of the patch's own area): a GT patch is crack when >= 5% of its pixels
  are crack; a predicted patch is crack when >= 5% of its pixels are predicted; TP = GT crack
  patch with >= 50% of its GT crack pixels detected, FN = any other GT crack patch, FP = predicted
  crack patch that is not a GT crack patch.

Vectorised: each pixel's probability becomes the number of thresholds it exceeds (0..100, one
`searchsorted`); a `bincount` of those levels for crack and background pixels and a reverse
cumulative sum give TP/FP/FN at all 100 thresholds at once, O(pixels) per image.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from edgesewer.errors import DataError

N_THRESHOLDS = 100
THRESHOLDS = np.arange(N_THRESHOLDS, dtype=np.float64) / N_THRESHOLDS
PROTOCOL = (
    "pixel-exact; 100 thresholds 0.00..0.99, crack = prob > t (strict); GT = mask > 127; "
    "ODS = best F of TP/FP/FN pooled over images; OIS = mean of per-image best F; P = 1 if nothing predicted, "
    "R = 1 if no GT crack; AUPRC = sum (R_k - R_k+1) P_k; IoU = pooled crack IoU at the ODS threshold; "
    "region F1 at the ODS threshold on 32x32 patches: GT/predicted patch is crack at >= 5% crack pixels, "
    "hit = GT crack patch with >= 50% of its crack pixels detected, FP = predicted crack patch not GT crack"
)


def binarize_gt(gt: np.ndarray) -> np.ndarray:
    """Ground truth as bool: bool as is, integer masks > 127, float masks > 0.5."""
    gt = np.asarray(gt)
    if gt.dtype == bool:
        return gt
    if np.issubdtype(gt.dtype, np.integer):
        return gt > 127
    return gt > 0.5


def threshold_levels(prob: np.ndarray) -> np.ndarray:
    """For each pixel, how many thresholds t_k it exceeds (prob > t_k): an int array with values 0..100."""
    return np.searchsorted(THRESHOLDS, np.asarray(prob, dtype=np.float64), side="left")


def _exceeding(hist: np.ndarray) -> np.ndarray:
    """hist[..., level] (levels 0..100) -> count[..., k] of items with level > k, for k = 0..99."""
    above = np.cumsum(hist[..., ::-1], axis=-1)[..., ::-1]  # above[c] = items with level >= c
    return above[..., 1:]


def prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 with this module's conventions for empty denominators."""
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 1.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def _check(prob: np.ndarray, gt: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    prob = np.asarray(prob)
    if prob.ndim == 3 and prob.shape[0] == 1:
        prob = prob[0]
    gt = binarize_gt(gt)
    if prob.ndim != 2 or prob.shape != gt.shape:
        raise DataError(f"{name}: probability map {prob.shape} and ground truth {gt.shape} must be the same HxW")
    if not np.all((prob >= 0) & (prob <= 1)):  # NaN fails too
        raise DataError(f"{name}: probabilities must lie in [0, 1] (got values from {np.nanmin(prob):.3g} "
                        f"to {np.nanmax(prob):.3g}{' and NaN' if np.isnan(prob).any() else ''})")
    return prob, gt


def pixel_counts(prob: np.ndarray, gt: np.ndarray, name: str = "image") -> np.ndarray:
    """TP, FP, FN at the 100 thresholds for one image -> int64 array [3, 100]."""
    prob, gt = _check(prob, gt, name)
    levels = threshold_levels(prob)
    hist_crack = np.bincount(levels[gt], minlength=N_THRESHOLDS + 1)
    hist_background = np.bincount(levels[~gt], minlength=N_THRESHOLDS + 1)
    tp, fp = _exceeding(hist_crack), _exceeding(hist_background)
    return np.stack([tp, fp, int(gt.sum()) - tp]).astype(np.int64)


def region_counts(prob: np.ndarray, gt: np.ndarray, patch: int = 32, crack_fraction: float = 0.05,
                  hit_fraction: float = 0.5, name: str = "image") -> np.ndarray:
    """Region-wise TP, FP, FN (patch counts, see the module docstring) at the 100 thresholds -> [3, 100]."""
    prob, gt = _check(prob, gt, name)
    height, width = gt.shape
    cols = -(-width // patch)
    n_patches = -(-height // patch) * cols
    patch_id = (np.arange(height)[:, None] // patch) * cols + np.arange(width)[None, :] // patch
    levels = threshold_levels(prob)

    area = np.bincount(patch_id.ravel(), minlength=n_patches)
    gt_pixels = np.bincount(patch_id[gt], minlength=n_patches)
    gt_patch = gt_pixels >= crack_fraction * area

    def per_patch_exceeding(ids: np.ndarray, lv: np.ndarray) -> np.ndarray:  # [n_patches, 100]
        hist = np.bincount(ids * (N_THRESHOLDS + 1) + lv, minlength=n_patches * (N_THRESHOLDS + 1))
        return _exceeding(hist.reshape(n_patches, N_THRESHOLDS + 1))

    detected = per_patch_exceeding(patch_id[gt], levels[gt])
    predicted = per_patch_exceeding(patch_id.ravel(), levels.ravel())
    hit = gt_patch[:, None] & (detected >= hit_fraction * gt_pixels[:, None])
    predicted_patch = predicted >= crack_fraction * area[:, None]
    tp = hit.sum(axis=0)
    fp = (predicted_patch & ~gt_patch[:, None]).sum(axis=0)
    return np.stack([tp, fp, int(gt_patch.sum()) - tp]).astype(np.int64)


class CrackMetrics:
    """Accumulates crack metrics image by image (only per-threshold counts and per-image best F are kept)."""

    def __init__(self, patch: int = 32, crack_fraction: float = 0.05, hit_fraction: float = 0.5) -> None:
        self.patch, self.crack_fraction, self.hit_fraction = patch, crack_fraction, hit_fraction
        self.pixel = np.zeros((3, N_THRESHOLDS), dtype=np.int64)
        self.region = np.zeros((3, N_THRESHOLDS), dtype=np.int64)
        self.image_best_f: list[float] = []
        self.image_names: list[str] = []

    def update(self, prob: np.ndarray, gt: np.ndarray, name: str | None = None) -> dict[str, float]:
        """Add one image (prob HxW in [0, 1], gt HxW); returns its best F and the threshold reaching it."""
        name = name or f"image {len(self.image_best_f)}"
        counts = pixel_counts(prob, gt, name)
        self.pixel += counts
        self.region += region_counts(prob, gt, self.patch, self.crack_fraction, self.hit_fraction, name)
        f1 = prf(*counts)[2]
        best = int(np.argmax(f1))
        self.image_best_f.append(float(f1[best]))
        self.image_names.append(name)
        return {"best_F": float(f1[best]), "best_threshold": float(THRESHOLDS[best])}

    def curve(self) -> dict[str, np.ndarray]:
        """Pooled precision/recall/F1 at every threshold (for plots and the ODS pick)."""
        precision, recall, f1 = prf(*self.pixel)
        return {"threshold": THRESHOLDS.copy(), "precision": precision, "recall": recall, "F1": f1}

    def compute(self) -> dict[str, Any]:
        """ODS, OIS, AUPRC, IoU, region P/R/F1 (floats), the ODS threshold, image count and the protocol text."""
        if not self.image_best_f:
            raise DataError("no images were scored (the evaluation set is empty)")
        curve = self.curve()
        k = int(np.argmax(curve["F1"]))
        recall_next = np.append(curve["recall"][1:], 0.0)
        auprc = float(np.sum((curve["recall"] - recall_next) * curve["precision"]))
        tp, fp, fn = self.pixel[:, k]
        iou = tp / (tp + fp + fn) if tp + fp + fn > 0 else 1.0
        region_p, region_r, region_f = (float(v) for v in prf(*self.region[:, k]))
        return {
            "ODS": float(curve["F1"][k]),
            "ODS_threshold": float(THRESHOLDS[k]),
            "OIS": float(np.mean(self.image_best_f)),
            "AUPRC": auprc,
            "IoU": float(iou),
            "precision": float(curve["precision"][k]),
            "recall": float(curve["recall"][k]),
            "region_F1": region_f,
            "region_precision": region_p,
            "region_recall": region_r,
            "images": len(self.image_best_f),
            "protocol": PROTOCOL,
        }


def crack_metrics(probs: Iterable[np.ndarray], gts: Iterable[np.ndarray]) -> dict[str, Any]:
    """`CrackMetrics` over paired iterables of probability maps and ground-truth masks."""
    metrics = CrackMetrics()
    for prob, gt in zip(probs, gts, strict=True):
        metrics.update(prob, gt)
    return metrics.compute()


def constant_baseline(gts: Iterable[np.ndarray], value: float = 0.0) -> dict[str, Any]:
    """Metrics of a "model" predicting `value` everywhere: 0 = all background (ODS 0 when any crack exists),
    1 = all crack (ODS = 2c/(1+c) for a crack-pixel fraction c): the floors a trained model must beat."""
    gts = [binarize_gt(g) for g in gts]
    return crack_metrics((np.full(g.shape, value, dtype=np.float32) for g in gts), gts)
