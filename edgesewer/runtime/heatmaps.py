"""CAM localisation for MA-Q2L: per-class heatmaps -> regions -> overlay. numpy + OpenCV only.

The model's CAM output is `[K, h, w]` raw class activations (14 x 14 at 448 px). For each class
of interest: upsample to the frame, min-max normalise to [0, 1], threshold, find the outer
contours, and drop regions smaller than a fraction of the frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edgesewer.taxonomy import SEWER_CODES


@dataclass(frozen=True)
class HeatRegion:
    """One connected hot region of a class heatmap, in frame pixel coordinates."""

    code: str
    contour: np.ndarray  # int32 [N, 1, 2] (x, y), as cv2.findContours returns it
    bbox: tuple[int, int, int, int]  # x, y, w, h
    area: float  # cv2.contourArea (polygon through the boundary pixel centres)
    peak: float  # highest normalised heat inside the region, in [0, 1]
    peak_xy: tuple[int, int]  # where that peak is


def upsample_heatmap(heat: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one `[h, w]` map to `frame_hw` (height, width), float32."""
    height, width = frame_hw
    return cv2.resize(np.asarray(heat, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def normalise_heatmap(heat: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a flat map (nothing stands out) becomes all zeros."""
    heat = np.asarray(heat, dtype=np.float32)
    lo, hi = float(heat.min()), float(heat.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo < 1e-12:
        return np.zeros_like(heat)
    return (heat - lo) / (hi - lo)


def class_heatmap(cam: np.ndarray, class_index: int, frame_hw: tuple[int, int]) -> np.ndarray:
    """Normalised `[H, W]` heatmap of one class at frame size."""
    return normalise_heatmap(upsample_heatmap(cam[class_index], frame_hw))


def cam_regions(
    cam: np.ndarray,
    frame_hw: tuple[int, int],
    classes: Sequence[str] = SEWER_CODES,
    class_indices: Iterable[int] | None = None,
    threshold: float = 0.5,
    min_area_frac: float = 0.005,
) -> list[HeatRegion]:
    """Regions of the classes in `class_indices` (e.g. the detected ones; default all).

    cam: `[K, h, w]` (or `[1, K, h, w]`) raw activations. A pixel is hot when its normalised heat
    is >= `threshold`; regions whose contour area is below `min_area_frac` of the frame are dropped.
    Sorted by class order, then by decreasing area.
    """
    cam = np.asarray(cam)
    if cam.ndim == 4 and cam.shape[0] == 1:
        cam = cam[0]
    if cam.ndim != 3 or cam.shape[0] != len(classes):
        raise ValueError(f"expected a CAM of shape [{len(classes)}, h, w], got {cam.shape}")
    height, width = frame_hw
    min_area = min_area_frac * height * width
    indices = range(len(classes)) if class_indices is None else class_indices
    regions: list[HeatRegion] = []
    for k in indices:
        heat = class_heatmap(cam, int(k), frame_hw)
        binary = (heat >= threshold).astype(np.uint8)
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        found = []
        for contour in contours:
            area = float(cv2.contourArea(contour))
            if area < min_area:
                continue
            x, y, w, h = cv2.boundingRect(contour)
            mask = np.zeros((h, w), np.uint8)
            cv2.drawContours(mask, [contour - np.array([x, y], dtype=contour.dtype)], -1, 1, thickness=cv2.FILLED)
            window = np.where(mask > 0, heat[y:y + h, x:x + w], -1.0)
            py, px = np.unravel_index(int(np.argmax(window)), window.shape)
            peak, peak_xy = float(window[py, px]), (x + px, y + py)
            found.append(HeatRegion(classes[int(k)], contour, (x, y, w, h), area, peak, peak_xy))
        regions.extend(sorted(found, key=lambda r: -r.area))
    return regions


def class_colour(index: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class index (hue wheel)."""
    hue = np.uint8((index * 37) % 180)
    bgr = cv2.cvtColor(np.array([[[hue, 220, 255]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def draw_cam_overlay(
    frame: np.ndarray,
    regions: Sequence[HeatRegion],
    heat: np.ndarray | None = None,
    alpha: float = 0.35,
    classes: Sequence[str] = SEWER_CODES,
) -> np.ndarray:
    """A copy of the BGR uint8 `frame` with an optional JET heat blend and the region outlines + labels.

    `heat`: a `[H, W]` map in [0, 1] at frame size (e.g. the max of the detected classes' heatmaps).
    """
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected a BGR uint8 HxWx3 frame, got {frame.dtype} {frame.shape}")
    out = frame.copy()
    if heat is not None:
        if heat.shape != frame.shape[:2]:
            raise ValueError(f"heat {heat.shape} does not match the frame {frame.shape[:2]}")
        colour = cv2.applyColorMap(np.clip(heat * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
        out = cv2.addWeighted(colour, alpha, out, 1.0 - alpha, 0.0)
    for region in regions:
        index = classes.index(region.code) if region.code in classes else 0
        colour_bgr = class_colour(index)
        cv2.drawContours(out, [region.contour], -1, colour_bgr, thickness=2)
        x, y, _, _ = region.bbox
        label_xy = (x + 2, max(y - 4, 12))
        cv2.putText(out, region.code, label_xy, cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour_bgr, 1, cv2.LINE_AA)
    return out
