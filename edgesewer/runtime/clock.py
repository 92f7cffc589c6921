"""Clock position of a defect around the pipe, as inspection codes record it (EN 13508-2): looking
in the direction of survey, 12 o'clock is the crown, 3 the right wall, 6 the invert, 9 the left.

A forward-looking camera sees the wall as rings around the pipe axis, so the direction of a
defect's pixels from the axis in the image (the image centre unless a vanishing point is given) is
its angle round the pipe. Two measures come from one map of weights (a crack mask, a CAM heat map):

- `hour`: the direction of the weights' mean unit vector, i.e. where the defect sits;
- `from_hour` / `to_hour`: the clockwise arc the weights cover (the complement of the widest empty
  angular gap), which is how a crack running round the pipe is recorded ("from 11 to 1").

The maps may be coarser than the frame and of another aspect (a 32 x 32 CAM over a 640 x 480
frame): angles are measured in frame pixels, so a square map is not mistaken for a square frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgesewer.runtime.heatmaps import class_heatmap
from edgesewer.runtime.postprocess import FrameResult

CRACK_CODE = "CRACK"  # as in segments.py (not imported from there: segments imports this module)
FULL_CIRCLE_DEG = 330.0  # an arc this wide counts as the whole circumference (12 to 12)
CONCENTRATION_MIN = 0.2  # weights spread this evenly round the axis have no single direction


@dataclass(frozen=True)
class ClockPosition:
    """Where a defect lies round the pipe; hours are 1..12, degrees run clockwise from the crown."""

    hour: int | None  # direction of the defect; None when it surrounds the axis evenly
    degrees: float | None
    from_hour: int  # start of the clockwise arc the defect covers
    to_hour: int | None  # end of that arc; None when the arc rounds to one hour
    from_degrees: float
    extent_degrees: float  # width of the arc
    whole_circumference: bool


def angle_to_clock(degrees: float) -> int:
    """Degrees clockwise from the crown -> nearest clock hour 1..12 (345 and 14 -> 12, 90 -> 3)."""
    hour = int(math.floor((float(degrees) % 360.0) / 30.0 + 0.5)) % 12
    return 12 if hour == 0 else hour


def clock_to_angle(hour: float) -> float:
    """Clock hour -> degrees clockwise from the crown (12 -> 0, 3 -> 90)."""
    return (float(hour) % 12.0) * 30.0


def pixel_angles(
    weights: np.ndarray,
    frame_hw: tuple[int, int] | None = None,
    centre: tuple[float, float] | None = None,
    min_radius_frac: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """(degrees clockwise from the crown, weight) of every weighted pixel of a `[h, w]` map.

    frame_hw: the frame the map covers (default the map itself); centre: the pipe axis in frame
    pixels (x, y), default the frame centre. Pixels closer to the centre than `min_radius_frac` of
    half the frame's short side are left out: far down the pipe their direction is mostly noise.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2:
        raise ValueError(f"expected a [h, w] map, got shape {weights.shape}")
    h, w = weights.shape
    fh, fw = frame_hw or (h, w)
    cx, cy = centre if centre is not None else (fw / 2.0, fh / 2.0)
    ys, xs = np.nonzero(weights > 0)
    dx = (xs + 0.5) * (fw / w) - cx
    dy = (ys + 0.5) * (fh / h) - cy
    keep = np.hypot(dx, dy) >= min_radius_frac * min(fh, fw) / 2.0
    # y points down in images: atan2(dx, -dy) is 0 straight up and grows clockwise on screen.
    angles = np.degrees(np.arctan2(dx[keep], -dy[keep])) % 360.0
    return angles, weights[ys[keep], xs[keep]]


def covered_arc(angles: np.ndarray, bin_deg: float = 1.0) -> tuple[float, float]:
    """(start, width) in degrees of the clockwise arc holding all `angles`: the circle minus its
    widest empty gap, so an arc across the crown (350..10) comes out as start 350, width 20."""
    bins = int(round(360.0 / bin_deg))
    occupied = np.zeros(bins, dtype=bool)
    occupied[(np.asarray(angles) / bin_deg).astype(int) % bins] = True
    if occupied.all():
        return 0.0, 360.0
    # Roll so that the last bin is occupied: then no run of empty bins wraps past the end.
    shift = int(np.argmax(occupied)) + 1
    ring = np.roll(occupied, -shift)
    best_len, best_start, run_start = 0, 0, None
    for i, filled in enumerate(np.append(ring, True)):
        if not filled and run_start is None:
            run_start = i
        elif filled and run_start is not None:
            if i - run_start > best_len:
                best_len, best_start = i - run_start, run_start
            run_start = None
    gap_end = (best_start + best_len + shift) % bins  # first occupied bin after the gap
    return gap_end * bin_deg, (bins - best_len) * bin_deg


