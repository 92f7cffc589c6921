"""Sigmoid, per-class thresholds, temporal smoothing and crack measures, on hand-computed numbers."""

import math
import re

import numpy as np
import pytest

from edgesewer.errors import DataError
from edgesewer.runtime.postprocess import (
    FrameResult,
    TemporalSmoother,
    crack_length,
    measure_cracks,
    parse_smoothing,
    parse_thresholds,
    sigmoid,
    skeleton_length,
    zhang_suen_thinning,
)
from edgesewer.taxonomy import SEWER_CODES


def test_sigmoid_values_and_no_overflow():
    out = sigmoid(np.array([0.0, math.log(3.0), -math.log(3.0), -1000.0, 1000.0]))
    np.testing.assert_allclose(out, [0.5, 0.75, 0.25, 0.0, 1.0], atol=1e-7)
    assert out.dtype == np.float32


def test_thresholds_from_sidecar_and_cli():
    defaults = np.full(17, 0.5, np.float32)
    defaults[0] = 0.35  # a tuned RB threshold from the sidecar
    assert np.allclose(parse_thresholds(None, SEWER_CODES, defaults), defaults)
    assert np.allclose(parse_thresholds("0.4", SEWER_CODES, defaults), 0.4)
    t = parse_thresholds("OB=0.6, FS=0.2", SEWER_CODES, defaults)
    assert (t[0], t[1], t[4], t[2]) == pytest.approx((0.35, 0.6, 0.2, 0.5))
    t = parse_thresholds("0.7,RB=0.2", SEWER_CODES, defaults)
    assert t[0] == pytest.approx(0.2) and np.allclose(t[1:], 0.7)
    for bad, fragment in (("RB=1.5", "outside (0, 1)"), ("XX=0.3", "unknown class 'XX'"), ("RB=abc", "not a number")):
        with pytest.raises(DataError, match=re.escape(fragment)):
            parse_thresholds(bad, SEWER_CODES, defaults)


def test_smoothing_specs():
    assert str(parse_smoothing(None)) == "none"
    assert parse_smoothing("ema").alpha == 0.5
    assert parse_smoothing("EMA:0.3").alpha == pytest.approx(0.3)
    assert (parse_smoothing("kofn:3/5").k, parse_smoothing("kofn:3/5").n) == (3, 5)
    for bad in ("ema:2", "ema:x", "kofn:5/3", "kofn:3", "median"):
        with pytest.raises(DataError):
            parse_smoothing(bad)


def test_ema_smoothing_numbers():
    smoother = TemporalSmoother(parse_smoothing("ema:0.5"), np.array([0.5, 0.5], np.float32))
    # class 0: 0.9, 0.1, 0.1, 0.9, 0.9 -> EMA 0.9, 0.5, 0.3, 0.6, 0.75; class 1 stays at 0.2
    expected_scores = [0.9, 0.5, 0.3, 0.6, 0.75]
    expected_active = [True, True, False, True, True]
    for p, score, active in zip([0.9, 0.1, 0.1, 0.9, 0.9], expected_scores, expected_active):
        scores, on = smoother.update(np.array([p, 0.2], np.float32))
        assert scores[0] == pytest.approx(score) and scores[1] == pytest.approx(0.2)
        assert (bool(on[0]), bool(on[1])) == (active, False)


def test_k_of_n_smoothing_numbers():
    smoother = TemporalSmoother(parse_smoothing("kofn:2/3"), np.array([0.5], np.float32))
    hits = [0.9, 0.1, 0.1, 0.9, 0.9, 0.1, 0.1, 0.1]
    # windows of the last 3 hits: 1,1,1,1,2,2,1,0 -> on when >= 2
    decisions = [bool(smoother.update(np.array([p], np.float32))[1][0]) for p in hits]
    assert decisions == [False, False, False, False, True, True, False, False]


def test_skeleton_length_counts_steps():
    line = np.zeros((5, 12), np.uint8)
    line[2, 1:11] = 1  # 10 pixels: 9 horizontal steps
    assert skeleton_length(line) == pytest.approx(9.0)
    assert skeleton_length(line, sx=2.0, sy=3.0) == pytest.approx(18.0)
    assert skeleton_length(np.eye(10, dtype=np.uint8)) == pytest.approx(9 * math.sqrt(2))
    corner = np.array([[1, 1], [0, 1]], np.uint8)  # an L: two orthogonal steps, the diagonal is not added
    assert skeleton_length(corner) == pytest.approx(2.0)


def test_thinning_a_bar_gives_its_centre_line():
    bar = np.zeros((20, 60), np.uint8)
    bar[8:13, 10:50] = 1  # 5 px thick, 40 px long
    skeleton = zhang_suen_thinning(bar)
    rows = np.nonzero(skeleton.any(axis=1))[0]
    assert list(rows) == [10]  # the middle row only
    assert 34 <= skeleton.sum() <= 40
    # Thinning eats about half the width at each end; the distance transform puts it back.
    assert crack_length(bar) == pytest.approx(40.0, abs=3.0)
    # A mask that fills the whole map (no background pixel at all) still measures sensibly.
    assert 0 < crack_length(np.ones((10, 10), np.uint8)) <= 10 * math.sqrt(2)
    edge = np.zeros((5, 12), np.uint8)
    edge[0, :] = 1  # a line along the border: 11 steps + 1 px at each end
    assert crack_length(edge) == pytest.approx(13.0)


def test_measure_cracks_scales_to_frame_pixels_and_drops_specks():
    prob = np.zeros((20, 40), np.float32)
    prob[10, 5:25] = 0.9  # a 20-px line
    prob[2, 30:32] = 0.8  # a 2-px speck: 8 frame pixels at 2x scale
    prob[15, 30] = 0.5  # exactly at threshold: not crack (strict >)
    result = measure_cracks(prob, frame_hw=(40, 80), threshold=0.5, min_area_px=10)
    assert result.components == 1
    assert result.area_px == pytest.approx(80.0)  # 20 pixels x (2 x 2)
    assert result.area_fraction == pytest.approx(80.0 / 3200)
    # 19 steps x 2 px, plus 1 px (distance transform) at each end x 2
    assert result.length_px == pytest.approx(42.0)
    assert result.peak_prob == pytest.approx(0.9)
    empty = measure_cracks(np.zeros((1, 1, 8, 8), np.float32))
    assert (empty.found, empty.area_px, empty.length_px) == (False, 0.0, 0.0)


def test_frame_result_codes():
    result = FrameResult(
        3,
        0.1,
        np.zeros((2, 2, 3), np.uint8),
        classes=("RB", "OB", "FS"),
        scores=np.array([0.9, 0.2, 0.7]),
        active=np.array([True, False, True]),
    )
    assert result.codes == ["RB", "FS"] and result.has_detection
