"""`edgesewer eval --scores --gt`: JSON numbers on a hand-worked pair, one-line errors on bad files."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgesewer.cli import app
from edgesewer.data.sewerml import write_scores_csv
from edgesewer.taxonomy import SEWER_CODES, SEWER_CSV_HEADER

runner = CliRunner()
RB, OB, FS = (SEWER_CODES.index(c) for c in ("RB", "OB", "FS"))
NAMES = ["00000001.png", "00000002.png", "00000003.png", "00000004.png"]


def hand_pair(tmp_path):
    """The 4-image case of test_metrics_sewerml.hand_case, with the score rows shuffled.

        row  targets     scores (RB, OB, FS)   predicted (>= .5)
        1    RB OB       .9  .4   0            RB
        2    RB          .6  0    .2           RB
        3    (normal)    0   .45  0            (normal)
        4    OB FS       0   .8   .3           OB
    """
    t = np.zeros((4, 17), dtype=int)
    t[0, [RB, OB]] = 1
    t[1, RB] = 1
    t[3, [OB, FS]] = 1
    s = np.zeros((4, 17))
    s[:, RB] = [0.9, 0.6, 0.0, 0.0]
    s[:, OB] = [0.4, 0.0, 0.45, 0.8]
    s[:, FS] = [0.0, 0.2, 0.0, 0.3]
    lines = [",".join(SEWER_CSV_HEADER)]
    for name, row in zip(NAMES, t):
        cells = {"Filename": name, "WaterLevel": "5", "VA": "0", "ND": "0", "Defect": str(int(row.any())),
                 **{c: str(v) for c, v in zip(SEWER_CODES, row)}}
        lines.append(",".join(cells[h] for h in SEWER_CSV_HEADER))
    gt = tmp_path / "SewerML_Val.csv"
    gt.write_text("\n".join(lines) + "\n")
    order = [2, 0, 3, 1]  # rows are matched by Filename, not position
    scores = write_scores_csv(tmp_path / "scores.csv", [NAMES[i] for i in order], s[order])
    return scores, gt


def error_line(result):
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def test_eval_writes_json_and_prints_table(tmp_path):
    scores, gt = hand_pair(tmp_path)
    out = tmp_path / "report" / "val.json"
    result = runner.invoke(app, ["eval", "--scores", str(scores), "--gt", str(gt), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    # Worked out in test_metrics_sewerml.test_hand_worked_4x17.
    assert report["F2_CIW"] == pytest.approx((1.0 + 5 / 9 * 0.5518) / 6.7024)
    assert report["F1_Normal"] == 1.0
    assert report["mAP"] == pytest.approx(1 / 6)
    assert report["per_class"]["OB"]["F2"] == pytest.approx(5 / 9)
    assert report["labels"] == list(SEWER_CODES) and report["n_images"] == 4 and report["gt"] == str(gt)
    assert "F2_CIW 19.49" in result.output and "Normal" in result.output


def test_eval_threshold_option(tmp_path):
    scores, gt = hand_pair(tmp_path)
    out = tmp_path / "t.json"
    result = runner.invoke(app, ["eval", "--scores", str(scores), "--gt", str(gt), "--json", str(out),
                                 "--threshold", "0.4"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    # At .4 image 1 also predicts OB (Np 3, Nc 2) and image 3 is no longer predicted normal.
    assert report["per_class"]["OB"]["Np"] == 3 and report["per_class"]["OB"]["Nc"] == 2
    assert report["F1_Normal"] == 0 and report["threshold"] == 0.4


def test_eval_mismatched_filenames(tmp_path):
    scores, gt = hand_pair(tmp_path)
    scores.write_text(scores.read_text().replace("00000004.png", "00000099.png"))
    line = error_line(runner.invoke(app, ["eval", "--scores", str(scores), "--gt", str(gt)]))
    assert str(scores) in line and "no scores for 1 of the 4 images" in line and "00000004.png" in line


def test_eval_extra_score_rows(tmp_path):
    scores, gt = hand_pair(tmp_path)
    with scores.open("a") as f:
        f.write("00000077.png" + ",0.1" * 17 + "\n")
    line = error_line(runner.invoke(app, ["eval", "--scores", str(scores), "--gt", str(gt)]))
    assert "1 images are not in" in line and "00000077.png" in line


def test_eval_missing_column(tmp_path):
    scores, gt = hand_pair(tmp_path)
    lines = scores.read_text().splitlines()
    scores.write_text("\n".join(",".join(ln.split(",")[:-1]) for ln in lines) + "\n")  # drop OK
    line = error_line(runner.invoke(app, ["eval", "--scores", str(scores), "--gt", str(gt)]))
    assert line == f"error: {scores}: missing column(s) OK"


def test_eval_duplicate_rows(tmp_path):
    scores, gt = hand_pair(tmp_path)
    lines = scores.read_text().splitlines()
    scores.write_text("\n".join([*lines, lines[1]]) + "\n")
    line = error_line(runner.invoke(app, ["eval", "--scores", str(scores), "--gt", str(gt)]))
    assert f"{scores}, row 6: duplicate Filename" in line


def test_eval_non_numeric_score_and_unlabelled_gt(tmp_path):
    scores, gt = hand_pair(tmp_path)
    scores.write_text(scores.read_text().replace("0.45", "high", 1))
    line = error_line(runner.invoke(app, ["eval", "--scores", str(scores), "--gt", str(gt)]))
    assert "column OB: score 'high' is not a number" in line
    test_csv = tmp_path / "SewerML_Test.csv"
    test_csv.write_text("Filename\n" + "\n".join(NAMES) + "\n")
    line = error_line(runner.invoke(app, ["eval", "--scores", str(scores), "--gt", str(test_csv)]))
    assert "has no label columns" in line