def clock_of_weights(
    weights: np.ndarray,
    frame_hw: tuple[int, int] | None = None,
    centre: tuple[float, float] | None = None,
    min_radius_frac: float = 0.1,
) -> ClockPosition | None:
    """Clock position of a non-negative `[h, w]` weight map; None when nothing is weighted off-centre."""
    angles, w = pixel_angles(weights, frame_hw, centre, min_radius_frac)
    if len(angles) == 0 or float(w.sum()) <= 0.0:
        return None
    rad = np.radians(angles)
    mx, my = float(np.sum(w * np.sin(rad))), float(np.sum(w * np.cos(rad)))  # mean unit vector (east, up)
    concentration = math.hypot(mx, my) / float(w.sum())
    degrees = None
    if concentration >= CONCENTRATION_MIN:  # rounded first so that a hair west of the crown reads 0, not 360
        degrees = round(math.degrees(math.atan2(mx, my)), 6) % 360.0
    start, extent = covered_arc(angles)
    whole = extent >= FULL_CIRCLE_DEG
    if whole:
        from_hour, to_hour = 12, 12
    else:
        from_hour, to_hour = angle_to_clock(start), angle_to_clock(start + extent)
        to_hour = None if to_hour == from_hour else to_hour
    return ClockPosition(
        hour=angle_to_clock(degrees) if degrees is not None else None,
        degrees=degrees,
        from_hour=from_hour,
        to_hour=to_hour,
        from_degrees=start,
        extent_degrees=extent,
        whole_circumference=whole,
    )


def clock_of_mask(mask: np.ndarray, frame_hw: tuple[int, int] | None = None,
                  centre: tuple[float, float] | None = None) -> ClockPosition | None:
    """Clock position of a binary mask (e.g. `CrackResult.mask`, at network resolution)."""
    return clock_of_weights((np.asarray(mask) > 0).astype(np.float64), frame_hw, centre)


def clock_of_heatmap(heat: np.ndarray, frame_hw: tuple[int, int] | None = None,
                     centre: tuple[float, float] | None = None, threshold: float = 0.5) -> ClockPosition | None:
    """Clock position of a heat map already normalised to [0, 1]: its hot part (>= threshold),
    weighted by heat, the same pixels `heatmaps.cam_regions` outlines."""
    heat = np.asarray(heat, dtype=np.float64)
    return clock_of_weights(np.where(heat >= threshold, heat, 0.0), frame_hw, centre)


def segment_clock(code: str, result: FrameResult | None) -> tuple[int | None, int | None, int | None]:
    """(clock, clock_from, clock_to) of one code in one frame (a segment's peak frame).

    A crack segment reads the crack mask and gets an arc; a classifier code reads its CAM and gets
    one position (a 14 x 14 activation map is too coarse to say where a defect ends). Codes without
    a map (no CAM output, nothing hot off-centre) get Nones.
    """
    if result is None or result.image is None:  # scores without their frame (offline scoring): no geometry
        return None, None, None
    frame_hw = tuple(result.image.shape[:2])
    if code == CRACK_CODE:
        if result.crack is None or not result.crack.found:
            return None, None, None
        pos = clock_of_mask(result.crack.mask, frame_hw)
        return (pos.hour, pos.from_hour, pos.to_hour) if pos else (None, None, None)
    if result.cam is None or code not in result.classes:
        return None, None, None
    cam = np.asarray(result.cam)
    cam = cam[0] if cam.ndim == 4 else cam
    if cam.ndim != 3 or cam.shape[0] != len(result.classes):
        return None, None, None
    # Upsampled as the overlay does, but to at most 256 px a side: the angle needs no more.
    scale = min(1.0, 256.0 / max(frame_hw))
    work_hw = (max(1, round(frame_hw[0] * scale)), max(1, round(frame_hw[1] * scale)))
    pos = clock_of_heatmap(class_heatmap(cam, result.classes.index(code), work_hw), frame_hw)
    if pos is None or pos.hour is None:
        return None, None, None
    return pos.hour, pos.hour, None
