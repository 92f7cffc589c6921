"""Crack metrics on hand-computed cases (numbers worked out in the comments), plus a naive cross-check."""

from __future__ import annotations

import numpy as np
import pytest

from edgesewer.errors import DataError
from edgesewer.metrics.crack import (THRESHOLDS, CrackMetrics, constant_baseline, crack_metrics, pixel_counts,
                                     region_counts, threshold_levels)

# Image A: crack pixels score 0.875 and 0.375, background pixels 0.625 and 0.0625 (all exact binary fractions).
# prob > t for t <= 0.87 | 0.37 | 0.62 | 0.06, so by threshold index k:
#   k 0..6   TP2 FP2 FN0  P 1/2 R 1   F 2/3
#   k 7..37  TP2 FP1 FN0  P 2/3 R 1   F 4/5      <- best
#   k 38..62 TP1 FP1 FN1  P 1/2 R 1/2 F 1/2
#   k 63..87 TP1 FP0 FN1  P 1   R 1/2 F 2/3
#   k 88..99 TP0 FP0 FN2  P 1   R 0   F 0
PROB_A = np.array([[0.875, 0.625], [0.375, 0.0625]])
GT_A = np.array([[255, 0], [255, 0]], dtype=np.uint8)
# Image B: crack 0.25 (t <= 0.24), background 0.75 (t <= 0.74); best F 2/3 for k <= 24.
PROB_B = np.array([[0.25, 0.75]])
GT_B = np.array([[200, 3]], dtype=np.uint8)


def test_threshold_levels_are_strict():
    levels = threshold_levels(np.array([0.0, 0.005, 0.01, 0.5, 0.505, 0.99, 0.995, 1.0]))
    assert levels.tolist() == [0, 1, 1, 50, 51, 99, 100, 100]


def test_one_image_threshold_sweep():
    tp, fp, fn = pixel_counts(PROB_A, GT_A)
    assert tp[[0, 6, 7, 37, 38, 62, 63, 87, 88, 99]].tolist() == [2, 2, 2, 2, 1, 1, 1, 1, 0, 0]
    assert fp[[0, 6, 7, 37, 38, 62, 63, 87, 88, 99]].tolist() == [2, 2, 1, 1, 1, 1, 0, 0, 0, 0]
    assert fn[[0, 37, 38, 88]].tolist() == [0, 0, 1, 2]

    result = crack_metrics([PROB_A], [GT_A])
    assert result["ODS"] == pytest.approx(0.8)
    assert result["ODS_threshold"] == pytest.approx(0.07)
    assert result["OIS"] == pytest.approx(0.8)
    assert result["IoU"] == pytest.approx(2 / 3)  # TP 2 / (2 + 1 + 0)
    assert result["precision"] == pytest.approx(2 / 3) and result["recall"] == 1.0
    # Recall steps 1 -> 1/2 after k 37 (P 2/3) and 1/2 -> 0 after k 87 (P 1): 1/2 * 2/3 + 1/2 * 1.
    assert result["AUPRC"] == pytest.approx(5 / 6)
    assert result["images"] == 1 and "strict" in result["protocol"]


