"""Sewer-ML metrics: the official cross-check vector, hand-worked cases and corner cases."""

import json

import numpy as np
import pytest

from edgesewer.errors import DataError
from edgesewer.metrics import average_precision, evaluate_sewerml, format_sewerml_table, render_table_text
from edgesewer.taxonomy import CIW, SEWER_CODES

SUM_CIW = 6.7024  # 1 + .5518 + .2896 + .1622 + .6419 + .1847 + .3559 + .3131 + .0811 + .2275 + .2477
#                   + .0901 + .4167 + .4167 + .9009 + .3829 + .4396
RB, OB, FS = SEWER_CODES.index("RB"), SEWER_CODES.index("OB"), SEWER_CODES.index("FS")


def naive_ap(scores, targets):
    """Loop version of the definition, ranking ties in row order (the documented rule)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    hits, total = 0, 0.0
    for rank, i in enumerate(order, start=1):
        if targets[i] == 1:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def test_official_cross_check_vector():
    # Reference section 1.5: the official metrics.py run on this exact input.
    rng = np.random.RandomState(0)
    t = (rng.rand(500, 17) < 0.05).astype(int)
    s = np.clip(0.45 * t + 0.6 * rng.rand(500, 17) ** 2, 0, 1)
    s_before, t_before = s.copy(), t.copy()
    r = evaluate_sewerml(s, t)
    expected = {"F2_CIW": 0.594561, "F1_Normal": 0.375, "mAP": 0.688439, "MF1": 0.436583, "mF1": 0.431963,
                "OF1": 0.431963, "CF1": 0.462568, "EMAcc": 0.182}
    for key, value in expected.items():
        assert r[key] == pytest.approx(value, abs=1e-6), key
    assert (r["normal"]["Ng"], r["normal"]["Np"], r["normal"]["Nc"]) == (207, 65, 51)
    assert r["normal"]["F2"] == pytest.approx(0.285554, abs=1e-6)
    f2_first = [r["per_class"][c]["F2"] for c in ("RB", "OB", "PF")]
    assert f2_first == pytest.approx([0.632530, 0.604027, 0.638889], abs=1e-6)
    # Never mutates its inputs (the official code rewrites targets in place).
    assert np.array_equal(s, s_before) and np.array_equal(t, t_before)
    json.dumps(r)  # plain Python types only


def hand_case():
    """4 images; columns other than RB, OB, FS are all 0 (scores and targets).

        row  targets     scores (RB, OB, FS)   predicted (>= .5)
        0    RB OB       .9  .4   0            RB
        1    RB          .6  0    .2           RB
        2    (normal)    0   .45  0            (normal)
        3    OB FS       0   .8   .3           OB
    """
    t = np.zeros((4, 17), dtype=np.uint8)
    s = np.zeros((4, 17))
    t[0, [RB, OB]] = 1
    t[1, RB] = 1
    t[3, [OB, FS]] = 1
    s[:, RB] = [0.9, 0.6, 0.0, 0.0]
    s[:, OB] = [0.4, 0.0, 0.45, 0.8]
    s[:, FS] = [0.0, 0.2, 0.0, 0.3]
    return s, t


def test_hand_worked_4x17():
    s, t = hand_case()
    r = evaluate_sewerml(s, t)
    # RB: Ng 2, Np 2, Nc 2 -> P = R = F1 = F2 = 1; ranking .9+ .6+ -> AP 1.
    assert r["per_class"]["RB"] == pytest.approx({"P": 1, "R": 1, "F1": 1, "F2": 1, "AP": 1, "Ng": 2, "Np": 2, "Nc": 2})
    # OB: Ng 2, Np 1 (row 3), Nc 1 -> P 1, R 1/2, F1 2/3, F2 = 5*.5/(4+.5) = 5/9.
    #     ranking .8+ (1/1), .45-, .4+ (2/3) -> AP (1 + 2/3)/2 = 5/6.
    assert r["per_class"]["OB"] == pytest.approx({"P": 1, "R": 0.5, "F1": 2 / 3, "F2": 5 / 9, "AP": 5 / 6,
                                                  "Ng": 2, "Np": 1, "Nc": 1})
    # FS: Ng 1, nothing predicted (Np 0, counted as 1) -> P 0, R 0, F 0; ranking .3+ first -> AP 1.
    assert r["per_class"]["FS"] == pytest.approx({"P": 0, "R": 0, "F1": 0, "F2": 0, "AP": 1, "Ng": 1, "Np": 0, "Nc": 0})
    # Normal: only row 2 is normal and only row 2 has no score >= .5 -> all 1.
    assert r["normal"] == pytest.approx({"P": 1, "R": 1, "F1": 1, "F2": 1, "Ng": 1, "Np": 1, "Nc": 1})
    assert r["F1_Normal"] == 1
    assert r["F2_CIW"] == pytest.approx((1.0 * 1.0 + 5 / 9 * 0.5518) / SUM_CIW, abs=1e-12)
    assert r["mAP"] == pytest.approx((1 + 5 / 6 + 1) / 17)  # = 1/6; the 14 empty classes have AP 0
    # 18 classes: Ng = 2+2+1+1 = 6; Np = 2+1+1 real + 15 empty columns counted as 1 = 19; Nc = 2+1+1 = 4.
    assert r["OP"] == pytest.approx(4 / 19)
    assert r["OR"] == pytest.approx(4 / 6)
    assert r["OF1"] == pytest.approx(0.32)  # 2 (4/19)(2/3) / (4/19 + 2/3) = 16/50
    assert r["mF1"] == pytest.approx(8 / 25)  # 2*4 / (19 + 6)
    assert r["CP"] == pytest.approx(3 / 18)  # P = 1 for RB, OB, normal
    assert r["CR"] == pytest.approx(2.5 / 18)  # R = 1, .5, 1 (empty classes count 0)
    assert r["CF1"] == pytest.approx(5 / 33)  # 2 (1/6)(5/36) / (1/6 + 5/36)
    assert r["MF1"] == pytest.approx((1 + 2 / 3 + 1) / 18)
    assert r["EMAcc"] == pytest.approx(0.5)  # rows 1 and 2 match exactly


def test_class_without_positives_scores_zero():
    s, t = hand_case()
    s[:, SEWER_CODES.index("RO")] = [0.9, 0.1, 0.7, 0.2]  # predicted twice, never true
    r = evaluate_sewerml(s, t)
    ro = r["per_class"]["RO"]
    assert (ro["Ng"], ro["Np"], ro["Nc"]) == (0, 2, 0)
    assert ro["P"] == 0 and ro["R"] == 0 and ro["F1"] == 0 and ro["F2"] == 0 and ro["AP"] == 0
    assert all(np.isfinite([r[k] for k in ("OP", "OR", "OF1", "CP", "CR", "CF1", "MF1", "mF1")]))


def random_case(seed=3, n=200):
    rng = np.random.default_rng(seed)
    t = (rng.random((n, 17)) < 0.1).astype(np.uint8)
    t[:, SEWER_CODES.index("PB")] = 0  # one class without positives
    return t


def test_all_ones_prediction():
    t = random_case()
    r = evaluate_sewerml(np.ones(t.shape), t)
    prevalence = t.mean(axis=0)
    has_pos = prevalence > 0
    # Every image predicted positive everywhere: P_k = prevalence, R_k = 1, F2_k = 5p / (4p + 1).
    f2 = np.where(has_pos, 5 * prevalence / (4 * prevalence + 1), 0.0)
    for k, code in enumerate(SEWER_CODES):
        assert r["per_class"][code]["P"] == pytest.approx(prevalence[k])
        assert r["per_class"][code]["R"] == (1.0 if has_pos[k] else 0.0)
        assert r["per_class"][code]["Np"] == len(t)
    weights = np.array([CIW[c] for c in SEWER_CODES])
    assert r["F2_CIW"] == pytest.approx((f2 * weights).sum() / SUM_CIW)
    # Nothing is predicted normal: F1_Normal = 0; no row matches exactly (every row has a 0 label).
    assert r["F1_Normal"] == 0 and r["normal"]["Np"] == 0
    assert r["EMAcc"] == 0
    # All scores tie, so AP is precision in row order (the documented tie rule).
    ap = [naive_ap([1.0] * len(t), t[:, k]) for k in range(17)]
    assert [r["per_class"][c]["AP"] for c in SEWER_CODES] == pytest.approx(ap)


def test_all_zeros_prediction():
    t = random_case()
    r = evaluate_sewerml(np.zeros(t.shape), t)
    p_normal = (t.sum(axis=1) == 0).mean()
    assert r["F2_CIW"] == 0  # nothing predicted: P = 0 for every class
    # Every image predicted normal: P = share of normal images, R = 1.
    assert r["normal"]["P"] == pytest.approx(p_normal) and r["normal"]["R"] == 1
    assert r["F1_Normal"] == pytest.approx(2 * p_normal / (1 + p_normal))
    assert r["EMAcc"] == pytest.approx(p_normal)  # exactly the normal rows match


def test_threshold_is_greater_or_equal():
    t = np.zeros((2, 17), dtype=int)
    t[0, RB] = 1
    s = np.zeros((2, 17))
    s[0, RB] = 0.5  # exactly at the threshold: predicted
    s[1, RB] = np.nextafter(0.5, 0)  # just below: not predicted
    r = evaluate_sewerml(s, t)
    assert (r["per_class"]["RB"]["Np"], r["per_class"]["RB"]["Nc"]) == (1, 1)
    assert r["normal"]["Np"] == 1 and r["normal"]["Nc"] == 1  # row 1 is normal and predicted normal
    r = evaluate_sewerml(s, t, threshold=0.6)
    assert r["per_class"]["RB"]["Np"] == 0 and r["threshold"] == 0.6


def test_ap_ties_rank_earlier_rows_first():
    # Two rows tie at .7: the earlier row ranks first.
    # [neg, pos, neg]: pos at rank 2 -> AP 1/2; swap the tied rows -> pos at rank 1 -> AP 1.
    assert average_precision(np.array([0.7, 0.7, 0.1]), np.array([0, 1, 0])) == pytest.approx([0.5])
    assert average_precision(np.array([0.7, 0.7, 0.1]), np.array([1, 0, 0])) == pytest.approx([1.0])


def test_ap_matches_loop_definition_with_many_ties():
    rng = np.random.default_rng(7)
    s = rng.integers(0, 5, size=(60, 6)) / 4  # only five distinct values: many ties
    t = (rng.random((60, 6)) < 0.3).astype(int)
    t[:, 5] = 0
    expected = [naive_ap(s[:, k], t[:, k]) for k in range(6)]
    assert average_precision(s, t) == pytest.approx(expected)
    assert average_precision(s, t)[5] == 0


def test_ap_hand_value_and_minus_one_targets():
    # ranking .9+ .8- .7+ .1- -> (1/1 + 2/3) / 2 = 5/6; -1 counts as negative, as in the official code.
    assert average_precision(np.array([0.1, 0.7, 0.8, 0.9]), np.array([-1, 1, 0, 1])) == pytest.approx([5 / 6])


def test_bad_inputs_raise_data_error():
    s, t = hand_case()
    with pytest.raises(DataError, match="shape"):
        evaluate_sewerml(s[:, :16], t[:, :16])
    with pytest.raises(DataError, match="differ"):
        evaluate_sewerml(s, t[:3])
    s[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        evaluate_sewerml(s, t)


def test_table_lists_every_class_and_headlines():
    s, t = hand_case()
    text = render_table_text(format_sewerml_table(evaluate_sewerml(s, t)), width=120)
    first_words = [line.split()[0] for line in text.splitlines() if line.strip()]
    for code in (*SEWER_CODES, "Normal"):
        assert code in first_words
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80  # fits a terminal
    assert "F2_CIW 19.49" in text  # (1 + 5/9 * .5518) / 6.7024 = 1.30656 / 6.7024 = 0.19494
    assert "F1_Normal 100.00" in text and "mAP 16.67" in text
    assert "\x1b[" not in text  # plain text, no colour codes
