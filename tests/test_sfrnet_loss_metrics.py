"""SFR-Net's loss, the zero-shot metrics, the score calibration and the class text file, on hand cases."""

import math

import numpy as np
import pytest

from edgesewer.errors import DataError
from edgesewer.metrics.zeroshot import mean_ap, topk_metrics, topk_predictions, zeroshot_metrics
from edgesewer.models.sfrnet.class_texts import default_class_texts_path, load_class_texts, parse_class_texts
from edgesewer.taxonomy import SEWER_CODES

torch = pytest.importorskip("torch")


def _lse(values):
    return math.log(sum(math.exp(v) for v in values))


# ---------------------------------------------------------------------------------------------- loss

def _loss(**kw):
    from edgesewer.train.zeroshot import SynergisticContrastiveLoss

    return SynergisticContrastiveLoss(**kw)


def test_loss_one_positive_by_hand():
    scores = torch.tensor([[0.5, 0.1, -0.2], [0.0, 0.3, 0.2]], requires_grad=True)
    targets = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    loss = _loss()(scores, targets)
    # MMC: scores / 0.1 = [5, 1, -2, 0, 3, 2]; -log softmax at the positive (1) = LSE - 1.
    # Rank: row 0, hardest negative 0.5: relu(0.2 + 0.5 - 0.1) = 0.6 over 1 positive; x 10.
    expected = (_lse([5, 1, -2, 0, 3, 2]) - 1) + 10 * 0.6
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    loss.backward()
    assert torch.isfinite(scores.grad).all()


def test_loss_row_without_negatives_and_several_positives_by_hand():
    scores = torch.tensor([[0.4, 0.9], [0.2, 0.1]])
    targets = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # MMC averages the log-probabilities of the 3 positives (4, 9, 2 after / T): LSE - 5.
    # Rank: row 0 has no negative (0 loss, its 2 positives still count); row 1: relu(0.2 + 0.1 - 0.2) = 0.1.
    expected = (_lse([4, 9, 2, 1]) - 5) + 10 * (0.1 / 3)
    assert _loss()(scores, targets).item() == pytest.approx(expected, abs=1e-5)
    # temperature, margin and weight are the knobs they claim to be
    expected = (_lse([2, 4.5, 1, 0.5]) - 2.5) + 2 * (0.5 + 0.1 - 0.2) / 3
    loss = _loss(temperature=0.2, margin=0.5, rank_weight=2)(scores, targets)
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_loss_without_positives_is_zero_and_keeps_the_graph():
    scores = torch.randn(3, 4, requires_grad=True)
    loss = _loss()(scores, torch.zeros(3, 4))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(scores.grad, torch.zeros(3, 4))


def test_loss_reads_only_the_seen_columns_of_full_labels():
    scores = torch.tensor([[0.5, 0.1, -0.2]])
    labels = torch.zeros(1, 17)
    labels[0, 7] = 1  # the middle scored class
    labels[0, 2] = 1  # an unseen column: ignored
    seen_only = _loss(columns=[4, 7, 11])(scores, labels)
    assert seen_only.item() == pytest.approx(_loss()(scores, torch.tensor([[0.0, 1.0, 0.0]])).item())


# ---------------------------------------------------------------------------------------------- metrics

S = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3], [0.4, 0.4, 0.1]])
T = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 0]])


def test_topk_predictions_break_ties_by_class_index():
    assert topk_predictions(S, 1).astype(int).tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    assert topk_predictions(S, 2).astype(int).tolist() == [[1, 0, 1], [0, 1, 1], [1, 1, 0]]
    assert topk_predictions(S, 10).all()  # k is capped at the class count


def test_top1_metrics_by_hand():
    m = topk_metrics(S, T, 1)
    # per class (tp, fp, fn): (1, 1, 0), (0, 1, 1), (0, 0, 2) -> p = (1/2, 0, 0), r = (1, 0, 0)
    assert m["CP"] == pytest.approx(1 / 6) and m["CR"] == pytest.approx(1 / 3)
    assert m["CF1"] == pytest.approx(2 / 9)
    assert m["OP"] == pytest.approx(1 / 3) and m["OR"] == pytest.approx(1 / 4)
    assert m["OF1"] == pytest.approx(2 / 7)


def test_top3_metrics_by_hand():
    m = topk_metrics(S, T, 3)  # everything predicted: tp (1, 1, 2), fp (2, 2, 1)
    assert m["CP"] == pytest.approx(4 / 9) and m["CR"] == pytest.approx(1.0)
    assert m["CF1"] == pytest.approx(8 / 13)
    assert m["OP"] == pytest.approx(4 / 9) and m["OF1"] == pytest.approx(8 / 13)


def test_mean_ap_skips_classes_without_positives():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.3]])
    value, per_class = mean_ap(scores, np.array([[1, 0], [0, 0], [1, 0]]))
    assert value == pytest.approx(1.0) and np.isnan(per_class[1])
    value, _ = mean_ap(scores, np.array([[0, 1], [1, 0], [1, 0]]))
    # class 0: positives ranked 2nd and 3rd -> (1/2 + 2/3) / 2; class 1: ranked 3rd -> 1/3
    assert value == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 / 3) / 2)


