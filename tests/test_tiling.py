"""Tiled inference: tile placement, exact reassembly, and no seams on a crack crossing tile borders."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgesewer.runtime.tiling import blend_weight, tile_starts, tiled_predict


def test_tile_starts_cover_the_frame_with_enough_overlap():
    assert tile_starts(720, 256, 64) == [0, 155, 309, 464]  # 4 tiles, stride <= 192, last flush at 720
    assert tile_starts(1280, 256, 64) == [0, 171, 341, 512, 683, 853, 1024]
    assert tile_starts(256, 256, 64) == [0] and tile_starts(100, 256, 64) == [0]
    assert tile_starts(300, 256, 64) == [0, 44]
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(600, 256, 256)


def test_blend_weight_is_smooth_and_never_zero():
    weight = blend_weight(256)
    assert weight.shape == (256, 256)
    assert weight.min() == pytest.approx(0.01**2, rel=0.01)  # corners: floor squared (plus a hair of Hann)
    assert weight.max() == pytest.approx(1.0, abs=1e-4)
    assert np.abs(np.diff(weight, axis=1)).max() < 0.013  # no step anywhere inside a tile


def test_reassembles_a_pixelwise_prediction_exactly():
    rng = np.random.default_rng(0)
    image = rng.random((2, 300, 530)).astype(np.float32)
    calls = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        return batch[:, :1] * 2  # pixel-wise: every tile agrees wherever tiles overlap

    out = tiled_predict(image, predict, tile=128, overlap=32, batch_size=5)
    assert out.shape == (1, 300, 530)
    np.testing.assert_allclose(out[0], image[0] * 2, rtol=1e-5)
    assert sum(shape[0] for shape in calls) == 3 * 6 and all(s[0] <= 5 for s in calls)  # 3 rows x 6 columns


def test_frame_smaller_than_a_tile_is_padded_and_cropped_back():
    image = np.arange(2 * 40 * 70, dtype=np.float32).reshape(2, 40, 70)
    out = tiled_predict(image, lambda b: b[:, 1:2], tile=64, overlap=16)
    np.testing.assert_allclose(out, image[1:2], rtol=1e-6)


def _crack_frame() -> np.ndarray:
    """1280x720 darkness map with a 3-px crack crossing many tile borders diagonally, plus texture."""
    rng = np.random.default_rng(1)
    frame = (0.1 * rng.random((720, 1280))).astype(np.float32)
    points = np.array([[20, 30], [400, 250], [700, 200], [1000, 600], [1270, 700]], dtype=np.int32)
    cv2.polylines(frame, [points], isClosed=False, color=1.0, thickness=3)
    return frame[None]


def _context_sensitive_predict(batch: np.ndarray) -> np.ndarray:
    """A local crack detector whose output depends on the tile: zero-padded blur (weak at tile edges) plus a
    bias from the tile's mean, like a network with padding and instance norm."""
    out = np.empty_like(batch)
    for i, tile in enumerate(batch[:, 0]):
        blurred = cv2.GaussianBlur(tile, (0, 0), 2.0, borderType=cv2.BORDER_CONSTANT)
        prob = 1 / (1 + np.exp(-12 * (blurred - 0.3))) + 4 * (tile.mean() - 0.06)
        out[i, 0] = np.clip(prob, 0, 1)
    return out


def _seam_excess(tiled: np.ndarray, reference: np.ndarray) -> float:
    """Largest jump between neighbouring pixels in the tiled map beyond the same jump in the reference map."""
    excess = 0.0
    for axis in (0, 1):
        jumps = np.abs(np.diff(tiled, axis=axis)) - np.abs(np.diff(reference, axis=axis))
        excess = max(excess, float(jumps.max()))
    return excess


def test_no_seams_on_a_crack_crossing_tile_borders():
    frame = _crack_frame()
    reference = _context_sensitive_predict(frame[None])[0, 0]  # the whole frame in one go
    blended = tiled_predict(frame, _context_sensitive_predict, tile=256, overlap=64)[0]
    averaged = tiled_predict(frame, _context_sensitive_predict, tile=256, overlap=64, weight_floor=1.0)[0]

    assert blended.shape == (720, 1280)
    assert _seam_excess(blended, reference) < 0.02  # blending tolerance
    assert _seam_excess(averaged, reference) > 0.05  # plain averaging does leave seams: the check can fail
    on_crack = frame[0] == 1.0
    assert blended[on_crack].min() > 0.5  # the crack stays continuous through every tile border
    assert np.abs(blended - reference)[~on_crack].max() < 0.1


def test_runtime_module_needs_neither_torch_nor_onnx():
    code = ("import sys, edgesewer.runtime.tiling; "
            "print(sorted(m for m in ('torch', 'onnx', 'timm') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
