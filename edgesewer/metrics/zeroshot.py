"""Multi-label zero-shot metrics (numpy only): mAP and top-k precision/recall/F1 for ZSL and GZSL.

The protocol of SFR-Net (and of the multi-label ZSL literature it follows):

* **ZSL**: the model scores the unseen classes only; metrics over the unseen columns.
* **GZSL**: the model scores all classes; metrics over every column, with seen and unseen APs
  also reported apart.
* **mAP**: mean over the classes that have positives of the non-interpolated AP of
  `edgesewer.metrics.sewerml.average_precision` (classes without positives are skipped, not 0).
* **top-k**: in every row the k highest-scoring classes are predicted positive (ties: the lower
  class index wins). Per class p = TP/(TP+FP) and r = TP/(TP+FN), both 0 when TP = 0; CP and CR
  are their means over all classes and CF1 = 2 CP CR / (CP + CR); OP, OR, OF1 pool the counts over
  classes. Any 0/0 counts as 0.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgesewer.errors import DataError
from edgesewer.metrics.sewerml import average_precision

TOPK = (1, 3)


def _check(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets)
    if s.ndim != 2 or s.shape != t.shape:
        raise DataError(f"scores {s.shape} and targets {t.shape} must be equal 2-D shapes (rows x classes)")
    return s, (t == 1)


def mean_ap(scores: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """(mAP over classes with positives, per-class AP with NaN where a class has no positives)."""
    s, t = _check(scores, targets)
    ap = average_precision(s, t.astype(np.int8))
    ap = np.where(t.any(axis=0), ap, np.nan)
    valid = ~np.isnan(ap)
    return (float(ap[valid].mean()) if valid.any() else 0.0), ap


def topk_predictions(scores: np.ndarray, k: int) -> np.ndarray:
    """0/1 matrix with ones at each row's k highest scores (k is capped at the number of classes)."""
    s = np.asarray(scores, dtype=np.float64)
    k = min(int(k), s.shape[1])
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    # Stable sort of the negated scores: among equal scores the lower class index comes first.
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    pred = np.zeros(s.shape, dtype=bool)
    np.put_along_axis(pred, order, True, axis=1)
    return pred


def _safe(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def topk_metrics(scores: np.ndarray, targets: np.ndarray, k: int) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 with the top-k decision rule (see the module docstring)."""
    s, t = _check(scores, targets)
    pred = topk_predictions(s, k)
    tp = (pred & t).sum(0).astype(np.float64)
    fp = (pred & ~t).sum(0).astype(np.float64)
    fn = (~pred & t).sum(0).astype(np.float64)
    p_c, r_c = _safe(tp, tp + fp), _safe(tp, tp + fn)
    cp, cr = float(p_c.mean()), float(r_c.mean())
    op, orr = float(_safe(tp.sum(), (tp + fp).sum())), float(_safe(tp.sum(), (tp + fn).sum()))
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": orr, "OF1": _f1(op, orr)}


def zeroshot_metrics(zsl_scores: np.ndarray, gzsl_scores: np.ndarray, targets: np.ndarray,
                     seen: Sequence[int], unseen: Sequence[int], ks: Sequence[int] = TOPK) -> dict[str, float]:
    """Flat ZSL/GZSL metrics.

    Args:
        zsl_scores: [N, len(unseen)] scores of the unseen classes only (the ZSL forward pass).
        gzsl_scores: [N, K] scores of all classes (the GZSL forward pass), columns as in `targets`.
        targets: [N, K] 0/1 labels of all classes.
        seen, unseen: column indices of the seen and unseen classes in `targets`.

    Returns:
        `ZSL_mAP`, `GZSL_mAP`, `GZSL_mAP_seen`, `GZSL_mAP_unseen`, and for every k
        `ZSL_{CP,CR,CF1,OP,OR,OF1}@k` and `GZSL_...@k`.
    """
    unseen, seen = list(unseen), list(seen)
    t = np.asarray(targets)
    zsl_targets = t[:, unseen]
    out: dict[str, float] = {}
    out["ZSL_mAP"], _ = mean_ap(zsl_scores, zsl_targets)
    out["GZSL_mAP"], ap = mean_ap(gzsl_scores, t)
    for name, cols in (("seen", seen), ("unseen", unseen)):
        part = ap[cols]
        out[f"GZSL_mAP_{name}"] = float(np.nanmean(part)) if (~np.isnan(part)).any() else 0.0
    for k in ks:
        for prefix, (s, tt) in (("ZSL", (zsl_scores, zsl_targets)), ("GZSL", (gzsl_scores, t))):
            for key, value in topk_metrics(s, tt, k).items():
                out[f"{prefix}_{key}@{k}"] = value
    return out