def test_zeroshot_metrics_split_seen_and_unseen():
    targets = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    gzsl = np.array([[0.9, 0.1, 0.3], [0.1, 0.2, 0.4], [0.3, 0.1, 0.8], [0.2, 0.6, 0.1]])
    zsl = gzsl[:, [2]]  # class 2 unseen
    m = zeroshot_metrics(zsl, gzsl, targets, seen=[0, 1], unseen=[2])
    ap0 = (1 + 2 / 3) / 2  # rows ranked 0, 2, 3, 1 by column 0: positives at ranks 1 and 3
    ap1 = 1 / 2  # column 1: row 3 (0.6) first, then row 1 (0.2): the positive is 2nd
    ap2 = (1 + 2 / 3) / 2  # column 2 ranks rows 2, 1, 0, 3: positives 1st and 3rd
    assert m["GZSL_mAP_seen"] == pytest.approx((ap0 + ap1) / 2)
    assert m["GZSL_mAP_unseen"] == pytest.approx(ap2)
    assert m["GZSL_mAP"] == pytest.approx((ap0 + ap1 + ap2) / 3)
    assert m["ZSL_mAP"] == pytest.approx(ap2)
    assert {"ZSL_OF1@1", "ZSL_CF1@3", "GZSL_OP@1", "GZSL_CR@3"} <= set(m)
    # one unseen column: top-1 predicts it in every row -> OP = 2/4, OR = 1
    assert m["ZSL_OP@1"] == pytest.approx(0.5) and m["ZSL_OR@1"] == pytest.approx(1.0)


def test_metrics_refuse_mismatched_shapes():
    with pytest.raises(DataError, match="2-D"):
        topk_metrics(np.zeros((3, 2)), np.zeros((3, 3)), 1)


# ---------------------------------------------------------------------------------------------- calibration

def test_tune_offset_by_hand():
    from edgesewer.train.zeroshot import tune_offset

    # cuts after 1..4 of (0.9+, 0.7-, 0.4+, 0.2-): F1 = 2/3, 1/2, 4/5, 2/3 -> between 0.4 and 0.2
    assert tune_offset(np.array([[0.9, 0.7], [0.4, 0.2]]), np.array([[1, 0], [1, 0]])) == pytest.approx(0.3)
    # equal scores stay together: cutting inside the 0.5 tie is not allowed
    assert tune_offset(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 0])) == pytest.approx(0.3)
    assert tune_offset(np.array([0.5, 0.1]), np.array([0, 0])) == 0.0  # no positives: no calibration


# ---------------------------------------------------------------------------------------------- class texts

def test_shipped_class_texts_cover_sewerml_within_clip_context():
    from edgesewer.models.sfrnet.clip_backbone import ClipTokenizer

    texts = load_class_texts()
    assert texts.codes == SEWER_CODES
    tok = ClipTokenizer()
    counts = [tok.count(t) for t in texts.texts]
    assert max(counts) <= 77 and min(counts) > 20  # real sentences, each inside CLIP's context
    assert all(0 < tok.count(n) <= 12 for n in texts.names)  # short phrases
    assert len(set(texts.texts)) == 17 and len(set(texts.names)) == 17


def test_a_class_is_added_with_two_lines():
    base = default_class_texts_path().read_text(encoding="utf-8")
    extended = parse_class_texts(base + "\nXX.name: exposed rebar\nXX.text: a sewer pipe with exposed steel bars.\n",
                                 "mine.txt")
    assert extended.codes == (*SEWER_CODES, "XX")
    assert extended.names[-1] == "exposed rebar"
    sub = extended.subset(["XX", "RB"])
    assert sub.codes == ("XX", "RB") and sub.where("text")[0].startswith("mine.txt, line ")


@pytest.mark.parametrize(("content", "message"), [
    ("RB.name: crack\n", "line 1: class RB has no RB.text line"),
    ("RB.text: a crack\nRB.name: crack\nRB.text: again\n", "line 3: RB.text repeats line 1"),
    ("# header\nRB crack\n", "line 2: expected `CODE.name: short phrase`"),
    ("RB.name:\n", "line 1: RB.name is empty"),
    ("# nothing\n\n", "no classes"),
])
def test_class_text_errors_name_the_line(content, message):
    with pytest.raises(DataError, match=message):
        parse_class_texts(content, "bad.txt")


def test_too_long_description_is_refused_with_its_line(tmp_path):
    from edgesewer.models.sfrnet.clip_backbone import ClipTokenizer

    path = tmp_path / "long.txt"
    path.write_text("AA.name: a\nAA.text: " + "very " * 80 + "long\n", encoding="utf-8")
    texts = load_class_texts(path)
    with pytest.raises(DataError, match=r"long\.txt, line 2 \(AA\.text\): 83 CLIP tokens"):
        ClipTokenizer()(texts.texts, texts.where("text"))


def test_missing_class_file_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="class text file not found"):
        load_class_texts(tmp_path / "nope.txt")
