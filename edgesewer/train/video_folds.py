"""K-fold training, out-of-fold predictions, fold averaging and weighted model ensembles (VideoPipe report).

Folds are iterative multi-label stratified splits (Sechidis et al. 2011, via the maintained
`iterative-stratification` package), so that rare classes appear in every validation fold where
their counts allow. Training fold k on the others and scoring fold k gives out-of-fold (OOF)
scores for every video; the OOF scores are what ensemble weights are fitted on, and the K fold
models' test scores are averaged.

The numpy parts (`stratified_folds`, `average_results`, `weighted_ensemble`,
`fit_ensemble_weights`) import no torch; `train_folds` trains through `edgesewer.train.video`.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgesewer.data.video import VideoLabels, write_results
from edgesewer.errors import DataError
from edgesewer.metrics.videopipe import videopipe_map

Results = dict[str, np.ndarray]


def stratified_folds(targets: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """(N,) fold id in 0..n_folds-1 for each row of (N, K) multi-hot targets."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    y = np.asarray(targets)
    if n_folds < 2:
        raise DataError(f"need at least 2 folds, got {n_folds}")
    if y.shape[0] < n_folds:
        raise DataError(f"{y.shape[0]} videos cannot be split into {n_folds} folds")
    fold_of = np.full(y.shape[0], -1, dtype=np.int64)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, val_rows) in enumerate(splitter.split(np.zeros(y.shape[0]), y)):
        fold_of[val_rows] = k
    return fold_of


def fold_label_counts(targets: np.ndarray, fold_of: np.ndarray, n_folds: int) -> np.ndarray:
    """(n_folds, K) positives of each class in each validation fold."""
    y = np.asarray(targets)
    return np.stack([y[fold_of == k].sum(0) for k in range(n_folds)])


def write_folds(path: str | Path, labels: VideoLabels, fold_of: np.ndarray, seed: int) -> Path:
    """`{"n_folds", "seed", "classes", "folds": {"video.mp4": k}}`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"n_folds": int(fold_of.max()) + 1, "seed": seed, "classes": list(labels.classes),
            "folds": {name: int(k) for name, k in zip(labels.names, fold_of)}}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ ensembles

def _common_videos(results: Sequence[Results], where: Sequence[str]) -> list[str]:
    if not results:
        raise DataError("no result files to combine")
    names = list(results[0])
    for r, src in zip(results[1:], where[1:]):
        missing = [n for n in names if n not in r]
        if missing or len(r) != len(names):
            raise DataError(f"{src}: does not score the same videos as {where[0]} "
                            f"({len(r)} vs {len(names)} videos{', e.g. missing ' + missing[0] if missing else ''})")
        if next(iter(r.values())).shape != next(iter(results[0].values())).shape:
            raise DataError(f"{src}: has a different number of classes than {where[0]}")
    return names


def weighted_ensemble(results: Sequence[Results], weights: Sequence[float] | None = None,
                      where: Sequence[str] | None = None) -> Results:
    """Per video, sum_m w_m * scores_m with weights normalised to sum 1 (None: plain average)."""
    where = list(where) if where is not None else [f"results #{i}" for i in range(len(results))]
    names = _common_videos(results, where)
    w = np.ones(len(results)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(results),) or (w < 0).any() or w.sum() <= 0:
        raise DataError(f"need {len(results)} non-negative weights with a positive sum, got {list(w)}")
    w = w / w.sum()
    return {n: sum(wi * r[n] for wi, r in zip(w, results)) for n in names}


def average_results(results: Sequence[Results], where: Sequence[str] | None = None) -> Results:
    """Fold averaging: the plain mean of several models' scores for the same videos."""
    return weighted_ensemble(results, None, where)


def simplex_grid(n_models: int, step: float = 0.1) -> np.ndarray:
    """All weight vectors with entries in multiples of `step` that sum to 1 (rows)."""
    units = int(round(1 / step))
    rows = [c for c in itertools.product(range(units + 1), repeat=n_models - 1) if sum(c) <= units]
    return np.array([[*c, units - sum(c)] for c in rows], dtype=np.float64) / units


def with_fixed_weights(n_models: int, fixed: dict[int, float], free: np.ndarray | None = None) -> np.ndarray:
    """Weights summing to 1 where model i (0-based) in `fixed` keeps its weight and the others share the
    rest in proportion to `free` (equally when None). The VideoPipe report fixes Video Swin-B at 0.1."""
    rest = [i for i in range(n_models) if i not in fixed]
    total = float(sum(fixed.values()))
    if any(not 0 <= i < n_models for i in fixed) or any(w < 0 for w in fixed.values()) or total > 1 + 1e-9 \
            or (not rest and abs(total - 1) > 1e-9):
        raise DataError(f"fixed weights {fixed} do not fit {n_models} models (0-based positions, sum at most 1)")
    share = np.ones(len(rest)) if free is None else np.asarray(free, dtype=np.float64)
    w = np.zeros(n_models)
    if rest:
        w[rest] = (1 - total) * share / share.sum()
    for i, value in fixed.items():
        w[i] = value
    return w


def fit_ensemble_weights(scores: Sequence[np.ndarray], targets: np.ndarray, step: float = 0.1,
                         metric: Callable[[np.ndarray, np.ndarray], float] = videopipe_map,
                         fixed: dict[int, float] | None = None) -> tuple[np.ndarray, float]:
    """Weights (on a `step` simplex grid) maximising `metric` of the blended OOF scores; ties: the first found.

    `fixed` {position: weight} keeps those models' weights (e.g. Video Swin-B at the report's 0.1) and
    fits the others' shares of the remainder on the grid."""
    stack = np.stack([np.asarray(s, dtype=np.float64) for s in scores])  # (M, N, K)
    fixed = dict(fixed or {})
    n_free = len(scores) - len(fixed)
    grid = (simplex_grid(n_free, step) if n_free > 1 else np.ones((1, max(n_free, 0))))
    best_w, best_v = None, -np.inf
    for free in grid:
        w = with_fixed_weights(len(scores), fixed, free) if fixed else free
        value = metric(np.tensordot(w, stack, axes=1), targets)
        if value > best_v + 1e-12:
            best_w, best_v = w, value
    return best_w, float(best_v)


# ------------------------------------------------------------------------------------------ k-fold training

def train_folds(recipe, video, labels: VideoLabels, out: str | Path, folds: Sequence[int] | None = None) -> dict:
    """Train one model per fold (fold k held out) and collect out-of-fold scores.

    Writes `out/folds.json`, `out/fold<k>/` (run folders), `out/oof_results.json` and
    `out/oof_metrics.json`; returns the OOF metrics (over the folds trained).
    """
    import dataclasses

    from edgesewer.train.video import train_video, video_metrics

    out = Path(out)
    fold_of = stratified_folds(labels.targets, video.folds, video.fold_seed)
    write_folds(out / "folds.json", labels, fold_of, video.fold_seed)
    oof = np.full(labels.targets.shape, np.nan)
    for k in folds if folds is not None else range(video.folds):
        fold_video = dataclasses.replace(video, fold=int(k), val_labels=None)
        train_rows, val_rows = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        result = train_video(recipe, fold_video, labels.subset(train_rows), labels.subset(val_rows), out=out / f"fold{k}")
        oof[val_rows] = result.val_scores
    done = ~np.isnan(oof).any(1)
    write_results(out / "oof_results.json", [n for n, d in zip(labels.names, done) if d], oof[done])
    metrics = video_metrics(oof[done], labels.targets[done], labels.classes, video.normal_threshold)
    (out / "oof_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    return metrics