def test_ods_pools_counts_and_ois_averages_best_f():
    # Pooled A + B:   k 0..6   TP3 FP3 FN0 F 2/3;   k 7..24 TP3 FP2 FN0 P 3/5 F 3/4  <- ODS
    #                 k 25..37 TP2 FP2 FN1 P 1/2 R 2/3;  k 38..62 TP1 FP2 FN2;  k 63..74 TP1 FP1 FN2;
    #                 k 75..87 TP1 FP0 FN2 P 1 R 1/3;  k >= 88 TP0.
    result = crack_metrics([PROB_A, PROB_B], [GT_A, GT_B])
    assert result["ODS"] == pytest.approx(0.75)
    assert result["ODS_threshold"] == pytest.approx(0.07)
    assert result["OIS"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert result["IoU"] == pytest.approx(3 / 5)
    # Recall 1 -> 2/3 after k 24 (P 3/5), 2/3 -> 1/3 after k 37 (P 1/2), 1/3 -> 0 after k 87 (P 1).
    assert result["AUPRC"] == pytest.approx(1 / 3 * 3 / 5 + 1 / 3 * 1 / 2 + 1 / 3 * 1)


def test_accumulator_update_returns_image_best():
    metrics = CrackMetrics()
    assert metrics.update(PROB_B, GT_B) == {"best_F": pytest.approx(2 / 3), "best_threshold": 0.0}
    assert metrics.update(PROB_A.astype(np.float32), GT_A > 127)["best_F"] == pytest.approx(0.8)
    assert metrics.compute()["ODS"] == pytest.approx(0.75)


def test_region_wise_counts_hand_case():
    # 64x64 image = four 32x32 patches (1024 px; 5% = 51.2 px).
    prob = np.zeros((64, 64))
    gt = np.zeros((64, 64), dtype=bool)
    gt[0:10, 0:10] = True  # top-left: 100 crack px; 60 scored 0.8, 40 scored 0.2
    prob[0:6, 0:10], prob[6:10, 0:10] = 0.8, 0.2
    gt[0:4, 32:42] = True  # top-right: 40 crack px (< 5%: not a crack patch) + 30 more px, all scored 0.9
    prob[0:7, 32:42] = 0.9
    prob[40:46, 0:10] = 0.6  # bottom-left: no crack, 60 px scored 0.6
    gt[40:60, 40:50] = True  # bottom-right: 200 crack px; 90 scored 0.3, 20 scored 0.7
    prob[40:49, 40:50], prob[49:51, 40:50] = 0.3, 0.7
    tp, fp, fn = region_counts(prob, gt)
    # t = 0.50: TL hit (60/100), BR miss (20/200 < 50%); TR (70 px) and BL (60 px) predicted, not GT crack.
    assert (tp[50], fp[50], fn[50]) == (1, 2, 1)
    # t = 0.25: BR detects 110/200 -> hit too.
    assert (tp[25], fp[25], fn[25]) == (2, 2, 0)
    # t = 0.85: only TR is predicted (70 px > 51.2); TL detects 0 -> both GT crack patches missed.
    assert (tp[85], fp[85], fn[85]) == (0, 1, 2)


def test_region_f1_reported_at_ods_threshold():
    gt = np.zeros((64, 64), dtype=bool)
    gt[0:20, 0:20] = True  # 400 px in the top-left patch
    prob = np.where(gt, 0.9, 0.0)
    prob[40:50, 40:50] = 0.3  # false alarm patch, removed by any threshold >= 0.3
    result = crack_metrics([prob], [gt])
    assert result["ODS"] == 1.0 and result["ODS_threshold"] == pytest.approx(0.30)
    assert result["region_F1"] == 1.0 and result["region_precision"] == 1.0


def test_partial_border_patches_use_their_own_area():
    gt = np.zeros((40, 40), dtype=bool)
    gt[32:40, 32:34] = True  # 16 px in the 8x8 corner patch = 25% of its 64 px
    tp, _, fn = region_counts(np.where(gt, 1.0, 0.0), gt)
    assert tp[50] == 1 and fn[50] == 0


def test_matches_naive_threshold_loop():
    rng = np.random.default_rng(0)
    prob = rng.random((37, 53)).astype(np.float32)
    prob[:3] = np.round(prob[:3], 2)  # values sitting exactly on thresholds
    gt = rng.random((37, 53)) < 0.2
    tp, fp, fn = pixel_counts(prob, gt)
    for k, t in enumerate(THRESHOLDS):
        pred = prob.astype(np.float64) > t
        assert (tp[k], fp[k], fn[k]) == ((pred & gt).sum(), (pred & ~gt).sum(), (~pred & gt).sum())


def test_constant_baselines():
    gt = np.zeros((10, 10), dtype=np.uint8)
    gt[:, 0] = 255  # crack fraction c = 0.1
    assert constant_baseline([gt], 0.0)["ODS"] == 0.0
    assert constant_baseline([gt], 1.0)["ODS"] == pytest.approx(2 * 0.1 / 1.1)


def test_errors_name_the_image():
    metrics = CrackMetrics()
    with pytest.raises(DataError, match="road.png: probability map"):
        metrics.update(np.zeros((4, 4)), np.zeros((4, 5), dtype=bool), name="road.png")
    with pytest.raises(DataError, match=r"image 0: probabilities must lie in \[0, 1\]"):
        metrics.update(np.full((4, 4), 1.5), np.zeros((4, 4), dtype=bool))
    with pytest.raises(DataError, match="no images"):
        CrackMetrics().compute()
