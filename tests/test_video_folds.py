"""Iterative-stratified folds, fold averaging and weighted ensembles."""

import json

import numpy as np
import pytest

from edgesewer.data.video import VideoLabels
from edgesewer.errors import DataError
from edgesewer.train.video_folds import (average_results, fit_ensemble_weights, fold_label_counts, simplex_grid,
                                         stratified_folds, weighted_ensemble, write_folds)


def _imbalanced_targets(seed: int = 0) -> np.ndarray:
    """60 videos, 6 classes with 30, 12, 7, 5, 3 and 0 positives, some videos with two labels."""
    rng = np.random.default_rng(seed)
    y = np.zeros((60, 6), dtype=np.uint8)
    for k, count in enumerate([30, 12, 7, 5, 3, 0]):
        y[rng.choice(60, count, replace=False), k] = 1
    return y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_label_is_in_every_validation_fold_where_counts_allow(seed):
    y = _imbalanced_targets(seed)
    fold_of = stratified_folds(y, n_folds=5, seed=seed)
    assert sorted(np.bincount(fold_of).tolist()) == [12, 12, 12, 12, 12]  # each video in exactly one fold
    counts = fold_label_counts(y, fold_of, 5)
    assert counts.sum(0).tolist() == y.sum(0).tolist()
    for k, total in enumerate(y.sum(0)):
        if total >= 5:
            assert (counts[:, k] >= 1).all(), f"class {k} ({total} positives) missing from a fold: {counts[:, k]}"
        else:
            assert counts[:, k].max() <= 1  # rare classes are spread, never piled into one fold
    # Classes with enough positives get an even share: 30 -> 6 per fold, 12 -> 2 or 3.
    assert counts[:, 0].tolist() == [6] * 5
    assert set(counts[:, 1].tolist()) <= {2, 3}


def test_folds_are_deterministic_and_validated():
    y = _imbalanced_targets()
    assert (stratified_folds(y, 5, seed=7) == stratified_folds(y, 5, seed=7)).all()
    with pytest.raises(DataError, match="at least 2 folds"):
        stratified_folds(y, 1)
    with pytest.raises(DataError, match="3 videos cannot be split into 5 folds"):
        stratified_folds(y[:3], 5)


def test_write_folds(tmp_path):
    labels = VideoLabels(["a.mp4", "b.mp4", "c.mp4"], np.eye(3, dtype=np.uint8), ("ZC", "CJ", "CK"), tmp_path, tmp_path)
    path = write_folds(tmp_path / "folds.json", labels, np.array([0, 1, 0]), seed=3)
    data = json.loads(path.read_text())
    assert data == {"n_folds": 2, "seed": 3, "classes": ["ZC", "CJ", "CK"], "folds": {"a.mp4": 0, "b.mp4": 1, "c.mp4": 0}}


def test_fold_averaging_and_weighted_ensemble():
    a = {"v1.mp4": np.array([0.2, 0.8]), "v2.mp4": np.array([0.6, 0.0])}
    b = {"v2.mp4": np.array([0.2, 1.0]), "v1.mp4": np.array([0.4, 0.4])}  # other key order: matched by name
    mean = average_results([a, b])
    np.testing.assert_allclose(mean["v1.mp4"], [0.3, 0.6])
    np.testing.assert_allclose(mean["v2.mp4"], [0.4, 0.5])
    weighted = weighted_ensemble([a, b], [3, 1])  # normalised to 0.75 / 0.25
    np.testing.assert_allclose(weighted["v1.mp4"], [0.25, 0.7])
    np.testing.assert_allclose(weighted["v2.mp4"], [0.5, 0.25])


def test_ensemble_refuses_mismatched_inputs():
    a = {"v1.mp4": np.array([0.2, 0.8])}
    with pytest.raises(DataError, match="b.json: does not score the same videos"):
        weighted_ensemble([a, {"v9.mp4": np.array([0.1, 0.1])}], where=["a.json", "b.json"])
    with pytest.raises(DataError, match="different number of classes"):
        average_results([a, {"v1.mp4": np.array([0.1])}])
    with pytest.raises(DataError, match="non-negative weights"):
        weighted_ensemble([a, a], [1, -1])


def test_simplex_grid():
    np.testing.assert_allclose(simplex_grid(2, 0.5), [[0, 1], [0.5, 0.5], [1, 0]])
    grid = simplex_grid(3, 0.1)
    assert grid.shape == (66, 3) and np.allclose(grid.sum(1), 1)  # C(12, 2) weight vectors


def test_fit_ensemble_weights_finds_the_blend_that_fixes_both_models():
    targets = np.array([[1, 0], [1, 0], [0, 1], [0, 1]])
    # A: confident and right on class 0, mildly backwards on class 1; B the other way round.
    a = np.array([[0.9, 0.6], [0.8, 0.55], [0.1, 0.5], [0.0, 0.45]])
    b = np.array([[0.45, 0.0], [0.5, 0.1], [0.55, 0.8], [0.6, 0.9]])
    # Alone each ranks one class perfectly (AP 1) and the other backwards (positives at ranks 3 and 4:
    # (1/3 + 2/4) / 2 = 5/12), so mAP = 17/24; the even blend ranks both classes perfectly.
    assert fit_ensemble_weights([a], targets, step=0.5)[1] == pytest.approx(17 / 24)
    weights, value = fit_ensemble_weights([a, b], targets, step=0.5)
    np.testing.assert_allclose(weights, [0.5, 0.5])
    assert value == pytest.approx(1.0)
