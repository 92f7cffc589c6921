"""VideoPipe metrics (YouTube-8M AP with the seed-0 shuffle) and the normal post-processing rule."""

import random

import numpy as np
import pytest

from edgesewer.errors import DataError
from edgesewer.metrics.sewerml import average_precision
from edgesewer.metrics.videopipe import (apply_normal_rule, evaluate_videos, format_video_report, seed0_permutation,
                                         videopipe_ap, videopipe_map, youtube8m_ap)
from edgesewer.taxonomy import SEWER_CODES, VIDEOPIPE_CODES


def _official_ap(predictions, actuals):
    """The evaluation script's procedure, step by step, on plain Python lists (independent of numpy sorting)."""
    random.seed(0)
    order = random.sample(range(len(predictions)), len(predictions))
    p = [predictions[i] for i in order]
    a = [actuals[i] for i in order]
    ranked = sorted(range(len(p)), key=lambda k: p[k], reverse=True)
    numpos = sum(1 for x in a if x > 0)
    if numpos == 0:
        return 0
    ap, poscount = 0.0, 0.0
    for i, k in enumerate(ranked):
        if a[k] > 0:
            poscount += 1
            ap += poscount / (i + 1) / numpos
    return ap


def test_hand_computed_map():
    scores = np.array([[0.9, 0.2], [0.8, 0.4], [0.3, 0.6], [0.1, 0.5]])
    targets = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    # Class 0 ranking: pos (1/1), neg, pos (2/3) -> (1 + 2/3) / 2; class 1 has no positives -> 0, still averaged.
    np.testing.assert_allclose(videopipe_ap(scores, targets), [5 / 6, 0.0])
    assert videopipe_map(scores, targets) == pytest.approx(5 / 12)


def test_ties_are_broken_by_the_seed0_shuffle():
    # random.seed(0); random.sample(range(4), 4) == [3, 1, 0, 2]: the positive row 0 lands third.
    assert seed0_permutation(4).tolist() == [3, 1, 0, 2]
    assert youtube8m_ap([0.5, 0.5, 0.5, 0.5], [1, 0, 0, 0]) == pytest.approx(1 / 3)
    # The Sewer-ML AP keeps row order instead and ranks it first.
    assert average_precision(np.full(4, 0.5), np.array([1, 0, 0, 0]))[0] == pytest.approx(1.0)


def test_matches_the_official_procedure_on_random_scores_with_ties():
    rng = np.random.default_rng(3)
    for n in (1, 7, 50, 333):
        scores = np.round(rng.random(n), 1)  # coarse rounding: many ties
        targets = (rng.random(n) < 0.3).astype(int)
        assert youtube8m_ap(scores, targets) == pytest.approx(_official_ap(scores.tolist(), targets.tolist()), abs=1e-12)


def test_shape_errors_are_data_errors():
    with pytest.raises(DataError):
        videopipe_ap(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(DataError):
        youtube8m_ap([0.1, 0.2], [1])


def test_normal_rule():
    classes = ("ZC", "CJ", "CK")
    scores = np.array([[0.95, 0.7, 0.2], [0.9, 0.8, 0.1], [0.3, 0.6, 0.6]])
    out = apply_normal_rule(scores, classes)
    np.testing.assert_array_equal(out[0], [1.0, 0.0, 0.0])  # p(ZC) 0.95 > 0.9: normal only
    np.testing.assert_array_equal(out[1:], scores[1:])  # 0.9 is not > 0.9
    assert scores[0, 1] == 0.7  # input untouched
    np.testing.assert_array_equal(apply_normal_rule(scores, classes, threshold=0.25)[2], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(apply_normal_rule(scores, classes, threshold=None), scores)
    np.testing.assert_array_equal(apply_normal_rule(scores[0], classes), [1.0, 0.0, 0.0])  # one video
    sewer = np.full((2, 17), 0.95)
    np.testing.assert_array_equal(apply_normal_rule(sewer, SEWER_CODES), sewer)  # no normal column: unchanged


def test_evaluate_reports_map_before_and_after_the_rule():
    classes = VIDEOPIPE_CODES
    scores = np.full((3, 17), 0.1)
    targets = np.zeros((3, 17), dtype=int)
    targets[0, 0] = 1  # video 0 normal
    targets[1, 1] = targets[2, 1] = 1  # videos 1 and 2 have CJ
    scores[:, 0] = [0.95, 0.2, 0.1]
    scores[:, 1] = [0.9, 0.8, 0.7]  # video 0 ranks first for CJ although it is normal
    result = evaluate_videos(scores, targets, classes)
    # Raw: ZC AP 1; CJ ranking neg, pos, pos -> (1/2 + 2/3) / 2 = 7/12; 15 classes without positives -> 0.
    assert result["per_class"]["ZC"]["AP"] == pytest.approx(1.0)
    assert result["per_class"]["CJ"]["AP"] == pytest.approx(7 / 12)
    assert result["mAP"] == pytest.approx((1 + 7 / 12) / 17)
    # The rule zeroes video 0's CJ score: CJ ranking pos, pos, neg -> AP 1.
    assert result["per_class"]["CJ"]["AP_post"] == pytest.approx(1.0)
    assert result["mAP_post"] == pytest.approx(2 / 17)
    assert result["per_class"]["CJ"]["positives"] == 2 and result["n_videos"] == 3
    text = format_video_report(result)
    assert "mAP 9.314" in text and "mAP after normal rule 11.765" in text
