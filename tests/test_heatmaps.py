"""CAM localisation (torch-free): hand-computed regions, filtering, overlay."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgesewer.runtime.heatmaps import cam_regions, class_colour, class_heatmap, draw_cam_overlay, normalise_heatmap
from edgesewer.taxonomy import SEWER_CODES


def _cam_with_block(k: int = 3) -> np.ndarray:
    cam = np.zeros((17, 4, 4), np.float32)
    cam[k, 1:3, 1:3] = 5.0  # raw activations: a 2x2 hot block
    return cam


def test_block_region_hand_computed():
    # 4 -> 8 bilinear (half-pixel centres): output i samples source (i + 0.5) / 2 - 0.5, so along one axis
    # outputs 1..6 get 0.25, 0.75, 1, 1, 0.75, 0.25 of the block value. In 2-D the product is >= 0.5 on
    # rows/cols 2..5 only (0.75 * 0.75 = 0.5625 at the corners): a 4x4 square of hot pixels at (2, 2).
    regions = cam_regions(_cam_with_block(), (8, 8), threshold=0.5, min_area_frac=0.0)
    assert len(regions) == 1
    region = regions[0]
    assert region.code == "DE"
    assert region.bbox == (2, 2, 4, 4)
    assert region.area == pytest.approx(9.0)  # polygon through the boundary pixel centres: 3 x 3
    assert region.peak == pytest.approx(1.0)
    assert 2 <= region.peak_xy[0] <= 4 and 2 <= region.peak_xy[1] <= 4


def test_heatmap_upsample_and_normalise_values():
    heat = class_heatmap(_cam_with_block(), 3, (8, 8))
    assert heat.shape == (8, 8)
    assert heat[0, 0] == pytest.approx(0.0)
    assert heat[1, 1] == pytest.approx(0.25 * 0.25)
    assert heat[2, 2] == pytest.approx(0.75 * 0.75)
    assert heat[2, 3] == pytest.approx(0.75)
    assert heat[3, 3] == pytest.approx(1.0)
    assert heat[6, 6] == pytest.approx(0.0625)
    np.testing.assert_array_equal(normalise_heatmap(np.full((3, 3), 7.0)), np.zeros((3, 3)))


def test_small_regions_filtered_and_class_selection():
    cam = _cam_with_block(0)
    # 9 px area in a 64 px frame is 14 %: kept at 10 %, dropped at 20 %
    assert len(cam_regions(cam, (8, 8), min_area_frac=0.10)) == 1
    assert cam_regions(cam, (8, 8), min_area_frac=0.20) == []
    # only the requested classes are localised; flat maps give nothing
    assert cam_regions(cam, (8, 8), class_indices=[1, 2], min_area_frac=0.0) == []
    assert [r.code for r in cam_regions(cam, (8, 8), class_indices=[0], min_area_frac=0.0)] == ["RB"]


def test_two_blobs_two_regions_sorted_by_area():
    cam = np.zeros((17, 14, 14), np.float32)
    cam[5, 1:3, 1:3] = 1.0
    cam[5, 8:13, 8:13] = 1.0
    regions = cam_regions(cam, (448, 448), min_area_frac=0.001)
    assert [r.code for r in regions] == ["IS", "IS"]
    assert regions[0].area > regions[1].area
    x, y, w, h = regions[0].bbox
    # the big blob spans cells 8..12 of 32 px each: about 256..416 px
    assert 240 <= x <= 272 and 400 <= x + w <= 432 and 240 <= y <= 272


def test_bad_cam_shape_rejected():
    with pytest.raises(ValueError, match="shape"):
        cam_regions(np.zeros((5, 4, 4)), (8, 8))


def test_overlay_draws_without_touching_input():
    frame = np.full((64, 64, 3), 100, np.uint8)
    cam = np.zeros((17, 4, 4), np.float32)
    cam[0, 1:3, 1:3] = 1.0
    regions = cam_regions(cam, (64, 64), class_indices=[0], min_area_frac=0.01)
    heat = class_heatmap(cam, 0, (64, 64))
    blended = draw_cam_overlay(frame, [], heat=heat, alpha=0.5)  # the heat blend alone
    out = draw_cam_overlay(frame, regions, heat=heat, alpha=0.5)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert (frame == 100).all()  # the input is untouched
    # The JET blend at alpha 0.5 of a zero heat (top-left corner): 0.5 x (128, 0, 0) + 0.5 x 100, by hand.
    assert blended[0, 0].tolist() == [114, 50, 50]
    # The outline is drawn in RB's colour on top of the blend, exactly along the region's contour.
    colour = class_colour(SEWER_CODES.index("RB"))
    x, y = (int(v) for v in regions[0].contour.reshape(-1, 2)[0])
    assert out[y, x].tolist() == list(colour) and blended[y, x].tolist() != list(colour)
    changed = np.any(out != blended, axis=2)
    rx, ry, rw, rh = regions[0].bbox
    assert changed[ry:ry + rh, rx:rx + rw].any() and not changed[ry + rh + 2:].any()  # nothing below the region
    with pytest.raises(ValueError):
        draw_cam_overlay(frame, regions, heat=np.zeros((8, 8)))


def test_heatmaps_import_without_torch():
    code = (
        "import sys; import edgesewer.runtime.heatmaps; "
        "bad = [m for m in ('torch', 'timm', 'onnx') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"  # the check ran and found none of them
