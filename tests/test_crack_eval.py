"""Full-resolution crack evaluation of a predict callable over a dataset folder, with overlays."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from edgesewer.data.crack import CrackFolder
from edgesewer.metrics.crack_eval import crack_overlay, crack_probability, evaluate_crack_folder
from test_crack_data import make_deepcrack  # tests/ is on sys.path (pytest prepend import mode)


def dark_pixel_predict(batch: np.ndarray) -> np.ndarray:
    """A stand-in segmenter: the crack is where RGB (channels 0-2, in [-1, 1]) is dark."""
    return (batch[:, :3].mean(axis=1, keepdims=True) < -0.3).astype(np.float32)


def test_crack_probability_is_full_size():
    rgb = np.full((300, 530, 3), 180, dtype=np.uint8)
    cv2.line(rgb, (0, 10), (529, 290), (30, 30, 30), 3)
    prob = crack_probability(rgb, dark_pixel_predict, tile=128)
    assert prob.shape == (300, 530)
    assert np.array_equal(prob > 0.5, rgb.mean(axis=2) < 90)


def test_overlay_colours():
    rgb = np.zeros((1, 3, 3), dtype=np.uint8)
    crack, gt = np.array([[True, True, False]]), np.array([[True, False, True]])
    out = crack_overlay(rgb, crack, gt, alpha=1.0)
    assert out[0].tolist() == [[0, 200, 0], [230, 0, 0], [0, 90, 255]]  # TP green, FP red, FN blue


def test_evaluate_folder_writes_metrics_and_overlays(tmp_path):
    folder = CrackFolder(make_deepcrack(tmp_path / "dc", n_train=1, n_test=3), "test")
    result = evaluate_crack_folder(dark_pixel_predict, folder, tmp_path / "eval", tile=64,
                                   max_overlays=2, progress=False)
    # The drawn crack is exactly the dark pixels (JPEG aside): near-perfect at any threshold.
    assert result["ODS"] > 0.97 and result["OIS"] > 0.97 and result["IoU"] > 0.94
    assert result["images"] == 3 and result["split"] == "test" and result["layout"] == "deepcrack"
    assert result["excluded"] == []  # no known label errors in this set
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["ODS"] == pytest.approx(result["ODS"]) and len(saved["curve"]["F1"]) == 100
    assert "strict" in saved["protocol"]
    rows = list(csv.DictReader(open(tmp_path / "eval" / "per_image.csv")))
    assert [r["image"] for r in rows] == ["000.jpg", "001.jpg", "002.jpg"]
    assert sorted(p.name for p in (tmp_path / "eval" / "overlays").iterdir()) == ["000.png", "001.png"]
    prob_png = cv2.imread(str(tmp_path / "eval" / "probs" / "000.png"), cv2.IMREAD_GRAYSCALE)
    assert prob_png.shape == (96, 128) and set(np.unique(prob_png)) <= {0, 255}
