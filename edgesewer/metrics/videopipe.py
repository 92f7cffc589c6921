"""VideoPipe (ICPR 2022, track 1, QV-Pipe) video-level metrics and the normal post-processing rule.

numpy only. The AP follows the official `eval_classification.py`, which is YouTube-8M's
`AveragePrecisionCalculator.ap`:

* per class, the rows are first shuffled with Python's `random.seed(0); random.sample(range(n), n)`
  ("to avoid overestimating the AP" when scores tie), then stably sorted by descending score;
* AP = sum over positive ranks i (1-based) of (positives so far / i) / #positives, over the whole
  ranking (non-interpolated, no cut-off); a class without positives has AP 0;
* mAP is the plain mean over all 17 classes, ZC (normal) included, zero-positive classes included.

Because of the shuffle, tie-breaking depends on the row order, which the official script takes from
the ground-truth JSON's key order; `videopipe_ap` takes the rows in the order given.

This differs from the Sewer-ML AP (`edgesewer.metrics.sewerml.average_precision`) only in how
ties are broken (Sewer-ML: stable row order, no shuffle); with distinct scores the two agree.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np

from edgesewer.errors import DataError
from edgesewer.taxonomy import VIDEOPIPE_CODES, VIDEOPIPE_NORMAL

# The VideoPipe report's rule: a confident "normal" wipes the defect scores.
NORMAL_THRESHOLD = 0.9


def seed0_permutation(n: int) -> np.ndarray:
    """The row permutation of the official shuffle: `random.seed(0); random.sample(range(n), n)`."""
    # A private Random(0) draws the same sequence as the global generator after random.seed(0),
    # without disturbing anyone else's global random state.
    return np.asarray(random.Random(0).sample(range(n), n), dtype=np.int64)


def youtube8m_ap(scores: np.ndarray, targets: np.ndarray) -> float:
    """Non-interpolated AP of one class over the full ranking, official shuffle + stable sort.

    Args:
        scores: (N,) scores, higher = more likely positive.
        targets: (N,) ground truth; values > 0 are positives.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    t = np.asarray(targets).reshape(-1)
    if s.shape != t.shape:
        raise DataError(f"scores ({s.size}) and targets ({t.size}) differ in length")
    n_pos = int((t > 0).sum())
    if n_pos == 0:
        return 0.0
    perm = seed0_permutation(s.size)
    s, t = s[perm], t[perm]
    order = np.argsort(-s, kind="stable")  # = Python's sorted(..., reverse=True): stable for equal keys
    positive = t[order] > 0
    hits = np.cumsum(positive)
    ranks = np.arange(1, s.size + 1, dtype=np.float64)
    return float((hits / ranks)[positive].sum() / n_pos)


def videopipe_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(K,) AP of every column of (N, K) scores against (N, K) 0/1 targets."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets)
    if s.ndim != 2 or s.shape != t.shape:
        raise DataError(f"scores {s.shape} and targets {t.shape} must be the same (N, K) shape")
    return np.array([youtube8m_ap(s[:, k], t[:, k]) for k in range(s.shape[1])], dtype=np.float64)


def videopipe_map(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean AP over every class (including the normal class and classes without positives)."""
    ap = videopipe_ap(scores, targets)
    return float(ap.mean()) if ap.size else 0.0


def apply_normal_rule(scores: np.ndarray, classes: Sequence[str] = VIDEOPIPE_CODES,
                      normal: str = VIDEOPIPE_NORMAL, threshold: float | None = NORMAL_THRESHOLD) -> np.ndarray:
    """Where p(normal) > threshold: normal = 1 and every other class = 0. Returns a new array.

    Only meaningful for label sets with an explicit, exclusive normal class (VideoPipe's ZC). For
    Sewer-ML codes, which have no normal column, or with `threshold=None`, the scores come back
    unchanged (copied).
    """
    out = np.array(scores, dtype=np.float64, copy=True)
    if threshold is None or normal not in classes:
        return out
    single = out.ndim == 1
    rows = out[None] if single else out
    k = list(classes).index(normal)
    confident = rows[:, k] > threshold
    rows[confident] = 0.0
    rows[confident, k] = 1.0
    return rows[0] if single else rows


def evaluate_videos(scores: np.ndarray, targets: np.ndarray, classes: Sequence[str] = VIDEOPIPE_CODES,
                    normal_threshold: float | None = NORMAL_THRESHOLD) -> dict[str, Any]:
    """VideoPipe metrics: mAP (raw scores) and, with a normal class, mAP after the normal rule.

    Returns {"mAP", "mAP_post" (equal to mAP without a normal class), "per_class": {code: {"AP",
    "AP_post", "positives"}}, "n_videos", "normal_threshold"}; values are fractions in [0, 1].
    """
    classes = tuple(classes)
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets)
    if s.ndim != 2 or s.shape[1] != len(classes):
        raise DataError(f"scores have shape {s.shape}, expected (N, {len(classes)}) for {len(classes)} classes")
    ap = videopipe_ap(s, t)
    ap_post = videopipe_ap(apply_normal_rule(s, classes, threshold=normal_threshold), t)
    positives = (t > 0).sum(0)
    return {
        "mAP": float(ap.mean()),
        "mAP_post": float(ap_post.mean()),
        "per_class": {c: {"AP": float(a), "AP_post": float(b), "positives": int(p)}
                      for c, a, b, p in zip(classes, ap, ap_post, positives)},
        "n_videos": int(s.shape[0]),
        "normal_threshold": normal_threshold if VIDEOPIPE_NORMAL in classes else None,
    }


def format_video_report(result: dict[str, Any]) -> str:
    """Plain-text table: one line per class (AP %, AP after the normal rule, positives) and the mAP."""
    lines = [f"{'class':<6}{'AP %':>8}{'AP post %':>11}{'videos':>8}"]
    for code, m in result["per_class"].items():
        lines.append(f"{code:<6}{100 * m['AP']:>8.2f}{100 * m['AP_post']:>11.2f}{m['positives']:>8d}")
    lines.append(f"mAP {100 * result['mAP']:.3f}  mAP after normal rule {100 * result['mAP_post']:.3f}  "
                 f"({result['n_videos']} videos)")
    return "\n".join(lines)
